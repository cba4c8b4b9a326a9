//! Shared by the CLI's integration tests.

use synmigrate::state::{ItemKey, ItemRecord, ItemStatus};

/// Version 1 of `entity` with `status`, as indexed from Synapse storage 1: no copy, no lease, no
/// attempts yet, the rest empty. Tests set what they show with struct update syntax.
pub fn item_record(entity: &str, status: ItemStatus) -> ItemRecord {
    ItemRecord {
        key: ItemKey::new(entity, 1).expect("a valid entity id"),
        source_file_handle_id: String::new(),
        size: 0,
        content_md5: None,
        source_storage_location_id: Some(1),
        file_name: String::new(),
        destination_file_name: None,
        entity: None,
        status,
        destination_file_handle_id: None,
        attempts: 0,
        lease: None,
        updated_at: 0,
        run_id: String::new(),
        verified_by: None,
        source_handle: None,
        destination_storage_location_id: None,
        column_name: None,
    }
}

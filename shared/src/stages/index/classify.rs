//! What the Index stage makes of one file version (or table cell): the pure rules of
//! [`classify`], and the item that reports what could not be read.

use synapse_model::{concrete, FileHandle};

use crate::context::{now, RunContext};
use crate::error::types;
use crate::state::{FolderRecord, ItemError, ItemKey, ItemRecord, ItemStatus, SkipReason};
use crate::{Error, Result};

/// The item that reports a file (id, name, version) the walk could not read.
pub(super) fn unreadable(
    run: &RunContext,
    folder: Option<&FolderRecord>,
    (entity_id, name, version): (&str, &str, i64),
    error: &Error,
) -> Result<ItemRecord> {
    let key = ItemKey::new(entity_id, u64::try_from(version).unwrap_or(1))?;
    let mut item = classify(run, folder, key, name, None, None);
    item.status = ItemStatus::Errored(ItemError::from(error));
    Ok(item)
}

/// Decides what to do with one file version, in `folder` for an aligned run. Pure, so every
/// rule is unit-tested.
pub fn classify(
    run: &RunContext,
    folder: Option<&FolderRecord>,
    key: ItemKey,
    entity_name: &str,
    handle_id: Option<&str>,
    handle: Option<&FileHandle>,
) -> ItemRecord {
    let options = &run.options;
    let file_name = handle
        .and_then(|h| h.file_name.clone())
        .unwrap_or_else(|| entity_name.to_owned());
    let mut item = ItemRecord {
        key,
        source_file_handle_id: handle_id.unwrap_or_default().to_owned(),
        size: handle.and_then(|h| h.content_size).unwrap_or_default(),
        content_md5: handle.and_then(|h| h.content_md5.clone()),
        source_storage_location_id: handle.and_then(|h| h.storage_location_id),
        file_name,
        destination_file_name: None,
        entity: None,
        status: ItemStatus::Indexed,
        destination_file_handle_id: None,
        attempts: 0,
        lease: None,
        updated_at: now(),
        run_id: run.run_id.clone(),
        verified_by: None,
        source_handle: None,
        destination_storage_location_id: folder.map(|f| f.destination_storage_location_id),
        column_name: None,
    };
    let destination = item
        .destination_storage_location_id
        .or(run.destination_storage_location_id);
    let skip = |reason| ItemStatus::Skipped { reason };
    item.status = match handle {
        None => ItemStatus::Errored(ItemError {
            class: types::NOT_FOUND.to_owned(),
            message: format!(
                "file handle {} of {} is not readable",
                handle_id.unwrap_or("(none)"),
                item.key
            ),
            retryable: false,
        }),
        Some(h) if h.concrete_type == concrete::EXTERNAL_FILE_HANDLE => {
            skip(SkipReason::ExternalLink)
        }
        Some(h) if !h.is_s3() => skip(SkipReason::NotS3),
        Some(h) if h.storage_location_id.is_some() && h.storage_location_id == destination => {
            item.destination_file_handle_id = Some(h.id.clone());
            ItemStatus::AlreadyMigrated
        }
        Some(h) if !options.selects_source(h.storage_location_id) => skip(SkipReason::FilteredOut),
        Some(_) if folder.is_some_and(|f| f.not_writable.is_some()) => {
            skip(SkipReason::DestinationNotWritable)
        }
        Some(_) if item.size == 0 => skip(SkipReason::EmptyFile),
        Some(_) => match crate::copy::sanitize_file_name(&item.file_name) {
            Some(_) if !options.sanitize_file_names => skip(SkipReason::InvalidFileName),
            renamed => {
                item.destination_file_name = renamed;
                ItemStatus::Indexed
            }
        },
    };
    item
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MigrationOptions;
    use synapse_model::StorageLocationSetting;

    fn run(options: MigrationOptions) -> RunContext {
        RunContext {
            project_id: "syn1".into(),
            destination_storage_location_id: Some(7001),
            run_id: "run-1".into(),
            options,
            destination: Some(StorageLocationSetting {
                concrete_type: concrete::EXTERNAL_S3_STORAGE_LOCATION.into(),
                storage_location_id: 7001,
                upload_type: None,
                bucket: Some("dest".into()),
                base_key: None,
                sts_enabled: None,
                endpoint_url: None,
                banner: None,
                description: None,
                etag: None,
                created_on: None,
                created_by: None,
            }),
        }
    }

    fn handle(kind: &str, location: i64, size: u64, name: &str) -> FileHandle {
        serde_json::from_value(serde_json::json!({
            "id": "55", "concreteType": kind, "storageLocationId": location,
            "contentSize": size, "contentMd5": "abc", "fileName": name
        }))
        .unwrap()
    }

    fn status(options: MigrationOptions, h: &FileHandle) -> ItemRecord {
        let key = ItemKey::new("syn9", 2).unwrap();
        classify(
            &run(options),
            None,
            key,
            "entity name",
            Some(&h.id),
            Some(h),
        )
    }

    #[test]
    fn s3_files_outside_the_destination_are_indexed() {
        let item = status(
            MigrationOptions::default(),
            &handle(concrete::S3_FILE_HANDLE, 1, 10, "a.txt"),
        );
        assert_eq!(item.status, ItemStatus::Indexed);
        assert_eq!(item.source_file_handle_id, "55");
        assert_eq!(item.size, 10);
        assert_eq!(item.file_name, "a.txt");
        assert_eq!(item.destination_file_name, None);
    }

    #[test]
    fn skips_carry_their_reason() {
        let defaults = MigrationOptions::default;
        let cases = [
            (
                defaults(),
                handle(concrete::EXTERNAL_FILE_HANDLE, 1, 10, "a"),
                SkipReason::ExternalLink,
            ),
            (
                defaults(),
                handle(concrete::GOOGLE_CLOUD_FILE_HANDLE, 1, 10, "a"),
                SkipReason::NotS3,
            ),
            (
                defaults(),
                handle(concrete::PROXY_FILE_HANDLE, 1, 10, "a"),
                SkipReason::NotS3,
            ),
            (
                defaults(),
                handle(concrete::S3_FILE_HANDLE, 1, 0, "a"),
                SkipReason::EmptyFile,
            ),
            (
                MigrationOptions {
                    source_storage_location_ids: vec![2],
                    ..defaults()
                },
                handle(concrete::S3_FILE_HANDLE, 1, 10, "a"),
                SkipReason::FilteredOut,
            ),
            (
                MigrationOptions {
                    sanitize_file_names: false,
                    ..defaults()
                },
                handle(concrete::S3_FILE_HANDLE, 1, 10, "données#1.csv"),
                SkipReason::InvalidFileName,
            ),
        ];
        for (options, h, reason) in cases {
            assert_eq!(
                status(options, &h).status,
                ItemStatus::Skipped { reason },
                "{h:?}"
            );
        }
    }

    #[test]
    fn files_in_the_destination_are_already_migrated() {
        let item = status(
            MigrationOptions::default(),
            &handle(concrete::S3_FILE_HANDLE, 7001, 10, "a"),
        );
        assert_eq!(item.status, ItemStatus::AlreadyMigrated);
        assert_eq!(item.destination_file_handle_id.as_deref(), Some("55"));
    }

    #[test]
    fn an_aligned_run_classifies_each_file_against_its_folders_location() {
        let aligned = RunContext {
            destination_storage_location_id: None,
            destination: None,
            ..run(MigrationOptions::default())
        };
        let folder = |location, not_writable: Option<&str>| FolderRecord {
            folder_id: "syn2".into(),
            destination_storage_location_id: location,
            not_writable: not_writable.map(str::to_owned),
            ..FolderRecord::default()
        };
        let classify_in = |folder: &FolderRecord, h: &FileHandle| {
            let key = ItemKey::new("syn9", 1).unwrap();
            classify(&aligned, Some(folder), key, "x", Some(&h.id), Some(h))
        };
        let in_7003 = handle(concrete::S3_FILE_HANDLE, 7003, 10, "a");
        let there = classify_in(&folder(7003, None), &in_7003);
        assert_eq!(there.status, ItemStatus::AlreadyMigrated);
        assert_eq!(there.destination_storage_location_id, Some(7003));
        let to_copy = classify_in(&folder(7001, None), &in_7003);
        assert_eq!(to_copy.status, ItemStatus::Indexed);
        assert_eq!(to_copy.destination_storage_location_id, Some(7001));
        assert_eq!(to_copy.copy_id(), "55@7001");
        let refused = classify_in(&folder(7002, Some("not yours")), &in_7003);
        assert_eq!(
            refused.status,
            ItemStatus::Skipped {
                reason: SkipReason::DestinationNotWritable
            }
        );
        // Already in a location nobody may copy into is still already there.
        let in_synapse = handle(concrete::S3_FILE_HANDLE, 1, 10, "a");
        let kept = classify_in(&folder(1, Some("Synapse's")), &in_synapse);
        assert_eq!(kept.status, ItemStatus::AlreadyMigrated);
    }

    #[test]
    fn invalid_names_are_sanitised_by_default() {
        let item = status(
            MigrationOptions::default(),
            &handle(concrete::S3_FILE_HANDLE, 1, 10, "données#1.csv"),
        );
        assert_eq!(item.status, ItemStatus::Indexed);
        let renamed = item.destination_file_name.expect("a sanitised name");
        assert!(
            crate::copy::sanitize_file_name(&renamed).is_none(),
            "{renamed}"
        );
    }

    #[test]
    fn unreadable_handles_are_errors_that_are_not_retried() {
        let key = ItemKey::new("syn9", 1).unwrap();
        let item = classify(
            &run(MigrationOptions::default()),
            None,
            key,
            "x",
            Some("77"),
            None,
        );
        match item.status {
            ItemStatus::Errored(error) => {
                assert_eq!(error.class, types::NOT_FOUND);
                assert!(!error.retryable);
                assert!(error.message.contains("77"));
            }
            other => panic!("expected ERRORED, got {other:?}"),
        }
    }
}

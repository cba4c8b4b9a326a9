//! The run report: counts per status and a CSV with one row per item.
//!
//! The CSV starts with the official client's columns (`synapse migrate --csv_log_path`), so
//! tools written for that log read ours, and adds `reason`, `renamed_to`, `bytes`,
//! `verified_by` (how the copy was proven, see [`crate::copy::verify`]) and `source_handle`
//! (what `deleteSourceFileHandles` did with the old handle) and `to_storage_location_id` (where
//! the file goes: the run's destination, or its folder's upload location in an aligned run)
//! at the end. An aligned run also lists its folders ([`folder_row`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::state::{CopyRecord, FolderRecord, ItemRecord, ItemStatus, StatusName};

/// The header row.
pub const CSV_HEADER: &str = "id,type,version,row_id,col_name,from_storage_location_id,\
from_file_handle_id,to_file_handle_id,status,exception,reason,renamed_to,bytes,verified_by,source_handle,\
to_storage_location_id";

/// The header of an aligned run's folder list: the plan per folder.
pub const FOLDERS_HEADER: &str = "folder_id,to_storage_location_id,not_writable,to_copy,\
bytes_to_copy,already_there,skipped,errored,unchanged";

/// One row of the folder list (with its trailing newline).
pub fn folder_row(folder: &FolderRecord) -> String {
    csv_line(&[
        folder.folder_id.clone(),
        folder.destination_storage_location_id.to_string(),
        folder.not_writable.clone().unwrap_or_default(),
        folder.to_copy.to_string(),
        folder.bytes_to_copy.to_string(),
        folder.already_there.to_string(),
        folder.skipped.to_string(),
        folder.errored.to_string(),
        folder.unchanged.to_string(),
    ])
}

/// Totals over every item of a migration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemTotals {
    /// Items per status name (`MIGRATED`, `SKIPPED`, ...).
    pub by_status: BTreeMap<StatusName, u64>,
    /// Bytes of the items that are MIGRATED.
    pub migrated_bytes: u64,
    pub items: u64,
    /// MIGRATED items whose copy has no proof beyond its handle's fields though the run asked
    /// for one (`verified_by` starts with `none`).
    #[serde(default)]
    pub unproven: u64,
    /// Files whose old file handle `deleteSourceFileHandles` deleted, and kept (with a reason).
    #[serde(default)]
    pub source_deleted: u64,
    #[serde(default)]
    pub source_kept: u64,
    /// ERRORED items per error type (a stable name, so a handful at most), with one message.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, ErrorTally>,
}

/// The ERRORED items of one error type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorTally {
    pub items: u64,
    /// The message of the first such item met, for the notification and the summary.
    pub example: String,
}

impl ItemTotals {
    pub fn add(&mut self, item: &ItemRecord) {
        let status = item.status.name();
        *self.by_status.entry(status).or_default() += 1;
        if status == StatusName::Migrated {
            self.migrated_bytes += item.size;
            if item
                .verified_by
                .as_deref()
                .is_some_and(|proof| proof.starts_with("none"))
            {
                self.unproven += 1;
            }
        }
        if let ItemStatus::Errored(error) = &item.status {
            let tally = self.errors.entry(error.class.clone()).or_default();
            if tally.items == 0 {
                tally.example = error.message.clone();
            }
            tally.items += 1;
        }
        match item.source_handle.as_deref() {
            Some("deleted") => self.source_deleted += 1,
            Some(kept) if kept.starts_with("kept") => self.source_kept += 1,
            _ => {}
        }
        self.items += 1;
    }

    pub fn count(&self, status: StatusName) -> u64 {
        self.by_status.get(&status).copied().unwrap_or_default()
    }
}

/// One CSV row for an item of a run into `destination` (`None`: an aligned run, where each
/// item has its own), with its trailing newline.
pub fn csv_row(item: &ItemRecord, destination: Option<i64>) -> String {
    let (exception, reason) = match &item.status {
        ItemStatus::Errored(error) => (error.message.clone(), error.class.clone()),
        ItemStatus::Skipped { reason } => (String::new(), reason.as_str().to_owned()),
        _ => (String::new(), String::new()),
    };
    // A table's cell has a row and a column where a file has a version (the official client's
    // `type`, `row_id`, `col_name`).
    let (kind, version, row, column) = match item.key.cell {
        Some(cell) => (
            "table",
            String::new(),
            cell.row_id.to_string(),
            item.column_name.clone().unwrap_or_default(),
        ),
        None => (
            "file",
            item.key.version.to_string(),
            String::new(),
            String::new(),
        ),
    };
    let fields = [
        item.key.entity_id.clone(),
        kind.to_owned(),
        version,
        row,
        column,
        item.source_storage_location_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        item.source_file_handle_id.clone(),
        item.destination_file_handle_id.clone().unwrap_or_default(),
        item.status.name().as_str().to_owned(),
        exception,
        reason,
        item.destination_file_name.clone().unwrap_or_default(),
        item.size.to_string(),
        item.verified_by.clone().unwrap_or_default(),
        item.source_handle.clone().unwrap_or_default(),
        item.destination_storage_location_id
            .or(destination)
            .map(|id| id.to_string())
            .unwrap_or_default(),
    ];
    csv_line(&fields)
}

/// The header of the orphaned copies' CSV.
pub const ORPHANED_COPIES_HEADER: &str = "from_file_handle_id,to_file_handle_id,reason";

/// What the report says of a copy it lists, as (destination handle, why) lines: one if it is
/// orphaned (see [`CopyRecord::is_orphaned`]), one if Synapse may hold handles of it that no
/// record names (see [`CopyRecord::unrecorded_handles`]).
pub fn orphaned_copy_notes(copy: &CopyRecord) -> Vec<(String, String)> {
    let mut notes = Vec::new();
    if copy.is_orphaned() {
        notes.push((
            copy.destination_file_handle_id.clone().unwrap_or_default(),
            copy.unused_reason.clone().unwrap_or_default(),
        ));
    }
    let unrecorded = copy.unrecorded_handles();
    if unrecorded > 0 {
        notes.push((
            String::new(),
            format!(
                "up to {unrecorded} handle(s) registered by an attempt that crashed before \
                 recording them: Synapse cannot look them up, and they name the same object as \
                 the copy's recorded handle (no extra bytes)"
            ),
        ));
    }
    notes
}

/// The CSV rows of a copy the report lists (see [`orphaned_copy_notes`]).
pub fn orphaned_copy_row(copy: &CopyRecord) -> String {
    orphaned_copy_notes(copy)
        .iter()
        .map(|(to, why)| csv_line(&[copy.source_handle_id(), to, why]))
        .collect()
}

/// A row of the orphaned copies' CSV about a copy without a destination handle.
pub(super) fn note_row(copy: &CopyRecord, why: &str) -> String {
    csv_line(&[copy.source_handle_id(), "", why])
}

/// One CSV line (RFC 4180 quoting, `\n` at the end) of `fields`.
pub fn csv_line<S: AsRef<[u8]>>(fields: &[S]) -> String {
    let mut writer = ::csv::WriterBuilder::new()
        .terminator(::csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    // Writing to memory cannot fail, and the fields are strings, so the bytes are UTF-8.
    writer
        .write_record(fields)
        .expect("a CSV record is written to memory");
    let bytes = writer
        .into_inner()
        .expect("a CSV writer over memory flushes");
    String::from_utf8(bytes).expect("CSV of strings is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ItemError, ItemKey, SkipReason};

    fn item(status: ItemStatus) -> ItemRecord {
        ItemRecord {
            key: ItemKey::new("syn5", 3).unwrap(),
            source_file_handle_id: "100".into(),
            size: 42,
            content_md5: None,
            source_storage_location_id: Some(1),
            file_name: "a b.txt".into(),
            destination_file_name: None,
            entity: None,
            status,
            destination_file_handle_id: None,
            attempts: 0,
            lease: None,
            updated_at: 0,
            run_id: "r".into(),
            verified_by: None,
            source_handle: None,
            destination_storage_location_id: None,
            column_name: None,
        }
    }

    #[test]
    fn header_starts_with_the_official_columns() {
        assert!(CSV_HEADER.starts_with(
            "id,type,version,row_id,col_name,from_storage_location_id,from_file_handle_id,\
             to_file_handle_id,status,exception"
        ));
        assert_eq!(CSV_HEADER.split(',').count(), 16);
    }

    #[test]
    fn rows_carry_status_reason_and_rename() {
        let mut migrated = item(ItemStatus::Migrated);
        migrated.destination_file_handle_id = Some("200".into());
        migrated.destination_file_name = Some("caf_.txt".into());
        migrated.verified_by = Some("bytes-md5".into());
        migrated.source_handle = Some("deleted".into());
        assert_eq!(
            csv_row(&migrated, Some(7001)),
            "syn5,file,3,,,1,100,200,MIGRATED,,,caf_.txt,42,bytes-md5,deleted,7001\n"
        );
        let skipped = item(ItemStatus::Skipped {
            reason: SkipReason::EmptyFile,
        });
        assert_eq!(
            csv_row(&skipped, Some(7001)),
            "syn5,file,3,,,1,100,,SKIPPED,,EMPTY_FILE,,42,,,7001\n"
        );
    }

    #[test]
    fn messages_are_quoted() {
        let errored = item(ItemStatus::Errored(ItemError {
            class: "Fatal.Forbidden".into(),
            message: "no, \"really\"\nno".into(),
            retryable: false,
        }));
        assert_eq!(
            csv_row(&errored, Some(7001)),
            "syn5,file,3,,,1,100,,ERRORED,\"no, \"\"really\"\"\nno\",Fatal.Forbidden,,42,,,7001\n"
        );
    }

    #[test]
    fn totals_count_statuses_and_migrated_bytes() {
        let mut totals = ItemTotals::default();
        totals.add(&item(ItemStatus::Migrated));
        let mut unproven = item(ItemStatus::Migrated);
        unproven.verified_by = Some("none: no checksum on both objects".into());
        unproven.source_handle = Some("kept: only its creator may delete it".into());
        totals.add(&unproven);
        totals.add(&item(ItemStatus::Indexed));
        assert_eq!(totals.count(StatusName::Migrated), 2);
        assert_eq!(totals.unproven, 1);
        assert_eq!((totals.source_deleted, totals.source_kept), (0, 1));
        assert_eq!(totals.count(StatusName::Indexed), 1);
        assert_eq!(totals.count(StatusName::Errored), 0);
        assert_eq!(totals.migrated_bytes, 84);
        assert_eq!(totals.items, 3);
    }
}

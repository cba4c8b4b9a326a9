//! Keys: the migration's partition key, the sort keys of its records, and item keys.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{StateError, StatusName};

/// Identifies one migration: a project into one destination storage location, or a project
/// re-aligned to each folder's own upload location ([`MigrationKey::aligned`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MigrationKey {
    project_id: String,
    /// `None`: every file goes where its folder uploads to.
    destination_storage_location_id: Option<i64>,
}

/// Ids become parts of `#`-separated keys, so they may not contain `#` or be empty.
pub(super) fn check_id(what: &str, id: &str) -> Result<(), StateError> {
    if id.is_empty() || id.contains('#') {
        return Err(StateError::Invalid(format!(
            "{what} must be non-empty and free of '#': {id:?}"
        )));
    }
    Ok(())
}

impl MigrationKey {
    pub fn new(
        project_id: impl Into<String>,
        destination_storage_location_id: i64,
    ) -> Result<Self, StateError> {
        Self::with_destination(project_id, Some(destination_storage_location_id))
    }

    /// The migration that moves every file of the project to its folder's upload location.
    pub fn aligned(project_id: impl Into<String>) -> Result<Self, StateError> {
        Self::with_destination(project_id, None)
    }

    /// [`MigrationKey::new`] for `Some` destination, [`MigrationKey::aligned`] for `None`.
    pub fn with_destination(
        project_id: impl Into<String>,
        destination_storage_location_id: Option<i64>,
    ) -> Result<Self, StateError> {
        let project_id = project_id.into();
        check_id("project id", &project_id)?;
        Ok(Self {
            project_id,
            destination_storage_location_id,
        })
    }

    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// The one destination of every file, `None` when each goes where its folder uploads to.
    pub fn destination_storage_location_id(&self) -> Option<i64> {
        self.destination_storage_location_id
    }

    /// The partition key shared by every record of this migration.
    pub fn pk(&self) -> String {
        match self.destination_storage_location_id {
            Some(id) => format!("MIG#{}#{id}", self.project_id),
            None => format!("MIG#{}#{ALIGNED}", self.project_id),
        }
    }
}

/// Stands for the destination in the keys of an aligned migration.
const ALIGNED: &str = "aligned";

pub(crate) const LOCK_SK: &str = "LOCK";
pub(crate) const ITEM_PREFIX: &str = "ITEM#";
pub(crate) const COPY_PREFIX: &str = "FH#";

pub(crate) fn run_sk(run_id: &str) -> String {
    format!("RUN#{run_id}")
}

/// One index frontier per migration: a run continues the walk a crashed one left unfinished.
pub(crate) const FRONTIER_SK: &str = "FRONTIER";

pub(crate) const SEEN_PREFIX: &str = "SEEN#";

pub(crate) fn seen_sk(entity_id: &str) -> String {
    format!("{SEEN_PREFIX}{entity_id}")
}

pub(crate) fn budget_sk(run_id: &str) -> String {
    format!("BUDGET#{run_id}")
}

pub(crate) fn copy_sk(copy_id: &str) -> String {
    format!("{COPY_PREFIX}{copy_id}")
}

/// Folder records of a run: what its walk found in each folder of an aligned migration.
pub(crate) fn folder_sk(run_id: &str, folder_id: &str) -> String {
    format!("{}{folder_id}", folder_prefix(run_id))
}

pub(crate) fn folder_prefix(run_id: &str) -> String {
    format!("FOLDER#{run_id}#")
}

/// Names the one copy of a source handle into one destination (rule 2): the handle id where the
/// migration has one destination, `<handle>@<location>` where each folder has its own (an
/// aligned migration may copy one handle into two locations for files in two folders).
pub fn copy_id(source_file_handle_id: &str, destination: Option<i64>) -> String {
    match destination {
        Some(location) => format!("{source_file_handle_id}@{location}"),
        None => source_file_handle_id.to_owned(),
    }
}

/// The source handle id of a [`copy_id`].
pub fn copy_source(copy_id: &str) -> &str {
    copy_id
        .split_once('@')
        .map_or(copy_id, |(source, _)| source)
}

/// Sort key of the status index: an item's place in the Plan's order, biggest sources first, then
/// by source handle, then by item key. Plan reads each status in this order, so the items that
/// share a source come together and the big sources come first, whatever the project's size.
/// The size is stored as its complement, zero-padded, so that text order is size descending.
/// In an aligned migration the item's destination comes between source and key, so that the
/// items of one copy ([`copy_id`]) come together too.
pub fn plan_order_key(
    size: u64,
    source_file_handle_id: &str,
    destination: Option<i64>,
    key: &ItemKey,
) -> String {
    let source = source_order_prefix(size, source_file_handle_id);
    match destination {
        Some(location) => format!("{source}{location}#{}", key.sk()),
        None => format!("{source}{}", key.sk()),
    }
}

/// The start of [`plan_order_key`] shared by every item of one source (of `size` bytes).
pub fn source_order_prefix(size: u64, source_file_handle_id: &str) -> String {
    format!("{:020}#{source_file_handle_id}#", u64::MAX - size)
}

/// Partition key of the status index for items of one status.
pub(crate) fn status_pk(migration: &MigrationKey, status: StatusName) -> String {
    format!("{}#{}", migration.pk(), status.as_str())
}

/// One file version, `syn123.4` in text (Synapse's own notation) and `ITEM#syn123#4` as a sort
/// key; or one file-handle cell of a table, `syn123.r5.c77` (table, row id, column id) and
/// `ITEM#syn123#R5#C77`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemKey {
    pub entity_id: String,
    /// The file version; 0 for a table cell (a row's version changes with every update, so the
    /// row and column name the cell).
    pub version: u64,
    pub cell: Option<TableCell>,
}

/// A file-handle cell of a table: the row and the column that hold it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableCell {
    pub row_id: u64,
    pub column_id: u64,
}

impl ItemKey {
    pub fn new(entity_id: impl Into<String>, version: u64) -> Result<Self, StateError> {
        let entity_id = entity_id.into();
        check_id("entity id", &entity_id)?;
        if entity_id.contains('.') {
            return Err(StateError::Invalid(format!(
                "entity id may not contain '.': {entity_id:?}"
            )));
        }
        Ok(Self {
            entity_id,
            version,
            cell: None,
        })
    }

    /// The cell of table `table_id` at (`row_id`, `column_id`).
    pub fn cell(
        table_id: impl Into<String>,
        row_id: u64,
        column_id: u64,
    ) -> Result<Self, StateError> {
        Ok(Self {
            cell: Some(TableCell { row_id, column_id }),
            ..Self::new(table_id, 0)?
        })
    }

    pub fn sk(&self) -> String {
        match self.cell {
            Some(cell) => format!(
                "{ITEM_PREFIX}{}#R{}#C{}",
                self.entity_id, cell.row_id, cell.column_id
            ),
            None => format!("{ITEM_PREFIX}{}#{}", self.entity_id, self.version),
        }
    }
}

impl fmt::Display for ItemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.cell {
            Some(cell) => write!(f, "{}.r{}.c{}", self.entity_id, cell.row_id, cell.column_id),
            None => write!(f, "{}.{}", self.entity_id, self.version),
        }
    }
}

impl FromStr for ItemKey {
    type Err = StateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            StateError::Invalid(format!(
                "item key must look like syn123.4 or syn123.r5.c77: {s:?}"
            ))
        };
        let number = |text: Option<&str>| text.and_then(|t| t.parse::<u64>().ok());
        match s.split('.').collect::<Vec<_>>().as_slice() {
            [entity_id, version] => {
                ItemKey::new(*entity_id, number(Some(version)).ok_or_else(invalid)?)
            }
            [table_id, row, column] => {
                let row = number(row.strip_prefix('r')).ok_or_else(invalid)?;
                let column = number(column.strip_prefix('c')).ok_or_else(invalid)?;
                ItemKey::cell(*table_id, row, column)
            }
            _ => Err(invalid()),
        }
    }
}

impl Serialize for ItemKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ItemKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

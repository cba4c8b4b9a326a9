//! Table entities' data: column models, rows, the row-change versions, the file-handle index and
//! the asynchronous jobs of the table API. The rules come from the server's table managers
//! (`TableEntityManagerImpl`, `TableModelUtils`, `TableRowTruthDAOImpl`, `TableIndexDAOImpl`);
//! `simulator/rules/repo-service.md` lists them with their tests. Permissions and file-handle
//! ownership are the store's: the API layer checks them before it calls in here.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::util::new_etag;

/// The column types a fixture may declare (a subset of the server's `ColumnType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub enum ColumnType {
    FILEHANDLEID,
    STRING,
    INTEGER,
}

/// `ColumnConstants.MAX_INTEGER_BYTES_AS_STRING` (`-9223372036854775807`), also the size of a
/// FILEHANDLEID cell.
const MAX_INTEGER_BYTES: u64 = 20;
/// `ColumnConstants.MAX_BYTES_PER_CHAR_UTF_8`.
const MAX_BYTES_PER_CHAR: u64 = 4;
/// `org.sagebionetworks.table.max.bytes.per.request` (`stack.properties`): the page budget of a
/// query.
const MAX_BYTES_PER_PAGE: u64 = 2 * 1024 * 1024;
/// `TableConstants.IN_PROGRESS`: the label and comment of a table's version in progress.
pub const IN_PROGRESS: &str = "in progress";
/// `TableConstants.RESERVED_COLUMNS_NAMES`: the row metadata columns no column model may be named
/// after, in any case (`TableConstants.isReservedColumnName`).
pub const RESERVED_COLUMN_NAMES: [&str; 6] = [
    "ROW_ID",
    "ROW_VERSION",
    "ROW_ETAG",
    "ROW_BENEFACTOR",
    "ROW_SEARCH_CONTENT",
    "ROW_HASH_CODE",
];
/// `ColumnConstants.DEFAULT_STRING_SIZE`.
pub const DEFAULT_STRING_SIZE: u64 = 50;

/// A `ColumnModel` as the server renders it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ColumnModel {
    pub id: String,
    pub name: String,
    pub column_type: ColumnType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_size: Option<u64>,
}

impl ColumnModel {
    /// `TableModelUtils.calculateMaxSizeForType`.
    fn max_bytes(&self) -> u64 {
        match self.column_type {
            ColumnType::FILEHANDLEID | ColumnType::INTEGER => MAX_INTEGER_BYTES,
            ColumnType::STRING => {
                MAX_BYTES_PER_CHAR * self.maximum_size.unwrap_or(DEFAULT_STRING_SIZE)
            }
        }
    }

    /// `TableModelUtils.validateValue` for one cell: the value to store (an empty string is null
    /// for every type but STRING, PLFM-2657), or the reason it is invalid.
    fn validate(&self, value: Option<&str>) -> Result<Option<String>, String> {
        let Some(value) = value else {
            return Ok(None);
        };
        match self.column_type {
            ColumnType::STRING => {
                let max = self.maximum_size.unwrap_or(DEFAULT_STRING_SIZE);
                if value.chars().count() as u64 > max {
                    return Err(format!(
                        "String '{value}' exceeds the maximum length of {max} characters."
                    ));
                }
                Ok(Some(value.to_owned()))
            }
            _ if value.is_empty() => Ok(None),
            // LongParser: `Long.parseLong`, whose message is Java's NumberFormatException text.
            _ => value
                .parse::<i64>()
                .map(|n| Some(n.to_string()))
                .map_err(|_| format!("For input string: \"{value}\"")),
        }
    }

    /// A `SelectColumn` for this column selected by its own name.
    pub fn select_column(&self) -> Value {
        json!({"name": self.name, "columnType": self.column_type, "id": self.id})
    }
}

/// One row of the current table: the version of the change that last wrote it and its non-null
/// cells by column id.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub version: i64,
    pub values: BTreeMap<u64, String>,
}

/// The data of one table entity.
#[derive(Clone, Debug)]
pub struct TableData {
    pub column_ids: Vec<u64>,
    pub rows: BTreeMap<i64, Row>,
    /// The highest row id reserved (`TableRowTruthDAOImpl.reserveIdsInRange`, a sequence from -1
    /// to which every change adds its new rows; a schema change reserves one id).
    pub sequence: i64,
    /// The version of the last change (schema or rows).
    pub version: i64,
    /// The etag of the last change: what queries return as `queryResults.etag`.
    pub change_etag: String,
    /// Whether any row change was ever applied (`hasAtLeastOneChangeOfType(ROW)`).
    pub has_row_change: bool,
    /// Every file handle ever written into a FILEHANDLEID cell: the index's file table
    /// (`TableIndexDAOImpl.applyFileHandleIdsToTable`, an `INSERT IGNORE` nothing removes).
    pub file_handles: BTreeSet<u64>,
}

/// One row of a `PartialRowSet`: its id (`None` or negative: a new row) and its cells.
#[derive(Clone, Debug)]
pub struct PartialRow {
    pub row_id: Option<i64>,
    pub values: Vec<(String, Option<String>)>,
}

/// The cells of validated partial rows: each row's id (as sent) and its cells by column id.
pub type Cells = Vec<(Option<i64>, BTreeMap<u64, Option<String>>)>;

/// The FILEHANDLEID values of validated `rows`, as the server collects them
/// (`SparseChangeSet.getFileHandleIdsInSparseChangeSet`).
pub fn file_handles_in(columns: &Tables, rows: &Cells) -> BTreeSet<u64> {
    rows.iter()
        .flat_map(|(_, cells)| cells.iter())
        .filter(|(column, _)| {
            columns
                .columns
                .get(column)
                .is_some_and(|c| c.column_type == ColumnType::FILEHANDLEID)
        })
        .filter_map(|(_, value)| value.as_deref().and_then(|v| v.parse().ok()))
        .collect()
}

/// What an append wrote: the new etag, version and the (row id, version) of every row.
pub struct Appended {
    pub etag: String,
    pub rows: Vec<(i64, i64)>,
}

impl TableData {
    /// A table created with `column_ids`: its schema change is version 0 and reserves row id 0
    /// (`TableRowTruthDAOImpl.appendSchemaChangeToTable`).
    pub fn new(column_ids: Vec<u64>) -> Self {
        Self {
            column_ids,
            rows: BTreeMap::new(),
            sequence: 0,
            version: 0,
            change_etag: new_etag(),
            has_row_change: false,
            file_handles: BTreeSet::new(),
        }
    }

    /// `TableEntityManagerImpl.getFileHandleIdsAssociatedWithTable`: none before any row change,
    /// then the index's file table.
    pub fn is_associated(&self, handle: &str) -> bool {
        self.has_row_change
            && handle
                .parse::<u64>()
                .is_ok_and(|h| self.file_handles.contains(&h))
    }

    /// `TableModelUtils.validatePartialRowSet` then the cell checks of
    /// `SparseChangeSet.addAllRows` (`TableModelUtils.validateRowValue`): keys are column ids of
    /// the schema, values valid for their type. Rows without cells are dropped
    /// (`createSparseChangeSetFromPartialRowSet`). Returns each row's id and cells.
    pub fn validate_partial_rows(
        &self,
        columns: &Tables,
        rows: &[PartialRow],
    ) -> Result<Cells, ApiError> {
        for row in rows {
            for (key, _) in &row.values {
                if !key
                    .parse::<u64>()
                    .is_ok_and(|id| self.column_ids.contains(&id))
                {
                    let row_id = row.row_id.map_or("null".to_owned(), |r| r.to_string());
                    return Err(ApiError::BadRequest(format!(
                        "PartialRow.value.key: '{key}' is not a valid column ID for row ID: {row_id}"
                    )));
                }
            }
        }
        let mut out = Vec::new();
        for row in rows.iter().filter(|r| !r.values.is_empty()) {
            let row_index = out.len();
            let mut cells = BTreeMap::new();
            for (column_index, id) in self.column_ids.iter().enumerate() {
                let Some((_, value)) = row.values.iter().rev().find(|(k, _)| k.parse() == Ok(*id))
                else {
                    continue;
                };
                let model = &columns.columns[id];
                let value = model.validate(value.as_deref()).map_err(|reason| {
                    ApiError::BadRequest(format!(
                        "Value at [{row_index},{column_index}] was not a valid {:?}. {reason}",
                        model.column_type
                    ))
                })?;
                cells.insert(*id, value);
            }
            out.push((row.row_id, cells));
        }
        Ok(out)
    }

    /// `TableEntityManagerImpl.appendRowsToTable` after its file-handle check: reserves ids for
    /// new rows (every row, on a table that never had a row change: PLFM-3155), refuses an update
    /// of an id never reserved, then writes the named cells only, stamps each row with the new
    /// version and records the file handles in the index.
    pub fn append(&mut self, columns: &Tables, rows: Cells) -> Result<Appended, ApiError> {
        let ignore_ids = !self.has_row_change;
        let is_new = |id: Option<i64>| ignore_ids || id.is_none_or(|id| id < 0);
        let new_rows = rows.iter().filter(|(id, _)| is_new(*id)).count() as i64;
        let max_update_id = self.sequence;
        let version = self.version + 1;
        let mut next_id = self.sequence + 1;
        let mut assigned = Vec::new();
        for (id, _) in &rows {
            if is_new(*id) {
                assigned.push(next_id);
                next_id += 1;
            } else {
                let id = id.unwrap_or_default();
                if id > max_update_id {
                    return Err(ApiError::BadRequest(format!(
                        "Cannot update row: {id} because it does not exist."
                    )));
                }
                assigned.push(id);
            }
        }
        let files = file_handles_in(columns, &rows);
        self.sequence += new_rows;
        self.version = version;
        self.change_etag = new_etag();
        self.has_row_change = true;
        self.file_handles.extend(files);
        for (id, (_, cells)) in assigned.iter().zip(rows) {
            let row = self.rows.entry(*id).or_default();
            row.version = version;
            for (column, value) in cells {
                match value {
                    Some(value) => row.values.insert(column, value),
                    None => row.values.remove(&column),
                };
            }
        }
        Ok(Appended {
            etag: self.change_etag.clone(),
            rows: assigned.into_iter().map(|id| (id, version)).collect(),
        })
    }
}

/// The outcome of an asynchronous job, kept for its `GET .../async/get/{token}`.
#[derive(Clone, Debug)]
pub struct Job {
    pub started_by: String,
    /// The route family that started it (`query`, `download/csv`, `transaction`, ...).
    pub kind: &'static str,
    pub outcome: Result<Value, ApiError>,
    /// Polls still to answer 202, as while the server's worker runs it.
    pub running_polls: u32,
}

/// Every column model and the asynchronous jobs (a table's data lives on its entity).
#[derive(Default)]
pub struct Tables {
    pub columns: BTreeMap<u64, ColumnModel>,
    pub jobs: BTreeMap<u64, Job>,
    next_column_id: u64,
    next_job_id: u64,
}

/// The first column model id.
const FIRST_COLUMN_ID: u64 = 100;
/// The first job id.
const FIRST_JOB_ID: u64 = 5000;

impl Tables {
    /// The id of a column model with this name, type and size: an existing one when equal, as
    /// the server reuses a column model with the same definition (`DBOColumnModelDAOImpl
    /// .createColumnModel` looks it up by its hash).
    pub fn column(
        &mut self,
        name: &str,
        column_type: ColumnType,
        maximum_size: Option<u64>,
    ) -> u64 {
        if let Some((id, _)) = self.columns.iter().find(|(_, c)| {
            c.name == name && c.column_type == column_type && c.maximum_size == maximum_size
        }) {
            return *id;
        }
        let id = FIRST_COLUMN_ID + self.next_column_id;
        self.next_column_id += 1;
        self.columns.insert(
            id,
            ColumnModel {
                id: id.to_string(),
                name: name.to_owned(),
                column_type,
                maximum_size,
            },
        );
        id
    }

    /// The schema of a table, in order.
    pub fn schema(&self, table: &TableData) -> Vec<ColumnModel> {
        table
            .column_ids
            .iter()
            .filter_map(|id| self.columns.get(id).cloned())
            .collect()
    }

    /// A new job id (`AsynchJobStatusDAOImpl.startJob` takes one before the job runs).
    pub fn next_job_id(&mut self) -> u64 {
        let id = FIRST_JOB_ID + self.next_job_id;
        self.next_job_id += 1;
        id
    }

    /// Records a finished job; returns its token.
    pub fn add_job(&mut self, job: Job) -> String {
        let id = self.next_job_id();
        self.jobs.insert(id, job);
        id.to_string()
    }

    /// `QueryTranslator`: rows per page are the page budget over the selected columns' maximum
    /// sizes (`TableModelUtils.calculateMaxRowSize`), at least one.
    pub fn max_rows_per_page(selected: &[ColumnModel]) -> u64 {
        let size: u64 = selected.iter().map(ColumnModel::max_bytes).sum();
        (MAX_BYTES_PER_PAGE / size.max(1)).max(1)
    }
}

/// Writes one CSV line as opencsv's `CSVWriter.writeNext` does by default: every non-null field
/// quoted, the quote and escape characters inside it escaped, null fields empty.
pub fn csv_line(
    fields: &[Option<&str>],
    separator: char,
    quote: char,
    escape: char,
    line_end: &str,
) -> String {
    let mut line = String::new();
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            line.push(separator);
        }
        let Some(field) = field else { continue };
        line.push(quote);
        for c in field.chars() {
            if c == quote || c == escape {
                line.push(escape);
            }
            line.push(c);
        }
        line.push(quote);
    }
    line.push_str(line_end);
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> (Tables, TableData) {
        let mut tables = Tables::default();
        let file = tables.column("file", ColumnType::FILEHANDLEID, None);
        let note = tables.column("note", ColumnType::STRING, Some(5));
        assert_eq!(tables.column("file", ColumnType::FILEHANDLEID, None), file);
        let data = TableData::new(vec![file, note]);
        (tables, data)
    }

    fn partial(row_id: Option<i64>, values: &[(&str, Option<&str>)]) -> PartialRow {
        PartialRow {
            row_id,
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(str::to_owned)))
                .collect(),
        }
    }

    #[test]
    fn rows_get_ids_after_the_schema_change_and_updates_touch_named_cells_only() {
        let (tables, mut data) = table();
        // Before any row change the ids are ignored: both rows are new.
        let rows = data
            .validate_partial_rows(
                &tables,
                &[
                    partial(Some(7), &[("100", Some("11")), ("101", Some("a"))]),
                    partial(None, &[("100", Some("12"))]),
                ],
            )
            .unwrap();
        let first = data.append(&tables, rows).unwrap();
        assert_eq!(first.rows, [(1, 1), (2, 1)]);
        assert!(data.is_associated("11") && data.is_associated("12"));
        let rows = data
            .validate_partial_rows(&tables, &[partial(Some(1), &[("100", Some("13"))])])
            .unwrap();
        assert_eq!(data.append(&tables, rows).unwrap().rows, [(1, 2)]);
        assert_eq!(data.rows[&1].values[&100], "13");
        assert_eq!(data.rows[&1].values[&101], "a");
        // The replaced handle stays in the index.
        assert!(data.is_associated("11"));
        let rows = data
            .validate_partial_rows(&tables, &[partial(Some(3), &[("100", Some("1"))])])
            .unwrap();
        assert_eq!(
            data.append(&tables, rows).err().unwrap().to_string(),
            "Cannot update row: 3 because it does not exist."
        );
    }

    #[test]
    fn partial_rows_are_checked_like_the_server() {
        let (tables, data) = table();
        let reason = |row: PartialRow| {
            data.validate_partial_rows(&tables, &[row])
                .err()
                .unwrap()
                .to_string()
        };
        assert_eq!(
            reason(partial(Some(1), &[("999", Some("1"))])),
            "PartialRow.value.key: '999' is not a valid column ID for row ID: 1"
        );
        assert_eq!(
            reason(partial(None, &[("x", Some("1"))])),
            "PartialRow.value.key: 'x' is not a valid column ID for row ID: null"
        );
        assert_eq!(
            reason(partial(Some(1), &[("100", Some("abc"))])),
            "Value at [0,0] was not a valid FILEHANDLEID. For input string: \"abc\""
        );
        assert_eq!(
            reason(partial(Some(1), &[("101", Some("toolong"))])),
            "Value at [0,1] was not a valid STRING. String 'toolong' exceeds the maximum length \
             of 5 characters."
        );
        // An empty value is null for a file column; a row without cells is dropped.
        let rows = data
            .validate_partial_rows(
                &tables,
                &[
                    partial(Some(1), &[("100", Some(""))]),
                    partial(Some(2), &[]),
                ],
            )
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].1[&100], None);
    }

    #[test]
    fn csv_lines_quote_like_opencsv() {
        assert_eq!(
            csv_line(&[Some("a\"b"), None, Some("c\\d")], ',', '"', '\\', "\n"),
            "\"a\\\"b\",,\"c\\\\d\"\n"
        );
    }

    #[test]
    fn a_page_holds_the_budget_over_the_row_size() {
        let (tables, data) = table();
        let schema = tables.schema(&data);
        assert_eq!(Tables::max_rows_per_page(&schema), 2_097_152 / (20 + 20));
    }
}

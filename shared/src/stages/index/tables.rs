//! The Index stage's reading of a table (with `includeTableFiles`): its FILEHANDLEID columns,
//! its rows a page at a time, and the handles its cells name, read through the table; every
//! non-empty file cell becomes an item (`syn<table>.r<row>.c<column>`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use synapse_model::{BatchFileRequest, FileHandle, FileHandleAssociation, FILE_HANDLE_COLUMN};

use super::classify::classify;
use crate::context::{RunContext, Services};
use crate::copy::{FILE_HANDLE_BATCH, TABLE_ENTITY_ASSOCIATION};
use crate::state::{FolderRecord, ItemKey, ItemRecord};
use crate::{Error, Result};

/// Where the walk of a table's file-handle cells stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableWalk {
    /// Its FILEHANDLEID columns (id, name), read on its first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<(String, String)>>,
    /// Rows read so far.
    pub offset: u64,
}

/// Rows asked for per query of a table (Synapse may answer fewer: it caps a page's bytes).
const TABLE_PAGE_ROWS: u64 = 1_000;

/// The items of the file cells of the next page of rows of `table` (in `folder` for an
/// aligned run), and whether more rows follow.
pub(super) async fn cells(
    services: &Services,
    run: &RunContext,
    table_id: &str,
    table: &mut TableWalk,
    folder: Option<&FolderRecord>,
) -> Result<(Vec<ItemRecord>, bool)> {
    let columns = match table.columns.take() {
        Some(columns) => columns,
        None => services
            .synapse
            .table_columns(table_id)
            .await?
            .results
            .into_iter()
            .filter(|column| column.column_type == FILE_HANDLE_COLUMN)
            .map(|column| (column.id, column.name))
            .collect(),
    };
    if columns.is_empty() {
        return Ok((Vec::new(), false));
    }
    let select: Vec<String> = columns
        .iter()
        .map(|(_, name)| format!("\"{}\"", name.replace('"', "\"\"")))
        .collect();
    let sql = format!("select {} from {table_id}", select.join(", "));
    let page = services
        .synapse
        .query_table(table_id, &sql, table.offset, TABLE_PAGE_ROWS)
        .await?;
    let mut cells = Vec::new();
    for row in &page.rows {
        for ((column_id, name), value) in columns.iter().zip(&row.values) {
            if let Some(handle) = value.as_deref().filter(|v| !v.is_empty()) {
                let row_id = u64::try_from(row.row_id).unwrap_or_default();
                let column: u64 = column_id.parse().map_err(|_| {
                    Error::Internal(format!("column id {column_id:?} is not a number"))
                })?;
                cells.push((ItemKey::cell(table_id, row_id, column)?, name, handle));
            }
        }
    }
    let handles = table_handles(services, table_id, cells.iter().map(|c| c.2)).await?;
    let items = cells
        .into_iter()
        .map(|(key, name, handle_id)| {
            let handle = handles.get(handle_id);
            let mut item = classify(run, folder, key, "", Some(handle_id), handle);
            item.column_name = Some(name.clone());
            item
        })
        .collect();
    table.offset += page.rows.len() as u64;
    table.columns = Some(columns);
    Ok((items, page.more && !page.rows.is_empty()))
}

/// The handles named by a table's cells, read through the table (`TableEntity`, 100 per
/// call); a handle Synapse does not give is absent (its cell becomes an ERRORED item).
async fn table_handles<'a>(
    services: &Services,
    table_id: &str,
    ids: impl Iterator<Item = &'a str>,
) -> Result<BTreeMap<String, FileHandle>> {
    let mut ids: Vec<&str> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    let mut handles = BTreeMap::new();
    for chunk in ids.chunks(FILE_HANDLE_BATCH) {
        let request = BatchFileRequest {
            requested_files: chunk
                .iter()
                .map(|id| FileHandleAssociation {
                    file_handle_id: (*id).to_owned(),
                    associate_object_id: table_id.to_owned(),
                    associate_object_type: TABLE_ENTITY_ASSOCIATION.to_owned(),
                })
                .collect(),
            include_file_handles: true,
            include_pre_signed_urls: false,
            include_preview_pre_signed_urls: false,
        };
        let answer = services.synapse.file_handle_batch(&request).await?;
        for file in answer.requested_files {
            if let Some(handle) = file.file_handle {
                handles.insert(file.file_handle_id, handle);
            }
        }
    }
    Ok(handles)
}

//! Points an entity at its copied file (rule 3 of the design): write only if it still points at
//! the source. Both writes are conditional on what was indexed, so nothing is read first:
//!
//! - `new` PUTs the entity as the index read it (`ItemRecord::entity`), with that read's etag;
//!   Synapse refuses it with 412 once anything changed the entity since;
//! - `all`/`latest` swap the version's handle naming the source as `oldFileHandleId`; Synapse
//!   refuses it with 412 once the version points at another handle.
//!
//! Only after a 412 is the entity (or version) read, and then: still the source, write again with
//! what was read (a bounded number of times); the copy or any handle in the destination, done
//! without writing; anything else, a `Fatal.Conflict`.
//!
//! A crash between the entity update and the state write is the dangerous case: the item still
//! says COPIED, the entity already says "migrated". The next attempt's write is refused (the
//! first one changed the etag, or took the source away from the version), the read finds the
//! copy and MIGRATED is recorded without writing, so a `new` migration never adds a second
//! version. Synapse checks the etag before the version label, so a retried `new` gets that 412
//! even when its label is taken by now. An item indexed before entities were kept on items has
//! none: its entity is read before the PUT, as the 412 path does.
//!
//! An entity that points at neither the source nor the destination changed after indexing; it is
//! left alone (a `Fatal.Conflict`), so the migration never replaces a user's newer file with an
//! older one.

use synapse_model::{
    BatchFileRequest, EntityBundleRequest, FileHandleAssociation, FileHandleVersionUpdate,
};

use crate::config::FileVersionStrategy;
use crate::copy::{FILE_ENTITY_ASSOCIATION, TABLE_ENTITY_ASSOCIATION};
use crate::state::ItemRecord;
use crate::synapse::{SynapseClient, SynapseError};
use crate::{Error, Result};

/// Swaps of one version that keep meeting a 412 while it still points at the source (say, the
/// MD5s differ) before giving up.
const MAX_SWAP_ATTEMPTS: u32 = 3;

/// What the update found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// The entity was written; for `new`, the version created and its `modifiedOn`.
    Updated {
        version: Option<i64>,
        modified_on: Option<String>,
    },
    /// The entity already pointed into the destination; nothing was written.
    AlreadyDone,
}

/// One entity update to make.
#[derive(Debug, Clone, Copy)]
pub struct EntityUpdate<'a> {
    pub item: &'a ItemRecord,
    pub destination_file_handle_id: &'a str,
    pub destination_storage_location_id: i64,
    pub strategy: FileVersionStrategy,
}

/// Applies the update under rule 3; see the module docs.
pub async fn update_entity(
    client: &SynapseClient,
    update: EntityUpdate<'_>,
) -> Result<UpdateOutcome> {
    let result = match update.strategy {
        // A table's cell is rewritten in place whatever the strategy (as the official client does).
        _ if update.item.key.cell.is_some() => update_cell(client, update).await,
        FileVersionStrategy::New => new_version(client, update).await,
        FileVersionStrategy::All | FileVersionStrategy::Latest => {
            swap_version(client, update).await
        }
    };
    result.map_err(|error| match error {
        Error::Synapse(SynapseError::Forbidden { reason }) => Error::Forbidden(format!(
            "{} is read-only for this user, so it still points at its old file (the copy is kept \
             and reused once the entity can be updated): {reason}",
            update.item.key.entity_id
        )),
        other => other,
    })
}

/// What the last read of the entity showed.
enum Seen {
    Source,
    Other(Option<String>),
}

/// Creates the new version with the official client's label; when the entity already has a
/// version with that label (Synapse refuses it with 400 `UNIQUE_REVISION_LABEL`, and the official
/// client gives up there), once more with [`fallback_version_label`].
async fn new_version(client: &SynapseClient, update: EntityUpdate<'_>) -> Result<UpdateOutcome> {
    match put_new_version(client, update, next_version_label).await {
        Err(Error::Synapse(SynapseError::InvalidRequest { reason, .. }))
            if reason.contains(USED_LABEL) =>
        {
            tracing::warn!(
                entity = %update.item.key.entity_id,
                "the next version label is taken; labelling the new version as migrated"
            );
            put_new_version(client, update, fallback_version_label).await
        }
        result => result,
    }
}

/// The key Synapse names when a version label is already used (`Revision-ddl.sql`).
const USED_LABEL: &str = "UNIQUE_REVISION_LABEL";

async fn put_new_version(
    client: &SynapseClient,
    update: EntityUpdate<'_>,
    label: fn(Option<i64>) -> Option<String>,
) -> Result<UpdateOutcome> {
    let item = update.item;
    let source = item.source_file_handle_id.as_str();
    let destination = update.destination_file_handle_id;
    let mut seen = Seen::Source;
    let entity = client
        .update_entity_with(&item.key.entity_id, item.entity.clone(), true, |entity| {
            let current = entity.data_file_handle_id.clone();
            if current.as_deref() == Some(source) {
                seen = Seen::Source;
                entity.data_file_handle_id = Some(destination.to_owned());
                entity.version_label = label(entity.version_number);
                true
            } else {
                seen = Seen::Other(current);
                false
            }
        })
        .await?;
    match seen {
        Seen::Source => Ok(UpdateOutcome::Updated {
            version: entity.version_number,
            modified_on: entity.modified_on,
        }),
        Seen::Other(current) => {
            already_in_destination(client, update, current.as_deref(), None).await
        }
    }
}

/// The label of the version a `new` update creates: the official client's `str(versionNumber + 1)`
/// (`Synapse._updateEntity`). The body must not repeat the current label: Synapse keeps labels
/// unique per entity (`UNIQUE_REVISION_LABEL`) and refuses a used one with 400. The version
/// comment and the annotations are kept: the comment travels in the body as read, and the server
/// copies the current version's annotations to the new one (`JDORevisionUtils.makeCopyForNewVersion`).
fn next_version_label(current: Option<i64>) -> Option<String> {
    current.map(|n| (n + 1).to_string())
}

/// The label when the official one is taken (a user labelled an earlier version with it):
/// `{versionNumber + 1}-migrated`.
fn fallback_version_label(current: Option<i64>) -> Option<String> {
    current.map(|n| format!("{}-migrated", n + 1))
}

async fn swap_version(client: &SynapseClient, update: EntityUpdate<'_>) -> Result<UpdateOutcome> {
    let item = update.item;
    let entity_id = &item.key.entity_id;
    let version = i64::try_from(item.key.version)
        .map_err(|_| Error::InvalidInput(format!("version of {} is out of range", item.key)))?;
    let request = EntityBundleRequest {
        include_entity: true,
        ..EntityBundleRequest::default()
    };
    let swap = FileHandleVersionUpdate {
        old_file_handle_id: item.source_file_handle_id.clone(),
        new_file_handle_id: update.destination_file_handle_id.to_owned(),
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let reason = match client
            .put_version_file_handle(entity_id, version, &swap)
            .await
        {
            Ok(()) => {
                return Ok(UpdateOutcome::Updated {
                    version: None,
                    modified_on: None,
                })
            }
            Err(SynapseError::Conflict { reason }) => reason,
            Err(error) => return Err(error.into()),
        };
        // The version changed (or our own earlier swap went through): look at it.
        tracing::info!(%entity_id, version, %reason, "handle swap conflicted, reading the version");
        let bundle = client
            .entity_bundle(entity_id, Some(version), &request)
            .await?;
        let current = bundle.entity.and_then(|e| e.data_file_handle_id);
        if current.as_deref() != Some(item.source_file_handle_id.as_str()) {
            return already_in_destination(client, update, current.as_deref(), Some(version)).await;
        }
        if attempt >= MAX_SWAP_ATTEMPTS {
            return Err(SynapseError::Conflict { reason }.into());
        }
    }
}

/// Points a table's cell at the copy, under the same rule as an entity: the cell is read first
/// (`... WHERE ROW_ID = r`), rewritten (a `PartialRowSet` transaction) only while it still names
/// the source, and left alone when it names anything but the copy or a handle in the
/// destination. A repeat after a crash finds the copy and writes nothing.
async fn update_cell(client: &SynapseClient, update: EntityUpdate<'_>) -> Result<UpdateOutcome> {
    let item = update.item;
    let (table_id, cell) = (&item.key.entity_id, item.key.cell.unwrap_or_default());
    let column = item
        .column_name
        .as_deref()
        .ok_or_else(|| Error::Internal(format!("cell {} has no column name", item.key)))?;
    let sql = format!(
        "select \"{}\" from {table_id} where ROW_ID = {}",
        column.replace('"', "\"\""),
        cell.row_id
    );
    let page = client.query_table(table_id, &sql, 0, 1).await?;
    let Some(row) = page.rows.first() else {
        return Err(Error::NotFound(format!(
            "row {} of {table_id} no longer exists",
            cell.row_id
        )));
    };
    let current = row.values.first().cloned().flatten();
    if current.as_deref() != Some(item.source_file_handle_id.as_str()) {
        return already_in_destination(client, update, current.as_deref(), None).await;
    }
    let row_id = i64::try_from(cell.row_id)
        .map_err(|_| Error::InvalidInput(format!("row of {} is out of range", item.key)))?;
    let values = vec![(
        cell.column_id.to_string(),
        update.destination_file_handle_id.to_owned(),
    )];
    client.update_cells(table_id, &[(row_id, values)]).await?;
    Ok(UpdateOutcome::Updated {
        version: None,
        modified_on: None,
    })
}

/// The entity points at something other than the source: fine if that is the copy or any
/// handle in the destination location, a conflict otherwise.
async fn already_in_destination(
    client: &SynapseClient,
    update: EntityUpdate<'_>,
    current: Option<&str>,
    version: Option<i64>,
) -> Result<UpdateOutcome> {
    let item = update.item;
    let Some(current) = current else {
        return Err(Error::Conflict(format!(
            "{} no longer has a file",
            item.key.entity_id
        )));
    };
    if current == update.destination_file_handle_id {
        return Ok(UpdateOutcome::AlreadyDone);
    }
    let batch = client
        .file_handle_batch(&BatchFileRequest {
            requested_files: vec![FileHandleAssociation {
                file_handle_id: current.to_owned(),
                associate_object_id: item.key.entity_id.clone(),
                associate_object_type: match item.key.cell {
                    Some(_) => TABLE_ENTITY_ASSOCIATION,
                    None => FILE_ENTITY_ASSOCIATION,
                }
                .to_owned(),
            }],
            include_file_handles: true,
            include_pre_signed_urls: false,
            include_preview_pre_signed_urls: false,
        })
        .await?;
    let location = batch
        .requested_files
        .iter()
        .find(|f| f.file_handle_id == current)
        .and_then(|f| f.file_handle.as_ref())
        .and_then(|h| h.storage_location_id);
    if location == Some(update.destination_storage_location_id) {
        return Ok(UpdateOutcome::AlreadyDone);
    }
    let which = match version {
        _ if item.key.cell.is_some() => format!("cell {}", item.key),
        Some(v) => format!("version {v} of {}", item.key.entity_id),
        None => format!("the latest version of {}", item.key.entity_id),
    };
    Err(Error::Conflict(format!(
        "{which} now points at file handle {current}, not the indexed {}; it changed after \
         indexing and is left alone (a new run indexes its current file)",
        item.source_file_handle_id
    )))
}

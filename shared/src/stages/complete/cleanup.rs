//! `deleteSourceFileHandles`: once every file of the migration that used a source file handle
//! points at its verified copy, the old handle is deleted (`DELETE /fileHandle/{id}`), and each
//! of those files records whether it was (`deleted`) or why not (`kept: ...`).
//!
//! Who decides: the unit that finds no other file of the handle left to migrate (the status
//! index lists one source's items of a status together, so that is one small query per status);
//! while others remain (a widely shared handle's follower units, a file due for a retry) their
//! unit decides later. Synapse itself refuses to delete a handle any entity version still uses
//! (409: an earlier version under `latest`, another entity, a file this migration skipped) and
//! one the caller did not create (403); both are recorded as `kept` with Synapse's reason. The
//! option is refused with `new` ([`crate::config::MigrationOptions::validate`]), and a dry run
//! never reaches Complete.

use std::collections::BTreeSet;

use super::super::unit::UnitCtx;
use super::super::ItemOutcome;
use crate::context::LIST_PAGE;
use crate::state::{ItemKey, ItemRecord, Page, StatusName};
use crate::synapse::SynapseError;
use crate::Result;

/// What a file says while other files of its handle are still to be migrated.
const PENDING: &str =
    "pending: other files using it are still to be migrated; the unit that migrates the last one \
     deletes it or says why not";

/// Statuses of items whose entities may still point at their source handle.
const UNSETTLED: [StatusName; 4] = [
    StatusName::Indexed,
    StatusName::Copying,
    StatusName::Copied,
    StatusName::Errored,
];

/// Decides the fate of `source` (of `size` bytes) after this unit's files of it were updated
/// (`outcomes`), and records it on every migrated file that used it.
pub(super) async fn clean_up_source(
    ctx: &UnitCtx<'_>,
    source: &str,
    size: u64,
    outcomes: &[ItemOutcome],
) {
    let outcome = match decide(ctx, source, size, outcomes).await {
        Ok(Some(outcome)) => outcome,
        // Said on this unit's files until the deciding unit writes the outcome over it (should
        // no unit decide, say the index lagged behind both of the last two, it stays visible).
        Ok(None) => PENDING.to_owned(),
        Err(error) => format!("kept: its other files could not be checked ({error})"),
    };
    tracing::info!(source, %outcome, "source file handle");
    if let Err(error) = note_on_migrated(ctx, source, size, outcomes, &outcome).await {
        tracing::warn!(source, %error, %outcome, "could not record the source handle's fate");
    }
}

/// `None` while other files of the handle are still to be migrated (their unit decides).
async fn decide(
    ctx: &UnitCtx<'_>,
    source: &str,
    size: u64,
    outcomes: &[ItemOutcome],
) -> Result<Option<String>> {
    if let Some(other) = outcomes.iter().find(|o| o.status != StatusName::Migrated) {
        return Ok(Some(format!(
            "kept: {} is {} and still uses it",
            other.key,
            other.status.as_str()
        )));
    }
    let store = &ctx.services.store;
    for status in UNSETTLED {
        let page = store
            .list_items_of_source(&ctx.migration, status, size, source, 1, None)
            .await?;
        let Some(item) = page.items.first() else {
            continue;
        };
        if status == StatusName::Errored && !item.due_for_retry(ctx.run.options.max_attempts) {
            return Ok(Some(format!(
                "kept: {} failed for good and still uses it",
                item.key
            )));
        }
        return Ok(None);
    }
    if let Some(table) = table_using(ctx, source, size, outcomes).await? {
        return Ok(Some(format!(
            "kept: the snapshot of table {table} taken before its cells were rewritten still \
             names it"
        )));
    }
    Ok(Some(
        match ctx.services.synapse.delete_file_handle(source).await {
            Ok(()) => "deleted".to_owned(),
            Err(SynapseError::Forbidden { reason }) => {
                format!("kept: only its creator may delete it ({reason})")
            }
            Err(SynapseError::InvalidRequest {
                status: 409,
                reason,
            }) => format!(
                "kept: Synapse says something else still uses it, such as an earlier version or \
                 another entity ({reason})"
            ),
            Err(other) => format!("kept: it could not be deleted ({other})"),
        },
    ))
}

/// A table whose cell used `source` (among this unit's `outcomes`, which the status index may
/// not list yet, or the migrated items it lists): the snapshot Plan kept of it still names the
/// handle, and Synapse would let it go (a cell has no link to its handle), leaving the
/// snapshot's cell without its file.
async fn table_using(
    ctx: &UnitCtx<'_>,
    source: &str,
    size: u64,
    outcomes: &[ItemOutcome],
) -> Result<Option<String>> {
    let cell_of_unit = outcomes
        .iter()
        .filter_map(|o| o.key.parse::<ItemKey>().ok())
        .find(|key| key.cell.is_some());
    if let Some(key) = cell_of_unit {
        return Ok(Some(key.entity_id));
    }
    let mut token: Option<String> = None;
    loop {
        let page = migrated_page(ctx, source, size, token.as_deref()).await?;
        if let Some(cell) = page.items.iter().find(|item| item.key.cell.is_some()) {
            return Ok(Some(cell.key.entity_id.clone()));
        }
        match page.next_token {
            Some(next) => token = Some(next),
            None => return Ok(None),
        }
    }
}

/// A page of the migrated items of `source` (of `size` bytes) the status index lists.
async fn migrated_page(
    ctx: &UnitCtx<'_>,
    source: &str,
    size: u64,
    token: Option<&str>,
) -> Result<Page<ItemRecord>> {
    Ok(ctx
        .services
        .store
        .list_items_of_source(
            &ctx.migration,
            StatusName::Migrated,
            size,
            source,
            LIST_PAGE,
            token,
        )
        .await?)
}

/// Records `outcome` on this unit's migrated files of `source` (the status index may not list
/// them yet) and on every other migrated file of it the index lists, a page at a time.
async fn note_on_migrated(
    ctx: &UnitCtx<'_>,
    source: &str,
    size: u64,
    outcomes: &[ItemOutcome],
    outcome: &str,
) -> Result<()> {
    let store = &ctx.services.store;
    let own: BTreeSet<ItemKey> = outcomes
        .iter()
        .filter(|o| o.status == StatusName::Migrated)
        .filter_map(|o| o.key.parse().ok())
        .collect();
    for key in &own {
        store
            .set_source_handle(&ctx.migration, key, outcome)
            .await?;
    }
    if outcome == PENDING {
        return Ok(());
    }
    let mut token: Option<String> = None;
    loop {
        let page = migrated_page(ctx, source, size, token.as_deref()).await?;
        for item in page.items.iter().filter(|item| !own.contains(&item.key)) {
            store
                .set_source_handle(&ctx.migration, &item.key, outcome)
                .await?;
        }
        match page.next_token {
            Some(next) => token = Some(next),
            None => return Ok(()),
        }
    }
}

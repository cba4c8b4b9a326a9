//! Stage 6, Complete (per unit): finishes each copy, records it, points each entity at it
//! ([`update`]) and records the item MIGRATED; a failing item is recorded ERRORED and the others
//! go on.

use std::collections::BTreeMap;

use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use super::plan::units::WorkUnit;
use super::unit::{by_source, mark_copied, UnitCtx};
use super::{CopyJob, ItemOutcome};
use crate::context::{now, RunContext, Services};
use crate::copy::EngineState;
use crate::state::{
    CopyStatus, ItemError, ItemKey, ItemRecord, ItemStatus, RunCounters, StatusName,
};
use crate::{Error, Result};

pub mod update;

use update::{update_entity, EntityUpdate};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompleteInput {
    pub run: RunContext,
    pub unit: WorkUnit,
    /// The `jobs` of StartCopy's output.
    pub jobs: Vec<CopyJob>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompleteOutput {
    pub unit_id: String,
    pub outcomes: Vec<ItemOutcome>,
    pub migrated: u32,
    pub errored: u32,
    pub bytes_copied: u64,
}

/// Finishes each copy, records it (rule 2), then updates each entity (rule 3).
pub async fn complete(services: &Services, input: CompleteInput) -> Result<CompleteOutput> {
    let CompleteInput { run, unit, jobs } = input;
    let ctx = UnitCtx::new(services, &run, &unit.unit_id)?;
    let jobs: BTreeMap<String, CopyJob> = jobs
        .into_iter()
        .map(|job| (job.source.id.clone(), job))
        .collect();
    let groups = by_source(&unit)?;
    let results: Vec<(Vec<ItemOutcome>, u64)> = stream::iter(groups)
        .map(|(source, keys)| complete_source(&ctx, source, keys, &jobs))
        .buffer_unordered(services.tuning.unit_concurrency.max(1))
        .collect()
        .await;
    let mut output = CompleteOutput {
        unit_id: unit.unit_id,
        outcomes: Vec::new(),
        migrated: 0,
        errored: 0,
        bytes_copied: 0,
    };
    for (outcomes, bytes) in results {
        output.bytes_copied += bytes;
        for outcome in outcomes {
            match outcome.status {
                StatusName::Migrated => output.migrated += 1,
                StatusName::Errored => output.errored += 1,
                _ => {}
            }
            output.outcomes.push(outcome);
        }
    }
    output.outcomes.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(output)
}

/// Completes one source's copy and the updates of the items that use it. Returns the outcomes
/// and the bytes this call copied.
async fn complete_source(
    ctx: &UnitCtx<'_>,
    source: String,
    keys: Vec<ItemKey>,
    jobs: &BTreeMap<String, CopyJob>,
) -> (Vec<ItemOutcome>, u64) {
    let mut outcomes = Vec::new();
    let mut pending = Vec::new();
    for key in keys {
        match ctx.item(&key).await {
            Ok(item) if matches!(item.status, ItemStatus::Copying | ItemStatus::Copied) => {
                pending.push(item)
            }
            Ok(item) => outcomes.push(ItemOutcome {
                key: key.to_string(),
                status: item.status.name(),
                error: match item.status {
                    ItemStatus::Errored(error) => Some(error),
                    _ => None,
                },
            }),
            Err(error) => outcomes.push(ctx.fail_item(&key, &error).await),
        }
    }
    if pending.is_empty() {
        return (outcomes, 0);
    }
    let copy = match finish_copy(ctx, &source, jobs.get(&source)).await {
        Ok(done) => done,
        Err(error) => {
            for item in &pending {
                outcomes.push(ctx.fail_item(&item.key, &error).await);
            }
            return (outcomes, 0);
        }
    };
    for item in pending {
        let outcome = match migrate_item(ctx, &item, &copy.destination).await {
            Ok(outcome) => outcome,
            Err(error) => {
                ctx.record_item_error(&item.key, ItemError::of_update(&error))
                    .await
            }
        };
        outcomes.push(outcome);
    }
    note_copy_use(ctx, &source, copy.unused_reason.as_deref(), &outcomes).await;
    (outcomes, copy.bytes)
}

/// Keeps the copy's "unused" mark true to its items: set (with the first failure) when none of
/// the items that were to use the copy points at it, cleared once one does. A copy no entity
/// uses is an orphan the report lists; the next run retries the updates or says why not.
async fn note_copy_use(
    ctx: &UnitCtx<'_>,
    source: &str,
    marked: Option<&str>,
    outcomes: &[ItemOutcome],
) {
    let used = outcomes.iter().any(|o| o.status == StatusName::Migrated);
    let reason = match outcomes
        .iter()
        .find_map(|o| Some((&o.key, o.error.as_ref()?)))
    {
        _ if used => None,
        Some((key, error)) => Some(format!("{key}: {}: {}", error.class, error.message)),
        None => return,
    };
    if reason.as_deref() == marked {
        return;
    }
    if let Err(error) = ctx
        .services
        .store
        .set_copy_unused(&ctx.migration, source, reason.as_deref(), now())
        .await
    {
        tracing::warn!(source, %error, "could not record whether the copy is used");
    }
}

/// A finished copy as Complete sees it.
struct FinishedCopy {
    destination: String,
    /// Bytes this call copied (0 when the copy was finished before).
    bytes: u64,
    /// The copy's unused mark as stored (see [`note_copy_use`]).
    unused_reason: Option<String>,
}

/// The destination handle of `source`: recorded already, or completed now and recorded before
/// any entity is touched (rule 2).
async fn finish_copy(
    ctx: &UnitCtx<'_>,
    source: &str,
    job: Option<&CopyJob>,
) -> Result<FinishedCopy> {
    let services = ctx.services;
    let copy = services
        .store
        .get_copy(&ctx.migration, source)
        .await?
        .ok_or_else(|| Error::Conflict(format!("the copy of {source} was never started")))?;
    if copy.status == CopyStatus::Copied {
        let destination = copy.destination_file_handle_id.ok_or_else(|| {
            Error::Internal(format!("copy of {source} is COPIED without a destination"))
        })?;
        return Ok(FinishedCopy {
            destination,
            bytes: 0,
            unused_reason: copy.unused_reason,
        });
    }
    let job = job.ok_or_else(|| {
        Error::InvalidInput(format!("Complete got no copy job for file handle {source}"))
    })?;
    let state = UnitCtx::engine_state(&copy)?
        .ok_or_else(|| Error::Conflict(format!("the copy of {source} has not been started")))?;
    let request = job.request(ctx.run);
    let engine = services.engines.for_state(&state);
    let handle = match engine.complete(&request, &state).await {
        Ok(handle) => handle,
        Err(error) => {
            if !error.is_retryable() {
                abort_copy(ctx, source, &state).await;
            }
            return Err(error);
        }
    };
    services
        .store
        .complete_copy(&ctx.migration, source, &ctx.owner, &handle.id, now())
        .await?;
    let size = handle
        .content_size
        .or(job.source.content_size)
        .unwrap_or_default();
    ctx.count(RunCounters {
        by_status: BTreeMap::new(),
        bytes_copied: i64::try_from(size).unwrap_or(i64::MAX),
    })
    .await;
    Ok(FinishedCopy {
        destination: handle.id,
        bytes: size,
        unused_reason: None,
    })
}

/// Gives up an upload that cannot complete (rule 5) and forgets it, so a later run starts over.
async fn abort_copy(ctx: &UnitCtx<'_>, source: &str, state: &EngineState) {
    let services = ctx.services;
    if let Err(error) = services.engines.for_state(state).abort(state).await {
        tracing::warn!(source, %error, "could not abort the upload");
    }
    if let Err(error) = services
        .store
        .save_copy_state(
            &ctx.migration,
            source,
            &ctx.owner,
            &serde_json::Value::Null,
            now(),
        )
        .await
    {
        tracing::warn!(source, %error, "could not forget the aborted upload");
    }
}

/// Points one item's entity at the copy and records it MIGRATED.
async fn migrate_item(
    ctx: &UnitCtx<'_>,
    item: &ItemRecord,
    destination: &str,
) -> Result<ItemOutcome> {
    let services = ctx.services;
    let item = if item.status == ItemStatus::Copied
        && item.destination_file_handle_id.as_deref() == Some(destination)
    {
        item.clone()
    } else {
        mark_copied(ctx, &item.key, destination).await?
    };
    let outcome = update_entity(
        &services.synapse,
        EntityUpdate {
            item: &item,
            destination_file_handle_id: destination,
            destination_storage_location_id: ctx.run.destination_storage_location_id,
            strategy: ctx.run.options.file_version_strategy,
        },
    )
    .await?;
    #[cfg(feature = "fault-injection")]
    if services.faults.fire_after_entity_update() {
        return Err(Error::Transient(format!(
            "injected fault: stopped after updating {} and before recording it",
            item.key
        )));
    }
    tracing::info!(item = %item.key, ?outcome, "entity points at the copy");
    let t = ctx.transition(StatusName::Copied, ItemStatus::Migrated, false);
    services
        .store
        .transition_item(&ctx.migration, &item.key, &t)
        .await?;
    ctx.count(RunCounters {
        by_status: BTreeMap::from([(StatusName::Migrated, 1)]),
        bytes_copied: 0,
    })
    .await;
    Ok(ItemOutcome {
        key: item.key.to_string(),
        status: StatusName::Migrated,
        error: None,
    })
}

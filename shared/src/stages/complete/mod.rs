//! Stage 6, Complete (per unit): finishes the unit's copies (together, so that the Synapse
//! engine verifies their new handles in batches), records each, points each entity at it
//! ([`update`]) and records the item MIGRATED; a failing item is recorded ERRORED and the others
//! go on.

use std::collections::BTreeMap;

use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use synapse_model::FileHandle;

use super::plan::units::WorkUnit;
use super::unit::{by_source, mark_copied, UnitCtx};
use super::{CopyJob, ItemOutcome};
use crate::config::VerifyLevel;
use crate::context::{now, RunContext, Services};
use crate::copy::verify::{CopiedObject, CopyProof, Proof, Verified};
use crate::copy::{CopyRequest, EngineKind, EngineState};
use crate::state::{
    CopyStatus, ItemError, ItemKey, ItemRecord, ItemStatus, RunCounters, SeenFile, StatusName,
};
use crate::{Error, Result};

mod cleanup;
pub mod update;

use update::{update_entity, EntityUpdate, UpdateOutcome};

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
    let ctx = UnitCtx::new(services, &run, &unit.unit_id, unit.destination.clone())?;
    let jobs: BTreeMap<String, CopyJob> = jobs
        .into_iter()
        .map(|job| (job.source.id.clone(), job))
        .collect();
    let concurrency = services.tuning.unit_concurrency.max(1);
    let sources: Vec<Source> = stream::iter(by_source(&unit)?)
        .map(|(source, keys)| prepare_source(&ctx, source, keys, &jobs))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let sources = finish_copies(&ctx, sources).await;
    let results: Vec<(Vec<ItemOutcome>, u64)> = stream::iter(sources)
        .map(|source| update_source(&ctx, source))
        .buffer_unordered(concurrency)
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

/// One source handle of the unit on its way through Complete.
struct Source {
    id: String,
    /// Outcomes of the items already finished or failed.
    outcomes: Vec<ItemOutcome>,
    /// The items whose entities are to point at the copy.
    pending: Vec<ItemRecord>,
    copy: CopyStep,
}

/// Where the copy of a source stands.
enum CopyStep {
    /// No item needs it.
    Unneeded,
    /// Recorded COPIED (by now or before): its handle is verified.
    Finished(FinishedCopy),
    /// To complete and verify with the engine that started it.
    ToFinish(Box<CopyRequest>, EngineState),
    Failed(ItemError),
}

/// Reads the items of one source and where its copy stands.
async fn prepare_source(
    ctx: &UnitCtx<'_>,
    source: String,
    keys: Vec<ItemKey>,
    jobs: &BTreeMap<String, CopyJob>,
) -> Source {
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
    let copy = if pending.is_empty() {
        CopyStep::Unneeded
    } else {
        copy_step(ctx, &source, jobs.get(&source))
            .await
            .unwrap_or_else(|error| CopyStep::Failed(ItemError::from(&error)))
    };
    Source {
        id: source,
        outcomes,
        pending,
        copy,
    }
}

/// Updates the entities of one source's items once its copy is recorded. Returns the outcomes
/// and the bytes this call copied.
async fn update_source(ctx: &UnitCtx<'_>, source: Source) -> (Vec<ItemOutcome>, u64) {
    let Source {
        id,
        mut outcomes,
        pending,
        copy,
    } = source;
    let error = match copy {
        CopyStep::Unneeded => return (outcomes, 0),
        CopyStep::Failed(error) => error,
        CopyStep::ToFinish(..) => ItemError::from(&Error::Internal(format!(
            "the copy of {id} was left unfinished"
        ))),
        CopyStep::Finished(copy) => {
            crate::crash::point(crate::crash::COMPLETE_AFTER_COPY_RECORDED);
            let size = pending.first().map(|item| item.size);
            for item in pending {
                let outcome = match migrate_item(ctx, &item, &copy).await {
                    Ok(outcome) => outcome,
                    Err(error) => {
                        ctx.record_item_error(&item.key, ItemError::of_update(&error))
                            .await
                    }
                };
                outcomes.push(outcome);
            }
            note_copy_use(ctx, &id, copy.unused_reason.as_deref(), &outcomes).await;
            if let (true, Some(size)) = (ctx.run.options.delete_source_file_handles, size) {
                cleanup::clean_up_source(ctx, &id, size, &outcomes).await;
            }
            return (outcomes, copy.bytes);
        }
    };
    for item in &pending {
        outcomes.push(ctx.record_item_error(&item.key, error.clone()).await);
    }
    (outcomes, 0)
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
        .set_copy_unused(
            &ctx.migration,
            &ctx.copy_id(source),
            reason.as_deref(),
            now(),
        )
        .await
    {
        tracing::warn!(source, %error, "could not record whether the copy is used");
    }
}

/// A finished copy as Complete sees it.
struct FinishedCopy {
    destination: String,
    /// The copy's proof as text (`None` for copies recorded before proofs were).
    verified_by: Option<String>,
    /// Bytes this call copied (0 when the copy was finished before).
    bytes: u64,
    /// The copy's unused mark as stored (see [`note_copy_use`]).
    unused_reason: Option<String>,
}

/// Where the copy of `source` stands: recorded already, or to finish with `job`.
async fn copy_step(ctx: &UnitCtx<'_>, source: &str, job: Option<&CopyJob>) -> Result<CopyStep> {
    let copy = ctx
        .services
        .store
        .get_copy(&ctx.migration, &ctx.copy_id(source))
        .await?
        .ok_or_else(|| Error::Conflict(format!("the copy of {source} was never started")))?;
    if copy.status == CopyStatus::Copied {
        let destination = copy.destination_file_handle_id.ok_or_else(|| {
            Error::Internal(format!("copy of {source} is COPIED without a destination"))
        })?;
        return Ok(CopyStep::Finished(FinishedCopy {
            destination,
            verified_by: CopyProof::from_document(copy.verification.as_ref()).map(|p| p.proof),
            bytes: 0,
            unused_reason: copy.unused_reason,
        }));
    }
    let job = job.ok_or_else(|| {
        Error::InvalidInput(format!("Complete got no copy job for file handle {source}"))
    })?;
    let state = UnitCtx::engine_state(&copy)?
        .ok_or_else(|| Error::Conflict(format!("the copy of {source} has not been started")))?;
    Ok(CopyStep::ToFinish(
        Box::new(job.request(ctx.destination()?)),
        state,
    ))
}

/// Completes the copies still to finish, each engine's together, and records each before any
/// entity is touched (rule 2). A copy that cannot complete is aborted (rule 5).
async fn finish_copies(ctx: &UnitCtx<'_>, mut sources: Vec<Source>) -> Vec<Source> {
    let services = ctx.services;
    for kind in [EngineKind::Synapse, EngineKind::Direct] {
        let (at, copies): (Vec<usize>, Vec<(&CopyRequest, &EngineState)>) = sources
            .iter()
            .enumerate()
            .filter_map(|(i, source)| match &source.copy {
                CopyStep::ToFinish(request, state) if state.kind() == kind => {
                    Some((i, (&**request, state)))
                }
                _ => None,
            })
            .unzip();
        if at.is_empty() {
            continue;
        }
        let results = services
            .engines
            .get(kind)
            .complete_all(&copies, services.tuning.unit_concurrency, ctx)
            .await;
        let results: Vec<Result<FileHandle, ItemError>> = match results {
            Ok(results) => results
                .into_iter()
                .map(|result| result.map_err(|error| ItemError::from(&error)))
                .collect(),
            Err(error) => vec![Err(ItemError::from(&error)); at.len()],
        };
        // The proofs of the unit's copies at the same time (`bytes` reads each copy).
        let proven: Vec<Result<(FileHandle, CopyProof), ItemError>> =
            stream::iter(copies.into_iter().zip(results))
                .map(|((request, _), result)| async move {
                    let handle = result?;
                    crate::crash::point(crate::crash::COMPLETE_AFTER_HANDLE);
                    let proof = prove_copy(ctx, request, &handle)
                        .await
                        .map_err(|error| ItemError::from(&error))?;
                    Ok((handle, proof))
                })
                .buffered(services.tuning.unit_concurrency.max(1))
                .collect()
                .await;
        for (i, result) in at.into_iter().zip(proven) {
            let source = &mut sources[i];
            let CopyStep::ToFinish(request, state) = &source.copy else {
                continue;
            };
            source.copy = match result {
                Ok((handle, proof)) => record_copy(ctx, &source.id, request, handle, &proof)
                    .await
                    .map_or_else(
                        |e| CopyStep::Failed(ItemError::from(&e)),
                        CopyStep::Finished,
                    ),
                Err(error) => {
                    if !error.retryable {
                        abort_copy(ctx, &source.id, state).await;
                    }
                    CopyStep::Failed(error)
                }
            };
        }
    }
    sources
}

/// Proves a finished copy at the run's `verify` level, before it is recorded (rule 2).
async fn prove_copy(
    ctx: &UnitCtx<'_>,
    request: &CopyRequest,
    handle: &FileHandle,
) -> Result<CopyProof> {
    let level = ctx.run.options.verify;
    let object = CopiedObject::of(&request.source, handle);
    let verified = match (&object, level) {
        (_, VerifyLevel::Metadata) => Verified::plain(Proof::Metadata),
        (None, _) => Verified::plain(Proof::None(format!(
            "file handle {} or its copy {} names no S3 object",
            request.source.id, handle.id
        ))),
        (Some(object), level) => ctx.services.verifier.prove(level, object).await?,
    };
    if verified.is_unproven() {
        tracing::warn!(source = %request.source.id, copy = %handle.id, %verified,
                       "copy recorded without a proof beyond its handle's fields");
    }
    Ok(CopyProof {
        level,
        proof: verified.to_string(),
        object,
    })
}

/// Records a finished, verified copy and counts its bytes.
async fn record_copy(
    ctx: &UnitCtx<'_>,
    source: &str,
    request: &CopyRequest,
    handle: FileHandle,
    proof: &CopyProof,
) -> Result<FinishedCopy> {
    ctx.services
        .store
        .complete_copy(
            &ctx.migration,
            &ctx.copy_id(source),
            &ctx.owner,
            &handle.id,
            Some(&proof.to_document()),
            now(),
        )
        .await?;
    let size = handle
        .content_size
        .or(request.source.content_size)
        .unwrap_or_default();
    ctx.count(RunCounters {
        by_status: BTreeMap::new(),
        bytes_copied: i64::try_from(size).unwrap_or(i64::MAX),
    })
    .await;
    Ok(FinishedCopy {
        destination: handle.id,
        verified_by: Some(proof.proof.clone()),
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
            &ctx.copy_id(source),
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
    copy: &FinishedCopy,
) -> Result<ItemOutcome> {
    let services = ctx.services;
    let destination = copy.destination.as_str();
    let item = if item.status == ItemStatus::Copied
        && item.destination_file_handle_id.as_deref() == Some(destination)
    {
        item.clone()
    } else {
        mark_copied(ctx, &item.key, destination, copy.verified_by.as_deref()).await?
    };
    let outcome = update_entity(
        &services.synapse,
        EntityUpdate {
            item: &item,
            destination_file_handle_id: destination,
            destination_storage_location_id: ctx.destination()?.storage_location_id,
            strategy: ctx.run.options.file_version_strategy,
        },
    )
    .await?;
    crate::crash::point(crate::crash::COMPLETE_AFTER_ENTITY_UPDATE);
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
    // The new version is what the next run's listing shows: unchanged, it need not be read.
    if let UpdateOutcome::Updated {
        version: Some(version),
        modified_on: Some(modified_on),
    } = outcome
    {
        let seen = SeenFile {
            version,
            modified_on,
            scope: ctx.run.walk_scope(),
        };
        let entity = &item.key.entity_id;
        if let Err(error) = services.store.put_seen(&ctx.migration, entity, &seen).await {
            tracing::warn!(%entity, %error, "could not record the migrated file's listing");
        }
    }
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

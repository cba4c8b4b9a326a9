//! Stage 4, StartCopy (per unit): leases the items and each source's copy record, starts or
//! resumes each copy with the chosen engine, copies small files at once and returns the part
//! batches of big ones.

use std::collections::BTreeMap;

use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use synapse_model::{BatchFileRequest, FileHandle, FileHandleAssociation};

use super::init::renew_lock;
use super::plan::units::{UnitKind, WorkUnit};
use super::unit::{by_source, mark_copied, UnitCtx};
use super::{BatchRef, CopyJob, ItemOutcome};
use crate::context::{now, RunContext, Services};
use crate::copy::parts::{part_batches, PartBatch, PartPlan};
use crate::copy::verify::CopyProof;
use crate::copy::{choose, FILE_ENTITY_ASSOCIATION, FILE_HANDLE_BATCH, TABLE_ENTITY_ASSOCIATION};
use crate::state::{CopyRecord, CopyStatus, ItemKey, ItemRecord};
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitInput {
    pub run: RunContext,
    pub unit: WorkUnit,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartCopyOutput {
    pub unit_id: String,
    /// Copies Complete must finish (their parts are copied, or will be by `batches`).
    pub jobs: Vec<CopyJob>,
    /// Part batches of big files still to copy, one CopyParts invocation each.
    pub batches: Vec<BatchRef>,
    /// Items that failed or needed nothing (already finished).
    pub outcomes: Vec<ItemOutcome>,
}

/// Fetches the source file handles of `items` (first item of each source), 100 per call.
async fn source_handles(
    services: &Services,
    items: &[(String, ItemKey)],
) -> Result<BTreeMap<String, std::result::Result<FileHandle, String>>> {
    let mut handles = BTreeMap::new();
    for chunk in items.chunks(FILE_HANDLE_BATCH) {
        let request = BatchFileRequest {
            requested_files: chunk
                .iter()
                .map(|(source, key)| FileHandleAssociation {
                    file_handle_id: source.clone(),
                    associate_object_id: key.entity_id.clone(),
                    associate_object_type: match key.cell {
                        Some(_) => TABLE_ENTITY_ASSOCIATION,
                        None => FILE_ENTITY_ASSOCIATION,
                    }
                    .to_owned(),
                })
                .collect(),
            include_file_handles: true,
            include_pre_signed_urls: false,
            include_preview_pre_signed_urls: false,
        };
        let result = services.synapse.file_handle_batch(&request).await?;
        for file in result.requested_files {
            let entry = match (file.file_handle, file.failure_code) {
                (Some(handle), _) => Ok(handle),
                (None, code) => Err(code.unwrap_or_else(|| "NO_HANDLE".to_owned())),
            };
            handles.insert(file.file_handle_id, entry);
        }
    }
    Ok(handles)
}

/// Claims the unit's items, starts or resumes one copy per source handle, copies small files
/// right away and plans the part batches of big ones.
pub async fn start_copy(services: &Services, input: UnitInput) -> Result<StartCopyOutput> {
    let UnitInput { run, unit } = input;
    // Keeps the lock alive through a long copy phase, and stops a run whose lock was taken.
    renew_lock(services, &run).await?;
    let ctx = UnitCtx::new(services, &run, &unit.unit_id, unit.destination.clone())?;
    let mut outcomes = Vec::new();
    let mut claimed: Vec<(String, Vec<ItemRecord>, CopyRecord)> = Vec::new();
    for (source, keys) in by_source(&unit)? {
        let mut items = Vec::new();
        for key in keys {
            match ctx.claim_item(&key).await {
                Ok(Some(item)) => items.push(item),
                Ok(None) => {}
                Err(error) => outcomes.push(ctx.fail_item(&key, &error).await),
            }
        }
        if items.is_empty() {
            continue;
        }
        // A copy made before needs no source handle: after an in-place swap Synapse no longer
        // lets us read the source through the entity.
        match claim_copy(&ctx, &source, &items).await {
            Ok(Some(copy)) => claimed.push((source, items, copy)),
            Ok(None) => {}
            Err(error) => {
                for item in &items {
                    outcomes.push(ctx.fail_item(&item.key, &error).await);
                }
            }
        }
    }
    crate::crash::point(crate::crash::START_COPY_AFTER_CLAIM);
    let firsts: Vec<(String, ItemKey)> = claimed
        .iter()
        .map(|(source, items, _)| (source.clone(), items[0].key.clone()))
        .collect();
    let handles = source_handles(services, &firsts).await?;
    let small = unit.kind == UnitKind::Small;
    let results: Vec<_> = stream::iter(claimed)
        .map(|(source, items, copy)| {
            let handle = handles.get(&source).cloned();
            let ctx = &ctx;
            async move {
                let prepared = match handle {
                    Some(Ok(handle)) => prepare_copy(ctx, &items, &copy, handle, small).await,
                    Some(Err(code)) => Err(Error::NotFound(format!(
                        "file handle {source} cannot be read through {}: {code}",
                        items[0].key.entity_id
                    ))),
                    None => Err(Error::Internal(format!(
                        "Synapse did not answer for file handle {source}"
                    ))),
                };
                (items, prepared)
            }
        })
        .buffer_unordered(services.tuning.unit_concurrency.max(1))
        .collect()
        .await;
    let mut jobs = Vec::new();
    let mut batches = Vec::new();
    for (items, prepared) in results {
        match prepared {
            Ok((job, b)) => {
                batches.extend(b.into_iter().map(|batch| BatchRef {
                    job: job.clone(),
                    batch,
                }));
                jobs.push(job);
            }
            Err(error) => {
                for item in &items {
                    outcomes.push(ctx.fail_item(&item.key, &error).await);
                }
            }
        }
    }
    Ok(StartCopyOutput {
        unit_id: unit.unit_id,
        jobs,
        batches,
        outcomes,
    })
}

/// Claims the copy record of `source` for the unit. `Ok(None)`: the source was copied before
/// (by an earlier run or unit); its items are now COPIED and only their entity updates remain.
async fn claim_copy(
    ctx: &UnitCtx<'_>,
    source: &str,
    items: &[ItemRecord],
) -> Result<Option<CopyRecord>> {
    let copy = ctx
        .services
        .store
        .claim_copy(
            &ctx.migration,
            &ctx.copy_id(source),
            &ctx.owner,
            ctx.lease_until(),
            now(),
        )
        .await?;
    if copy.status != CopyStatus::Copied {
        return Ok(Some(copy));
    }
    let destination = copy.destination_file_handle_id.ok_or_else(|| {
        Error::Internal(format!(
            "copy of {source} is COPIED without a destination handle"
        ))
    })?;
    let proof = CopyProof::from_document(copy.verification.as_ref()).map(|p| p.proof);
    for item in items {
        mark_copied(ctx, &item.key, &destination, proof.as_deref()).await?;
    }
    Ok(None)
}

/// Starts or resumes the copy of a claimed source; copies it right away when `copy_now`,
/// else returns the part batches still to copy.
async fn prepare_copy(
    ctx: &UnitCtx<'_>,
    items: &[ItemRecord],
    copy: &CopyRecord,
    source: FileHandle,
    copy_now: bool,
) -> Result<(CopyJob, Vec<PartBatch>)> {
    let services = ctx.services;
    let first = &items[0];
    let size = source.content_size.unwrap_or(first.size);
    let part_plan = PartPlan::new(size, ctx.run.options.part_size_bytes)?;
    let version = i64::try_from(first.key.version)
        .map_err(|_| Error::InvalidInput(format!("version of {} is out of range", first.key)))?;
    let job = CopyJob {
        source,
        entity_id: first.key.entity_id.clone(),
        version,
        part_size: part_plan.part_size(),
        file_name: first.destination_file_name.clone(),
        destination: ctx.own_destination().cloned(),
        in_table: first.key.cell.is_some(),
    };
    let request = job.request(ctx.destination()?);
    let started = match UnitCtx::engine_state(copy)? {
        Some(state) => {
            services
                .engines
                .for_state(&state)
                .start(&request, Some(&state))
                .await?
        }
        None => {
            let kind = choose(ctx.run.options.copy_mode, &request, &services.s3).await?;
            services.engines.get(kind).start(&request, None).await?
        }
    };
    if started.state.upload_id().is_some() {
        crate::crash::point(crate::crash::START_COPY_AFTER_UPLOAD_STARTED);
    }
    services
        .store
        .save_copy_state(
            &ctx.migration,
            &ctx.copy_id(&first.source_file_handle_id),
            &ctx.owner,
            &started.state.to_document(),
            now(),
        )
        .await?;
    let missing = started.parts_missing();
    if missing.is_empty() {
        return Ok((job, Vec::new()));
    }
    if copy_now {
        services
            .engines
            .for_state(&started.state)
            .copy_parts(&request, &started.state, &missing)
            .await?;
        return Ok((job, Vec::new()));
    }
    let batches = part_batches(&part_plan, &services.tuning.batch_budget)?
        .into_iter()
        .filter_map(|batch| {
            let inside: Vec<u32> = missing
                .iter()
                .copied()
                .filter(|n| (batch.first_part..=batch.last_part).contains(n))
                .collect();
            Some(PartBatch {
                first_part: *inside.first()?,
                last_part: *inside.last()?,
            })
        })
        .collect();
    Ok((job, batches))
}

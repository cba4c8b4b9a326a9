//! Stage 5, CopyParts (per part batch): copies one batch of a big file's parts with bounded
//! concurrency.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::unit::UnitCtx;
use super::CopyJob;
use crate::context::{now, RunContext, Services};
use crate::copy::parts::{PartBatch, PartPlan};
use crate::state::CopyStatus;
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyPartsInput {
    pub run: RunContext,
    pub unit_id: String,
    pub job: CopyJob,
    pub batch: PartBatch,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyPartsOutput {
    pub source_file_handle_id: String,
    pub parts: u32,
}

/// Copies one batch of a big file's parts.
pub async fn copy_parts(services: &Services, input: CopyPartsInput) -> Result<CopyPartsOutput> {
    let ctx = UnitCtx::new(
        services,
        &input.run,
        &input.unit_id,
        input.job.destination.clone(),
    )?;
    let source_id = input.job.source.id.clone();
    // Claiming again renews our lease for the time the batch takes.
    let copy = services
        .store
        .claim_copy(
            &ctx.migration,
            &ctx.copy_id(&source_id),
            &ctx.owner,
            ctx.lease_until(),
            now(),
        )
        .await?;
    if copy.status == CopyStatus::Copied {
        return Ok(CopyPartsOutput {
            source_file_handle_id: source_id,
            parts: 0,
        });
    }
    let state = UnitCtx::engine_state(&copy)?
        .ok_or_else(|| Error::Conflict(format!("the copy of {source_id} has not been started")))?;
    let parts: Vec<u32> = (input.batch.first_part..=input.batch.last_part)
        .filter(|n| *n <= state.part_count())
        .collect();
    let request = input.job.request(ctx.destination()?);
    let started = Instant::now();
    services
        .engines
        .for_state(&state)
        .copy_parts(&request, &state, &parts)
        .await?;
    services
        .metrics
        .batch(parts_bytes(&input.job, &parts), started.elapsed());
    Ok(CopyPartsOutput {
        source_file_handle_id: source_id,
        parts: parts.len() as u32,
    })
}

/// The bytes of `parts` of the job's source (0 if its size and part size make no plan).
fn parts_bytes(job: &CopyJob, parts: &[u32]) -> u64 {
    let size = job.source.content_size.unwrap_or_default();
    PartPlan::new(size, job.part_size).map_or(0, |plan| {
        parts
            .iter()
            .filter_map(|n| plan.part(*n))
            .map(|part| part.size())
            .sum()
    })
}

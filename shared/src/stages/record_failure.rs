//! Stage 7, RecordFailure (the Catch target of a unit): marks a failed unit's unfinished items
//! ERRORED and the finished copies it left unused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::plan::units::WorkUnit;
use super::unit::UnitCtx;
use crate::context::{now, RunContext, Services};
use crate::error::types;
use crate::state::{
    CopyStatus, ItemError, ItemKey, ItemStatus, RunCounters, StateError, StatusName,
};
use crate::{Error, Result};

/// The error as Step Functions' Catch hands it over (`{"Error": ..., "Cause": ...}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepFailure {
    #[serde(rename = "Error")]
    pub error: String,
    #[serde(rename = "Cause", default)]
    pub cause: String,
}

impl From<&Error> for StepFailure {
    fn from(error: &Error) -> Self {
        Self {
            error: error.error_type().to_owned(),
            cause: error.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordFailureInput {
    pub run: RunContext,
    pub unit: WorkUnit,
    pub failure: StepFailure,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordFailureOutput {
    pub unit_id: String,
    pub errored: u32,
}

/// The failure queue's message for a failed unit: which run and unit failed, how, and which
/// items it held (operators see failures without reading the execution history).
pub fn failure_message(input: &RecordFailureInput) -> serde_json::Value {
    serde_json::json!({
        "projectId": input.run.project_id,
        "destinationStorageLocationId": input.run.destination_storage_location_id,
        "runId": input.run.run_id,
        "unitId": input.unit.unit_id,
        "items": input.unit.items.iter().map(|item| item.key.as_str()).collect::<Vec<_>>(),
        "errorType": input.failure.error,
        "cause": input.failure.cause,
    })
}

/// Marks the unit's unfinished items ERRORED with the unit's error; finished ones stay.
pub async fn record_failure(
    services: &Services,
    input: RecordFailureInput,
) -> Result<RecordFailureOutput> {
    let RecordFailureInput { run, unit, failure } = input;
    let ctx = UnitCtx::new(services, &run, &unit.unit_id, unit.destination.clone())?;
    let error = ItemError {
        retryable: types::is_retryable(&failure.error),
        class: failure.error,
        message: failure
            .cause
            .chars()
            .take(crate::state::MAX_ERROR_MESSAGE_CHARS)
            .collect(),
    };
    let mut errored = 0;
    let mut used: BTreeMap<&str, bool> = BTreeMap::new();
    for item in &unit.items {
        let key: ItemKey = item.key.parse()?;
        let Some(current) = services.store.get_item(&ctx.migration, &key).await? else {
            continue;
        };
        let from = current.status.name();
        *used.entry(item.source.as_str()).or_default() |= from == StatusName::Migrated;
        if !matches!(
            from,
            StatusName::Indexed | StatusName::Copying | StatusName::Copied
        ) {
            continue;
        }
        let t = ctx.transition(from, ItemStatus::Errored(error.clone()), false);
        match services
            .store
            .transition_item(&ctx.migration, &key, &t)
            .await
        {
            Ok(_) => {
                errored += 1;
                crate::crash::point(crate::crash::RECORD_FAILURE_AFTER_FIRST_ITEM);
            }
            Err(StateError::LeaseHeld { owner, .. }) => {
                tracing::warn!(item = %key, %owner, "item is leased to another worker; left as is")
            }
            Err(other) => return Err(other.into()),
        }
    }
    if errored > 0 {
        services.metrics.failed(&error.class, u64::from(errored));
        ctx.count(RunCounters {
            by_status: BTreeMap::from([(StatusName::Errored, i64::from(errored))]),
            bytes_copied: 0,
        })
        .await;
    }
    let reason = format!("{}: {}", error.class, error.message);
    for (source, used) in used {
        // The unit is over: its copy leases would only keep the next run waiting.
        if let Err(error) = services
            .store
            .release_copy(&ctx.migration, &ctx.copy_id(source), &ctx.owner, now())
            .await
        {
            tracing::warn!(source, %error, "could not release the copy's lease");
        }
        if !used {
            if let Err(error) = mark_unused_copy(&ctx, source, &reason).await {
                tracing::warn!(source, %error, "could not mark the copy unused");
            }
        }
    }
    Ok(RecordFailureOutput {
        unit_id: unit.unit_id,
        errored,
    })
}

/// Marks the finished copy of `source` unused (if it is not marked already): the unit failed
/// before any entity pointed at it.
async fn mark_unused_copy(ctx: &UnitCtx<'_>, source: &str, reason: &str) -> Result<()> {
    let store = &ctx.services.store;
    let copy_id = ctx.copy_id(source);
    match store.get_copy(&ctx.migration, &copy_id).await? {
        Some(copy) if copy.status == CopyStatus::Copied && copy.unused_reason.is_none() => {
            store
                .set_copy_unused(&ctx.migration, &copy_id, Some(reason), now())
                .await?;
        }
        _ => {}
    }
    Ok(())
}

//! CloseRun, the Catch of Init, Report and ReportAborted: when Init or the report failed for good
//! (their retries spent, or their function crashing), the run is still closed: marked FAILED (if
//! Init opened it) and the project lock released (if this execution holds it), so that the next
//! scheduled run does not wait hours for it to expire.

use serde::{Deserialize, Serialize};

use crate::context::{now, Services};
use crate::state::{MigrationKey, RunStatus, StateError};
use crate::Result;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloseRunInput {
    pub project_id: String,
    /// `None` (null): an aligned run.
    #[serde(default)]
    pub destination_storage_location_id: Option<i64>,
    /// The execution's name: the run id and the lock's owner.
    pub run_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloseRunOutput {
    pub run_id: String,
    /// False when the lock was no longer this run's (expired and taken by another).
    pub released: bool,
}

/// Marks the run FAILED (if it was opened) and releases its lock (if it still holds it).
pub async fn close_run(services: &Services, input: CloseRunInput) -> Result<CloseRunOutput> {
    let run = &input;
    let migration =
        MigrationKey::with_destination(&run.project_id, run.destination_storage_location_id)?;
    match services
        .store
        .finish_run(&migration, &run.run_id, RunStatus::Failed, now())
        .await
    {
        Ok(_) | Err(StateError::NotFound(_)) => {}
        Err(error) => return Err(error.into()),
    }
    let released = match services.store.release_lock(&migration, &run.run_id).await {
        Ok(()) => true,
        Err(StateError::LeaseHeld { .. }) => false,
        Err(error) => return Err(error.into()),
    };
    tracing::warn!(run = %run.run_id, released, "the run failed; it is closed as FAILED");
    Ok(CloseRunOutput {
        run_id: run.run_id.clone(),
        released,
    })
}

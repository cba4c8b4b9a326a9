//! Runs a whole migration in one process by calling exactly the stage functions the Lambdas
//! call, in the order the state machine calls them: Init, Index until done, Plan, then per
//! work unit (bounded concurrency, like the Distributed Map's MaxConcurrency; the follower
//! units after the lead units, like the Map's second pass) StartCopy,
//! CopyParts per batch (bounded), Complete, with RecordFailure as the catch; then Report.
//!
//! Used by the CLI's local mode and by the tests, so the stages are proven end to end without
//! Step Functions. The project lock is released on every path.

use std::sync::atomic::{AtomicBool, Ordering};

use futures::stream::{self, StreamExt, TryStreamExt};

use crate::stages::plan::units::WorkUnit;
use crate::stages::{
    self, complete, copy_parts, index, init, plan, read_manifest, record_failure, report,
    start_copy, CompleteInput, CopyPartsInput, IndexInput, InitInput, ItemOutcome, PlanInput,
    RecordFailureInput, ReportInput, RunContext, Services, StepFailure, Summary, UnitInput,
};
use crate::state::StatusName;
use crate::Result;

/// Migrates a project; see the module docs.
pub async fn run_migration(services: &Services, input: InitInput) -> Result<Summary> {
    let run = init(services, input).await?;
    match drive(services, &run).await {
        Ok(stopped_early) => {
            let summary = report(
                services,
                ReportInput {
                    run: run.clone(),
                    aborted: stopped_early,
                },
            )
            .await;
            if summary.is_err() {
                stages::release_lock(services, &run).await;
            }
            summary
        }
        Err(error) => {
            let reported = report(
                services,
                ReportInput {
                    run: run.clone(),
                    aborted: true,
                },
            )
            .await;
            if reported.is_err() {
                stages::release_lock(services, &run).await;
            }
            Err(error)
        }
    }
}

/// Everything between Init and Report. Returns whether it stopped early because an item failed
/// and `continueOnError` is off.
async fn drive(services: &Services, run: &RunContext) -> Result<bool> {
    loop {
        let step = index(
            services,
            IndexInput {
                run: run.clone(),
                time_budget_seconds: None,
            },
        )
        .await?;
        if step.done {
            break;
        }
    }
    let planned = plan(services, PlanInput { run: run.clone() }).await?;
    let stop = AtomicBool::new(false);
    let concurrency = usize::try_from(run.options.max_concurrency)
        .unwrap_or(1)
        .max(1);
    // The lead units, then (like the state machine's second pass of the Map) the followers.
    for key in std::iter::once(&planned.key).chain(&planned.followers_key) {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let units = read_manifest(services, key).await?;
        stream::iter(units)
            .map(|unit| process_unit(services, run, unit, &stop))
            .buffer_unordered(concurrency)
            .try_collect::<Vec<()>>()
            .await?;
    }
    Ok(stop.load(Ordering::SeqCst))
}

/// One iteration of the Distributed Map: the unit's stages, and RecordFailure when one fails.
async fn process_unit(
    services: &Services,
    run: &RunContext,
    unit: WorkUnit,
    stop: &AtomicBool,
) -> Result<()> {
    if stop.load(Ordering::SeqCst) {
        return Ok(());
    }
    let failed = match copy_unit(services, run, &unit).await {
        Ok(outcomes) => outcomes.iter().any(|o| o.status == StatusName::Errored),
        Err(error) => {
            tracing::warn!(unit = %unit.unit_id, %error, "unit failed");
            record_failure(
                services,
                RecordFailureInput {
                    run: run.clone(),
                    unit,
                    failure: StepFailure::from(&error),
                },
            )
            .await?;
            true
        }
    };
    if failed && !run.options.continue_on_error {
        stop.store(true, Ordering::SeqCst);
    }
    Ok(())
}

async fn copy_unit(
    services: &Services,
    run: &RunContext,
    unit: &WorkUnit,
) -> Result<Vec<ItemOutcome>> {
    let started = start_copy(
        services,
        UnitInput {
            run: run.clone(),
            unit: unit.clone(),
        },
    )
    .await?;
    stream::iter(started.batches)
        .map(|batch| {
            copy_parts(
                services,
                CopyPartsInput {
                    run: run.clone(),
                    unit_id: unit.unit_id.clone(),
                    job: batch.job,
                    batch: batch.batch,
                },
            )
        })
        .buffer_unordered(services.tuning.batch_concurrency.max(1))
        .try_collect::<Vec<_>>()
        .await?;
    let completed = complete(
        services,
        CompleteInput {
            run: run.clone(),
            unit: unit.clone(),
            jobs: started.jobs,
        },
    )
    .await?;
    let mut outcomes = started.outcomes;
    outcomes.extend(completed.outcomes);
    Ok(outcomes)
}

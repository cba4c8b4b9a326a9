//! The estimate of a migration's next run from its index ([`crate::estimate`]): Plan's own
//! candidates in plan order, grouped by Plan's own unit planner, counted unit by unit. Memory
//! holds a page per status and one unit, as Plan's does, whatever the project's size.

use super::plan::{unit_item, units::UnitPlanner, Candidates};
use crate::context::{RunContext, Tuning};
use crate::estimate::{Estimate, Params, Tally};
use crate::state::StateStore;
use crate::Result;

/// What the next run of `run`'s migration with `run`'s options would cost: the items Plan would
/// take on now (INDEXED, retryable ERRORED, abandoned in flight).
pub async fn estimate(
    store: &dyn StateStore,
    run: &RunContext,
    tuning: &Tuning,
) -> Result<Estimate> {
    let external = run.destination.as_ref().map(|d| d.is_external_s3());
    let engine = Params::engine_for(run.options.copy_mode, external);
    let params = Params::new(&run.options, engine, tuning);
    let mut planner = UnitPlanner::new(tuning.unit_limits)?;
    let mut candidates = Candidates::new(store, run)?;
    let mut work = Tally::default();
    while let Some(item) = candidates.next().await? {
        for unit in planner.push(unit_item(item)) {
            work.add(&unit, &params)?;
        }
    }
    for unit in planner.finish() {
        work.add(&unit, &params)?;
    }
    work.add_run(run.destination_storage_location_id.is_some());
    Estimate::new(work, &params)
}

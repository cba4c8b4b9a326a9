//! What a migration will cost before it runs: files, bytes, Synapse calls by endpoint, the
//! hours at the run's Synapse budget, and the AWS charges (Step Functions transitions, Lambda
//! GB-seconds, DynamoDB and S3 requests) at us-east-1 list prices.
//!
//! Pure arithmetic: [`Tally`] counts the work units Plan would make from the index (fed by
//! the Estimate stage, which pages through the items to copy in plan order),
//! [`Estimate::new`] turns the counts into time and money. The Synapse calls follow the code
//! (see [`tally`]); the DynamoDB requests and the functions' durations are stated assumptions
//! (the constants below, measured by `make scale`); the transitions and the memory come from the
//! definition and the template this build deploys ([`definition`]).

use serde::{Deserialize, Serialize};

use crate::copy::EngineKind;
use crate::{Error, Result};

pub mod definition;
pub mod prices;
pub mod tally;

pub use definition::{deployed_memory, template_memory, Transitions};
pub use prices::{Prices, PRICES, S3_PUT_CLASS};
pub use tally::{endpoint, Params, Tally};

/// DynamoDB requests of one kind of work, read and write.
struct Requests {
    reads: f64,
    writes: f64,
}

/// Per item the next run's Index writes (its item and counters) and reads (a batch per page of
/// 40): `make scale` at 30,000 files, 770 PutItem and 33,095 UpdateItem, 750 BatchGetItem.
const INDEX_PER_ITEM: Requests = Requests {
    reads: 0.025,
    writes: 1.13,
};
/// StartCopy per item and per unit (`make scale`: 204 GetItem and 612 UpdateItem for 4 units
/// of 50): the item's claim and lease, the copy record's.
const START_COPY_PER_ITEM: Requests = Requests {
    reads: 1.0,
    writes: 3.0,
};
const START_COPY_PER_UNIT: Requests = Requests {
    reads: 1.0,
    writes: 3.0,
};
/// Complete per item and per unit (`make scale`: 604 GetItem, 200 PutItem and 1,251
/// UpdateItem for 4 units of 50): the copy's record, the item's transitions and counters.
const COMPLETE_PER_ITEM: Requests = Requests {
    reads: 3.0,
    writes: 7.0,
};
const COMPLETE_PER_UNIT: Requests = Requests {
    reads: 1.0,
    writes: 13.0,
};
/// The fleet budget's lease: one write per about 9 slots of a busy instance (see the README's
/// Synapse budget).
const BUDGET_WRITES_PER_SYNAPSE_CALL: f64 = 1.0 / 9.0;
/// Request units per request, `make scale`'s ratio at 10^6 files: a write also writes the status
/// index's entry when the status changes; reads are single items under 4 KiB.
const WRITE_UNITS_PER_WRITE: f64 = 1.7;
const READ_UNITS_PER_READ: f64 = 1.08;

/// Seconds per item of Plan and Report (the release build's own time plus 10 ms a request,
/// `make scale`: 34 and 32 s at 10^6 items), and of Init and Notify per invocation (assumed).
const PLAN_SECONDS_PER_ITEM: f64 = 34e-6;
const REPORT_SECONDS_PER_ITEM: f64 = 32e-6;
const SHORT_INVOCATION_SECONDS: f64 = 1.0;

/// What bounds the run's duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Bound {
    /// Its Synapse calls at the budget.
    Synapse,
    /// Its bytes at the assumed S3 copy throughput.
    S3Copy,
}

/// Lambda's share.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LambdaUse {
    pub invocations: u64,
    pub gb_seconds: f64,
}

/// DynamoDB's share (on demand).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DynamoUse {
    pub reads: u64,
    pub writes: u64,
    pub read_units: u64,
    pub write_units: u64,
}

/// Dollars per service at [`PRICES`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dollars {
    pub step_functions: f64,
    pub lambda: f64,
    pub dynamodb: f64,
    pub s3: f64,
    pub total: f64,
}

/// The estimate of a run that copies what [`Tally`] counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Estimate {
    /// The engine the copies are counted with.
    pub engine: EngineKind,
    /// The units, copies and calls counted.
    pub work: Tally,
    pub synapse_calls: u64,
    pub requests_per_minute: u32,
    /// The Synapse calls at the budget.
    pub synapse_hours: f64,
    /// The bytes at the assumed copy throughput, every unit's sources in flight.
    pub copy_hours: f64,
    /// The larger of the two, and which one it is.
    pub hours: f64,
    pub bound_by: Bound,
    pub transitions: u64,
    pub lambda: LambdaUse,
    pub dynamodb: DynamoUse,
    pub s3_put_class: u64,
    pub s3_get_class: u64,
    pub dollars: Dollars,
}

impl Estimate {
    /// Time and money of the counted work under `params`, with the deployed definition's
    /// transitions and the template's memory.
    pub fn new(work: Tally, params: &Params) -> Result<Self> {
        let transitions = Transitions::deployed()?;
        let memory = deployed_memory();
        let gb = |binary: &str| {
            memory
                .get(binary)
                .map(|mb| *mb as f64 / 1024.0)
                .ok_or_else(|| Error::Internal(format!("template.yaml has no function {binary}")))
        };
        let rpm = f64::from(params.requests_per_minute.max(1));
        let synapse_calls: u64 = work.synapse.values().sum();
        let synapse_seconds = synapse_calls as f64 * 60.0 / rpm;
        let throughput = params.tuning.batch_budget.throughput_bytes_per_sec.max(1) as f64;
        let in_flight =
            f64::from(params.max_concurrency.max(1)) * params.tuning.unit_concurrency.max(1) as f64;
        let copy_seconds = work.bytes as f64 / (throughput * in_flight);
        let index_seconds = index_calls(&work) as f64 * 60.0 / rpm;
        // A budget under a second (tests walk a page per invocation) counts as a second.
        let index_budget = params.tuning.index_time_budget.as_secs_f64().max(1.0);
        let index_invocations = (index_seconds / index_budget).ceil().max(1.0) as u64;
        let units = work.lead_units + work.follower_units;
        let transitions = transitions.run_once
            + transitions.index_loop * index_invocations
            + transitions.per_unit * units
            + transitions.per_batch * work.part_batches
            + transitions.follower_pass * u64::from(work.follower_units > 0);
        // The copy phase lasts as long as its Synapse calls at the budget, or its bytes: the
        // Map keeps up to maxConcurrency units in flight, StartCopy or Complete waiting on them.
        let copy_phase = (synapse_seconds - index_seconds).max(copy_seconds);
        let units_in_flight = units.min(u64::from(params.max_concurrency.max(1))) as f64;
        let batch_seconds = work.batch_bytes as f64
            / (throughput * f64::from(params.tuning.batch_budget.concurrency.max(1)));
        let gb_seconds = SHORT_INVOCATION_SECONDS * gb("synmigrate-index")?
            + index_seconds * gb("synmigrate-index")?
            + work.files as f64 * PLAN_SECONDS_PER_ITEM * gb("synmigrate-index")?
            + copy_phase
                * units_in_flight
                * (gb("synmigrate-start-copy")? + gb("synmigrate-complete")?)
                / 2.0
            + batch_seconds * gb("synmigrate-copy-parts")?
            + work.files as f64 * REPORT_SECONDS_PER_ITEM * gb("synmigrate-report")?
            + SHORT_INVOCATION_SECONDS * gb("synmigrate-report")?;
        let lambda = LambdaUse {
            // Init, Index, Plan; StartCopy and Complete per unit; CopyParts per batch; Report
            // and Notify.
            invocations: 2 + index_invocations + 2 * units + work.part_batches + 2,
            gb_seconds,
        };
        let dynamodb = dynamodb_use(&work, synapse_calls);
        let s3_put_class: u64 = work
            .s3
            .iter()
            .filter(|(op, _)| prices::is_put_class(op))
            .map(|(_, n)| n)
            .sum();
        let s3_get_class = work.s3.values().sum::<u64>() - s3_put_class;
        let mut dollars = Dollars {
            step_functions: transitions as f64 * PRICES.transition,
            lambda: lambda.gb_seconds * PRICES.gb_second
                + lambda.invocations as f64 * PRICES.lambda_request,
            dynamodb: dynamodb.write_units as f64 * PRICES.write_unit
                + dynamodb.read_units as f64 * PRICES.read_unit,
            s3: s3_put_class as f64 * PRICES.s3_put_class
                + s3_get_class as f64 * PRICES.s3_get_class,
            total: 0.0,
        };
        dollars.total = dollars.step_functions + dollars.lambda + dollars.dynamodb + dollars.s3;
        let (synapse_hours, copy_hours) = (synapse_seconds / 3600.0, copy_seconds / 3600.0);
        Ok(Self {
            engine: params.engine,
            synapse_calls,
            requests_per_minute: params.requests_per_minute,
            synapse_hours,
            copy_hours,
            hours: synapse_hours.max(copy_hours),
            bound_by: if copy_hours > synapse_hours {
                Bound::S3Copy
            } else {
                Bound::Synapse
            },
            transitions,
            lambda,
            dynamodb,
            s3_put_class,
            s3_get_class,
            dollars,
            work,
        })
    }
}

/// The calls the next run's Index makes: its reads of each item and the folder listings.
fn index_calls(work: &Tally) -> u64 {
    [
        endpoint::BUNDLE,
        endpoint::VERSION_BUNDLE,
        endpoint::VERSIONS,
        endpoint::CHILDREN,
    ]
    .iter()
    .filter_map(|e| work.synapse.get(*e))
    .sum()
}

/// DynamoDB requests and units of the counted work (see the constants' sources).
fn dynamodb_use(work: &Tally, synapse_calls: u64) -> DynamoUse {
    let files = work.files as f64;
    let units = (work.lead_units + work.follower_units) as f64;
    let per_item = [INDEX_PER_ITEM, START_COPY_PER_ITEM, COMPLETE_PER_ITEM];
    let per_unit = [START_COPY_PER_UNIT, COMPLETE_PER_UNIT];
    let sum = |f: fn(&Requests) -> f64| {
        per_item.iter().map(f).sum::<f64>() * files + per_unit.iter().map(f).sum::<f64>() * units
    };
    let reads = sum(|r| r.reads).round();
    let writes =
        (sum(|r| r.writes) + synapse_calls as f64 * BUDGET_WRITES_PER_SYNAPSE_CALL).round();
    DynamoUse {
        reads: reads as u64,
        writes: writes as u64,
        read_units: (reads * READ_UNITS_PER_READ).round() as u64,
        write_units: (writes * WRITE_UNITS_PER_WRITE).round() as u64,
    }
}

#[cfg(test)]
mod tests;

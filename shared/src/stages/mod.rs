//! The pipeline's stages, one async function per Lambda, one file (or folder) per stage:
//!
//! | stage | file |
//! |---|---|
//! | [`init()`] (and the lock's renewal and release) | `init.rs` |
//! | [`index()`] | `index/mod.rs`, the tree walk in `index/walk.rs` (a file's items in `files.rs`, their rules in `classify.rs`, tables in `tables.rs`, upload locations in `locations.rs`) |
//! | [`plan()`] | `plan/mod.rs`, the unit grouping in `plan/units.rs` |
//! | [`start_copy()`] | `start_copy.rs` |
//! | [`copy_parts()`] | `copy_parts.rs` |
//! | [`complete()`] | `complete/mod.rs`, the entity update in `complete/update.rs` |
//! | [`record_failure()`] | `record_failure.rs` |
//! | [`estimate()`] (the dry run's Report, `synmigrate estimate`) | `estimate.rs` |
//! | [`report()`] | `report/mod.rs`, the CSV rows in `report/csv.rs` |
//! | [`close_run()`] (when Report failed) | `close_run.rs` |
//! | [`notify()`] (every end of an execution; words, sends nothing) | `notify.rs` |
//!
//! The per-unit stages share their view of a unit ([`unit`]); every stage shares
//! [`crate::context`] (services, tuning, run context, clock).
//!
//! Each takes the shared [`Services`] and a small serde (camelCase) input, and returns a small
//! output: Step Functions payloads are capped at 256 KiB, so stages pass keys and the
//! [`RunContext`], and read everything else from the state store. Every stage may be repeated
//! (a Lambda retry, a re-run) without doing its work twice; see the crate docs for the rules.

use serde::{Deserialize, Serialize};
use synapse_model::{FileHandle, StorageLocationSetting};

use crate::copy::parts::PartBatch;
use crate::copy::CopyRequest;
use crate::state::{ItemError, StatusName};

pub mod close_run;
pub mod complete;
pub mod copy_parts;
pub mod estimate;
pub mod index;
pub mod init;
pub mod notify;
pub mod plan;
pub mod record_failure;
pub mod report;
pub mod start_copy;
pub(crate) mod unit;

#[cfg(test)]
mod tests;

#[cfg(feature = "fault-injection")]
pub use crate::context::FaultHooks;
pub use crate::context::{now, RunContext, Services, Tuning};
pub use close_run::{close_run, CloseRunInput, CloseRunOutput};
pub use complete::{complete, CompleteInput, CompleteOutput};
pub use copy_parts::{copy_parts, CopyPartsInput, CopyPartsOutput};
pub use estimate::estimate;
pub use index::{index, IndexInput, IndexOutput};
pub(crate) use init::release_lock;
pub use init::{init, InitInput};
pub use notify::{notify, Notification, NotifyInput};
pub use plan::{plan, read_manifest, PlanInput, PlanOutput};
pub use record_failure::{
    failure_message, record_failure, RecordFailureInput, RecordFailureOutput, StepFailure,
};
pub use report::{report, ReportInput, Summary};
pub use start_copy::{start_copy, StartCopyOutput, UnitInput};

/// One source file handle to copy, with what rebuilds its [`CopyRequest`] in later stages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyJob {
    pub source: FileHandle,
    /// The entity through which Synapse lets us read the source.
    pub entity_id: String,
    pub version: i64,
    pub part_size: u64,
    /// The sanitised name, when the source's breaks Synapse's rule.
    pub file_name: Option<String>,
    /// The unit's own destination in an aligned run (see [`plan::units::WorkUnit`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<StorageLocationSetting>,
    /// `entity_id` is a table one of whose cells names the source.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_table: bool,
}

impl CopyJob {
    fn request(&self, destination: &StorageLocationSetting) -> CopyRequest {
        CopyRequest {
            entity_id: self.entity_id.clone(),
            in_table: self.in_table,
            version: (!self.in_table).then_some(self.version),
            source: self.source.clone(),
            destination: destination.clone(),
            part_size: self.part_size,
            file_name: self.file_name.clone(),
        }
    }
}

/// Input of one CopyParts invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchRef {
    pub job: CopyJob,
    pub batch: PartBatch,
}

/// What happened to one item in a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemOutcome {
    pub key: String,
    pub status: StatusName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ItemError>,
}

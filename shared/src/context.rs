//! The vocabulary every stage shares: the [`Services`] a stage runs with, its [`Tuning`], the
//! [`RunContext`] passed from stage to stage, and the state store's clock [`now`]. A leaf:
//! imports no stage, so the stages and their helpers (the tree walk, the copy engines) can all
//! use it.

#[cfg(feature = "fault-injection")]
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use synapse_model::StorageLocationSetting;

use crate::budget::FleetBudget;
use crate::config::MigrationOptions;
use crate::copy::parts::BatchBudget;
use crate::copy::verify::{Verifier, VerifyLimits};
use crate::copy::{DirectEngine, EngineConfig, Engines, SynapseEngine};
use crate::metrics::Recorder;
use crate::stages::plan::units::UnitLimits;
use crate::state::{EpochSeconds, MigrationKey, StateStore};
use crate::synapse::SynapseClient;
use crate::Result;

/// Items asked for per state store page by the stages that read whole listings (Plan, Report).
/// DynamoDB ends a page at 1 MB anyway (about 2,000 items of ~500 bytes); fewer, fuller pages
/// keep a listing of 10^7 items near 5,000 queries instead of 20,000.
pub(crate) const LIST_PAGE: u32 = 2000;

/// Where Plan writes run `run_id`'s manifest of lead units (also for the CLI, which has no
/// [`RunContext`]).
pub fn manifest_key(run_id: &str) -> String {
    format!("runs/{run_id}/manifest.json")
}

/// Where Plan writes run `run_id`'s follower units, read by the Map's second pass.
pub fn followers_key(run_id: &str) -> String {
    format!("runs/{run_id}/followers.json")
}

/// Seconds since the epoch, the state store's clock.
pub fn now() -> EpochSeconds {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as EpochSeconds)
        .unwrap_or_default()
}

pub(crate) fn seconds(duration: Duration) -> EpochSeconds {
    EpochSeconds::try_from(duration.as_secs()).unwrap_or(EpochSeconds::MAX / 2)
}

/// The longest timeout of the functions that take item and copy leases (StartCopy, CopyParts,
/// Complete; `make template-check` holds the template to it). The default lease outlives it by a
/// minute: a dead invocation's claims are free again soon after it could last have been alive.
pub const LEASED_FUNCTION_TIMEOUT_SECONDS: u64 = 900;

/// Limits and durations of the stages; the defaults suit 15-minute Lambdas.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// How long one Index invocation walks before handing back.
    pub index_time_budget: Duration,
    /// The project lock's lifetime; renewed by Index and Plan.
    pub lock_ttl: Duration,
    /// Lifetime of item and copy leases; a crashed worker's claims are free again after it
    /// (by default [`LEASED_FUNCTION_TIMEOUT_SECONDS`] and a minute).
    pub lease_ttl: Duration,
    pub unit_limits: UnitLimits,
    pub batch_budget: BatchBudget,
    /// Sources of one unit copied (or completed) at the same time.
    pub unit_concurrency: usize,
    /// Part batches of one big file copied at the same time by the in-process runner.
    pub batch_concurrency: usize,
    pub engine: EngineConfig,
    /// How the `bytes` proof reads ([`crate::copy::verify`]).
    pub verify: VerifyLimits,
    /// The highest `maxConcurrency` Init accepts: the deployment's bound on the Map's fan-out
    /// (template parameter `MaxConcurrencyCeiling`), so one run cannot take the account's
    /// Lambda concurrency.
    pub max_concurrency_ceiling: u32,
    /// Whether a run's Synapse requests draw from its fleet-wide budget ([`crate::budget`]).
    /// Off only against a Synapse that throttles nobody (the simulator with its throttle off, in
    /// tests), where pacing would only slow the test down.
    pub run_budget: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            index_time_budget: Duration::from_secs(600),
            lock_ttl: Duration::from_secs(6 * 3600),
            lease_ttl: Duration::from_secs(LEASED_FUNCTION_TIMEOUT_SECONDS + 60),
            unit_limits: UnitLimits::default(),
            batch_budget: BatchBudget::default(),
            unit_concurrency: 4,
            batch_concurrency: 4,
            engine: EngineConfig::default(),
            verify: VerifyLimits::default(),
            max_concurrency_ceiling: crate::config::MAX_CONCURRENCY,
            run_budget: true,
        }
    }
}

#[cfg(feature = "fault-injection")]
/// Switches that make a stage fail at a chosen point, so tests can prove the crash rules.
#[derive(Debug, Default)]
pub struct FaultHooks {
    /// Entity updates that fail right after the entity was written and before the item is
    /// recorded MIGRATED (a crash at the worst moment). Counts down to zero.
    pub fail_after_entity_update: AtomicU32,
}

#[cfg(feature = "fault-injection")]
impl FaultHooks {
    /// Whether the next entity update should fail (and counts it).
    pub(crate) fn fire_after_entity_update(&self) -> bool {
        self.fail_after_entity_update
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// Everything a stage needs; built once per Lambda container (or per CLI run).
pub struct Services {
    pub synapse: SynapseClient,
    pub store: Arc<dyn StateStore>,
    /// For manifests and reports, and the direct engine's copies.
    pub s3: aws_sdk_s3::Client,
    /// The bucket for manifests and reports.
    pub bucket: String,
    pub engines: Engines,
    /// Proves finished copies at the run's `verify` level.
    pub verifier: Verifier,
    pub tuning: Tuning,
    /// What the stages did in the current invocation, for its metrics (see [`crate::metrics`]).
    pub metrics: Recorder,
    /// The fleet-wide Synapse budget of the run this process serves now (see [`crate::budget`]).
    run_budget: Mutex<Option<Arc<FleetBudget>>>,
    /// Test-only switches (the `fault-injection` feature).
    #[cfg(feature = "fault-injection")]
    pub faults: FaultHooks,
}

impl Services {
    pub fn new(
        synapse: SynapseClient,
        store: Arc<dyn StateStore>,
        s3: aws_sdk_s3::Client,
        bucket: impl Into<String>,
        tuning: Tuning,
    ) -> Self {
        let engines = Engines {
            synapse: SynapseEngine::new(synapse.clone(), tuning.engine.clone()),
            direct: DirectEngine::new(s3.clone(), synapse.clone(), tuning.engine.clone()),
        };
        Self {
            synapse,
            store,
            verifier: Verifier::new(s3.clone(), tuning.verify.clone()),
            s3,
            bucket: bucket.into(),
            engines,
            tuning,
            metrics: Recorder::default(),
            run_budget: Mutex::new(None),
            #[cfg(feature = "fault-injection")]
            faults: FaultHooks::default(),
        }
    }
}

impl Services {
    /// Makes every Synapse request of this process draw from the run's fleet-wide budget of
    /// `requests_per_minute` (`maxSynapseRequestsPerMinute`); the deployment's per-instance
    /// limit stays as a ceiling. A warm instance serving the same run keeps its leased slots.
    pub fn use_run_budget(&self, migration: &MigrationKey, run_id: &str, requests_per_minute: u32) {
        if !self.tuning.run_budget {
            return;
        }
        let mut current = self
            .run_budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if current
            .as_ref()
            .is_some_and(|b| b.is_for(migration, run_id, requests_per_minute))
        {
            return;
        }
        let budget = Arc::new(FleetBudget::new(
            Arc::clone(&self.store),
            migration.clone(),
            run_id,
            requests_per_minute,
        ));
        self.synapse.set_budget(Some(budget.clone()));
        *current = Some(budget);
    }
}

/// What every stage after Init gets: which migration, which run, and its options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunContext {
    pub project_id: String,
    /// The one destination of every file; `None` re-aligns each file to the storage location
    /// its folder uploads to (an aligned run: each work unit carries its destination).
    pub destination_storage_location_id: Option<i64>,
    /// The execution name: owner of the lock and id of the run.
    pub run_id: String,
    pub options: MigrationOptions,
    /// The destination as Synapse described it at Init (the engines need bucket and base key);
    /// `None` in an aligned run.
    pub destination: Option<StorageLocationSetting>,
}

impl RunContext {
    /// The options that decide which items a walk writes: a walk made (or a file settled)
    /// under others must be done again.
    pub(crate) fn walk_scope(&self) -> String {
        let options = &self.options;
        serde_json::json!([
            options.file_version_strategy,
            options.source_storage_location_ids,
            options.sanitize_file_names
        ])
        .to_string()
    }

    /// What a walk covers as well as [`Self::walk_scope`]: a walk left unfinished is continued
    /// only by a run that covers the same (the whole project, or the same manifest).
    pub(crate) fn frontier_scope(&self) -> String {
        let options = &self.options;
        // Each part is appended only when set, so that walks made before it existed still match.
        let mut scope = self.walk_scope();
        if options.include_table_files {
            scope.push_str("+tables");
        }
        if self.is_partial() {
            scope.push_str(&serde_json::json!([options.entities, options.manifest]).to_string());
        }
        scope
    }

    /// Whether the run covers only part of the project (a manifest): its Plan and Report then
    /// count only the items its own walk wrote, not what other runs of the migration left.
    /// Whether `item` is this run's to take on and account for: any item of a whole-project run;
    /// in a partial run only those its own walk wrote (a whole-project dry run's INDEXED items
    /// are not a manifest run's).
    pub(crate) fn takes(&self, item: &crate::state::ItemRecord) -> bool {
        !self.is_partial() || item.run_id == self.run_id
    }

    pub fn is_partial(&self) -> bool {
        !self.options.entities.is_empty() || self.options.manifest.is_some()
    }

    pub fn migration(&self) -> Result<MigrationKey> {
        Ok(MigrationKey::with_destination(
            &self.project_id,
            self.destination_storage_location_id,
        )?)
    }

    /// [`Services::use_run_budget`] for this run.
    pub(crate) fn use_budget(&self, services: &Services) -> Result<MigrationKey> {
        let migration = self.migration()?;
        services.use_run_budget(
            &migration,
            &self.run_id,
            self.options.max_synapse_requests_per_minute,
        );
        Ok(migration)
    }

    /// Owner of a unit's leases: the same on every retry of the unit in this run.
    pub(crate) fn unit_owner(&self, unit_id: &str) -> String {
        format!("{}/{unit_id}", self.run_id)
    }

    /// Whether a lease owner is one of this run's units.
    pub(crate) fn owns(&self, lease_owner: &str) -> bool {
        lease_owner
            .strip_prefix(&self.run_id)
            .is_some_and(|rest| rest.starts_with('/'))
    }

    pub fn manifest_key(&self) -> String {
        manifest_key(&self.run_id)
    }

    pub fn followers_key(&self) -> String {
        followers_key(&self.run_id)
    }

    pub fn report_key(&self) -> String {
        format!("runs/{}/report.csv", self.run_id)
    }

    /// An aligned run's folder list (see `stages::report::FolderList`).
    pub fn folders_key(&self) -> String {
        format!("runs/{}/folders.csv", self.run_id)
    }

    pub fn orphaned_copies_key(&self) -> String {
        format!("runs/{}/orphaned-copies.csv", self.run_id)
    }
}

//! The pipeline's stages, one async function per Lambda: `init`, `index`, `plan`, `start_copy`,
//! `copy_parts`, `complete`, `record_failure`, `report`.
//!
//! Each takes the shared [`Services`] and a small serde (camelCase) input, and returns a small
//! output: Step Functions payloads are capped at 256 KiB, so stages pass keys and the
//! [`RunContext`], and read everything else from the state store. Every stage may be repeated
//! (a Lambda retry, a re-run) without doing its work twice; see the crate docs for the rules.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use synapse_model::{
    concrete, BatchFileRequest, FileHandle, FileHandleAssociation, StorageLocationSetting,
};

use crate::config::MigrationOptions;
use crate::copy::{
    choose, CopyRequest, DirectEngine, EngineConfig, EngineState, Engines, SynapseEngine,
    FILE_ENTITY_ASSOCIATION,
};
use crate::error::types;
use crate::index::{self, IndexCounts};
use crate::plan::{
    self, BatchBudget, PartBatch, PartPlan, UnitItem, UnitKind, UnitLimits, WorkUnit,
};
use crate::report::{csv_row, orphaned_copy_row, ItemTotals, CSV_HEADER, ORPHANED_COPIES_HEADER};
use crate::state::{
    orphaned_copies, CopyRecord, CopyStatus, EpochSeconds, ItemError, ItemKey, ItemRecord,
    ItemStatus, MigrationKey, RunCounters, RunStatus, StateError, StateStore, StatusName,
    Transition,
};
use crate::synapse::{SynapseClient, SynapseError};
use crate::update::{update_entity, EntityUpdate};
use crate::{Error, Result};

/// Items listed per state store page.
const LIST_PAGE: u32 = 500;
/// File handles per `POST /fileHandle/batch` (Synapse's limit).
const HANDLE_BATCH: usize = 100;

/// Seconds since the epoch, the state store's clock.
pub fn now() -> EpochSeconds {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as EpochSeconds)
        .unwrap_or_default()
}

fn seconds(duration: Duration) -> EpochSeconds {
    EpochSeconds::try_from(duration.as_secs()).unwrap_or(EpochSeconds::MAX / 2)
}

/// Limits and durations of the stages; the defaults suit 15-minute Lambdas.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// How long one Index invocation walks before handing back.
    pub index_time_budget: Duration,
    /// The project lock's lifetime; renewed by Index and Plan.
    pub lock_ttl: Duration,
    /// Lifetime of item and copy leases; a crashed worker's claims are free again after it.
    pub lease_ttl: Duration,
    pub unit_limits: UnitLimits,
    pub batch_budget: BatchBudget,
    /// Sources of one unit copied (or completed) at the same time.
    pub unit_concurrency: usize,
    /// Part batches of one big file copied at the same time by the in-process runner.
    pub batch_concurrency: usize,
    pub engine: EngineConfig,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            index_time_budget: Duration::from_secs(600),
            lock_ttl: Duration::from_secs(6 * 3600),
            lease_ttl: Duration::from_secs(20 * 60),
            unit_limits: UnitLimits::default(),
            batch_budget: BatchBudget::default(),
            unit_concurrency: 4,
            batch_concurrency: 4,
            engine: EngineConfig::default(),
        }
    }
}

/// Switches that make a stage fail at a chosen point, so tests can prove the crash rules.
#[derive(Debug, Default)]
pub struct FaultHooks {
    /// Entity updates that fail right after the entity was written and before the item is
    /// recorded MIGRATED (a crash at the worst moment). Counts down to zero.
    pub fail_after_entity_update: AtomicU32,
}

impl FaultHooks {
    /// Whether the next entity update should fail (and counts it).
    fn fire_after_entity_update(&self) -> bool {
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
    pub tuning: Tuning,
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
            s3,
            bucket: bucket.into(),
            engines,
            tuning,
            faults: FaultHooks::default(),
        }
    }
}

/// What every stage after Init gets: which migration, which run, and its options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunContext {
    pub project_id: String,
    pub destination_storage_location_id: i64,
    /// The execution name: owner of the lock and id of the run.
    pub run_id: String,
    pub options: MigrationOptions,
    /// The destination as Synapse described it at Init (the engines need bucket and base key).
    pub destination: StorageLocationSetting,
}

impl RunContext {
    pub fn migration(&self) -> Result<MigrationKey> {
        Ok(MigrationKey::new(
            &self.project_id,
            self.destination_storage_location_id,
        )?)
    }

    /// Owner of a unit's leases: the same on every retry of the unit in this run.
    fn unit_owner(&self, unit_id: &str) -> String {
        format!("{}/{unit_id}", self.run_id)
    }

    pub fn manifest_key(&self) -> String {
        format!("runs/{}/manifest.json", self.run_id)
    }

    pub fn report_key(&self) -> String {
        format!("runs/{}/report.csv", self.run_id)
    }

    pub fn orphaned_copies_key(&self) -> String {
        format!("runs/{}/orphaned-copies.csv", self.run_id)
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Init

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitInput {
    pub project_id: String,
    pub destination_storage_location_id: i64,
    /// The Step Functions execution name (unique per execution).
    pub execution_name: String,
    #[serde(default)]
    pub options: MigrationOptions,
}

/// Validates the input and the destination, takes the project lock and opens the run.
pub async fn init(services: &Services, input: InitInput) -> Result<RunContext> {
    let InitInput {
        project_id,
        destination_storage_location_id: destination_id,
        execution_name,
        options,
    } = input;
    if !project_id
        .strip_prefix("syn")
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(Error::InvalidInput(format!(
            "projectId must look like syn123, got {project_id:?}"
        )));
    }
    if destination_id <= 0 {
        return Err(Error::InvalidInput(format!(
            "destinationStorageLocationId must be a positive id, got {destination_id}"
        )));
    }
    if execution_name.is_empty() || execution_name.contains(['#', '/']) {
        return Err(Error::InvalidInput(format!(
            "executionName must be non-empty without '#' or '/', got {execution_name:?}"
        )));
    }
    options
        .validate()
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    let destination = services
        .synapse
        .storage_location(destination_id)
        .await
        .map_err(|error| match error {
            SynapseError::Forbidden { reason } => Error::Forbidden(format!(
                "you did not create storage location {destination_id}, so files cannot be \
                 migrated into it ({reason})"
            )),
            SynapseError::NotFound { reason } => Error::NotFound(format!(
                "storage location {destination_id} does not exist ({reason})"
            )),
            other => other.into(),
        })?;
    if options.copy_mode == crate::copy::CopyMode::Direct && !destination.is_external_s3() {
        return Err(Error::InvalidInput(format!(
            "copyMode direct needs an external S3 destination; storage location {destination_id} \
             is {}",
            destination.concrete_type
        )));
    }
    let project = services
        .synapse
        .get_entity(&project_id)
        .await
        .map_err(|error| match error {
            SynapseError::NotFound { reason } => {
                Error::NotFound(format!("project {project_id} does not exist ({reason})"))
            }
            other => other.into(),
        })?;
    if project.concrete_type != concrete::PROJECT {
        return Err(Error::InvalidInput(format!(
            "{project_id} is a {}, not a project",
            project.concrete_type
        )));
    }
    let run = RunContext {
        project_id,
        destination_storage_location_id: destination_id,
        run_id: execution_name,
        options,
        destination,
    };
    let migration = run.migration()?;
    let at = now();
    services
        .store
        .acquire_lock(
            &migration,
            &run.run_id,
            at + seconds(services.tuning.lock_ttl),
            at,
        )
        .await
        .map_err(|error| match error {
            StateError::LeaseHeld {
                owner, expires_at, ..
            } => Error::AlreadyRunning(format!(
                "already running: execution {owner} holds the lock of {} into {} until {expires_at}",
                run.project_id, run.destination_storage_location_id
            )),
            other => other.into(),
        })?;
    let settings = serde_json::json!({
        "options": run.options,
        "destinationStorageLocationId": run.destination_storage_location_id,
        "destinationType": run.destination.concrete_type,
    });
    if let Err(error) = services
        .store
        .create_run(&migration, &run.run_id, &settings, at)
        .await
    {
        release_lock(services, &run).await;
        return Err(error.into());
    }
    tracing::info!(project = %run.project_id, destination = run.destination_storage_location_id,
                   run = %run.run_id, "run opened");
    Ok(run)
}

/// Extends the lock; fails if another execution took it meanwhile.
async fn renew_lock(services: &Services, run: &RunContext) -> Result<()> {
    let until = now() + seconds(services.tuning.lock_ttl);
    services
        .store
        .renew_lock(&run.migration()?, &run.run_id, until)
        .await
        .map(drop)
        .map_err(|error| match error {
            StateError::LeaseHeld { owner, .. } => Error::Conflict(format!(
                "the project lock expired and execution {owner} took it; this run stops"
            )),
            other => other.into(),
        })
}

/// Best-effort release used on failure paths (the lock expires anyway).
pub(crate) async fn release_lock(services: &Services, run: &RunContext) {
    let released = match run.migration() {
        Ok(migration) => services
            .store
            .release_lock(&migration, &run.run_id)
            .await
            .map_err(Error::from),
        Err(error) => Err(error),
    };
    if let Err(error) = released {
        tracing::warn!(run = %run.run_id, %error, "could not release the project lock");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Index

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexInput {
    pub run: RunContext,
    /// Overrides the configured time budget of this invocation.
    #[serde(default)]
    pub time_budget_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexOutput {
    pub done: bool,
    pub counts: IndexCounts,
}

/// Walks the project for one time budget; call again until `done`.
pub async fn index(services: &Services, input: IndexInput) -> Result<IndexOutput> {
    renew_lock(services, &input.run).await?;
    let budget = input
        .time_budget_seconds
        .map(Duration::from_secs)
        .unwrap_or(services.tuning.index_time_budget);
    let outcome = index::walk(services, &input.run, Instant::now() + budget).await?;
    Ok(IndexOutput {
        done: outcome.done,
        counts: outcome.counts,
    })
}

// ---------------------------------------------------------------------------------------------
// 3. Plan

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanInput {
    pub run: RunContext,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanOutput {
    /// Where the manifest (a JSON array of [`WorkUnit`]s) is, for the Distributed Map.
    pub bucket: String,
    pub key: String,
    pub unit_count: usize,
    pub item_count: usize,
    pub total_bytes: u64,
}

/// Every item the copy should take on: INDEXED ones, ERRORED ones due for a retry (rule 4, see
/// [`ItemRecord::due_for_retry`]), and COPYING/COPIED ones whose worker's lease ran out (a crash).
async fn copy_candidates(services: &Services, run: &RunContext) -> Result<Vec<ItemRecord>> {
    let migration = run.migration()?;
    let at = now();
    let max_attempts = run.options.max_attempts;
    let mut candidates = Vec::new();
    for status in [
        StatusName::Indexed,
        StatusName::Errored,
        StatusName::Copying,
        StatusName::Copied,
    ] {
        let mut token: Option<String> = None;
        loop {
            let page = services
                .store
                .list_items(&migration, Some(status), LIST_PAGE, token.as_deref())
                .await?;
            candidates.extend(page.items.into_iter().filter(|item| {
                match &item.status {
                    ItemStatus::Indexed => true,
                    ItemStatus::Errored(_) => item.due_for_retry(max_attempts),
                    ItemStatus::Copying | ItemStatus::Copied => item
                        .lease
                        .as_ref()
                        .is_none_or(|lease| lease.expires_at <= at),
                    _ => false,
                }
            }));
            match page.next_token {
                Some(next) => token = Some(next),
                None => break,
            }
        }
    }
    Ok(candidates)
}

/// Groups the items to copy into work units and writes the manifest to S3.
pub async fn plan(services: &Services, input: PlanInput) -> Result<PlanOutput> {
    let run = &input.run;
    renew_lock(services, run).await?;
    let units = if run.options.dry_run {
        Vec::new()
    } else {
        let items = copy_candidates(services, run).await?;
        plan::group_units(
            items.into_iter().map(|item| UnitItem {
                key: item.key.to_string(),
                size: item.size,
                source: item.source_file_handle_id,
            }),
            &services.tuning.unit_limits,
        )?
    };
    let body = serde_json::to_vec(&units)
        .map_err(|e| Error::Internal(format!("cannot encode the manifest: {e}")))?;
    let key = run.manifest_key();
    put_object(services, &key, body, "application/json").await?;
    Ok(PlanOutput {
        bucket: services.bucket.clone(),
        key,
        unit_count: units.len(),
        item_count: units.iter().map(|u| u.items.len()).sum(),
        total_bytes: units.iter().map(|u| u.total_bytes).sum(),
    })
}

async fn put_object(
    services: &Services,
    key: &str,
    body: Vec<u8>,
    content_type: &str,
) -> Result<()> {
    services
        .s3
        .put_object()
        .bucket(&services.bucket)
        .key(key)
        .content_type(content_type)
        .body(body.into())
        .send()
        .await
        .map(drop)
        .map_err(|e| {
            Error::Transient(format!(
                "cannot write s3://{}/{key}: {}",
                services.bucket,
                aws_sdk_s3::error::DisplayErrorContext(&e)
            ))
        })
}

/// Reads a manifest written by [`plan()`] (the in-process runner's ItemReader).
pub async fn read_manifest(services: &Services, key: &str) -> Result<Vec<WorkUnit>> {
    let object = services
        .s3
        .get_object()
        .bucket(&services.bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| {
            Error::Transient(format!(
                "cannot read s3://{}/{key}: {}",
                services.bucket,
                aws_sdk_s3::error::DisplayErrorContext(&e)
            ))
        })?;
    let bytes = object
        .body
        .collect()
        .await
        .map_err(|e| Error::Transient(format!("cannot read the manifest body: {e}")))?
        .into_bytes();
    serde_json::from_slice(&bytes).map_err(|e| Error::Internal(format!("bad manifest {key}: {e}")))
}

// ---------------------------------------------------------------------------------------------
// 4-6. StartCopy, CopyParts, Complete

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
}

impl CopyJob {
    fn request(&self, run: &RunContext) -> CopyRequest {
        CopyRequest {
            entity_id: self.entity_id.clone(),
            version: Some(self.version),
            source: self.source.clone(),
            destination: run.destination.clone(),
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

/// The stage's view of one unit: the migration, the lease owner and the clock.
struct UnitCtx<'a> {
    services: &'a Services,
    run: &'a RunContext,
    migration: MigrationKey,
    owner: String,
}

impl UnitCtx<'_> {
    fn new<'a>(services: &'a Services, run: &'a RunContext, unit_id: &str) -> Result<UnitCtx<'a>> {
        Ok(UnitCtx {
            services,
            run,
            migration: run.migration()?,
            owner: run.unit_owner(unit_id),
        })
    }

    fn lease_until(&self) -> EpochSeconds {
        now() + seconds(self.services.tuning.lease_ttl)
    }

    fn transition(&self, from: StatusName, to: ItemStatus, lease: bool) -> Transition {
        Transition {
            from,
            to,
            owner: self.owner.clone(),
            lease_until: lease.then(|| self.lease_until()),
            destination_file_handle_id: None,
            count_attempt: false,
            run_id: self.run.run_id.clone(),
            now: now(),
        }
    }

    async fn count(&self, delta: RunCounters) {
        if let Err(error) = self
            .services
            .store
            .add_to_counters(&self.migration, &self.run.run_id, &delta)
            .await
        {
            // Counters are progress information; the items are the truth the report reads.
            tracing::warn!(%error, "could not update the run counters");
        }
    }

    /// Records an item as ERRORED (from whatever unfinished status it is in) and releases it.
    async fn fail_item(&self, key: &ItemKey, error: &Error) -> ItemOutcome {
        self.record_item_error(key, ItemError::from(error)).await
    }

    async fn record_item_error(&self, key: &ItemKey, item_error: ItemError) -> ItemOutcome {
        tracing::warn!(item = %key, class = %item_error.class, message = %item_error.message, "item failed");
        let current = self.services.store.get_item(&self.migration, key).await;
        if let Ok(Some(item)) = current {
            if !item.status.name().is_terminal() {
                let t = self.transition(
                    item.status.name(),
                    ItemStatus::Errored(item_error.clone()),
                    false,
                );
                match self
                    .services
                    .store
                    .transition_item(&self.migration, key, &t)
                    .await
                {
                    Ok(_) => self.count(RunCounters::one(StatusName::Errored)).await,
                    Err(e) => {
                        tracing::warn!(item = %key, error = %e, "could not record the failure")
                    }
                }
            }
        }
        ItemOutcome {
            key: key.to_string(),
            status: StatusName::Errored,
            error: Some(item_error),
        }
    }

    /// The item's stored record, or an error naming it.
    async fn item(&self, key: &ItemKey) -> Result<ItemRecord> {
        self.services
            .store
            .get_item(&self.migration, key)
            .await?
            .ok_or_else(|| Error::NotFound(format!("item {key} is not in the state store")))
    }

    /// Takes the item's lease: INDEXED/ERRORED/COPYING become COPYING (one more attempt), a
    /// COPIED item stays COPIED. `Ok(None)`: the item is already finished.
    async fn claim_item(&self, key: &ItemKey) -> Result<Option<ItemRecord>> {
        let item = self.item(key).await?;
        let from = item.status.name();
        if from.is_terminal() {
            return Ok(None);
        }
        let mut t = if from == StatusName::Copied {
            self.transition(from, ItemStatus::Copied, true)
        } else {
            self.transition(from, ItemStatus::Copying, true)
        };
        // A retry of this unit's own claim (a Lambda retry) is not another attempt.
        let ours = item.lease.as_ref().is_some_and(|l| l.owner == self.owner);
        t.count_attempt = from != StatusName::Copied && !ours;
        Ok(Some(
            self.services
                .store
                .transition_item(&self.migration, key, &t)
                .await?,
        ))
    }

    fn engine_state(copy: &CopyRecord) -> Result<Option<EngineState>> {
        copy.engine_state
            .as_ref()
            .filter(|document| !document.is_null())
            .map(EngineState::from_document)
            .transpose()
    }
}

/// The items of a unit grouped by source handle, keys parsed.
fn by_source(unit: &WorkUnit) -> Result<BTreeMap<String, Vec<ItemKey>>> {
    let mut groups: BTreeMap<String, Vec<ItemKey>> = BTreeMap::new();
    for item in &unit.items {
        groups
            .entry(item.source.clone())
            .or_default()
            .push(item.key.parse()?);
    }
    Ok(groups)
}

/// Fetches the source file handles of `items` (first item of each source), 100 per call.
async fn source_handles(
    services: &Services,
    items: &[(String, ItemKey)],
) -> Result<BTreeMap<String, std::result::Result<FileHandle, String>>> {
    let mut handles = BTreeMap::new();
    for chunk in items.chunks(HANDLE_BATCH) {
        let request = BatchFileRequest {
            requested_files: chunk
                .iter()
                .map(|(source, key)| FileHandleAssociation {
                    file_handle_id: source.clone(),
                    associate_object_id: key.entity_id.clone(),
                    associate_object_type: FILE_ENTITY_ASSOCIATION.to_owned(),
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
    let ctx = UnitCtx::new(services, &run, &unit.unit_id)?;
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
        .claim_copy(&ctx.migration, source, &ctx.owner, ctx.lease_until(), now())
        .await?;
    if copy.status != CopyStatus::Copied {
        return Ok(Some(copy));
    }
    let destination = copy.destination_file_handle_id.ok_or_else(|| {
        Error::Internal(format!(
            "copy of {source} is COPIED without a destination handle"
        ))
    })?;
    for item in items {
        mark_copied(ctx, &item.key, &destination).await?;
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
    };
    let request = job.request(ctx.run);
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
    services
        .store
        .save_copy_state(
            &ctx.migration,
            &first.source_file_handle_id,
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
    let batches = plan::part_batches(&part_plan, &services.tuning.batch_budget)?
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

/// Moves a claimed item to COPIED with its destination handle (kept leased for the update).
async fn mark_copied(ctx: &UnitCtx<'_>, key: &ItemKey, destination: &str) -> Result<ItemRecord> {
    let item = ctx.item(key).await?;
    let mut t = ctx.transition(item.status.name(), ItemStatus::Copied, true);
    t.destination_file_handle_id = Some(destination.to_owned());
    Ok(ctx
        .services
        .store
        .transition_item(&ctx.migration, key, &t)
        .await?)
}

/// Copies one batch of a big file's parts.
pub async fn copy_parts(services: &Services, input: CopyPartsInput) -> Result<CopyPartsOutput> {
    let ctx = UnitCtx::new(services, &input.run, &input.unit_id)?;
    let source_id = input.job.source.id.clone();
    // Claiming again renews our lease for the time the batch takes.
    let copy = services
        .store
        .claim_copy(
            &ctx.migration,
            &source_id,
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
    let request = input.job.request(&input.run);
    services
        .engines
        .for_state(&state)
        .copy_parts(&request, &state, &parts)
        .await?;
    Ok(CopyPartsOutput {
        source_file_handle_id: source_id,
        parts: parts.len() as u32,
    })
}

/// Finishes each copy, records it (rule 2), then updates each entity (rule 3).
pub async fn complete(services: &Services, input: CompleteInput) -> Result<CompleteOutput> {
    let CompleteInput { run, unit, jobs } = input;
    let ctx = UnitCtx::new(services, &run, &unit.unit_id)?;
    let jobs: BTreeMap<String, CopyJob> = jobs
        .into_iter()
        .map(|job| (job.source.id.clone(), job))
        .collect();
    let groups = by_source(&unit)?;
    let results: Vec<(Vec<ItemOutcome>, u64)> = stream::iter(groups)
        .map(|(source, keys)| complete_source(&ctx, source, keys, &jobs))
        .buffer_unordered(services.tuning.unit_concurrency.max(1))
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

/// Completes one source's copy and the updates of the items that use it. Returns the outcomes
/// and the bytes this call copied.
async fn complete_source(
    ctx: &UnitCtx<'_>,
    source: String,
    keys: Vec<ItemKey>,
    jobs: &BTreeMap<String, CopyJob>,
) -> (Vec<ItemOutcome>, u64) {
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
    if pending.is_empty() {
        return (outcomes, 0);
    }
    let copy = match finish_copy(ctx, &source, jobs.get(&source)).await {
        Ok(done) => done,
        Err(error) => {
            for item in &pending {
                outcomes.push(ctx.fail_item(&item.key, &error).await);
            }
            return (outcomes, 0);
        }
    };
    for item in pending {
        let outcome = match migrate_item(ctx, &item, &copy.destination).await {
            Ok(outcome) => outcome,
            Err(error) => {
                ctx.record_item_error(&item.key, ItemError::of_update(&error))
                    .await
            }
        };
        outcomes.push(outcome);
    }
    note_copy_use(ctx, &source, copy.unused_reason.as_deref(), &outcomes).await;
    (outcomes, copy.bytes)
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
        .set_copy_unused(&ctx.migration, source, reason.as_deref(), now())
        .await
    {
        tracing::warn!(source, %error, "could not record whether the copy is used");
    }
}

/// A finished copy as Complete sees it.
struct FinishedCopy {
    destination: String,
    /// Bytes this call copied (0 when the copy was finished before).
    bytes: u64,
    /// The copy's unused mark as stored (see [`note_copy_use`]).
    unused_reason: Option<String>,
}

/// The destination handle of `source`: recorded already, or completed now and recorded before
/// any entity is touched (rule 2).
async fn finish_copy(
    ctx: &UnitCtx<'_>,
    source: &str,
    job: Option<&CopyJob>,
) -> Result<FinishedCopy> {
    let services = ctx.services;
    let copy = services
        .store
        .get_copy(&ctx.migration, source)
        .await?
        .ok_or_else(|| Error::Conflict(format!("the copy of {source} was never started")))?;
    if copy.status == CopyStatus::Copied {
        let destination = copy.destination_file_handle_id.ok_or_else(|| {
            Error::Internal(format!("copy of {source} is COPIED without a destination"))
        })?;
        return Ok(FinishedCopy {
            destination,
            bytes: 0,
            unused_reason: copy.unused_reason,
        });
    }
    let job = job.ok_or_else(|| {
        Error::InvalidInput(format!("Complete got no copy job for file handle {source}"))
    })?;
    let state = UnitCtx::engine_state(&copy)?
        .ok_or_else(|| Error::Conflict(format!("the copy of {source} has not been started")))?;
    let request = job.request(ctx.run);
    let engine = services.engines.for_state(&state);
    let handle = match engine.complete(&request, &state).await {
        Ok(handle) => handle,
        Err(error) => {
            if !error.is_retryable() {
                abort_copy(ctx, source, &state).await;
            }
            return Err(error);
        }
    };
    services
        .store
        .complete_copy(&ctx.migration, source, &ctx.owner, &handle.id, now())
        .await?;
    let size = handle
        .content_size
        .or(job.source.content_size)
        .unwrap_or_default();
    ctx.count(RunCounters {
        by_status: BTreeMap::new(),
        bytes_copied: i64::try_from(size).unwrap_or(i64::MAX),
    })
    .await;
    Ok(FinishedCopy {
        destination: handle.id,
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
            source,
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
    destination: &str,
) -> Result<ItemOutcome> {
    let services = ctx.services;
    let item = if item.status == ItemStatus::Copied
        && item.destination_file_handle_id.as_deref() == Some(destination)
    {
        item.clone()
    } else {
        mark_copied(ctx, &item.key, destination).await?
    };
    let outcome = update_entity(
        &services.synapse,
        EntityUpdate {
            item: &item,
            destination_file_handle_id: destination,
            destination_storage_location_id: ctx.run.destination_storage_location_id,
            strategy: ctx.run.options.file_version_strategy,
        },
    )
    .await?;
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

// ---------------------------------------------------------------------------------------------
// 7. RecordFailure

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

/// Marks the unit's unfinished items ERRORED with the unit's error; finished ones stay.
pub async fn record_failure(
    services: &Services,
    input: RecordFailureInput,
) -> Result<RecordFailureOutput> {
    let RecordFailureInput { run, unit, failure } = input;
    let ctx = UnitCtx::new(services, &run, &unit.unit_id)?;
    let error = ItemError {
        retryable: failure.error.starts_with(types::RETRYABLE_PREFIX),
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
            Ok(_) => errored += 1,
            Err(StateError::LeaseHeld { owner, .. }) => {
                tracing::warn!(item = %key, %owner, "item is leased to another worker; left as is")
            }
            Err(other) => return Err(other.into()),
        }
    }
    if errored > 0 {
        ctx.count(RunCounters {
            by_status: BTreeMap::from([(StatusName::Errored, i64::from(errored))]),
            bytes_copied: 0,
        })
        .await;
    }
    let reason = format!("{}: {}", error.class, error.message);
    for source in used.into_iter().filter(|(_, used)| !used).map(|(s, _)| s) {
        if let Err(error) = mark_unused_copy(&ctx, source, &reason).await {
            tracing::warn!(source, %error, "could not mark the copy unused");
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
    match store.get_copy(&ctx.migration, source).await? {
        Some(copy) if copy.status == CopyStatus::Copied && copy.unused_reason.is_none() => {
            store
                .set_copy_unused(&ctx.migration, source, Some(reason), now())
                .await?;
        }
        _ => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 8. Report

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportInput {
    pub run: RunContext,
    /// The run stopped early (a stage failed, or an error with `continueOnError` off).
    #[serde(default)]
    pub aborted: bool,
}

/// The run's result, as the last stage returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub project_id: String,
    pub destination_storage_location_id: i64,
    pub run_id: String,
    pub status: RunStatus,
    pub dry_run: bool,
    /// Every item of this migration (all runs so far) by status.
    pub totals: ItemTotals,
    /// What this run did (items indexed, migrated, errored; bytes it copied).
    pub run_counters: RunCounters,
    pub report_bucket: String,
    pub report_key: String,
    /// Finished copies no entity points at (their updates failed), over all runs so far.
    pub orphaned_copies: u64,
    /// The CSV listing them with the reason (`from_file_handle_id,to_file_handle_id,reason`);
    /// absent when there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orphaned_copies_key: Option<String>,
}

/// Writes the CSV report, finishes the run and releases the lock.
pub async fn report(services: &Services, input: ReportInput) -> Result<Summary> {
    let run = &input.run;
    let migration = run.migration()?;
    let mut totals = ItemTotals::default();
    let mut csv = String::from(CSV_HEADER);
    csv.push('\n');
    let mut token: Option<String> = None;
    loop {
        let page = services
            .store
            .list_items(&migration, None, LIST_PAGE, token.as_deref())
            .await?;
        for item in &page.items {
            totals.add(item);
            csv.push_str(&csv_row(item));
        }
        match page.next_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    let key = run.report_key();
    put_object(services, &key, csv.into_bytes(), "text/csv").await?;
    let (orphaned_copies, orphaned_copies_key) = report_orphaned_copies(services, run).await?;
    let counters = services
        .store
        .get_run(&migration, &run.run_id)
        .await?
        .map(|r| r.counters)
        .unwrap_or_default();
    let errored_now = counters
        .by_status
        .get(&StatusName::Errored)
        .copied()
        .unwrap_or_default();
    let status = if input.aborted {
        RunStatus::Aborted
    } else if errored_now > 0 {
        RunStatus::Failed
    } else {
        RunStatus::Succeeded
    };
    services
        .store
        .finish_run(&migration, &run.run_id, status, now())
        .await?;
    services.store.release_lock(&migration, &run.run_id).await?;
    tracing::info!(run = %run.run_id, status = status.as_str(), items = totals.items, "run finished");
    Ok(Summary {
        project_id: run.project_id.clone(),
        destination_storage_location_id: run.destination_storage_location_id,
        run_id: run.run_id.clone(),
        status,
        dry_run: run.options.dry_run,
        totals,
        run_counters: counters,
        report_bucket: services.bucket.clone(),
        report_key: key,
        orphaned_copies,
        orphaned_copies_key,
    })
}

/// Lists the finished copies no entity points at in their own CSV; returns their count and the
/// CSV's key (none when there are none).
async fn report_orphaned_copies(
    services: &Services,
    run: &RunContext,
) -> Result<(u64, Option<String>)> {
    let orphans = orphaned_copies(services.store.as_ref(), &run.migration()?).await?;
    if orphans.is_empty() {
        return Ok((0, None));
    }
    let mut csv = format!("{ORPHANED_COPIES_HEADER}\n");
    for copy in &orphans {
        csv.push_str(&orphaned_copy_row(copy));
    }
    let key = run.orphaned_copies_key();
    put_object(services, &key, csv.into_bytes(), "text/csv").await?;
    tracing::warn!(count = orphans.len(), %key, "finished copies that no entity points at");
    Ok((orphans.len() as u64, Some(key)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::memory::MemoryStore;
    use crate::state::Lease;
    use crate::synapse::{ClientConfig, SynapseToken};

    /// Services whose clients point at a closed port: these tests only touch the store.
    fn services(store: Arc<MemoryStore>) -> Services {
        let synapse = SynapseClient::new(ClientConfig::new(
            "http://127.0.0.1:9/repo/v1",
            "http://127.0.0.1:9/file/v1",
            SynapseToken::new("unused").unwrap(),
        ))
        .unwrap();
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                .region(aws_sdk_s3::config::Region::new("us-east-1"))
                .build(),
        );
        Services::new(synapse, store, s3, "bucket", Tuning::default())
    }

    fn run() -> RunContext {
        RunContext {
            project_id: "syn1".into(),
            destination_storage_location_id: 7001,
            run_id: "run-2".into(),
            options: MigrationOptions::default(),
            destination: serde_json::from_value(serde_json::json!({
                "concreteType": concrete::EXTERNAL_S3_STORAGE_LOCATION,
                "storageLocationId": 7001, "bucket": "dest"
            }))
            .unwrap(),
        }
    }

    fn item(entity: &str, status: ItemStatus, attempts: u32, lease: Option<Lease>) -> ItemRecord {
        ItemRecord {
            key: ItemKey::new(entity, 1).unwrap(),
            source_file_handle_id: format!("fh-{entity}"),
            size: 10,
            content_md5: None,
            source_storage_location_id: Some(1),
            file_name: "a.txt".into(),
            destination_file_name: None,
            status,
            destination_file_handle_id: None,
            attempts,
            lease,
            updated_at: 0,
            run_id: "run-1".into(),
        }
    }

    fn errored(class: &str) -> ItemStatus {
        ItemStatus::Errored(ItemError {
            class: class.into(),
            message: "m".into(),
            retryable: class.starts_with(types::RETRYABLE_PREFIX),
        })
    }

    /// Writes `items` in their status: put for the listed ones, then transitions for leases.
    async fn seed(store: &MemoryStore, items: &[ItemRecord]) {
        let migration = run().migration().unwrap();
        for record in items {
            let in_flight = matches!(record.status, ItemStatus::Copying | ItemStatus::Copied);
            let mut indexed = record.clone();
            if in_flight {
                indexed.status = ItemStatus::Indexed;
            }
            store.put_item(&migration, &indexed, 100).await.unwrap();
            if in_flight {
                let lease = record.lease.clone().unwrap();
                let t = Transition {
                    from: StatusName::Indexed,
                    to: record.status.clone(),
                    owner: lease.owner,
                    lease_until: Some(lease.expires_at),
                    destination_file_handle_id: None,
                    count_attempt: false,
                    run_id: "run-1".into(),
                    now: 0,
                };
                store
                    .transition_item(&migration, &record.key, &t)
                    .await
                    .unwrap();
            }
        }
    }

    #[tokio::test]
    async fn plan_takes_indexed_retryable_and_abandoned_items_only() {
        let store = Arc::new(MemoryStore::new());
        let expired = Some(Lease {
            owner: "run-1/unit-000001".into(),
            expires_at: 1,
        });
        let live = Some(Lease {
            owner: "run-1/unit-000002".into(),
            expires_at: now() + 3600,
        });
        seed(
            &store,
            &[
                item("syn10", ItemStatus::Indexed, 0, None),
                item("syn11", errored(types::TRANSIENT), 1, None),
                item("syn12", errored(types::TRANSIENT), 3, None),
                item("syn13", errored(types::FORBIDDEN), 1, None),
                item("syn14", ItemStatus::Copying, 1, expired),
                item("syn15", ItemStatus::Copying, 1, live),
                item("syn16", ItemStatus::Migrated, 1, None),
            ],
        )
        .await;
        let services = services(store);
        let mut keys: Vec<String> = copy_candidates(&services, &run())
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.key.to_string())
            .collect();
        keys.sort();
        assert_eq!(keys, ["syn10.1", "syn11.1", "syn14.1"]);
    }

    #[tokio::test]
    async fn record_failure_marks_unfinished_items_with_the_step_error() {
        let store = Arc::new(MemoryStore::new());
        seed(
            &store,
            &[
                item("syn20", ItemStatus::Indexed, 0, None),
                item(
                    "syn21",
                    ItemStatus::Copying,
                    1,
                    Some(Lease {
                        owner: "run-2/unit-000001".into(),
                        expires_at: now() + 600,
                    }),
                ),
                item("syn22", ItemStatus::Migrated, 1, None),
            ],
        )
        .await;
        let migration = run().migration().unwrap();
        // syn21's and syn22's copies are finished; only syn22's entity points at its copy.
        for source in ["fh-syn21", "fh-syn22"] {
            store
                .claim_copy(&migration, source, "w", now() + 60, now())
                .await
                .unwrap();
            store
                .complete_copy(&migration, source, "w", &format!("{source}-copy"), now())
                .await
                .unwrap();
        }
        let services = services(store.clone());
        let unit = plan::group_units(
            ["syn20", "syn21", "syn22"].map(|e| UnitItem {
                key: format!("{e}.1"),
                size: 10,
                source: format!("fh-{e}"),
            }),
            &UnitLimits::default(),
        )
        .unwrap()
        .remove(0);
        let failure: StepFailure = serde_json::from_value(serde_json::json!({
            "Error": types::THROTTLED, "Cause": "Lambda throttled"
        }))
        .unwrap();
        let output = record_failure(
            &services,
            RecordFailureInput {
                run: run(),
                unit,
                failure,
            },
        )
        .await
        .unwrap();
        assert_eq!(output.errored, 2);
        // The copy no entity points at is marked with the unit's failure; the used one is not.
        let orphans = crate::state::orphaned_copies(store.as_ref(), &migration)
            .await
            .unwrap();
        assert_eq!(orphans.len(), 1);
        assert_eq!(orphans[0].source_file_handle_id, "fh-syn21");
        assert_eq!(
            orphans[0].unused_reason.as_deref(),
            Some("Retryable.Throttled: Lambda throttled")
        );
        for (entity, expected) in [
            ("syn20", StatusName::Errored),
            ("syn21", StatusName::Errored),
            ("syn22", StatusName::Migrated),
        ] {
            let stored = store
                .get_item(&migration, &ItemKey::new(entity, 1).unwrap())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(stored.status.name(), expected, "{entity}");
            if let ItemStatus::Errored(error) = stored.status {
                assert_eq!(error.class, types::THROTTLED);
                assert!(error.retryable);
                assert_eq!(error.message, "Lambda throttled");
                assert!(stored.lease.is_none());
            }
        }
    }

    #[test]
    fn fault_hook_fires_as_often_as_armed() {
        let hooks = FaultHooks::default();
        assert!(!hooks.fire_after_entity_update());
        hooks.fail_after_entity_update.store(2, Ordering::SeqCst);
        assert!(hooks.fire_after_entity_update());
        assert!(hooks.fire_after_entity_update());
        assert!(!hooks.fire_after_entity_update());
    }

    #[test]
    fn payloads_are_camel_case_and_keys_are_per_run() {
        let run = run();
        let json = serde_json::to_value(&run).unwrap();
        assert_eq!(json["projectId"], "syn1");
        assert_eq!(json["destinationStorageLocationId"], 7001);
        assert_eq!(json["options"]["fileVersionStrategy"], "new");
        assert_eq!(run.manifest_key(), "runs/run-2/manifest.json");
        assert_eq!(run.report_key(), "runs/run-2/report.csv");
        assert_eq!(run.unit_owner("unit-000003"), "run-2/unit-000003");
        let failure = StepFailure::from(&Error::Forbidden("no".into()));
        let json = serde_json::to_value(&failure).unwrap();
        assert_eq!(json["Error"], types::FORBIDDEN);
        let input: InitInput = serde_json::from_value(serde_json::json!({
            "projectId": "syn1", "destinationStorageLocationId": 7001, "executionName": "e"
        }))
        .unwrap();
        assert_eq!(input.options, MigrationOptions::default());
    }
}

//! Durable state of migrations: the project lock, runs, index progress, one record per file
//! version and one per copied source file handle.
//!
//! # Layout (one DynamoDB table, string keys `PK` and `SK`)
//!
//! Everything about one migration (a project into one destination storage location) shares a
//! partition key, so one Query reads it and no scan is ever needed:
//!
//! | `PK`                          | `SK`                          | record                                  |
//! |-------------------------------|-------------------------------|-----------------------------------------|
//! | `MIG#{projectId}#{destId}`    | `LOCK`                        | lease: `owner`, `expiresAt` (TTL)       |
//! | same                          | `RUN#{runId}`                 | settings, status, counters, timestamps  |
//! | same                          | `FRONTIER#{runId}`            | index progress (JSON), `expiresAt` (TTL)|
//! | same                          | `ITEM#{entityId}#{version}`   | one file version: source, status, lease |
//! | same                          | `FH#{sourceFileHandleId}`     | one copy per source handle              |
//!
//! Item attributes: `entityId`, `version`, `sourceFileHandleId`, `size`, `contentMd5`,
//! `sourceStorageLocationId`, `fileName`, `destinationFileName` (when sanitised), `status`,
//! `skipReason` or `errorClass`/`errorMessage`/`retryable`, `destinationFileHandleId`,
//! `attempts`, `leaseOwner`/`leaseExpiresAt`, `updatedAt`, `runId`, `SPK`.
//! Copy (`FH#`) attributes: `status` (COPYING, COPIED), `engineState` (JSON: upload id, engine),
//! `destinationFileHandleId`, `unusedReason` (why no entity points at the finished copy yet),
//! `leaseOwner`/`leaseExpiresAt`, `updatedAt`.
//!
//! Item statuses move along INDEXED -> COPYING -> COPIED -> MIGRATED, or end in
//! ALREADY_MIGRATED or SKIPPED; ERRORED is reachable from every unfinished status and leads back
//! to any of them (see [`transition_allowed`]). Re-indexing never overwrites a later status
//! ([`ItemStatus::reindexable`]).
//!
//! Changes from the suggested design, and why:
//! - Items carry `SPK = MIG#..#..#{STATUS}`, the partition key of a sparse global secondary index
//!   `ByStatus` (`SPK`, `SK`). Plan, Report and the retry of ERRORED items list items *by status*;
//!   with a filter on the base table each page would read every item of the project (millions)
//!   to return a few. The index is eventually consistent, which suits its readers: Plan runs
//!   after Index finished, and every write that follows a listing is conditional anyway.
//!   One index partition per status takes all of a migration's writes of that status; those are
//!   paced by the Synapse rate limit (tens per second), far below a partition's 1,000 writes/s.
//! - Item and copy leases use `leaseOwner`/`leaseExpiresAt`, *not* `expiresAt`: the table's TTL
//!   attribute would otherwise delete the item itself once its lease ran out. Only the lock and
//!   the frontier, which are disposable, carry `expiresAt`.
//! - Counters are top-level number attributes (`count_MIGRATED`, ..., `bytesCopied`) so that
//!   `ADD` works on them without the map having to exist first.
//!
//! Times are epoch seconds passed in by the caller (`now`), which keeps the rules testable
//! without sleeping. A lease is free when absent, held by the caller, or `expiresAt <= now`.
//!
//! The rules each write enforces live here as pure functions (`check_*`); the in-memory store
//! applies them directly, the DynamoDB store encodes them as condition expressions and uses the
//! same functions to explain a failed condition.

pub mod dynamo;
pub mod memory;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::types;
use crate::Error;

/// Epoch seconds.
pub type EpochSeconds = i64;

/// Largest JSON document (frontier, engine state) accepted, safely below DynamoDB's 400 KB item.
pub const MAX_DOCUMENT_BYTES: usize = 350 * 1024;

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A conditional write found the record in another state than expected.
    #[error("condition failed on {record}: {detail}")]
    ConditionFailed { record: String, detail: String },
    /// Another owner holds an unexpired lease on the record.
    #[error("{record} is leased to {owner} until {expires_at}")]
    LeaseHeld {
        record: String,
        owner: String,
        expires_at: EpochSeconds,
    },
    #[error("{0} not found")]
    NotFound(String),
    /// The status machine forbids this move (a bug in the caller).
    #[error("item status cannot go from {from} to {to}")]
    InvalidTransition { from: StatusName, to: StatusName },
    /// The request itself is malformed (bad id, document too large, ...).
    #[error("invalid state store request: {0}")]
    Invalid(String),
    /// DynamoDB throttled us (ProvisionedThroughputExceeded, ThrottlingException, ...).
    #[error("state store throttled: {0}")]
    Throttled(String),
    /// Timeouts, connection failures, 5xx, transaction conflicts.
    #[error("state store unavailable: {0}")]
    Transient(String),
    /// A stored record that does not parse.
    #[error("corrupt record {record}: {detail}")]
    Corrupt { record: String, detail: String },
    /// Any other service error (missing table, validation, permissions).
    #[error("state store request failed: {0}")]
    Service(String),
}

impl StateError {
    /// The stable error type name (see [`crate::error::types`]).
    pub fn error_type(&self) -> &'static str {
        match self {
            StateError::ConditionFailed { .. } => types::CONFLICT,
            StateError::LeaseHeld { .. } => types::LEASE_HELD,
            StateError::NotFound(_) => types::NOT_FOUND,
            StateError::Invalid(_) => types::INVALID_INPUT,
            StateError::Throttled(_) => types::THROTTLED,
            StateError::Transient(_) => types::TRANSIENT,
            StateError::InvalidTransition { .. }
            | StateError::Corrupt { .. }
            | StateError::Service(_) => types::INTERNAL,
        }
    }
}

/// Identifies one migration: a project into one destination storage location.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MigrationKey {
    project_id: String,
    destination_storage_location_id: i64,
}

/// Ids become parts of `#`-separated keys, so they may not contain `#` or be empty.
fn check_id(what: &str, id: &str) -> Result<(), StateError> {
    if id.is_empty() || id.contains('#') {
        return Err(StateError::Invalid(format!(
            "{what} must be non-empty and free of '#': {id:?}"
        )));
    }
    Ok(())
}

impl MigrationKey {
    pub fn new(
        project_id: impl Into<String>,
        destination_storage_location_id: i64,
    ) -> Result<Self, StateError> {
        let project_id = project_id.into();
        check_id("project id", &project_id)?;
        Ok(Self {
            project_id,
            destination_storage_location_id,
        })
    }

    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    pub fn destination_storage_location_id(&self) -> i64 {
        self.destination_storage_location_id
    }

    /// The partition key shared by every record of this migration.
    pub fn pk(&self) -> String {
        format!(
            "MIG#{}#{}",
            self.project_id, self.destination_storage_location_id
        )
    }
}

pub(crate) const LOCK_SK: &str = "LOCK";
pub(crate) const ITEM_PREFIX: &str = "ITEM#";
pub(crate) const COPY_PREFIX: &str = "FH#";

pub(crate) fn run_sk(run_id: &str) -> String {
    format!("RUN#{run_id}")
}

pub(crate) fn frontier_sk(run_id: &str) -> String {
    format!("FRONTIER#{run_id}")
}

pub(crate) fn copy_sk(source_file_handle_id: &str) -> String {
    format!("{COPY_PREFIX}{source_file_handle_id}")
}

/// Partition key of the `ByStatus` index for items of one status.
pub(crate) fn status_pk(migration: &MigrationKey, status: StatusName) -> String {
    format!("{}#{}", migration.pk(), status.as_str())
}

/// One file version: `syn123.4` in text (Synapse's own notation), `ITEM#syn123#4` as a sort key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemKey {
    pub entity_id: String,
    pub version: u64,
}

impl ItemKey {
    pub fn new(entity_id: impl Into<String>, version: u64) -> Result<Self, StateError> {
        let entity_id = entity_id.into();
        check_id("entity id", &entity_id)?;
        if entity_id.contains('.') {
            return Err(StateError::Invalid(format!(
                "entity id may not contain '.': {entity_id:?}"
            )));
        }
        Ok(Self { entity_id, version })
    }

    pub fn sk(&self) -> String {
        format!("{ITEM_PREFIX}{}#{}", self.entity_id, self.version)
    }
}

impl fmt::Display for ItemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.entity_id, self.version)
    }
}

impl FromStr for ItemKey {
    type Err = StateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || StateError::Invalid(format!("item key must look like syn123.4: {s:?}"));
        let (entity_id, version) = s.rsplit_once('.').ok_or_else(invalid)?;
        let version = version.parse().map_err(|_| invalid())?;
        ItemKey::new(entity_id, version)
    }
}

impl Serialize for ItemKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ItemKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Item status without its details: what is stored in `status`, indexed and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StatusName {
    Indexed,
    Copying,
    Copied,
    Migrated,
    AlreadyMigrated,
    Skipped,
    Errored,
}

impl StatusName {
    pub const ALL: [StatusName; 7] = [
        StatusName::Indexed,
        StatusName::Copying,
        StatusName::Copied,
        StatusName::Migrated,
        StatusName::AlreadyMigrated,
        StatusName::Skipped,
        StatusName::Errored,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StatusName::Indexed => "INDEXED",
            StatusName::Copying => "COPYING",
            StatusName::Copied => "COPIED",
            StatusName::Migrated => "MIGRATED",
            StatusName::AlreadyMigrated => "ALREADY_MIGRATED",
            StatusName::Skipped => "SKIPPED",
            StatusName::Errored => "ERRORED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// No transition leaves a terminal status.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StatusName::Migrated | StatusName::AlreadyMigrated | StatusName::Skipped
        )
    }

    /// Progress order of the happy path; ERRORED ranks with INDEXED (it is retried from the start).
    fn rank(self) -> u8 {
        match self {
            StatusName::Indexed | StatusName::Errored => 0,
            StatusName::Copying => 1,
            StatusName::Copied => 2,
            StatusName::Migrated | StatusName::AlreadyMigrated | StatusName::Skipped => 3,
        }
    }
}

impl fmt::Display for StatusName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an item may move from `from` to `to`.
///
/// - terminal statuses (MIGRATED, ALREADY_MIGRATED, SKIPPED) never change;
/// - any other status may become ERRORED, and ERRORED may go anywhere (a retry, or a later
///   check finding the work already done);
/// - COPYING and COPIED may "move" to themselves: that renews or takes over the lease;
/// - otherwise only forward along INDEXED -> COPYING -> COPIED -> terminal, skipping steps
///   allowed (a copy already made for another entity lets an item jump to COPIED).
pub fn transition_allowed(from: StatusName, to: StatusName) -> bool {
    use StatusName::*;
    match (from, to) {
        (from, _) if from.is_terminal() => false,
        (_, Errored) | (Errored, _) => true,
        (Copying, Copying) | (Copied, Copied) => true,
        (from, to) => to.rank() > from.rank(),
    }
}

/// Why an item is not migrated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SkipReason {
    /// The file handle is not in S3 (Google Cloud, proxy, ...).
    NotS3,
    /// An external URL: there are no bytes to copy.
    ExternalLink,
    /// Zero bytes: nothing to copy part by part.
    EmptyFile,
    /// The source storage location is not among those selected.
    FilteredOut,
    /// The file name breaks Synapse's rule and sanitising is turned off.
    InvalidFileName,
}

impl SkipReason {
    const ALL: [SkipReason; 5] = [
        SkipReason::NotS3,
        SkipReason::ExternalLink,
        SkipReason::EmptyFile,
        SkipReason::FilteredOut,
        SkipReason::InvalidFileName,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NotS3 => "NOT_S3",
            SkipReason::ExternalLink => "EXTERNAL_LINK",
            SkipReason::EmptyFile => "EMPTY_FILE",
            SkipReason::FilteredOut => "FILTERED_OUT",
            SkipReason::InvalidFileName => "INVALID_FILE_NAME",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// What went wrong with an item: the error type name, its message, and whether to retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemError {
    pub class: String,
    pub message: String,
    pub retryable: bool,
}

/// Longest error message kept on an item; the rest of a long service answer adds nothing.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 1_000;

impl From<&Error> for ItemError {
    fn from(error: &Error) -> Self {
        Self {
            class: error.error_type().to_owned(),
            message: error
                .to_string()
                .chars()
                .take(MAX_ERROR_MESSAGE_CHARS)
                .collect(),
            retryable: error.is_retryable(),
        }
    }
}

/// Item status with its details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ItemStatus {
    Indexed,
    Copying,
    Copied,
    Migrated,
    AlreadyMigrated,
    Skipped { reason: SkipReason },
    Errored(ItemError),
}

impl ItemStatus {
    pub fn name(&self) -> StatusName {
        match self {
            ItemStatus::Indexed => StatusName::Indexed,
            ItemStatus::Copying => StatusName::Copying,
            ItemStatus::Copied => StatusName::Copied,
            ItemStatus::Migrated => StatusName::Migrated,
            ItemStatus::AlreadyMigrated => StatusName::AlreadyMigrated,
            ItemStatus::Skipped { .. } => StatusName::Skipped,
            ItemStatus::Errored(_) => StatusName::Errored,
        }
    }

    /// Whether re-indexing may overwrite an item in this status (rule 1 of the design: never
    /// overwrite a later state). Overwritable: INDEXED (refreshed), a retryable ERRORED below
    /// the attempt limit (rule 4), and SKIPPED as filtered out (the selection may have changed).
    pub fn reindexable(&self, attempts: u32, max_attempts: u32) -> bool {
        match self {
            ItemStatus::Indexed => true,
            ItemStatus::Errored(error) => error.retryable && attempts < max_attempts,
            ItemStatus::Skipped { reason } => *reason == SkipReason::FilteredOut,
            _ => false,
        }
    }
}

impl ItemError {
    /// The error of an entity update that failed after the item's copy was recorded. The copy is
    /// kept, so the next run retries the update (under `maxAttempts`) unless the entity itself
    /// rules it out (see [`ItemRecord::due_for_retry`]): a refusal that is not the entity's fault
    /// must not leave the copy orphaned for ever.
    pub fn of_update(error: &Error) -> Self {
        let mut item_error = Self::from(error);
        item_error.retryable |= update_retry_allowed(&item_error.class);
        item_error
    }
}

/// Entity update failures that a later run cannot fix: the entity or version is gone
/// (`Fatal.NotFound`), or it points at another file now (`Fatal.Conflict`; a new file is indexed
/// as its own item). Every other refusal (400, 403, ...) may pass once its cause is fixed.
fn update_retry_allowed(class: &str) -> bool {
    class != types::NOT_FOUND && class != types::CONFLICT
}

/// A time-limited claim on a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    pub owner: String,
    pub expires_at: EpochSeconds,
}

impl Lease {
    /// Whether `owner` must wait for this lease at `now`.
    pub fn blocks(&self, owner: &str, now: EpochSeconds) -> bool {
        self.owner != owner && self.expires_at > now
    }
}

/// One file version to migrate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemRecord {
    pub key: ItemKey,
    pub source_file_handle_id: String,
    pub size: u64,
    pub content_md5: Option<String>,
    pub source_storage_location_id: Option<i64>,
    pub file_name: String,
    /// The name the copy gets when `file_name` breaks Synapse's name rule (listed in the report).
    pub destination_file_name: Option<String>,
    #[serde(flatten)]
    pub status: ItemStatus,
    pub destination_file_handle_id: Option<String>,
    /// Copy attempts so far; kept across re-indexing so the retry limit holds.
    pub attempts: u32,
    pub lease: Option<Lease>,
    pub updated_at: EpochSeconds,
    /// The run that last indexed or changed the item.
    pub run_id: String,
}

impl ItemRecord {
    /// Whether a new run takes this ERRORED item on again (rule 4): a retryable error under the
    /// attempt limit, or an entity update refused after the copy was recorded for a reason that
    /// is not the entity's fault. The second test also recovers items recorded before such
    /// errors were marked retryable, whose copies would otherwise stay orphaned.
    pub fn due_for_retry(&self, max_attempts: u32) -> bool {
        let ItemStatus::Errored(error) = &self.status else {
            return false;
        };
        let copy_awaits_update =
            self.destination_file_handle_id.is_some() && update_retry_allowed(&error.class);
        self.attempts < max_attempts && (error.retryable || copy_awaits_update)
    }
}

/// Result of [`StateStore::put_item`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    /// An earlier state (see [`ItemStatus::reindexable`]) was replaced.
    Replaced {
        previous: StatusName,
    },
    /// The item is in a later state and was left alone.
    Kept {
        current: StatusName,
    },
}

/// A conditional status change of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The status the item must be in now.
    pub from: StatusName,
    pub to: ItemStatus,
    /// Who makes the change; must hold the item's lease or find it free or expired.
    pub owner: String,
    /// `Some(t)`: hold the lease until `t`; `None`: release it.
    pub lease_until: Option<EpochSeconds>,
    /// Set the destination file handle id (kept as is when `None`).
    pub destination_file_handle_id: Option<String>,
    /// Count this change as a copy attempt.
    pub count_attempt: bool,
    /// The run making the change.
    pub run_id: String,
    pub now: EpochSeconds,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Aborted,
}

impl RunStatus {
    const ALL: [RunStatus; 4] = [
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Aborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "RUNNING",
            RunStatus::Succeeded => "SUCCEEDED",
            RunStatus::Failed => "FAILED",
            RunStatus::Aborted => "ABORTED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Counters of a run; also used as the delta added to them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunCounters {
    pub by_status: BTreeMap<StatusName, i64>,
    pub bytes_copied: i64,
}

impl RunCounters {
    /// A delta of one status count.
    pub fn one(status: StatusName) -> Self {
        Self {
            by_status: BTreeMap::from([(status, 1)]),
            bytes_copied: 0,
        }
    }

    pub(crate) fn add(&mut self, delta: &RunCounters) {
        for (status, n) in &delta.by_status {
            *self.by_status.entry(*status).or_default() += n;
        }
        self.bytes_copied += delta.bytes_copied;
    }
}

/// One execution of the pipeline for a migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub run_id: String,
    /// The run's options as given, for the report.
    pub settings: serde_json::Value,
    pub status: RunStatus,
    pub counters: RunCounters,
    pub started_at: EpochSeconds,
    pub ended_at: Option<EpochSeconds>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CopyStatus {
    Copying,
    Copied,
}

impl CopyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CopyStatus::Copying => "COPYING",
            CopyStatus::Copied => "COPIED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [CopyStatus::Copying, CopyStatus::Copied]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// The one copy of a source file handle, shared by every item that uses the handle (rule 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyRecord {
    pub source_file_handle_id: String,
    pub status: CopyStatus,
    /// What the copy engine needs to resume or abort (upload id, engine, ...).
    pub engine_state: Option<serde_json::Value>,
    pub destination_file_handle_id: Option<String>,
    /// Why no entity points at the finished copy yet: set when every entity update that was to
    /// use it failed, cleared when one succeeds. Such copies are the report's orphaned copies.
    #[serde(default)]
    pub unused_reason: Option<String>,
    pub lease: Option<Lease>,
    pub updated_at: EpochSeconds,
}

impl CopyRecord {
    /// A finished copy that no entity points at (see `unused_reason`).
    pub fn is_orphaned(&self) -> bool {
        self.status == CopyStatus::Copied
            && self.destination_file_handle_id.is_some()
            && self.unused_reason.is_some()
    }
}

/// Every orphaned copy of a migration, page by page (there are few: each is a failed update).
pub async fn orphaned_copies(
    store: &dyn StateStore,
    migration: &MigrationKey,
) -> Result<Vec<CopyRecord>, StateError> {
    const PAGE: u32 = 500;
    let mut orphans = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = store.list_copies(migration, PAGE, token.as_deref()).await?;
        orphans.extend(page.items.into_iter().filter(CopyRecord::is_orphaned));
        match page.next_token {
            Some(next) => token = Some(next),
            None => return Ok(orphans),
        }
    }
}

/// One page of a listing; `next_token` is opaque and `None` after the last page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_token: Option<String>,
}

/// The operations the pipeline's stages need. Every write is conditional, so concurrent and
/// repeated invocations are safe.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Takes the migration lock if it is absent, expired, or already ours (then it is extended).
    async fn acquire_lock(
        &self,
        migration: &MigrationKey,
        owner: &str,
        expires_at: EpochSeconds,
        now: EpochSeconds,
    ) -> Result<Lease, StateError>;

    /// Extends our lock; fails with `LeaseHeld` if another owner took it, `NotFound` if gone.
    async fn renew_lock(
        &self,
        migration: &MigrationKey,
        owner: &str,
        expires_at: EpochSeconds,
    ) -> Result<Lease, StateError>;

    /// Releases our lock. Releasing an absent lock succeeds; another owner's fails with `LeaseHeld`.
    async fn release_lock(&self, migration: &MigrationKey, owner: &str) -> Result<(), StateError>;

    async fn get_lock(&self, migration: &MigrationKey) -> Result<Option<Lease>, StateError>;

    /// Opens a run. Idempotent: if the run exists it is returned unchanged.
    async fn create_run(
        &self,
        migration: &MigrationKey,
        run_id: &str,
        settings: &serde_json::Value,
        now: EpochSeconds,
    ) -> Result<RunRecord, StateError>;

    async fn get_run(
        &self,
        migration: &MigrationKey,
        run_id: &str,
    ) -> Result<Option<RunRecord>, StateError>;

    /// Atomically adds `delta` to the run's counters (`NotFound` if the run does not exist).
    async fn add_to_counters(
        &self,
        migration: &MigrationKey,
        run_id: &str,
        delta: &RunCounters,
    ) -> Result<(), StateError>;

    /// Records the run's final status and end time.
    async fn finish_run(
        &self,
        migration: &MigrationKey,
        run_id: &str,
        status: RunStatus,
        now: EpochSeconds,
    ) -> Result<RunRecord, StateError>;

    /// Stores the index frontier (at most [`MAX_DOCUMENT_BYTES`] of JSON) until `expires_at`.
    async fn save_frontier(
        &self,
        migration: &MigrationKey,
        run_id: &str,
        frontier: &serde_json::Value,
        expires_at: EpochSeconds,
    ) -> Result<(), StateError>;

    async fn load_frontier(
        &self,
        migration: &MigrationKey,
        run_id: &str,
    ) -> Result<Option<serde_json::Value>, StateError>;

    /// Writes an item if it is absent or re-indexable (rule 1), keeping its attempt count and
    /// dropping any lease. The new status may not be COPYING or COPIED.
    async fn put_item(
        &self,
        migration: &MigrationKey,
        item: &ItemRecord,
        max_attempts: u32,
    ) -> Result<PutOutcome, StateError>;

    async fn get_item(
        &self,
        migration: &MigrationKey,
        key: &ItemKey,
    ) -> Result<Option<ItemRecord>, StateError>;

    /// Items of one status (or all), in key order, at most `limit` per page.
    async fn list_items(
        &self,
        migration: &MigrationKey,
        status: Option<StatusName>,
        limit: u32,
        page_token: Option<&str>,
    ) -> Result<Page<ItemRecord>, StateError>;

    /// Changes an item's status if it is in `transition.from` and its lease is free, expired or
    /// the caller's. Returns the item as written.
    async fn transition_item(
        &self,
        migration: &MigrationKey,
        key: &ItemKey,
        transition: &Transition,
    ) -> Result<ItemRecord, StateError>;

    /// Claims the copy of a source handle: creates it (COPYING, leased to `owner`), or takes the
    /// lease of an unfinished copy when free, expired or ours. A finished copy is returned as it
    /// is, without a lease: its destination handle is all the caller needs.
    async fn claim_copy(
        &self,
        migration: &MigrationKey,
        source_file_handle_id: &str,
        owner: &str,
        lease_until: EpochSeconds,
        now: EpochSeconds,
    ) -> Result<CopyRecord, StateError>;

    /// Saves the engine state of an unfinished copy whose lease the caller holds.
    async fn save_copy_state(
        &self,
        migration: &MigrationKey,
        source_file_handle_id: &str,
        owner: &str,
        engine_state: &serde_json::Value,
        now: EpochSeconds,
    ) -> Result<CopyRecord, StateError>;

    /// Records the finished copy and releases the lease. Repeating it with the same destination
    /// handle succeeds; a different one is a `ConditionFailed`.
    async fn complete_copy(
        &self,
        migration: &MigrationKey,
        source_file_handle_id: &str,
        owner: &str,
        destination_file_handle_id: &str,
        now: EpochSeconds,
    ) -> Result<CopyRecord, StateError>;

    async fn get_copy(
        &self,
        migration: &MigrationKey,
        source_file_handle_id: &str,
    ) -> Result<Option<CopyRecord>, StateError>;

    /// Sets (`Some`) or clears (`None`) why no entity uses a finished copy yet. Not found if the
    /// copy is not finished.
    async fn set_copy_unused(
        &self,
        migration: &MigrationKey,
        source_file_handle_id: &str,
        reason: Option<&str>,
        now: EpochSeconds,
    ) -> Result<CopyRecord, StateError>;

    /// Copy records in key order, at most `limit` per page.
    async fn list_copies(
        &self,
        migration: &MigrationKey,
        limit: u32,
        page_token: Option<&str>,
    ) -> Result<Page<CopyRecord>, StateError>;
}

/// Rejects JSON documents that would not fit in one record.
pub(crate) fn check_document(
    what: &str,
    document: &serde_json::Value,
) -> Result<String, StateError> {
    let text = document.to_string();
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(StateError::Invalid(format!(
            "{what} is {} bytes of JSON, more than the {MAX_DOCUMENT_BYTES} a record holds",
            text.len()
        )));
    }
    Ok(text)
}

/// Whether `owner` may take the lock as it stands.
pub(crate) fn check_lock_acquire(
    current: Option<&Lease>,
    owner: &str,
    now: EpochSeconds,
) -> Result<(), StateError> {
    match current {
        Some(lease) if lease.blocks(owner, now) => Err(lease_held(LOCK_SK, lease)),
        _ => Ok(()),
    }
}

/// Whether `owner` may renew the lock as it stands (only its own, expired or not).
pub(crate) fn check_lock_owned(current: Option<&Lease>, owner: &str) -> Result<(), StateError> {
    match current {
        None => Err(StateError::NotFound(LOCK_SK.to_owned())),
        Some(lease) if lease.owner != owner => Err(lease_held(LOCK_SK, lease)),
        Some(_) => Ok(()),
    }
}

fn lease_held(record: &str, lease: &Lease) -> StateError {
    StateError::LeaseHeld {
        record: record.to_owned(),
        owner: lease.owner.clone(),
        expires_at: lease.expires_at,
    }
}

/// Rejects statuses `put_item` may not write: in-flight ones need a lease, which only a
/// transition takes.
pub(crate) fn check_put(item: &ItemRecord) -> Result<(), StateError> {
    match item.status.name() {
        StatusName::Copying | StatusName::Copied => Err(StateError::Invalid(format!(
            "{} cannot be written as {}; use a transition",
            item.key,
            item.status.name()
        ))),
        _ => Ok(()),
    }
}

/// Whether the transition is allowed at all, before looking at the stored item.
pub(crate) fn check_transition_request(t: &Transition) -> Result<(), StateError> {
    if transition_allowed(t.from, t.to.name()) {
        Ok(())
    } else {
        Err(StateError::InvalidTransition {
            from: t.from,
            to: t.to.name(),
        })
    }
}

/// Whether the transition applies to the item as stored.
pub(crate) fn check_transition(
    current: Option<&ItemRecord>,
    key: &ItemKey,
    t: &Transition,
) -> Result<(), StateError> {
    let item = current.ok_or_else(|| StateError::NotFound(key.sk()))?;
    if item.status.name() != t.from {
        return Err(StateError::ConditionFailed {
            record: key.sk(),
            detail: format!("expected {}, found {}", t.from, item.status.name()),
        });
    }
    match &item.lease {
        Some(lease) if lease.blocks(&t.owner, t.now) => Err(lease_held(&key.sk(), lease)),
        _ => Ok(()),
    }
}

/// The item after a transition that passed [`check_transition`].
pub(crate) fn apply_transition(item: &mut ItemRecord, t: &Transition) {
    item.status = t.to.clone();
    item.lease = t.lease_until.map(|expires_at| Lease {
        owner: t.owner.clone(),
        expires_at,
    });
    if let Some(destination) = &t.destination_file_handle_id {
        item.destination_file_handle_id = Some(destination.clone());
    }
    if t.count_attempt {
        item.attempts += 1;
    }
    item.run_id = t.run_id.clone();
    item.updated_at = t.now;
}

/// Whether `owner` may claim the copy as it stands. `Ok(false)`: the copy is finished.
pub(crate) fn check_copy_claim(
    current: Option<&CopyRecord>,
    source_file_handle_id: &str,
    owner: &str,
    now: EpochSeconds,
) -> Result<bool, StateError> {
    match current {
        None => Ok(true),
        Some(copy) if copy.status == CopyStatus::Copied => Ok(false),
        Some(copy) => match &copy.lease {
            Some(lease) if lease.blocks(owner, now) => {
                Err(lease_held(&copy_sk(source_file_handle_id), lease))
            }
            _ => Ok(true),
        },
    }
}

/// Whether `owner` may save engine state: the copy is unfinished and leased to it.
pub(crate) fn check_copy_state_save(
    current: Option<&CopyRecord>,
    source_file_handle_id: &str,
    owner: &str,
) -> Result<(), StateError> {
    let sk = copy_sk(source_file_handle_id);
    let copy = current.ok_or_else(|| StateError::NotFound(sk.clone()))?;
    if copy.status == CopyStatus::Copied {
        return Err(StateError::ConditionFailed {
            record: sk,
            detail: "the copy is already finished".to_owned(),
        });
    }
    match &copy.lease {
        Some(lease) if lease.owner == owner => Ok(()),
        Some(lease) => Err(lease_held(&sk, lease)),
        None => Err(StateError::ConditionFailed {
            record: sk,
            detail: format!("{owner} does not hold the lease"),
        }),
    }
}

/// Whether the copy may get or lose an unused reason: it exists and is finished.
pub(crate) fn check_copy_finished(
    current: Option<&CopyRecord>,
    source_file_handle_id: &str,
) -> Result<(), StateError> {
    let sk = copy_sk(source_file_handle_id);
    match current {
        None => Err(StateError::NotFound(sk)),
        Some(copy) if copy.status == CopyStatus::Copied => Ok(()),
        Some(_) => Err(StateError::ConditionFailed {
            record: sk,
            detail: "the copy is not finished".to_owned(),
        }),
    }
}

/// Whether the copy may be recorded as finished. `Ok(false)`: it already is, with this handle.
pub(crate) fn check_copy_complete(
    current: Option<&CopyRecord>,
    source_file_handle_id: &str,
    owner: &str,
    destination_file_handle_id: &str,
    now: EpochSeconds,
) -> Result<bool, StateError> {
    let sk = copy_sk(source_file_handle_id);
    let copy = current.ok_or_else(|| StateError::NotFound(sk.clone()))?;
    match copy.status {
        CopyStatus::Copied
            if copy.destination_file_handle_id.as_deref() == Some(destination_file_handle_id) =>
        {
            Ok(false)
        }
        CopyStatus::Copied => Err(StateError::ConditionFailed {
            record: sk,
            detail: format!(
                "already copied to file handle {}",
                copy.destination_file_handle_id.as_deref().unwrap_or("?")
            ),
        }),
        CopyStatus::Copying => match &copy.lease {
            Some(lease) if lease.blocks(owner, now) => Err(lease_held(&sk, lease)),
            _ => Ok(true),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_table() {
        use StatusName::*;
        let allowed = |from, to| transition_allowed(from, to);
        // Happy path, including skipped steps.
        for (from, to) in [
            (Indexed, Copying),
            (Indexed, Copied),
            (Indexed, Migrated),
            (Indexed, AlreadyMigrated),
            (Indexed, Skipped),
            (Copying, Copying),
            (Copying, Copied),
            (Copying, Migrated),
            (Copied, Copied),
            (Copied, Migrated),
            (Copied, AlreadyMigrated),
        ] {
            assert!(allowed(from, to), "{from} -> {to} should be allowed");
        }
        // Errors from anywhere unfinished, retries from ERRORED.
        for from in [Indexed, Copying, Copied, Errored] {
            assert!(allowed(from, Errored), "{from} -> ERRORED");
        }
        for to in StatusName::ALL {
            assert!(allowed(Errored, to), "ERRORED -> {to}");
        }
        // Never backwards, never out of a terminal status.
        for (from, to) in [
            (Indexed, Indexed),
            (Copying, Indexed),
            (Copied, Indexed),
            (Copied, Copying),
        ] {
            assert!(!allowed(from, to), "{from} -> {to} must be refused");
        }
        for from in [Migrated, AlreadyMigrated, Skipped] {
            for to in StatusName::ALL {
                assert!(!allowed(from, to), "{from} is terminal but went to {to}");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for status in StatusName::ALL {
            assert_eq!(StatusName::parse(status.as_str()), Some(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
        }
        for reason in SkipReason::ALL {
            assert_eq!(SkipReason::parse(reason.as_str()), Some(reason));
        }
        for status in RunStatus::ALL {
            assert_eq!(RunStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(StatusName::parse("DONE"), None);
    }

    #[test]
    fn keys() {
        let migration = MigrationKey::new("syn123", 4567).unwrap();
        assert_eq!(migration.pk(), "MIG#syn123#4567");
        assert_eq!(
            status_pk(&migration, StatusName::AlreadyMigrated),
            "MIG#syn123#4567#ALREADY_MIGRATED"
        );
        let key: ItemKey = "syn9.12".parse().unwrap();
        assert_eq!(key, ItemKey::new("syn9", 12).unwrap());
        assert_eq!(key.sk(), "ITEM#syn9#12");
        assert_eq!(key.to_string(), "syn9.12");
        assert_eq!(
            serde_json::to_value(&key).unwrap(),
            serde_json::json!("syn9.12")
        );
        for bad in ["syn9", "syn9.x", ".3", "sy#n.3"] {
            assert!(bad.parse::<ItemKey>().is_err(), "{bad}");
        }
        assert!(MigrationKey::new("", 1).is_err());
        assert!(MigrationKey::new("a#b", 1).is_err());
    }

    #[test]
    fn reindexing_overwrites_only_earlier_states() {
        let retryable = ItemStatus::Errored(ItemError {
            class: types::TRANSIENT.into(),
            message: "timeout".into(),
            retryable: true,
        });
        assert!(ItemStatus::Indexed.reindexable(0, 3));
        assert!(retryable.reindexable(2, 3));
        assert!(!retryable.reindexable(3, 3));
        let fatal = ItemStatus::Errored(ItemError {
            class: types::FORBIDDEN.into(),
            message: "no".into(),
            retryable: false,
        });
        assert!(!fatal.reindexable(0, 3));
        assert!(ItemStatus::Skipped {
            reason: SkipReason::FilteredOut
        }
        .reindexable(0, 3));
        for later in [
            ItemStatus::Copying,
            ItemStatus::Copied,
            ItemStatus::Migrated,
            ItemStatus::AlreadyMigrated,
            ItemStatus::Skipped {
                reason: SkipReason::NotS3,
            },
        ] {
            assert!(!later.reindexable(0, 3), "{later:?}");
        }
    }

    #[test]
    fn refused_updates_after_a_copy_are_retried_unless_the_entity_rules_it_out() {
        // At write time: a 400 or 403 of the update is retryable, a 404 or 412 is final.
        for (error, retryable) in [
            (Error::InvalidInput("label used".into()), true),
            (Error::Forbidden("read-only".into()), true),
            (Error::NotFound("deleted".into()), false),
            (Error::Conflict("changed".into()), false),
            (Error::Transient("timeout".into()), true),
        ] {
            assert_eq!(ItemError::of_update(&error).retryable, retryable, "{error}");
        }
        // At read time: an item recorded before that rule (not retryable, a copy recorded) is
        // retried all the same, under the attempt limit; without a copy it is not.
        let old_record = |class: &str, destination: Option<&str>, attempts| ItemRecord {
            key: ItemKey::new("syn1", 1).unwrap(),
            source_file_handle_id: "7".into(),
            size: 1,
            content_md5: None,
            source_storage_location_id: None,
            file_name: "f".into(),
            destination_file_name: None,
            status: ItemStatus::Errored(ItemError {
                class: class.into(),
                message: "refused".into(),
                retryable: false,
            }),
            destination_file_handle_id: destination.map(str::to_owned),
            attempts,
            lease: None,
            updated_at: 0,
            run_id: "r".into(),
        };
        assert!(old_record(types::INVALID_INPUT, Some("9"), 1).due_for_retry(3));
        assert!(!old_record(types::INVALID_INPUT, Some("9"), 3).due_for_retry(3));
        assert!(!old_record(types::INVALID_INPUT, None, 1).due_for_retry(3));
        assert!(!old_record(types::CONFLICT, Some("9"), 1).due_for_retry(3));
        assert!(!old_record(types::NOT_FOUND, Some("9"), 1).due_for_retry(3));
    }

    #[test]
    fn item_errors_carry_the_error_type() {
        let error = Error::Throttled("slow down".into());
        let item_error = ItemError::from(&error);
        assert_eq!(item_error.class, types::THROTTLED);
        assert!(item_error.retryable);
        assert!(item_error.message.contains("slow down"));
        let long = ItemError::from(&Error::Internal("é".repeat(5_000)));
        assert_eq!(long.message.chars().count(), MAX_ERROR_MESSAGE_CHARS);
    }

    #[test]
    fn item_record_json_is_flat() {
        let record = ItemRecord {
            key: ItemKey::new("syn1", 2).unwrap(),
            source_file_handle_id: "77".into(),
            size: 5,
            content_md5: None,
            source_storage_location_id: Some(1),
            file_name: "a.txt".into(),
            destination_file_name: None,
            status: ItemStatus::Skipped {
                reason: SkipReason::EmptyFile,
            },
            destination_file_handle_id: None,
            attempts: 0,
            lease: None,
            updated_at: 9,
            run_id: "r1".into(),
        };
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["status"], "SKIPPED");
        assert_eq!(json["reason"], "EMPTY_FILE");
        assert_eq!(json["key"], "syn1.2");
        let back: ItemRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, record);
    }
}

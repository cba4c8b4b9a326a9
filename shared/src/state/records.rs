//! Records and statuses: items, runs, copies and leases as the stores read and write them.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use synapse_model::Entity;

use super::{EpochSeconds, ItemKey};
use crate::error_types as types;

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
    /// Its folder uploads to a storage location the user cannot copy into (one they did not
    /// create, such as Synapse's own storage); the report's folder list says which and why.
    DestinationNotWritable,
}

impl SkipReason {
    pub(crate) const ALL: [SkipReason; 6] = [
        SkipReason::NotS3,
        SkipReason::ExternalLink,
        SkipReason::EmptyFile,
        SkipReason::FilteredOut,
        SkipReason::InvalidFileName,
        SkipReason::DestinationNotWritable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NotS3 => "NOT_S3",
            SkipReason::ExternalLink => "EXTERNAL_LINK",
            SkipReason::EmptyFile => "EMPTY_FILE",
            SkipReason::FilteredOut => "FILTERED_OUT",
            SkipReason::InvalidFileName => "INVALID_FILE_NAME",
            SkipReason::DestinationNotWritable => "DESTINATION_NOT_WRITABLE",
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

/// Entity update failures that a later run cannot fix: the entity or version is gone
/// (`Fatal.NotFound`), or it points at another file now (`Fatal.Conflict`; a new file is indexed
/// as its own item). Every other refusal (400, 403, ...) may pass once its cause is fixed.
pub(crate) fn update_retry_allowed(class: &str) -> bool {
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// `new` only: the entity as indexed, with its etag, which Complete PUTs back pointing at the
    /// copy without reading it first. A stale etag gets a 412, and only then is the entity read.
    /// `None` in records written before it was kept: Complete reads the entity then.
    #[serde(default)]
    pub entity: Option<Entity>,
    #[serde(flatten)]
    pub status: ItemStatus,
    pub destination_file_handle_id: Option<String>,
    /// Copy attempts so far; kept across re-indexing so the retry limit holds.
    pub attempts: u32,
    pub lease: Option<Lease>,
    pub updated_at: EpochSeconds,
    /// The run that last indexed or changed the item.
    pub run_id: String,
    /// How the copy this item points at was proven equal to its source (the run's `verify`
    /// level, as the report's `verified_by` shows it); set with the destination handle.
    #[serde(default)]
    pub verified_by: Option<String>,
    /// What became of the source file handle under `deleteSourceFileHandles`: `deleted`, or
    /// `kept: <why>`; `None` when the option was off or the handle's fate is not decided yet.
    #[serde(default)]
    pub source_handle: Option<String>,
    /// Where this file goes in an aligned migration (its folder's upload location); `None`
    /// where the migration has one destination for every file.
    #[serde(default)]
    pub destination_storage_location_id: Option<i64>,
    /// A table cell's column name (the report's `col_name`).
    #[serde(default)]
    pub column_name: Option<String>,
}

impl ItemRecord {
    /// The copy this item uses ([`super::copy_id`]).
    pub fn copy_id(&self) -> String {
        super::copy_id(
            &self.source_file_handle_id,
            self.destination_storage_location_id,
        )
    }

    /// The item's place in the Plan's order (the status index's sort key).
    pub fn plan_order(&self) -> String {
        super::plan_order_key(
            self.size,
            &self.source_file_handle_id,
            self.destination_storage_location_id,
            &self.key,
        )
    }

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

/// Result of [`StateStore::put_item`](super::StateStore::put_item).
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
    /// Set how the copy was proven (kept as is when `None`).
    pub verified_by: Option<String>,
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
    pub(crate) const ALL: [RunStatus; 4] = [
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

/// A run's Synapse request budget, shared by every function instance of the run (the budget
/// module holds its arithmetic): the next request slot nobody holds yet, and the last throttling
/// episode.
/// Times are epoch milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetRecord {
    /// Bumped by every write; writers compare it to set the record (optimistic locking).
    pub version: u64,
    /// Start of the first request slot no instance has leased yet.
    pub next_slot_ms: i64,
    /// No slot starts before this: a 429 pauses the whole fleet.
    pub paused_until_ms: i64,
    /// When the rate was last cut after a 429 (0: never), and the requests per minute it was cut
    /// to; the rate climbs back to the budget from there.
    pub cut_at_ms: i64,
    pub cut_rate: u32,
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
    /// The copy's id ([`super::copy_id`]): the source handle's id, followed by `@<location>`
    /// in an aligned migration; [`CopyRecord::source_handle_id`] is the handle's alone.
    pub source_file_handle_id: String,
    pub status: CopyStatus,
    /// What the copy engine needs to resume or abort (upload id, engine, ...).
    pub engine_state: Option<serde_json::Value>,
    pub destination_file_handle_id: Option<String>,
    /// Why no entity points at the finished copy yet: set when every entity update that was to
    /// use it failed, cleared when one succeeds. Such copies are the report's orphaned copies.
    #[serde(default)]
    pub unused_reason: Option<String>,
    /// How many times an engine was about to ask Synapse for this copy's handle (the direct
    /// engine's registration). More than the one recorded means handles that may be orphaned.
    #[serde(default)]
    pub handle_requests: u32,
    /// The finished copy's objects and proof, as the copy engines' verification writes it, so
    /// that it can be proven again later (`synmigrate verify`).
    #[serde(default)]
    pub verification: Option<serde_json::Value>,
    pub lease: Option<Lease>,
    pub updated_at: EpochSeconds,
}

/// What one run's walk found in one folder of an aligned migration: where its files go, and
/// what became of them. The report lists these as the plan per folder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FolderRecord {
    pub folder_id: String,
    /// The folder's upload location (`GET /entity/{id}/uploadDestination`).
    pub destination_storage_location_id: i64,
    /// Why files cannot be copied there (`None`: they can).
    #[serde(default)]
    pub not_writable: Option<String>,
    /// Files (versions) the walk indexed to copy, found already there, skipped or errored, and
    /// left alone as unchanged since they were settled.
    pub to_copy: u64,
    pub bytes_to_copy: u64,
    pub already_there: u64,
    pub skipped: u64,
    pub errored: u64,
    pub unchanged: u64,
}

impl FolderRecord {
    /// Counts one of the folder's items as written (`kept`: found in a later state).
    pub fn count(&mut self, item: &ItemRecord, kept: bool) {
        match item.status.name() {
            _ if kept => self.unchanged += 1,
            StatusName::Indexed => {
                self.to_copy += 1;
                self.bytes_to_copy += item.size;
            }
            StatusName::AlreadyMigrated => self.already_there += 1,
            StatusName::Skipped => self.skipped += 1,
            _ => self.errored += 1,
        }
    }
}

/// A file the walk need not read again while its listing is unchanged: its current version and
/// that version's `modifiedOn` when it was last settled (migrated, found in the destination or
/// skipped), under the walk options `scope`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenFile {
    pub version: i64,
    pub modified_on: String,
    pub scope: String,
}

/// The migration's index frontier as the last run that walked saved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedFrontier {
    pub run_id: String,
    pub frontier: serde_json::Value,
}

impl CopyRecord {
    /// The id of the file handle this is a copy of.
    pub fn source_handle_id(&self) -> &str {
        super::copy_source(&self.source_file_handle_id)
    }

    /// Handles Synapse may have created for this copy that no record names: requests beyond
    /// the one whose handle was recorded (a crash after registering and before recording).
    pub fn unrecorded_handles(&self) -> u32 {
        let recorded = u32::from(self.destination_file_handle_id.is_some());
        self.handle_requests.saturating_sub(recorded)
    }

    /// A finished copy that no entity points at (see `unused_reason`).
    pub fn is_orphaned(&self) -> bool {
        self.status == CopyStatus::Copied
            && self.destination_file_handle_id.is_some()
            && self.unused_reason.is_some()
    }
}

/// One page of a listing; `next_token` is opaque and `None` after the last page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_token: Option<String>,
}

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
//! | same                          | `BUDGET#{runId}`              | the run's Synapse budget, `expiresAt`   |
//!
//! Item attributes: `entityId`, `version`, `sourceFileHandleId`, `size`, `contentMd5`,
//! `sourceStorageLocationId`, `fileName`, `destinationFileName` (when sanitised), `status`,
//! `skipReason` or `errorClass`/`errorMessage`/`retryable`, `destinationFileHandleId`,
//! `attempts`, `leaseOwner`/`leaseExpiresAt`, `updatedAt`, `runId`, `SPK`, `SSK`.
//! Copy (`FH#`) attributes: `status` (COPYING, COPIED), `engineState` (JSON: upload id, engine),
//! `destinationFileHandleId`, `unusedReason` (why no entity points at the finished copy yet),
//! `leaseOwner`/`leaseExpiresAt`, `updatedAt`.
//! Budget attributes: `version`, `nextSlotMs`, `pausedUntilMs`, `cutAtMs`, `cutRate` (see
//! [`BudgetRecord`]).
//!
//! Item statuses move along INDEXED -> COPYING -> COPIED -> MIGRATED, or end in
//! ALREADY_MIGRATED or SKIPPED; ERRORED is reachable from every unfinished status and leads back
//! to any of them (see [`transition_allowed`]). Re-indexing never overwrites a later status
//! ([`ItemStatus::reindexable`]).
//!
//! Changes from the suggested design, and why:
//! - Items carry `SPK = MIG#..#..#{STATUS}` and `SSK` ([`plan_order_key`]: size descending,
//!   source handle, item key), the keys of a global secondary index `ByStatusPlanOrder`
//!   (`SPK`, `SSK`). Plan lists the items to copy *by status*; with a filter on the base table
//!   each page would read every item of the project (millions) to return a few. In this order
//!   the items sharing a source come together and the big sources first, so Plan groups and
//!   orders units as it pages, holding one unit in memory, never the project. The index is
//!   eventually consistent, which suits Plan: it runs after Index finished, and every write
//!   that follows a listing is conditional anyway.
//!   One index partition per status takes all of a migration's writes of that status; those are
//!   paced by the Synapse rate limit (tens per second), far below a partition's 1,000 writes/s.
//! - Item and copy leases use `leaseOwner`/`leaseExpiresAt`, *not* `expiresAt`: the table's TTL
//!   attribute would otherwise delete the item itself once its lease ran out. Only the lock, the
//!   frontier and the budget, which are disposable, carry `expiresAt`.
//! - Counters are top-level number attributes (`count_MIGRATED`, ..., `bytesCopied`) so that
//!   `ADD` works on them without the map having to exist first.
//!
//! Times are epoch seconds passed in by the caller (`now`), which keeps the rules testable
//! without sleeping. A lease is free when absent, held by the caller, or `expiresAt <= now`.
//!
//! The rules each write enforces live in `rules` as pure functions (`check_*`); the in-memory store
//! applies them directly, the DynamoDB store encodes them as condition expressions and uses the
//! same functions to explain a failed condition.

pub mod dynamo;
pub mod memory;

mod keys;
mod records;
mod rules;
mod store;

use keys::check_id;
pub(crate) use keys::{
    budget_sk, copy_sk, folder_prefix, folder_sk, run_sk, seen_sk, status_pk, COPY_PREFIX,
    FRONTIER_SK, ITEM_PREFIX, LOCK_SK,
};
pub use keys::{copy_id, copy_source, plan_order_key, source_order_prefix, ItemKey, MigrationKey};
pub(crate) use records::update_retry_allowed;
pub use records::{
    transition_allowed, BudgetRecord, CopyRecord, CopyStatus, FolderRecord, ItemError, ItemRecord,
    ItemStatus, Lease, Page, PutOutcome, RunCounters, RunRecord, RunStatus, SavedFrontier,
    SeenFile, SkipReason, StatusName, Transition, MAX_ERROR_MESSAGE_CHARS,
};
pub(crate) use rules::{
    apply_transition, check_copy_claim, check_copy_complete, check_copy_finished,
    check_copy_state_save, check_document, check_lock_acquire, check_lock_owned, check_put,
    check_transition, check_transition_request, not_ours,
};
pub use store::{copies_where, orphaned_copies, StateStore};

use crate::error_types as types;

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
    /// The stable error type name (see `error::types`).
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

#[cfg(test)]
mod tests;

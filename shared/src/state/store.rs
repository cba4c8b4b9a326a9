//! The store interface the stages use, and listings built on it.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::*;

/// Every copy of a migration the report lists, page by page (there are few: each is a failed
/// update or a crash): finished copies no entity points at, and copies with handles Synapse may
/// have created that no record names ([`CopyRecord::unrecorded_handles`]).
pub async fn orphaned_copies(
    store: &dyn StateStore,
    migration: &MigrationKey,
) -> Result<Vec<CopyRecord>, StateError> {
    copies_where(store, migration, |copy| {
        copy.is_orphaned() || copy.unrecorded_handles() > 0
    })
    .await
}

/// The copy records of a migration that `keep` selects, page by page.
pub async fn copies_where(
    store: &dyn StateStore,
    migration: &MigrationKey,
    keep: impl Fn(&CopyRecord) -> bool,
) -> Result<Vec<CopyRecord>, StateError> {
    const PAGE: u32 = 500;
    let mut kept = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = store.list_copies(migration, PAGE, token.as_deref()).await?;
        kept.extend(page.items.into_iter().filter(|copy| keep(copy)));
        match page.next_token {
            Some(next) => token = Some(next),
            None => return Ok(kept),
        }
    }
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

    /// Stores the migration's index frontier (at most [`MAX_DOCUMENT_BYTES`] of JSON) as run
    /// `run_id`'s, until `expires_at`; it replaces any earlier run's.
    async fn save_frontier(
        &self,
        migration: &MigrationKey,
        run_id: &str,
        frontier: &serde_json::Value,
        expires_at: EpochSeconds,
    ) -> Result<(), StateError>;

    /// The migration's index frontier, with the run that saved it.
    async fn load_frontier(
        &self,
        migration: &MigrationKey,
    ) -> Result<Option<SavedFrontier>, StateError>;

    /// The settled listings of the given file entities (those that have one); no request when
    /// `entity_ids` is empty.
    async fn get_seen(
        &self,
        migration: &MigrationKey,
        entity_ids: &[String],
    ) -> Result<BTreeMap<String, SeenFile>, StateError>;

    /// Records a file's settled listing (see [`SeenFile`]), replacing any earlier one.
    async fn put_seen(
        &self,
        migration: &MigrationKey,
        entity_id: &str,
        seen: &SeenFile,
    ) -> Result<(), StateError>;

    /// Records what a run's walk found in one folder (see [`FolderRecord`]), replacing the
    /// run's earlier record of it; kept until `expires_at`.
    async fn put_folder(
        &self,
        migration: &MigrationKey,
        run_id: &str,
        folder: &FolderRecord,
        expires_at: EpochSeconds,
    ) -> Result<(), StateError>;

    /// A run's folder records in key order, at most `limit` per page.
    async fn list_folders(
        &self,
        migration: &MigrationKey,
        run_id: &str,
        limit: u32,
        page_token: Option<&str>,
    ) -> Result<Page<FolderRecord>, StateError>;

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

    /// Items of one status in plan order ([`ItemRecord::plan_order`]), or all items in key
    /// order; at most `limit` per page.
    async fn list_items(
        &self,
        migration: &MigrationKey,
        status: Option<StatusName>,
        limit: u32,
        page_token: Option<&str>,
    ) -> Result<Page<ItemRecord>, StateError>;

    /// Items of one status that use `source` (a source of `size` bytes), in plan order: one
    /// source's entries of the status index are contiguous, so only they are read.
    async fn list_items_of_source(
        &self,
        migration: &MigrationKey,
        status: StatusName,
        size: u64,
        source: &str,
        limit: u32,
        page_token: Option<&str>,
    ) -> Result<Page<ItemRecord>, StateError>;

    /// Records what became of an existing item's source file handle
    /// ([`ItemRecord::source_handle`]).
    async fn set_source_handle(
        &self,
        migration: &MigrationKey,
        key: &ItemKey,
        outcome: &str,
    ) -> Result<(), StateError>;

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

    /// Counts one more request for the copy's destination handle (see
    /// [`CopyRecord::handle_requests`]); the caller holds the unfinished copy's lease.
    async fn note_handle_request(
        &self,
        migration: &MigrationKey,
        source_file_handle_id: &str,
        owner: &str,
        now: EpochSeconds,
    ) -> Result<CopyRecord, StateError>;

    /// Gives up `owner`'s lease of an unfinished copy (a unit that failed for good), so that the
    /// next claimer need not wait for it to expire; its engine state stays for that claimer to
    /// resume. Nothing happens if the lease is not `owner`'s or the copy is finished or absent.
    async fn release_copy(
        &self,
        migration: &MigrationKey,
        source_file_handle_id: &str,
        owner: &str,
        now: EpochSeconds,
    ) -> Result<(), StateError>;

    /// Records the finished copy, with its proof (`verification`), and releases the lease.
    /// Repeating it with the same destination handle succeeds; a different one is a
    /// `ConditionFailed`.
    async fn complete_copy(
        &self,
        migration: &MigrationKey,
        source_file_handle_id: &str,
        owner: &str,
        destination_file_handle_id: &str,
        verification: Option<&serde_json::Value>,
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

    async fn get_budget(
        &self,
        migration: &MigrationKey,
        run_id: &str,
    ) -> Result<Option<BudgetRecord>, StateError>;

    /// Writes the run's budget if the stored one is still at version `expected` (`None`: no
    /// record yet); `false` when another instance wrote first. Kept until `expires_at`.
    async fn put_budget(
        &self,
        migration: &MigrationKey,
        run_id: &str,
        budget: &BudgetRecord,
        expected: Option<u64>,
        expires_at: EpochSeconds,
    ) -> Result<bool, StateError>;
}

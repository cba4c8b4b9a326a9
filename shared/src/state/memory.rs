//! In-memory state store with the DynamoDB store's semantics, for unit tests and dry runs.
//! One mutex makes every operation atomic, which is what DynamoDB's conditional writes give.

use std::collections::BTreeMap;

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::*;

/// Records keyed by (`PK`, `SK`), like the table.
#[derive(Default)]
struct Tables {
    locks: BTreeMap<String, Lease>,
    runs: BTreeMap<(String, String), RunRecord>,
    frontiers: BTreeMap<String, SavedFrontier>,
    items: BTreeMap<(String, String), ItemRecord>,
    copies: BTreeMap<(String, String), CopyRecord>,
    budgets: BTreeMap<(String, String), BudgetRecord>,
    seen: BTreeMap<(String, String), SeenFile>,
    folders: BTreeMap<(String, String), FolderRecord>,
}

/// See the module docs.
#[derive(Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl StateStore for MemoryStore {
    async fn acquire_lock(
        &self,
        migration: &MigrationKey,
        owner: &str,
        expires_at: EpochSeconds,
        now: EpochSeconds,
    ) -> Result<Lease, StateError> {
        let mut tables = self.tables.lock().await;
        check_lock_acquire(tables.locks.get(&migration.pk()), owner, now)?;
        let lease = Lease {
            owner: owner.to_owned(),
            expires_at,
        };
        tables.locks.insert(migration.pk(), lease.clone());
        Ok(lease)
    }

    async fn renew_lock(
        &self,
        migration: &MigrationKey,
        owner: &str,
        expires_at: EpochSeconds,
    ) -> Result<Lease, StateError> {
        let mut tables = self.tables.lock().await;
        check_lock_owned(tables.locks.get(&migration.pk()), owner)?;
        let lease = Lease {
            owner: owner.to_owned(),
            expires_at,
        };
        tables.locks.insert(migration.pk(), lease.clone());
        Ok(lease)
    }

    async fn release_lock(&self, migration: &MigrationKey, owner: &str) -> Result<(), StateError> {
        let mut tables = self.tables.lock().await;
        match check_lock_owned(tables.locks.get(&migration.pk()), owner) {
            Ok(()) => {
                tables.locks.remove(&migration.pk());
                Ok(())
            }
            Err(StateError::NotFound(_)) => Ok(()),
            Err(other) => Err(other),
        }
    }

    async fn get_lock(&self, migration: &MigrationKey) -> Result<Option<Lease>, StateError> {
        Ok(self.tables.lock().await.locks.get(&migration.pk()).cloned())
    }

    async fn create_run(
        &self,
        migration: &MigrationKey,
        run_id: &str,
        settings: &serde_json::Value,
        now: EpochSeconds,
    ) -> Result<RunRecord, StateError> {
        check_id("run id", run_id)?;
        check_document("run settings", settings)?;
        let mut tables = self.tables.lock().await;
        let run = tables
            .runs
            .entry((migration.pk(), run_sk(run_id)))
            .or_insert_with(|| RunRecord {
                run_id: run_id.to_owned(),
                settings: settings.clone(),
                status: RunStatus::Running,
                counters: RunCounters::default(),
                started_at: now,
                ended_at: None,
            });
        Ok(run.clone())
    }

    async fn get_run(
        &self,
        migration: &MigrationKey,
        run_id: &str,
    ) -> Result<Option<RunRecord>, StateError> {
        let tables = self.tables.lock().await;
        Ok(tables.runs.get(&(migration.pk(), run_sk(run_id))).cloned())
    }

    async fn add_to_counters(
        &self,
        migration: &MigrationKey,
        run_id: &str,
        delta: &RunCounters,
    ) -> Result<(), StateError> {
        let mut tables = self.tables.lock().await;
        let run = tables
            .runs
            .get_mut(&(migration.pk(), run_sk(run_id)))
            .ok_or_else(|| StateError::NotFound(run_sk(run_id)))?;
        run.counters.add(delta);
        Ok(())
    }

    async fn finish_run(
        &self,
        migration: &MigrationKey,
        run_id: &str,
        status: RunStatus,
        now: EpochSeconds,
    ) -> Result<RunRecord, StateError> {
        let mut tables = self.tables.lock().await;
        let run = tables
            .runs
            .get_mut(&(migration.pk(), run_sk(run_id)))
            .ok_or_else(|| StateError::NotFound(run_sk(run_id)))?;
        run.status = status;
        run.ended_at = Some(now);
        Ok(run.clone())
    }

    async fn save_frontier(
        &self,
        migration: &MigrationKey,
        run_id: &str,
        frontier: &serde_json::Value,
        _expires_at: EpochSeconds,
    ) -> Result<(), StateError> {
        check_id("run id", run_id)?;
        check_document("frontier", frontier)?;
        let mut tables = self.tables.lock().await;
        tables.frontiers.insert(
            migration.pk(),
            SavedFrontier {
                run_id: run_id.to_owned(),
                frontier: frontier.clone(),
            },
        );
        Ok(())
    }

    async fn load_frontier(
        &self,
        migration: &MigrationKey,
    ) -> Result<Option<SavedFrontier>, StateError> {
        let tables = self.tables.lock().await;
        Ok(tables.frontiers.get(&migration.pk()).cloned())
    }

    async fn put_folder(
        &self,
        migration: &MigrationKey,
        run_id: &str,
        folder: &FolderRecord,
        _expires_at: EpochSeconds,
    ) -> Result<(), StateError> {
        check_id("run id", run_id)?;
        check_id("folder id", &folder.folder_id)?;
        let mut tables = self.tables.lock().await;
        tables.folders.insert(
            (migration.pk(), folder_sk(run_id, &folder.folder_id)),
            folder.clone(),
        );
        Ok(())
    }

    async fn list_folders(
        &self,
        migration: &MigrationKey,
        run_id: &str,
        limit: u32,
        page_token: Option<&str>,
    ) -> Result<Page<FolderRecord>, StateError> {
        check_id("run id", run_id)?;
        let tables = self.tables.lock().await;
        page_of(
            &tables.folders,
            migration,
            &folder_prefix(run_id),
            limit,
            page_token,
            |_| true,
        )
    }

    async fn get_seen(
        &self,
        migration: &MigrationKey,
        entity_ids: &[String],
    ) -> Result<BTreeMap<String, SeenFile>, StateError> {
        let tables = self.tables.lock().await;
        Ok(entity_ids
            .iter()
            .filter_map(|id| {
                let seen = tables.seen.get(&(migration.pk(), seen_sk(id)))?;
                Some((id.clone(), seen.clone()))
            })
            .collect())
    }

    async fn put_seen(
        &self,
        migration: &MigrationKey,
        entity_id: &str,
        seen: &SeenFile,
    ) -> Result<(), StateError> {
        check_id("entity id", entity_id)?;
        let mut tables = self.tables.lock().await;
        tables
            .seen
            .insert((migration.pk(), seen_sk(entity_id)), seen.clone());
        Ok(())
    }

    async fn put_item(
        &self,
        migration: &MigrationKey,
        item: &ItemRecord,
        max_attempts: u32,
    ) -> Result<PutOutcome, StateError> {
        check_put(item)?;
        let mut tables = self.tables.lock().await;
        let slot = (migration.pk(), item.key.sk());
        let (outcome, attempts) = match tables.items.get(&slot) {
            None => (PutOutcome::Created, item.attempts),
            Some(old) if old.status.reindexable(old.attempts, max_attempts) => (
                PutOutcome::Replaced {
                    previous: old.status.name(),
                },
                old.attempts,
            ),
            Some(old) => {
                return Ok(PutOutcome::Kept {
                    current: old.status.name(),
                })
            }
        };
        tables.items.insert(
            slot,
            ItemRecord {
                attempts,
                lease: None,
                ..item.clone()
            },
        );
        Ok(outcome)
    }

    async fn get_item(
        &self,
        migration: &MigrationKey,
        key: &ItemKey,
    ) -> Result<Option<ItemRecord>, StateError> {
        let tables = self.tables.lock().await;
        Ok(tables.items.get(&(migration.pk(), key.sk())).cloned())
    }

    async fn list_items(
        &self,
        migration: &MigrationKey,
        status: Option<StatusName>,
        limit: u32,
        page_token: Option<&str>,
    ) -> Result<Page<ItemRecord>, StateError> {
        let tables = self.tables.lock().await;
        let Some(status) = status else {
            return page_of(
                &tables.items,
                migration,
                ITEM_PREFIX,
                limit,
                page_token,
                |_| true,
            );
        };
        // The status index's order, as DynamoDB keeps it.
        let by_plan_order: BTreeMap<(String, String), ItemRecord> = tables
            .items
            .iter()
            .filter(|((pk, _), item)| *pk == migration.pk() && item.status.name() == status)
            .map(|((pk, _), item)| ((pk.clone(), item.plan_order()), item.clone()))
            .collect();
        page_of(&by_plan_order, migration, "", limit, page_token, |_| true)
    }

    async fn list_items_of_source(
        &self,
        migration: &MigrationKey,
        status: StatusName,
        size: u64,
        source: &str,
        limit: u32,
        page_token: Option<&str>,
    ) -> Result<Page<ItemRecord>, StateError> {
        let tables = self.tables.lock().await;
        let prefix = source_order_prefix(size, source);
        let of_source: BTreeMap<(String, String), ItemRecord> = tables
            .items
            .iter()
            .filter(|((pk, _), item)| *pk == migration.pk() && item.status.name() == status)
            .map(|((pk, _), item)| ((pk.clone(), item.plan_order()), item.clone()))
            .filter(|((_, order), _)| order.starts_with(&prefix))
            .collect();
        page_of(&of_source, migration, &prefix, limit, page_token, |_| true)
    }

    async fn set_source_handle(
        &self,
        migration: &MigrationKey,
        key: &ItemKey,
        outcome: &str,
    ) -> Result<(), StateError> {
        let mut tables = self.tables.lock().await;
        let item = tables
            .items
            .get_mut(&(migration.pk(), key.sk()))
            .ok_or_else(|| StateError::NotFound(key.sk()))?;
        item.source_handle = Some(outcome.to_owned());
        Ok(())
    }

    async fn transition_item(
        &self,
        migration: &MigrationKey,
        key: &ItemKey,
        transition: &Transition,
    ) -> Result<ItemRecord, StateError> {
        check_transition_request(transition)?;
        let mut tables = self.tables.lock().await;
        let slot = (migration.pk(), key.sk());
        check_transition(tables.items.get(&slot), key, transition)?;
        let item = tables
            .items
            .get_mut(&slot)
            .expect("check_transition found the item");
        apply_transition(item, transition);
        Ok(item.clone())
    }

    async fn claim_copy(
        &self,
        migration: &MigrationKey,
        source_file_handle_id: &str,
        owner: &str,
        lease_until: EpochSeconds,
        now: EpochSeconds,
    ) -> Result<CopyRecord, StateError> {
        check_id("source file handle id", source_file_handle_id)?;
        let mut tables = self.tables.lock().await;
        let slot = (migration.pk(), copy_sk(source_file_handle_id));
        let current = tables.copies.get(&slot);
        if !check_copy_claim(current, source_file_handle_id, owner, now)? {
            return Ok(current.expect("a finished copy exists").clone());
        }
        let copy = tables.copies.entry(slot).or_insert_with(|| CopyRecord {
            source_file_handle_id: source_file_handle_id.to_owned(),
            status: CopyStatus::Copying,
            engine_state: None,
            destination_file_handle_id: None,
            unused_reason: None,
            handle_requests: 0,
            verification: None,
            lease: None,
            updated_at: now,
        });
        copy.lease = Some(Lease {
            owner: owner.to_owned(),
            expires_at: lease_until,
        });
        copy.updated_at = now;
        Ok(copy.clone())
    }

    async fn save_copy_state(
        &self,
        migration: &MigrationKey,
        source_file_handle_id: &str,
        owner: &str,
        engine_state: &serde_json::Value,
        now: EpochSeconds,
    ) -> Result<CopyRecord, StateError> {
        check_document("engine state", engine_state)?;
        let mut tables = self.tables.lock().await;
        let slot = (migration.pk(), copy_sk(source_file_handle_id));
        check_copy_state_save(tables.copies.get(&slot), source_file_handle_id, owner)?;
        let copy = tables.copies.get_mut(&slot).expect("checked above");
        copy.engine_state = Some(engine_state.clone());
        copy.updated_at = now;
        Ok(copy.clone())
    }

    async fn note_handle_request(
        &self,
        migration: &MigrationKey,
        source_file_handle_id: &str,
        owner: &str,
        now: EpochSeconds,
    ) -> Result<CopyRecord, StateError> {
        let mut tables = self.tables.lock().await;
        let slot = (migration.pk(), copy_sk(source_file_handle_id));
        check_copy_state_save(tables.copies.get(&slot), source_file_handle_id, owner)?;
        let copy = tables.copies.get_mut(&slot).expect("checked above");
        copy.handle_requests += 1;
        copy.updated_at = now;
        Ok(copy.clone())
    }

    async fn release_copy(
        &self,
        migration: &MigrationKey,
        source_file_handle_id: &str,
        owner: &str,
        now: EpochSeconds,
    ) -> Result<(), StateError> {
        let mut tables = self.tables.lock().await;
        let slot = (migration.pk(), copy_sk(source_file_handle_id));
        if not_ours(check_copy_state_save(
            tables.copies.get(&slot),
            source_file_handle_id,
            owner,
        ))? {
            return Ok(());
        }
        let copy = tables.copies.get_mut(&slot).expect("checked above");
        copy.lease = None;
        copy.updated_at = now;
        Ok(())
    }

    async fn complete_copy(
        &self,
        migration: &MigrationKey,
        source_file_handle_id: &str,
        owner: &str,
        destination_file_handle_id: &str,
        verification: Option<&serde_json::Value>,
        now: EpochSeconds,
    ) -> Result<CopyRecord, StateError> {
        if let Some(verification) = verification {
            check_document("copy verification", verification)?;
        }
        let mut tables = self.tables.lock().await;
        let slot = (migration.pk(), copy_sk(source_file_handle_id));
        let needs_write = check_copy_complete(
            tables.copies.get(&slot),
            source_file_handle_id,
            owner,
            destination_file_handle_id,
            now,
        )?;
        let copy = tables.copies.get_mut(&slot).expect("checked above");
        if needs_write {
            copy.status = CopyStatus::Copied;
            copy.destination_file_handle_id = Some(destination_file_handle_id.to_owned());
            copy.verification = verification.cloned();
            copy.lease = None;
            copy.updated_at = now;
        }
        Ok(copy.clone())
    }

    async fn get_copy(
        &self,
        migration: &MigrationKey,
        source_file_handle_id: &str,
    ) -> Result<Option<CopyRecord>, StateError> {
        let tables = self.tables.lock().await;
        Ok(tables
            .copies
            .get(&(migration.pk(), copy_sk(source_file_handle_id)))
            .cloned())
    }

    async fn set_copy_unused(
        &self,
        migration: &MigrationKey,
        source_file_handle_id: &str,
        reason: Option<&str>,
        now: EpochSeconds,
    ) -> Result<CopyRecord, StateError> {
        let mut tables = self.tables.lock().await;
        let slot = (migration.pk(), copy_sk(source_file_handle_id));
        check_copy_finished(tables.copies.get(&slot), source_file_handle_id)?;
        let copy = tables.copies.get_mut(&slot).expect("checked above");
        copy.unused_reason = reason.map(str::to_owned);
        copy.updated_at = now;
        Ok(copy.clone())
    }

    async fn list_copies(
        &self,
        migration: &MigrationKey,
        limit: u32,
        page_token: Option<&str>,
    ) -> Result<Page<CopyRecord>, StateError> {
        let tables = self.tables.lock().await;
        page_of(
            &tables.copies,
            migration,
            COPY_PREFIX,
            limit,
            page_token,
            |_| true,
        )
    }

    async fn get_budget(
        &self,
        migration: &MigrationKey,
        run_id: &str,
    ) -> Result<Option<BudgetRecord>, StateError> {
        let tables = self.tables.lock().await;
        Ok(tables
            .budgets
            .get(&(migration.pk(), budget_sk(run_id)))
            .copied())
    }

    async fn put_budget(
        &self,
        migration: &MigrationKey,
        run_id: &str,
        budget: &BudgetRecord,
        expected: Option<u64>,
        _expires_at: EpochSeconds,
    ) -> Result<bool, StateError> {
        check_id("run id", run_id)?;
        let mut tables = self.tables.lock().await;
        let key = (migration.pk(), budget_sk(run_id));
        if tables.budgets.get(&key).map(|b| b.version) != expected {
            return Ok(false);
        }
        tables.budgets.insert(key, *budget);
        Ok(true)
    }
}

/// One page of the migration's records whose sort key starts with `prefix`, in key order; the
/// page token is the sort key of the last record returned, like DynamoDB's `LastEvaluatedKey`.
fn page_of<T: Clone>(
    records: &BTreeMap<(String, String), T>,
    migration: &MigrationKey,
    prefix: &str,
    limit: u32,
    page_token: Option<&str>,
    keep: impl Fn(&T) -> bool,
) -> Result<Page<T>, StateError> {
    if limit == 0 {
        return Err(StateError::Invalid("page limit must be at least 1".into()));
    }
    let pk = migration.pk();
    let after = page_token.unwrap_or(prefix).to_owned();
    let mut matching = records
        .range((pk.clone(), after)..)
        .take_while(|((p, sk), _)| *p == pk && sk.starts_with(prefix))
        .filter(|((_, sk), _)| Some(sk.as_str()) != page_token)
        .filter(|(_, record)| keep(record));
    let page: Vec<(&String, &T)> = matching
        .by_ref()
        .take(limit as usize)
        .map(|((_, sk), record)| (sk, record))
        .collect();
    let next_token = match matching.next() {
        Some(_) => page.last().map(|(sk, _)| (*sk).clone()),
        None => None,
    };
    Ok(Page {
        items: page.into_iter().map(|(_, record)| record.clone()).collect(),
        next_token,
    })
}

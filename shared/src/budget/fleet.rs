//! [`FleetBudget`]: the budget of one run as this process sees it, backed by the state store.
//!
//! Cost: one conditional write per lease, plus a read and a second write when another instance
//! leased in between. A busy instance leases about a second of slots at a time (9 at 540/min):
//! 0.11 to 0.33 DynamoDB requests per Synapse request; an instance calling Synapse now and then
//! leases fewer (see [`Leased::appetite`]), up to one write per request, so that it wastes little
//! of the fleet's budget. One or two more per 429 episode.
//!
//! Accuracy: the fleet never starts more requests in a minute than the budget (slots are unique
//! and spaced); it may start fewer, since an instance that stops early leaves at most one lease
//! of slots unused, and slots an instance could not use in time ([`STALE_MS`]) are dropped rather
//! than sent late into another instance's slot. Clocks are the instances' own (Lambda hosts keep
//! them within milliseconds). If the state store cannot be reached the request goes ahead under
//! the process limiter alone, which is logged: the migration's own state writes fail loudly then.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::BudgetModel;
use crate::state::{BudgetRecord, MigrationKey, StateError, StateStore};
use crate::synapse::{RequestBudget, Throttling};

/// A leased slot not started within this is dropped: sending it later would crowd another
/// instance's slot.
const STALE_MS: i64 = 1_000;
/// Upper bound of a lease's appetite (the model caps it at about a second of slots anyway).
const MAX_APPETITE: u32 = 16;
/// Compare-and-set tries before a lease gives up (and the request goes ahead unbudgeted).
const MAX_WRITE_TRIES: u32 = 20;
/// The budget record outlives the longest run.
const RECORD_LIFETIME_SECS: i64 = 7 * 24 * 3600;

/// A run's fleet-wide Synapse budget; see the module docs and [`super`].
pub struct FleetBudget {
    store: Arc<dyn StateStore>,
    migration: MigrationKey,
    run_id: String,
    model: BudgetModel,
    local: Mutex<Leased>,
}

impl std::fmt::Debug for FleetBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetBudget")
            .field("migration", &self.migration)
            .field("run_id", &self.run_id)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// What this process holds: its last view of the record and its unused slots.
#[derive(Debug, Default)]
struct Leased {
    seen: Option<BudgetRecord>,
    slots: VecDeque<i64>,
    /// Slots the next lease asks for: doubled after a lease used up in time, halved when slots
    /// went stale, so that a busy instance leases a second at a time (one write per ~9
    /// requests) and an instance calling now and then wastes little of the fleet's budget.
    appetite: u32,
}

impl Leased {
    /// Drops the slots too old to use; a lease that went partly unused makes the next smaller.
    fn drop_stale(&mut self, now: i64) {
        let before = self.slots.len();
        while self.slots.front().is_some_and(|&s| s < now - STALE_MS) {
            self.slots.pop_front();
        }
        if self.slots.len() < before {
            self.appetite = (self.appetite / 2).max(1);
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4))
        .unwrap_or_default()
}

impl FleetBudget {
    pub fn new(
        store: Arc<dyn StateStore>,
        migration: MigrationKey,
        run_id: impl Into<String>,
        requests_per_minute: u32,
    ) -> Self {
        Self {
            store,
            migration,
            run_id: run_id.into(),
            model: BudgetModel::new(requests_per_minute),
            local: Mutex::new(Leased {
                appetite: 2,
                ..Leased::default()
            }),
        }
    }

    /// Whether this is the budget of `run_id` at `requests_per_minute` (then a warm instance
    /// keeps it, with its leased slots).
    pub fn is_for(&self, migration: &MigrationKey, run_id: &str, requests_per_minute: u32) -> bool {
        self.migration == *migration
            && self.run_id == run_id
            && self.model == BudgetModel::new(requests_per_minute)
    }

    fn expires_at() -> i64 {
        now_ms() / 1000 + RECORD_LIFETIME_SECS
    }

    /// Writes `change(record)` with compare-and-set, reading the record again after losing a
    /// race; returns what `change` returned for the record it wrote. `change` returns `None`
    /// when nothing needs writing.
    async fn write<T>(
        &self,
        leased: &mut Leased,
        mut change: impl FnMut(&BudgetRecord, i64) -> Option<(BudgetRecord, T)>,
    ) -> Result<Option<T>, StateError> {
        let mut current = leased.seen;
        for _ in 0..MAX_WRITE_TRIES {
            let base = current.unwrap_or_default();
            let Some((next, value)) = change(&base, now_ms()) else {
                leased.seen = current;
                return Ok(None);
            };
            let expected = current.map(|r| r.version);
            if self
                .store
                .put_budget(
                    &self.migration,
                    &self.run_id,
                    &next,
                    expected,
                    Self::expires_at(),
                )
                .await?
            {
                leased.seen = Some(next);
                return Ok(Some(value));
            }
            current = self.store.get_budget(&self.migration, &self.run_id).await?;
        }
        Err(StateError::ConditionFailed {
            record: format!("BUDGET#{}", self.run_id),
            detail: format!("still contended after {MAX_WRITE_TRIES} writes"),
        })
    }

    /// Leases the next slots into `leased`.
    /// Leases the next slots into `leased` (called when the last lease is used up).
    async fn lease(&self, leased: &mut Leased) -> Result<(), StateError> {
        let model = self.model;
        let appetite = leased.appetite;
        let slots = self
            .write(leased, |record, now| {
                let count = model.lease_size(record, now).min(appetite);
                Some(model.lease(record, now, count))
            })
            .await?
            .unwrap_or_default();
        leased.appetite = (appetite * 2).min(MAX_APPETITE);
        leased.slots.extend(slots);
        Ok(())
    }
}

#[async_trait]
impl RequestBudget for FleetBudget {
    async fn admit(&self) {
        let slot = {
            let mut leased = self.local.lock().await;
            leased.drop_stale(now_ms());
            if leased.slots.is_empty() {
                if let Err(error) = self.lease(&mut leased).await {
                    tracing::warn!(%error, "cannot lease from the run's Synapse budget; this request goes under the process limit alone");
                }
            }
            leased.slots.pop_front()
        };
        if let Some(wait) = slot.map(|s| s - now_ms()).filter(|&ms| ms > 0) {
            tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())).await;
        }
    }

    async fn throttled(&self, throttling: Throttling) {
        let mut leased = self.local.lock().await;
        leased.slots.clear();
        let model = self.model;
        // Against the stored record, not our possibly old view: a pause someone else already
        // set must not be cut again.
        leased.seen = match self.store.get_budget(&self.migration, &self.run_id).await {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(%error, "cannot read the run's Synapse budget after a 429");
                return;
            }
        };
        let result = self
            .write(&mut leased, |record, now| {
                model.throttled(record, now, throttling).map(|r| (r, ()))
            })
            .await;
        match result {
            Ok(Some(())) => tracing::warn!(
                run = %self.run_id,
                rate = leased.seen.map(|r| r.cut_rate),
                "Synapse throttled the run: every instance pauses and slows down"
            ),
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "cannot record a 429 in the run's Synapse budget"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::state::memory::MemoryStore;

    fn instances(store: &Arc<MemoryStore>, n: usize, rpm: u32) -> Vec<Arc<FleetBudget>> {
        let migration = MigrationKey::new("syn1", 7).unwrap();
        (0..n)
            .map(|_| {
                let store: Arc<dyn StateStore> = store.clone();
                Arc::new(FleetBudget::new(store, migration.clone(), "run-1", rpm))
            })
            .collect()
    }

    #[tokio::test]
    async fn instances_share_one_schedule() {
        // Three "processes" with their own leases, 40 requests each, at 6000/min (one per 10 ms).
        let store = Arc::new(MemoryStore::new());
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for budget in instances(&store, 3, 6000) {
            tasks.spawn(async move {
                let mut at = Vec::new();
                for _ in 0..40 {
                    budget.admit().await;
                    at.push(now_ms());
                }
                at
            });
        }
        let mut all: Vec<i64> = Vec::new();
        while let Some(times) = tasks.join_next().await {
            all.extend(times.unwrap());
        }
        all.sort_unstable();
        // 120 requests, one slot each: the last starts 1.19 s after the first at the earliest.
        assert!(
            start.elapsed() >= Duration::from_millis(1_150),
            "{:?}",
            start.elapsed()
        );
        for (i, first) in all.iter().enumerate() {
            let in_second = all[i..].iter().take_while(|&&t| t < first + 1_000).count();
            assert!(
                in_second <= 103,
                "{in_second} requests in the second from {first}"
            );
        }
        let record = store
            .get_budget(&MigrationKey::new("syn1", 7).unwrap(), "run-1")
            .await
            .unwrap()
            .unwrap();
        // One write per lease of 10 slots (plus the writes that lost a race).
        assert!((12..=40).contains(&record.version), "{record:?}");
    }

    #[tokio::test]
    async fn a_429_pauses_the_other_instances_and_cuts_the_rate() {
        let store = Arc::new(MemoryStore::new());
        let fleet = instances(&store, 2, 6000);
        fleet[0].admit().await;
        let start = Instant::now();
        fleet[0]
            .throttled(Throttling::Rate {
                retry_after: Some(Duration::from_millis(400)),
            })
            .await;
        // The same episode seen by the second instance changes nothing more.
        fleet[1].throttled(Throttling::InFlight).await;
        fleet[1].admit().await;
        assert!(
            start.elapsed() >= Duration::from_millis(390),
            "{:?}",
            start.elapsed()
        );
        let record = store
            .get_budget(&MigrationKey::new("syn1", 7).unwrap(), "run-1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.cut_rate, 4200);
    }

    #[test]
    fn stale_slots_are_dropped_and_shrink_the_next_lease() {
        let mut leased = Leased {
            slots: VecDeque::from([1_000, 1_500, 9_000]),
            appetite: 8,
            ..Leased::default()
        };
        leased.drop_stale(2_000);
        assert_eq!(leased.slots.len(), 3, "a slot a second old is still usable");
        assert_eq!(leased.appetite, 8);
        leased.drop_stale(2_600);
        assert_eq!(leased.slots, VecDeque::from([9_000]));
        assert_eq!(leased.appetite, 4);
        leased.drop_stale(20_000);
        leased.appetite = 1;
        leased.drop_stale(20_000);
        assert_eq!(leased.appetite, 1);
    }

    #[tokio::test]
    async fn leases_grow_while_they_are_used_up() {
        let store = Arc::new(MemoryStore::new());
        let budget = &instances(&store, 1, 6000)[0];
        let migration = MigrationKey::new("syn1", 7).unwrap();
        budget.admit().await;
        let first = store
            .get_budget(&migration, "run-1")
            .await
            .unwrap()
            .unwrap();
        // A fresh instance leases 2 slots (10 ms apart at 6000/min), then 4, 8, and at most a
        // second's worth (10 at this rate).
        for _ in 0..(2 + 4 + 8 + 10 - 1) {
            budget.admit().await;
        }
        let last = store
            .get_budget(&migration, "run-1")
            .await
            .unwrap()
            .unwrap();
        // Four leases for 24 slots: they grew (leases of 2 would have taken twelve).
        assert_eq!(last.version, 4);
        // At least the 22 slots leased after the first; a slow machine adds idle time between
        // leases (a lease starts no earlier than now), so only the lower bound is exact.
        let leased = last.next_slot_ms - first.next_slot_ms;
        assert!(leased >= 210, "{leased} ms of slots after the first lease");
    }

    #[test]
    fn a_warm_instance_keeps_the_budget_of_its_run() {
        let store = Arc::new(MemoryStore::new());
        let budget = &instances(&store, 1, 540)[0];
        let migration = MigrationKey::new("syn1", 7).unwrap();
        assert!(budget.is_for(&migration, "run-1", 540));
        assert!(!budget.is_for(&migration, "run-2", 540));
        assert!(!budget.is_for(&migration, "run-1", 300));
        assert!(!budget.is_for(&MigrationKey::new("syn2", 7).unwrap(), "run-1", 540));
    }
}

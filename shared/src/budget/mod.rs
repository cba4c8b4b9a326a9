//! One Synapse request budget per run, shared by every function instance of the run.
//!
//! Synapse throttles a caller (user, session cookie, IP) at 600 requests per fixed 60 s block and
//! 3 in flight, and every instance of a run calls it with the same token, so the limit that
//! matters is the fleet's. The run's budget (`maxSynapseRequestsPerMinute`) is a schedule of
//! request *slots*, one every `60 s / rate`, kept in one state store record
//! ([`BudgetRecord`]): an instance leases the next few slots with one compare-and-set write and
//! starts each request at its slot. The slots of all instances interleave, so the fleet sends at
//! most the budget in any minute and its requests are spread out (at 540/min one every 111 ms,
//! which keeps Synapse's 3-in-flight limit unless requests take over 330 ms).
//!
//! A 429 pauses the fleet and cuts the rate ([`BudgetModel::throttled`]): the record says "no slot
//! before `pausedUntil`" (the server's `Retry-After`, else 5 s), the rate drops to 70% and climbs
//! back to the budget over two minutes. A 429 for requests in flight (the fleet's requests
//! overlapped, Synapse allows 3 per caller) pauses 1 s and cuts to 90%.
//! The instance that got the 429 drops its own leased slots; the others notice at their next
//! lease, within about one second. See [`fleet`] for the cost and accuracy.

mod fleet;

pub use fleet::FleetBudget;

use std::time::Duration;

use crate::state::BudgetRecord;
use crate::synapse::Throttling;

/// Share of the current rate kept after a 429 for the rate, and after one for requests in flight
/// (the budget was not overspent; the requests only overlapped, so a little more spacing helps).
const CUT_SHARE: f64 = 0.7;
const IN_FLIGHT_CUT_SHARE: f64 = 0.9;
/// Time from a cut back to the full budget (linear).
const RECOVERY_MS: i64 = 120_000;
/// The pause after a 429 without `Retry-After`. Synapse's throttle counts in fixed 60 s blocks and
/// says nothing of when the block ends, so this is short and the rate cut does the rest.
const DEFAULT_PAUSE: Duration = Duration::from_secs(5);
/// The pause after a 429 for requests in flight: long enough for them to finish.
const IN_FLIGHT_PAUSE: Duration = Duration::from_secs(1);
/// Most slots leased at once: about a second of the fleet's requests.
const MAX_LEASE: u32 = 10;

/// The budget's arithmetic, pure so that its rules are tested without clocks or stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetModel {
    /// Requests per minute of the whole run.
    pub requests_per_minute: u32,
}

impl BudgetModel {
    pub fn new(requests_per_minute: u32) -> Self {
        Self {
            requests_per_minute: requests_per_minute.max(1),
        }
    }

    /// The lowest rate a cut goes to.
    fn floor(&self) -> f64 {
        f64::from((self.requests_per_minute / 10).max(1))
    }

    /// Requests per minute allowed at `now_ms`: the budget, or less while recovering from a cut.
    pub fn rate(&self, record: &BudgetRecord, now_ms: i64) -> f64 {
        let budget = f64::from(self.requests_per_minute);
        if record.cut_at_ms == 0 {
            return budget;
        }
        let cut = f64::from(record.cut_rate).clamp(self.floor(), budget);
        let elapsed = (now_ms - record.cut_at_ms).max(0) as f64;
        (cut + (budget - cut) * elapsed / RECOVERY_MS as f64).min(budget)
    }

    /// How many slots one lease takes: about a second's worth at the current rate.
    pub fn lease_size(&self, record: &BudgetRecord, now_ms: i64) -> u32 {
        ((self.rate(record, now_ms) / 60.0).round() as u32).clamp(1, MAX_LEASE)
    }

    /// Leases `count` slots: the record to write and the slots' start times (epoch ms). Slots
    /// never start in the past (an idle budget does not save up a burst) nor during a pause.
    pub fn lease(
        &self,
        record: &BudgetRecord,
        now_ms: i64,
        count: u32,
    ) -> (BudgetRecord, Vec<i64>) {
        let interval = 60_000.0 / self.rate(record, now_ms);
        let start = record.next_slot_ms.max(record.paused_until_ms).max(now_ms) as f64;
        // Rounded up: never earlier than the exact schedule, so no minute holds an extra slot.
        let slot = |i: u32| (start + interval * f64::from(i)).ceil() as i64;
        let slots = (0..count).map(slot).collect();
        let next = BudgetRecord {
            version: record.version + 1,
            next_slot_ms: slot(count),
            ..*record
        };
        (next, slots)
    }

    /// The record after a 429 at `now_ms`, or `None` if the fleet is already paused for it (one
    /// episode, one cut, however many instances saw it).
    pub fn throttled(
        &self,
        record: &BudgetRecord,
        now_ms: i64,
        throttling: Throttling,
    ) -> Option<BudgetRecord> {
        if record.paused_until_ms > now_ms {
            return None;
        }
        let (pause, share) = match throttling {
            Throttling::Rate { retry_after } => (retry_after.unwrap_or(DEFAULT_PAUSE), CUT_SHARE),
            Throttling::InFlight => (IN_FLIGHT_PAUSE, IN_FLIGHT_CUT_SHARE),
        };
        let paused_until_ms = now_ms + i64::try_from(pause.as_millis()).unwrap_or(i64::MAX / 4);
        let cut_rate = (self.rate(record, now_ms) * share).max(self.floor());
        Some(BudgetRecord {
            version: record.version + 1,
            next_slot_ms: record.next_slot_ms.max(paused_until_ms),
            paused_until_ms,
            cut_at_ms: paused_until_ms,
            cut_rate: cut_rate as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    fn fresh() -> BudgetRecord {
        BudgetRecord::default()
    }

    fn rate_429(retry_after: Option<Duration>) -> Throttling {
        Throttling::Rate { retry_after }
    }

    #[test]
    fn too_many_in_flight_pauses_briefly_and_cuts_little() {
        let model = BudgetModel::new(600);
        let paused = model.throttled(&fresh(), T0, Throttling::InFlight).unwrap();
        assert_eq!(paused.paused_until_ms, T0 + 1_000);
        assert_eq!(paused.cut_rate, 540);
    }

    #[test]
    fn leases_are_spaced_at_the_budget_and_follow_each_other() {
        let model = BudgetModel::new(600);
        let (first, slots) = model.lease(&fresh(), T0, 3);
        assert_eq!(slots, vec![T0, T0 + 100, T0 + 200]);
        assert_eq!(first.next_slot_ms, T0 + 300);
        assert_eq!(first.version, 1);
        // Another instance, 50 ms later, gets the slots after them, not its own clock's.
        let (second, slots) = model.lease(&first, T0 + 50, 2);
        assert_eq!(slots, vec![T0 + 300, T0 + 400]);
        assert_eq!(second.version, 2);
    }

    #[test]
    fn an_idle_budget_saves_up_no_burst() {
        let model = BudgetModel::new(600);
        let (record, _) = model.lease(&fresh(), T0, 3);
        let (_, slots) = model.lease(&record, T0 + 60_000, 2);
        assert_eq!(slots, vec![T0 + 60_000, T0 + 60_100]);
    }

    #[test]
    fn a_minute_of_slots_never_exceeds_the_budget() {
        let model = BudgetModel::new(540);
        let mut record = fresh();
        let mut all = Vec::new();
        let mut now = T0;
        while all.len() < 2_000 {
            let count = model.lease_size(&record, now);
            let (next, slots) = model.lease(&record, now, count);
            record = next;
            all.extend(slots);
            now += 37; // instances asking far faster than the budget
        }
        for (i, start) in all.iter().enumerate() {
            let in_minute = all[i..].iter().take_while(|&&t| t < start + 60_000).count();
            assert!(
                in_minute <= 540,
                "{in_minute} slots in the minute from {start}"
            );
        }
    }

    #[test]
    fn a_429_pauses_everyone_and_cuts_the_rate_once() {
        let model = BudgetModel::new(600);
        let (record, _) = model.lease(&fresh(), T0, 5);
        let paused = model
            .throttled(&record, T0 + 100, rate_429(Some(Duration::from_secs(3))))
            .expect("the first 429 of an episode cuts");
        assert_eq!(paused.paused_until_ms, T0 + 3_100);
        assert_eq!(paused.cut_rate, 420);
        assert_eq!(paused.version, record.version + 1);
        // The other instances' 429s of the same episode change nothing.
        assert_eq!(model.throttled(&paused, T0 + 200, rate_429(None)), None);
        // Slots start after the pause, at the cut rate (one per 60000/420 ms).
        let (_, slots) = model.lease(&paused, T0 + 300, 2);
        assert_eq!(slots, vec![T0 + 3_100, T0 + 3_100 + 143]);
    }

    #[test]
    fn the_rate_recovers_to_the_budget_after_a_cut() {
        let model = BudgetModel::new(600);
        let paused = model.throttled(&fresh(), T0, rate_429(None)).unwrap();
        assert_eq!(paused.paused_until_ms, T0 + 5_000);
        let at = |ms| model.rate(&paused, paused.cut_at_ms + ms).round();
        assert_eq!(at(0), 420.0);
        assert_eq!(at(60_000), 510.0);
        assert_eq!(at(120_000), 600.0);
        assert_eq!(at(600_000), 600.0);
        // Repeated 429s cut further, never below a tenth of the budget.
        let mut record = paused;
        for i in 1..20 {
            record = model
                .throttled(&record, record.paused_until_ms + i, rate_429(None))
                .unwrap();
        }
        assert_eq!(record.cut_rate, 60);
    }

    #[test]
    fn lease_size_is_about_a_second_of_requests() {
        let fresh = fresh();
        assert_eq!(BudgetModel::new(540).lease_size(&fresh, T0), 9);
        assert_eq!(BudgetModel::new(600).lease_size(&fresh, T0), 10);
        assert_eq!(BudgetModel::new(60).lease_size(&fresh, T0), 1);
        assert_eq!(BudgetModel::new(1).lease_size(&fresh, T0), 1);
    }
}

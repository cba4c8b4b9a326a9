//! Multipart-copy arithmetic the engines and the copy stages share: how a file is cut into
//! parts, and how a big file's parts are split into batches that each finish inside one Lambda
//! invocation. No I/O here, so every boundary is property-tested.

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;
pub const TIB: u64 = 1024 * GIB;

/// S3's smallest part (except the last one of an upload).
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 5 * GIB;
/// S3's most parts per upload.
pub const MAX_PARTS: u32 = 10_000;
/// S3's largest object.
pub const MAX_OBJECT_SIZE: u64 = 5 * TIB;

/// Why a plan cannot be made. All are caller mistakes, so they map to `Fatal.InvalidInput`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("a file of 0 bytes cannot be copied part by part")]
    EmptyFile,
    #[error(
        "a file of {size} bytes exceeds the S3 object limit of {MAX_OBJECT_SIZE} bytes (5 TiB)"
    )]
    TooLarge { size: u64 },
    #[error("invalid work unit limits: {0}")]
    InvalidUnitLimits(&'static str),
    #[error("invalid part batch budget: {0}")]
    InvalidBudget(&'static str),
}

/// How one file is cut into parts: every part has `part_size` bytes except the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    size: u64,
    part_size: u64,
    part_count: u32,
}

/// One part of a multipart copy: 1-based number and an inclusive byte range of the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub number: u32,
    pub first_byte: u64,
    pub last_byte: u64,
}

impl Part {
    /// Number of bytes in the part (never zero).
    pub fn size(&self) -> u64 {
        self.last_byte - self.first_byte + 1
    }

    /// The `x-amz-copy-source-range` value for this part.
    pub fn copy_source_range(&self) -> String {
        format!("bytes={}-{}", self.first_byte, self.last_byte)
    }
}

impl PartPlan {
    /// Plans the copy of a file of `size` bytes with the configured part size.
    ///
    /// The part size is `max(configured, ceil(size / 10,000))` clamped to 5 MiB..5 GiB, which
    /// keeps the part count within S3's 10,000 for every size up to 5 TiB.
    pub fn new(size: u64, configured_part_size: u64) -> Result<Self, PlanError> {
        if size == 0 {
            return Err(PlanError::EmptyFile);
        }
        if size > MAX_OBJECT_SIZE {
            return Err(PlanError::TooLarge { size });
        }
        let part_size = configured_part_size
            .max(size.div_ceil(u64::from(MAX_PARTS)))
            .clamp(MIN_PART_SIZE, MAX_PART_SIZE);
        let part_count = u32::try_from(size.div_ceil(part_size))
            .expect("part count is at most 10,000 because part_size >= ceil(size / 10,000)");
        Ok(Self {
            size,
            part_size,
            part_count,
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn part_size(&self) -> u64 {
        self.part_size
    }

    pub fn part_count(&self) -> u32 {
        self.part_count
    }

    /// Part `number` (1-based), or `None` outside 1..=part_count.
    pub fn part(&self, number: u32) -> Option<Part> {
        if number == 0 || number > self.part_count {
            return None;
        }
        let first_byte = u64::from(number - 1) * self.part_size;
        let last_byte = (u64::from(number) * self.part_size).min(self.size) - 1;
        Some(Part {
            number,
            first_byte,
            last_byte,
        })
    }

    /// All parts in order.
    pub fn parts(&self) -> impl Iterator<Item = Part> + '_ {
        (1..=self.part_count).filter_map(|n| self.part(n))
    }

    /// The parts of one batch in order (parts beyond the plan are left out).
    pub fn parts_in(&self, batch: PartBatch) -> impl Iterator<Item = Part> + '_ {
        (batch.first_part..=batch.last_part).filter_map(|n| self.part(n))
    }
}

/// What one copy-parts invocation may take on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchBudget {
    /// Wall-clock time one invocation may spend copying.
    pub time_budget: Duration,
    /// Fraction of the budget to plan for (0 < f <= 1), leaving room for slow requests.
    pub safety_factor: f64,
    /// Assumed throughput of one UploadPartCopy request, bytes per second.
    pub throughput_bytes_per_sec: u64,
    /// Parts copied at the same time inside one invocation.
    pub concurrency: u32,
}

impl Default for BatchBudget {
    /// Ten minutes of a 15-minute Lambda at half speed, 60 MiB/s per request, 8 at a time.
    fn default() -> Self {
        Self {
            time_budget: Duration::from_secs(600),
            safety_factor: 0.5,
            throughput_bytes_per_sec: 60 * MIB,
            concurrency: 8,
        }
    }
}

/// A contiguous run of part numbers (inclusive) copied by one invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartBatch {
    pub first_part: u32,
    pub last_part: u32,
}

impl BatchBudget {
    /// Parts per batch: as many waves of `concurrency` parts as fit in the safe share of the
    /// budget, and never fewer than one part.
    pub fn parts_per_batch(&self, part_size: u64) -> Result<u32, PlanError> {
        if !(self.safety_factor > 0.0 && self.safety_factor <= 1.0) {
            return Err(PlanError::InvalidBudget("safetyFactor must be in (0, 1]"));
        }
        if self.throughput_bytes_per_sec == 0 {
            return Err(PlanError::InvalidBudget("throughput must be positive"));
        }
        if self.concurrency == 0 {
            return Err(PlanError::InvalidBudget("concurrency must be at least 1"));
        }
        if part_size == 0 {
            return Err(PlanError::InvalidBudget("part size must be positive"));
        }
        let usable_bytes = self.time_budget.as_secs_f64()
            * self.safety_factor
            * self.throughput_bytes_per_sec as f64;
        // `as` saturates for huge values; the float is non-negative by the checks above.
        let waves = (usable_bytes / part_size as f64).floor() as u64;
        let parts = waves
            .saturating_mul(u64::from(self.concurrency))
            .clamp(1, u64::from(MAX_PARTS));
        Ok(u32::try_from(parts).expect("clamped to MAX_PARTS"))
    }
}

/// Splits a part plan into batches that each fit the budget; together they cover every part once.
pub fn part_batches(plan: &PartPlan, budget: &BatchBudget) -> Result<Vec<PartBatch>, PlanError> {
    let per_batch = budget.parts_per_batch(plan.part_size())?;
    let mut batches = Vec::new();
    let mut first_part = 1u32;
    while first_part <= plan.part_count() {
        let last_part = first_part
            .saturating_add(per_batch - 1)
            .min(plan.part_count());
        batches.push(PartBatch {
            first_part,
            last_part,
        });
        first_part = last_part + 1;
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Checks the plan's invariants: sizes in bounds, parts contiguous, covering the file once.
    fn assert_plan_covers(plan: &PartPlan, configured: u64) {
        let size = plan.size();
        assert!((MIN_PART_SIZE..=MAX_PART_SIZE).contains(&plan.part_size()));
        assert!(plan.part_size() >= configured.clamp(MIN_PART_SIZE, MAX_PART_SIZE));
        assert!(plan.part_count() >= 1 && plan.part_count() <= MAX_PARTS);
        let mut next_byte = 0u64;
        let mut count = 0u32;
        for part in plan.parts() {
            count += 1;
            assert_eq!(part.number, count);
            assert_eq!(
                part.first_byte, next_byte,
                "gap or overlap at part {}",
                part.number
            );
            assert!(part.last_byte < size);
            if part.number < plan.part_count() {
                assert_eq!(part.size(), plan.part_size());
            } else {
                assert!(part.size() >= 1 && part.size() <= plan.part_size());
            }
            next_byte = part.last_byte + 1;
        }
        assert_eq!(count, plan.part_count());
        assert_eq!(next_byte, size, "parts must end at the last byte");
    }

    /// Sizes near every boundary, so random cases hit them often.
    fn interesting_size() -> impl Strategy<Value = u64> {
        let anchors = [
            1,
            MIN_PART_SIZE,
            MIN_PART_SIZE * u64::from(MAX_PARTS),
            GIB,
            MAX_PART_SIZE,
            MAX_OBJECT_SIZE,
        ];
        prop_oneof![
            1u64..=MAX_OBJECT_SIZE,
            (proptest::sample::select(anchors.to_vec()), -2i64..=2)
                .prop_map(|(a, d)| { a.saturating_add_signed(d).clamp(1, MAX_OBJECT_SIZE) }),
        ]
    }

    fn configured_part_size() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(0),
            Just(MIN_PART_SIZE),
            Just(MIN_PART_SIZE + 1),
            Just(MAX_PART_SIZE),
            Just(MAX_PART_SIZE + 1),
            0u64..=2 * MAX_PART_SIZE,
        ]
    }

    proptest! {
        #[test]
        fn parts_cover_every_byte_once(size in interesting_size(), configured in configured_part_size()) {
            let plan = PartPlan::new(size, configured).unwrap();
            assert_plan_covers(&plan, configured);
            // The part size only grows past the (clamped) configured size when it must: one
            // byte less would need more than 10,000 parts.
            let floor = configured.clamp(MIN_PART_SIZE, MAX_PART_SIZE);
            if plan.part_size() > floor {
                prop_assert!((plan.part_size() - 1) * u64::from(MAX_PARTS) < size);
            } else {
                prop_assert_eq!(plan.part_size(), floor);
            }
        }

        #[test]
        fn batches_cover_every_part_once(
            size in interesting_size(),
            configured in configured_part_size(),
            budget_secs in 0u64..=900,
            safety in 0.01f64..=1.0,
            throughput in 1u64..=200 * MIB,
            concurrency in 1u32..=64,
        ) {
            let plan = PartPlan::new(size, configured).unwrap();
            let budget = BatchBudget {
                time_budget: Duration::from_secs(budget_secs),
                safety_factor: safety,
                throughput_bytes_per_sec: throughput,
                concurrency,
            };
            let batches = part_batches(&plan, &budget).unwrap();
            let per_batch = budget.parts_per_batch(plan.part_size()).unwrap();
            let mut next = 1u32;
            for batch in &batches {
                prop_assert_eq!(batch.first_part, next);
                prop_assert!(batch.last_part >= batch.first_part);
                prop_assert!(batch.last_part - batch.first_part < per_batch);
                next = batch.last_part + 1;
            }
            prop_assert_eq!(next, plan.part_count() + 1);
            let numbers: Vec<u32> = batches.iter().flat_map(|b| plan.parts_in(*b)).map(|p| p.number).collect();
            prop_assert_eq!(numbers, (1..=plan.part_count()).collect::<Vec<_>>());
        }
    }

    #[test]
    fn one_byte_file_is_one_part() {
        let plan = PartPlan::new(1, 0).unwrap();
        assert_eq!((plan.part_size(), plan.part_count()), (MIN_PART_SIZE, 1));
        assert_eq!(plan.part(1).unwrap().copy_source_range(), "bytes=0-0");
        assert_eq!(plan.part(0), None);
        assert_eq!(plan.part(2), None);
    }

    #[test]
    fn five_mib_boundary() {
        let exact = PartPlan::new(MIN_PART_SIZE, MIN_PART_SIZE).unwrap();
        assert_eq!(exact.part_count(), 1);
        let plus_one = PartPlan::new(MIN_PART_SIZE + 1, MIN_PART_SIZE).unwrap();
        assert_eq!(plus_one.part_count(), 2);
        assert_eq!(plus_one.part(2).unwrap().size(), 1);
        assert_plan_covers(&plus_one, MIN_PART_SIZE);
    }

    #[test]
    fn exactly_ten_thousand_parts_at_the_configured_size() {
        let configured = 8 * MIB;
        let plan = PartPlan::new(configured * u64::from(MAX_PARTS), configured).unwrap();
        assert_eq!(
            (plan.part_size(), plan.part_count()),
            (configured, MAX_PARTS)
        );
        assert_plan_covers(&plan, configured);
        // One byte more forces the part size up instead of an extra part.
        let bigger = PartPlan::new(configured * u64::from(MAX_PARTS) + 1, configured).unwrap();
        assert_eq!(bigger.part_size(), configured + 1);
        assert_eq!(bigger.part_count(), MAX_PARTS);
        assert_plan_covers(&bigger, configured);
    }

    #[test]
    fn five_tib_is_the_largest_file() {
        let plan = PartPlan::new(MAX_OBJECT_SIZE, MIN_PART_SIZE).unwrap();
        assert_eq!(plan.part_size(), MAX_OBJECT_SIZE.div_ceil(10_000));
        assert!(plan.part_count() <= MAX_PARTS);
        assert_plan_covers(&plan, MIN_PART_SIZE);
        assert_eq!(
            PartPlan::new(MAX_OBJECT_SIZE + 1, MIN_PART_SIZE),
            Err(PlanError::TooLarge {
                size: MAX_OBJECT_SIZE + 1
            })
        );
        assert_eq!(PartPlan::new(0, MIN_PART_SIZE), Err(PlanError::EmptyFile));
    }

    #[test]
    fn configured_part_size_is_clamped() {
        assert_eq!(PartPlan::new(GIB, 1).unwrap().part_size(), MIN_PART_SIZE);
        assert_eq!(
            PartPlan::new(20 * GIB, 10 * GIB).unwrap().part_size(),
            MAX_PART_SIZE
        );
    }

    #[test]
    fn default_budget_gives_hundreds_of_parts_for_the_biggest_parts() {
        let plan = PartPlan::new(MAX_OBJECT_SIZE, 0).unwrap();
        let budget = BatchBudget::default();
        // 600 s * 0.5 * 60 MiB/s = 18,000 MiB per stream; parts of ~524 MiB -> 34 waves of 8.
        assert_eq!(budget.parts_per_batch(plan.part_size()).unwrap(), 34 * 8);
        let batches = part_batches(&plan, &budget).unwrap();
        assert_eq!(batches.len(), 37);
        assert_eq!(batches.last().unwrap().last_part, plan.part_count());
    }

    #[test]
    fn a_part_slower_than_the_budget_still_gets_a_batch() {
        let plan = PartPlan::new(3 * MAX_PART_SIZE, MAX_PART_SIZE).unwrap();
        let budget = BatchBudget {
            time_budget: Duration::from_secs(1),
            concurrency: 1,
            ..BatchBudget::default()
        };
        let batches = part_batches(&plan, &budget).unwrap();
        assert_eq!(batches.len(), 3);
        assert!(batches.iter().all(|b| b.first_part == b.last_part));
    }
}

//! How the Plan stage groups the items to copy into work units for the Distributed Map. No
//! I/O here, so every boundary is property-tested.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::copy::parts::{PlanError, GIB};

/// One item to copy, as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitItem {
    /// The state store's item key (`syn123.4`).
    pub key: String,
    pub size: u64,
    /// The source file handle id. Versions often share one; their single copy is shared too.
    pub source: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UnitKind {
    /// Many small files, each copied in one request.
    Small,
    /// One big source whose parts are spread over part batches.
    Large,
}

/// A work unit: what one iteration of the Distributed Map processes. Goes into the S3 manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkUnit {
    pub unit_id: String,
    pub kind: UnitKind,
    /// Bytes to copy: each source counted once.
    pub total_bytes: u64,
    pub items: Vec<UnitItem>,
}

/// Limits for grouping files into units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitLimits {
    /// Most items in one small unit.
    pub max_files: usize,
    /// Most bytes in one small unit.
    pub max_bytes: u64,
    /// Sources strictly larger than this are big: one per unit, copied in part batches.
    pub large_threshold: u64,
}

impl Default for UnitLimits {
    /// 50 files or 5 GiB per unit; files above 1 GiB get their own unit.
    fn default() -> Self {
        Self {
            max_files: 50,
            max_bytes: 5 * GIB,
            large_threshold: GIB,
        }
    }
}

/// The items that share one source file handle.
struct SourceGroup {
    size: u64,
    items: Vec<UnitItem>,
}

impl SourceGroup {
    fn first_key(&self) -> &str {
        &self.items[0].key
    }
}

/// Groups items into work units.
///
/// Items that share a source file handle always land in the same unit: their one copy is then
/// made by one worker, instead of a second unit waiting on the first one's lease. A group that
/// alone exceeds the small-unit limits gets a unit of its own.
///
/// Output order is deterministic whatever the input order: big units first, largest first (the
/// longest copies start earliest, so the Map's tail is short), then small units packed in key
/// order. Unit ids are `unit-000001`, ... in that order.
pub fn group_units(
    items: impl IntoIterator<Item = UnitItem>,
    limits: &UnitLimits,
) -> Result<Vec<WorkUnit>, PlanError> {
    if limits.max_files == 0 {
        return Err(PlanError::InvalidUnitLimits("maxFiles must be at least 1"));
    }
    if limits.max_bytes == 0 {
        return Err(PlanError::InvalidUnitLimits("maxBytes must be at least 1"));
    }
    let mut by_source: BTreeMap<String, Vec<UnitItem>> = BTreeMap::new();
    for item in items {
        by_source.entry(item.source.clone()).or_default().push(item);
    }
    let (mut large, mut small): (Vec<SourceGroup>, Vec<SourceGroup>) = by_source
        .into_values()
        .map(|mut items| {
            items.sort_by(|a, b| a.key.cmp(&b.key).then_with(|| a.size.cmp(&b.size)));
            // All items of a source have its size; `max` keeps a disagreement on the safe side.
            let size = items.iter().map(|item| item.size).max().unwrap_or_default();
            SourceGroup { size, items }
        })
        .partition(|group| group.size > limits.large_threshold);
    large.sort_by(|a, b| {
        b.size
            .cmp(&a.size)
            .then_with(|| a.first_key().cmp(b.first_key()))
    });
    small.sort_by(|a, b| a.first_key().cmp(b.first_key()));

    let mut units: Vec<(UnitKind, u64, Vec<UnitItem>)> = large
        .into_iter()
        .map(|group| (UnitKind::Large, group.size, group.items))
        .collect();
    let mut current: Vec<UnitItem> = Vec::new();
    let mut current_bytes = 0u64;
    for group in small {
        let full = current.len() + group.items.len() > limits.max_files
            || current_bytes.saturating_add(group.size) > limits.max_bytes;
        if full && !current.is_empty() {
            units.push((UnitKind::Small, current_bytes, std::mem::take(&mut current)));
            current_bytes = 0;
        }
        current_bytes = current_bytes.saturating_add(group.size);
        current.extend(group.items);
    }
    if !current.is_empty() {
        units.push((UnitKind::Small, current_bytes, current));
    }

    Ok(units
        .into_iter()
        .enumerate()
        .map(|(index, (kind, total_bytes, items))| WorkUnit {
            unit_id: format!("unit-{:06}", index + 1),
            kind,
            total_bytes,
            items,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::parts::{part_batches, BatchBudget, PartPlan};
    use proptest::prelude::*;

    proptest! {

        #[test]
        fn units_hold_every_item_once_within_limits(
            source_sizes in proptest::collection::vec(0u64..=3 * GIB, 1..150),
            picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..300),
            max_files in 1usize..=60,
            max_bytes in 1u64..=8 * GIB,
            large_threshold in 0u64..=2 * GIB,
        ) {
            // Items pick their source at random, so some sources are shared by several items.
            let items: Vec<UnitItem> = picks
                .iter()
                .enumerate()
                .map(|(i, pick)| {
                    let source = pick.index(source_sizes.len());
                    UnitItem {
                        key: format!("syn{i}.1"),
                        size: source_sizes[source],
                        source: format!("fh{source}"),
                    }
                })
                .collect();
            let limits = UnitLimits { max_files, max_bytes, large_threshold };
            let units = group_units(items.clone(), &limits).unwrap();

            let mut seen: Vec<UnitItem> = units.iter().flat_map(|u| u.items.clone()).collect();
            seen.sort_by(|a, b| a.key.cmp(&b.key));
            let mut expected = items.clone();
            expected.sort_by(|a, b| a.key.cmp(&b.key));
            prop_assert_eq!(seen, expected);

            let mut unit_of_source = BTreeMap::new();
            for unit in &units {
                prop_assert!(!unit.items.is_empty());
                let sources: BTreeMap<&str, u64> =
                    unit.items.iter().map(|i| (i.source.as_str(), i.size)).collect();
                for source in sources.keys() {
                    let first = unit_of_source.insert(source.to_string(), unit.unit_id.clone());
                    prop_assert!(first.is_none(), "source {} split over units", source);
                }
                prop_assert_eq!(unit.total_bytes, sources.values().sum::<u64>());
                match unit.kind {
                    UnitKind::Large => {
                        prop_assert_eq!(sources.len(), 1);
                        prop_assert!(unit.total_bytes > large_threshold);
                    }
                    UnitKind::Small => {
                        prop_assert!(unit.items.iter().all(|i| i.size <= large_threshold));
                        prop_assert!(
                            sources.len() == 1
                                || (unit.items.len() <= max_files && unit.total_bytes <= max_bytes)
                        );
                    }
                }
            }

            let mut reversed = items;
            reversed.reverse();
            prop_assert_eq!(group_units(reversed, &limits).unwrap(), units);
        }
    }

    #[test]
    fn invalid_budgets_and_limits_are_rejected() {
        let plan = PartPlan::new(GIB, 0).unwrap();
        for budget in [
            BatchBudget {
                safety_factor: 0.0,
                ..BatchBudget::default()
            },
            BatchBudget {
                safety_factor: 1.5,
                ..BatchBudget::default()
            },
            BatchBudget {
                safety_factor: f64::NAN,
                ..BatchBudget::default()
            },
            BatchBudget {
                throughput_bytes_per_sec: 0,
                ..BatchBudget::default()
            },
            BatchBudget {
                concurrency: 0,
                ..BatchBudget::default()
            },
        ] {
            assert!(matches!(
                part_batches(&plan, &budget),
                Err(PlanError::InvalidBudget(_))
            ));
        }
        for limits in [
            UnitLimits {
                max_files: 0,
                ..UnitLimits::default()
            },
            UnitLimits {
                max_bytes: 0,
                ..UnitLimits::default()
            },
        ] {
            assert!(matches!(
                group_units(Vec::new(), &limits),
                Err(PlanError::InvalidUnitLimits(_))
            ));
        }
    }

    #[test]
    fn units_put_big_sources_first_and_pack_small_ones_in_key_order() {
        let item = |key: &str, size, source: &str| UnitItem {
            key: key.into(),
            size,
            source: source.into(),
        };
        let limits = UnitLimits {
            max_files: 2,
            max_bytes: 100,
            large_threshold: 50,
        };
        let units = group_units(
            vec![
                item("e", 10, "fhE"),
                item("a", 60, "fhA"),
                item("d", 10, "fhD"),
                item("h", 45, "fhC"),
                item("b", 90, "fhB"),
                item("c", 45, "fhC"),
                item("a2", 60, "fhA"),
                item("f", 45, "fhF"),
                item("g", 0, "fhG"),
            ],
            &limits,
        )
        .unwrap();
        let shape: Vec<(&str, UnitKind, u64, Vec<&str>)> = units
            .iter()
            .map(|u| {
                (
                    u.unit_id.as_str(),
                    u.kind,
                    u.total_bytes,
                    u.items.iter().map(|i| i.key.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                ("unit-000001", UnitKind::Large, 90, vec!["b"]),
                ("unit-000002", UnitKind::Large, 60, vec!["a", "a2"]),
                ("unit-000003", UnitKind::Small, 45, vec!["c", "h"]),
                ("unit-000004", UnitKind::Small, 20, vec!["d", "e"]),
                ("unit-000005", UnitKind::Small, 45, vec!["f", "g"]),
            ]
        );
        let json = serde_json::to_value(&units[2]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"unitId": "unit-000003", "kind": "SMALL", "totalBytes": 45,
                "items": [{"key": "c", "size": 45, "source": "fhC"},
                          {"key": "h", "size": 45, "source": "fhC"}]})
        );
    }
}

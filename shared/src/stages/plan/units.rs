//! How the Plan stage groups the items to copy into work units for the Distributed Map. No
//! I/O here, so every boundary is property-tested.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use synapse_model::StorageLocationSetting;

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
    /// The item's own destination in an aligned run (its folder's upload location): a unit
    /// holds items of one destination only. `None` where the run has one destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<i64>,
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
    /// Where an aligned run's unit copies to (its items' destination, as Synapse describes
    /// it); `None` where the run has one destination for every unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<StorageLocationSetting>,
}

impl WorkUnit {
    /// The storage location its items go to in an aligned run.
    pub fn destination_id(&self) -> Option<i64> {
        self.items.first().and_then(|item| item.destination)
    }
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

/// Where a unit goes: the first Distributed Map, or the second one that runs after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    /// Copies its sources (and updates their first entities).
    Lead(WorkUnit),
    /// Updates more entities of sources a lead unit copied: the fan-in of a source shared by
    /// more items than a unit holds. The second Map starts when every lead unit is over, so
    /// these find their copies finished (or, if the lead failed, make them themselves).
    Follower(WorkUnit),
}

/// Groups items arriving in plan order ([`crate::state::plan_order_key`]: biggest sources
/// first, then by source and key) into work units as they come, holding at most one source's
/// unit-worth of items and one unit under construction: memory does not grow with the project.
///
/// - A source bigger than the large threshold gets a unit of its own (LARGE), copied in part
///   batches; the order makes these come first, largest first, so the longest copies start
///   earliest and the Map's tail is short.
/// - Smaller sources are packed into SMALL units of at most `max_files` items and `max_bytes`.
/// - Items sharing a source go to one unit, which makes the one copy they share. A source
///   shared by more than `max_files` items keeps its first `max_files` in that lead unit and
///   spreads the rest over follower units of at most `max_files` each ([`Planned::Follower`]),
///   so no unit's input or entity updates grow with the fan-in.
///
/// - Items of an aligned run go to different destinations: each destination has its own packers,
///   so a unit copies into one location, and a source shared by folders with different
///   locations is copied once into each.
///
/// Unit ids are `unit-000001`, ... for leads and `follower-000001`, ... for followers, in order.
pub struct UnitPlanner {
    limits: UnitLimits,
    packers: BTreeMap<Option<i64>, Packers>,
    /// Units made so far, leads and followers: their ids' numbers.
    made: (usize, usize),
    group: Option<SourceGroup>,
}

/// The lead and follower packers of one destination.
struct Packers {
    leads: Packer,
    followers: Packer,
}

/// The items of one source (into one destination) seen so far.
struct SourceGroup {
    source: String,
    destination: Option<i64>,
    size: u64,
    leads: Vec<UnitItem>,
    /// Followers not yet handed to the follower packer (fewer than `max_files`).
    followers: Vec<UnitItem>,
}

impl UnitPlanner {
    pub fn new(limits: UnitLimits) -> Result<Self, PlanError> {
        if limits.max_files == 0 {
            return Err(PlanError::InvalidUnitLimits("maxFiles must be at least 1"));
        }
        if limits.max_bytes == 0 {
            return Err(PlanError::InvalidUnitLimits("maxBytes must be at least 1"));
        }
        Ok(Self {
            limits,
            packers: BTreeMap::new(),
            made: (0, 0),
            group: None,
        })
    }

    /// Takes the next item in plan order; returns the units it completed.
    pub fn push(&mut self, item: UnitItem) -> Vec<Planned> {
        let mut done = Vec::new();
        match &mut self.group {
            Some(group) if group.source == item.source && group.destination == item.destination => {
                // All items of a source have its size; `max` keeps a disagreement safe.
                group.size = group.size.max(item.size);
                if group.leads.len() < self.limits.max_files {
                    group.leads.push(item);
                } else {
                    group.followers.push(item);
                    if group.followers.len() == self.limits.max_files {
                        let chunk = std::mem::take(&mut group.followers);
                        let (size, destination) = (group.size, group.destination);
                        let mut made = self.made.1;
                        let packers = self.packers_of(destination);
                        done.extend(
                            packers
                                .followers
                                .add(&mut made, size, chunk)
                                .into_iter()
                                .map(Planned::Follower),
                        );
                        self.made.1 = made;
                    }
                }
            }
            _ => {
                done.extend(self.close_group());
                self.group = Some(SourceGroup {
                    source: item.source.clone(),
                    destination: item.destination,
                    size: item.size,
                    leads: vec![item],
                    followers: Vec::new(),
                });
            }
        }
        done
    }

    /// Ends the input; returns the last units.
    pub fn finish(mut self) -> Vec<Planned> {
        let mut done = self.close_group();
        let (leads, followers) = &mut self.made;
        for packers in self.packers.values_mut() {
            done.extend(packers.leads.flush(leads).map(Planned::Lead));
        }
        for packers in self.packers.values_mut() {
            done.extend(packers.followers.flush(followers).map(Planned::Follower));
        }
        done
    }

    /// The packers of `destination`, made when it first comes.
    fn packers_of(&mut self, destination: Option<i64>) -> &mut Packers {
        let limits = self.limits;
        self.packers.entry(destination).or_insert_with(|| Packers {
            leads: Packer::new(limits, "unit"),
            followers: Packer::new(limits, "follower"),
        })
    }

    fn close_group(&mut self) -> Vec<Planned> {
        let Some(group) = self.group.take() else {
            return Vec::new();
        };
        let (mut leads, mut followers) = self.made;
        let packers = self.packers_of(group.destination);
        let mut done: Vec<Planned> = packers
            .leads
            .add(&mut leads, group.size, group.leads)
            .into_iter()
            .map(Planned::Lead)
            .collect();
        if !group.followers.is_empty() {
            done.extend(
                packers
                    .followers
                    .add(&mut followers, group.size, group.followers)
                    .into_iter()
                    .map(Planned::Follower),
            );
        }
        self.made = (leads, followers);
        done
    }
}

/// Packs groups of at most `max_files` items (one source each) into units; `made` counts the
/// units of its kind over every destination, for their ids.
struct Packer {
    limits: UnitLimits,
    prefix: &'static str,
    current: Vec<UnitItem>,
    current_bytes: u64,
}

impl Packer {
    fn new(limits: UnitLimits, prefix: &'static str) -> Self {
        Self {
            limits,
            prefix,
            current: Vec::new(),
            current_bytes: 0,
        }
    }

    /// Adds one source's group; returns the units completed (at most two: the small unit it
    /// did not fit in, and its own large one).
    fn add(&mut self, made: &mut usize, size: u64, items: Vec<UnitItem>) -> Vec<WorkUnit> {
        if size > self.limits.large_threshold {
            let flushed = self.flush(made);
            let large = self.unit(made, UnitKind::Large, size, items);
            return flushed.into_iter().chain([large]).collect();
        }
        let full = self.current.len() + items.len() > self.limits.max_files
            || self.current_bytes.saturating_add(size) > self.limits.max_bytes;
        let flushed = if full { self.flush(made) } else { None };
        self.current_bytes = self.current_bytes.saturating_add(size);
        self.current.extend(items);
        flushed.into_iter().collect()
    }

    /// The small unit under construction, if any.
    fn flush(&mut self, made: &mut usize) -> Option<WorkUnit> {
        if self.current.is_empty() {
            return None;
        }
        let items = std::mem::take(&mut self.current);
        let bytes = std::mem::take(&mut self.current_bytes);
        Some(self.unit(made, UnitKind::Small, bytes, items))
    }

    fn unit(
        &self,
        made: &mut usize,
        kind: UnitKind,
        total_bytes: u64,
        items: Vec<UnitItem>,
    ) -> WorkUnit {
        *made += 1;
        WorkUnit {
            unit_id: format!("{}-{made:06}", self.prefix),
            kind,
            total_bytes,
            items,
            destination: None,
        }
    }
}

/// Groups items given in any order: sorts them into plan order and runs a [`UnitPlanner`]
/// over them (the tests' way to make units; the Plan stage streams instead).
#[cfg(test)]
pub(crate) fn group_units(
    items: impl IntoIterator<Item = UnitItem>,
    limits: &UnitLimits,
) -> Result<Vec<Planned>, PlanError> {
    let mut planner = UnitPlanner::new(*limits)?;
    let mut items: Vec<UnitItem> = items.into_iter().collect();
    items.sort_by_cached_key(UnitItem::plan_order);
    let mut planned = Vec::new();
    for item in items {
        planned.extend(planner.push(item));
    }
    planned.extend(planner.finish());
    Ok(planned)
}

#[cfg(test)]
impl UnitItem {
    /// The item's place in the Plan's order ([`crate::state::plan_order_key`]'s: size
    /// descending, source, destination, key; here by the key's text, which only reorders
    /// within a source's destination).
    fn plan_order(&self) -> (std::cmp::Reverse<u64>, String, Option<i64>, String) {
        (
            std::cmp::Reverse(self.size),
            self.source.clone(),
            self.destination,
            self.key.clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::copy::parts::{part_batches, BatchBudget, PartPlan};
    use proptest::prelude::*;

    fn unit(planned: &Planned) -> &WorkUnit {
        match planned {
            Planned::Lead(unit) | Planned::Follower(unit) => unit,
        }
    }

    proptest! {

        #[test]
        fn units_hold_every_item_once_within_limits(
            source_sizes in proptest::collection::vec(0u64..=3 * GIB, 1..150),
            picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..300),
            max_files in 1usize..=60,
            max_bytes in 1u64..=8 * GIB,
            large_threshold in 0u64..=2 * GIB,
            destinations in 0i64..=3,
        ) {
            // Items pick their source at random, so some sources are shared by several items
            // (and some by more than a unit holds); in an aligned run (`destinations` > 0) they
            // also go to one of several locations, so a source may be copied into each.
            let items: Vec<UnitItem> = picks
                .iter()
                .enumerate()
                .map(|(i, pick)| {
                    let source = pick.index(source_sizes.len());
                    UnitItem {
                        key: format!("syn{i}.1"),
                        size: source_sizes[source],
                        source: format!("fh{source}"),
                        destination: (destinations > 0).then(|| 7000 + i as i64 % destinations),
                    }
                })
                .collect();
            let limits = UnitLimits { max_files, max_bytes, large_threshold };
            let planned = group_units(items.clone(), &limits).unwrap();

            let mut seen: Vec<UnitItem> =
                planned.iter().flat_map(|p| unit(p).items.clone()).collect();
            seen.sort_by(|a, b| a.key.cmp(&b.key));
            let mut expected = items.clone();
            expected.sort_by(|a, b| a.key.cmp(&b.key));
            prop_assert_eq!(seen, expected);

            // Every copy's items (a source into a destination) start in one lead unit (the
            // manifests are apart, so the order of leads and followers between them does not
            // matter).
            let mut lead_unit_of_source: BTreeMap<(&str, Option<i64>), &WorkUnit> =
                BTreeMap::new();
            for planned in &planned {
                if let Planned::Lead(unit) = planned {
                    for item in &unit.items {
                        let first =
                            lead_unit_of_source.insert((&item.source, item.destination), unit);
                        prop_assert!(
                            first.is_none_or(|u| u.unit_id == unit.unit_id),
                            "source {} in two lead units", item.source
                        );
                    }
                }
            }
            let mut last_large_size = u64::MAX;
            for planned in &planned {
                let unit = unit(planned);
                prop_assert!(!unit.items.is_empty());
                // No unit grows with the fan-in: at most max_files items, whatever the sharing.
                prop_assert!(unit.items.len() <= max_files);
                // A unit copies into one location.
                prop_assert!(unit.items.iter().all(|i| i.destination == unit.destination_id()));
                let sources: BTreeMap<&str, u64> =
                    unit.items.iter().map(|i| (i.source.as_str(), i.size)).collect();
                prop_assert_eq!(unit.total_bytes, sources.values().sum::<u64>());
                if let Planned::Follower(_) = planned {
                    for source in sources.keys() {
                        // A follower's source has a lead unit full of its items.
                        let lead = lead_unit_of_source.get(&(*source, unit.destination_id()));
                        prop_assert!(lead.is_some(), "follower of {} without a lead", source);
                        let lead_items = lead
                            .unwrap()
                            .items
                            .iter()
                            .filter(|i| i.source == *source && i.destination == unit.destination_id())
                            .count();
                        prop_assert_eq!(lead_items, max_files);
                    }
                }
                match unit.kind {
                    UnitKind::Large => {
                        prop_assert_eq!(sources.len(), 1);
                        prop_assert!(unit.total_bytes > large_threshold);
                        if let Planned::Lead(_) = planned {
                            // Big sources first, largest first.
                            prop_assert!(unit.total_bytes <= last_large_size);
                            last_large_size = unit.total_bytes;
                        }
                    }
                    UnitKind::Small => {
                        prop_assert!(unit.items.iter().all(|i| i.size <= large_threshold));
                        prop_assert!(sources.len() == 1 || unit.total_bytes <= max_bytes);
                        if let Planned::Lead(_) = planned {
                            last_large_size = 0;
                        }
                    }
                }
            }

            let mut reversed = items;
            reversed.reverse();
            prop_assert_eq!(group_units(reversed, &limits).unwrap(), planned);
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
    fn units_put_big_sources_first_pack_small_ones_by_size_and_spread_a_wide_fan_in() {
        let item = |key: &str, size, source: &str| UnitItem {
            key: key.into(),
            size,
            source: source.into(),
            destination: None,
        };
        let limits = UnitLimits {
            max_files: 2,
            max_bytes: 100,
            large_threshold: 50,
        };
        let planned = group_units(
            vec![
                item("e", 10, "fhE"),
                item("a", 60, "fhA"),
                item("x4", 5, "fhX"),
                item("d", 10, "fhD"),
                item("h", 45, "fhC"),
                item("x1", 5, "fhX"),
                item("b", 90, "fhB"),
                item("c", 45, "fhC"),
                item("x3", 5, "fhX"),
                item("a2", 60, "fhA"),
                item("f", 45, "fhF"),
                item("x5", 5, "fhX"),
                item("g", 0, "fhG"),
                item("x2", 5, "fhX"),
            ],
            &limits,
        )
        .unwrap();
        fn shape(u: &WorkUnit) -> (&str, UnitKind, u64, Vec<&str>) {
            (
                u.unit_id.as_str(),
                u.kind,
                u.total_bytes,
                u.items.iter().map(|i| i.key.as_str()).collect(),
            )
        }
        let (mut leads, mut followers) = (Vec::new(), Vec::new());
        for p in &planned {
            match p {
                Planned::Lead(u) => leads.push(shape(u)),
                Planned::Follower(u) => followers.push(shape(u)),
            }
        }
        assert_eq!(
            leads,
            vec![
                ("unit-000001", UnitKind::Large, 90, vec!["b"]),
                ("unit-000002", UnitKind::Large, 60, vec!["a", "a2"]),
                ("unit-000003", UnitKind::Small, 45, vec!["c", "h"]),
                ("unit-000004", UnitKind::Small, 55, vec!["f", "d"]),
                ("unit-000005", UnitKind::Small, 10, vec!["e"]),
                // fhX is shared by five items: its first two copy it, the rest follow.
                ("unit-000006", UnitKind::Small, 5, vec!["x1", "x2"]),
                ("unit-000007", UnitKind::Small, 0, vec!["g"]),
            ]
        );
        assert_eq!(
            followers,
            vec![
                ("follower-000001", UnitKind::Small, 5, vec!["x3", "x4"]),
                ("follower-000002", UnitKind::Small, 5, vec!["x5"]),
            ]
        );
        let Planned::Lead(third) = &planned[2] else {
            panic!("the third unit is a lead: {planned:?}");
        };
        assert_eq!(
            serde_json::to_value(third).unwrap(),
            serde_json::json!({"unitId": "unit-000003", "kind": "SMALL", "totalBytes": 45,
                "items": [{"key": "c", "size": 45, "source": "fhC"},
                          {"key": "h", "size": 45, "source": "fhC"}]})
        );
    }
}

//! The model's arithmetic on small hand-computed cases.

use std::collections::BTreeMap;

use super::*;
use crate::config::{FileVersionStrategy, MigrationOptions};
use crate::context::Tuning;
use crate::copy::parts::{GIB, MIB, TIB};
use crate::copy::CopyMode;
use crate::stages::plan::units::{Planned, UnitItem, UnitKind, UnitLimits, UnitPlanner, WorkUnit};

fn params(engine: EngineKind, strategy: FileVersionStrategy, mode: CopyMode) -> Params {
    let options = MigrationOptions {
        file_version_strategy: strategy,
        copy_mode: mode,
        part_size_bytes: 5 * MIB,
        ..MigrationOptions::default()
    };
    Params::new(&options, engine, &Tuning::default())
}

fn item(key: &str, source: &str, size: u64) -> UnitItem {
    UnitItem {
        key: key.into(),
        size,
        source: source.into(),
        destination: None,
    }
}

fn lead(kind: UnitKind, items: Vec<UnitItem>) -> Planned {
    Planned::Lead(WorkUnit {
        unit_id: "unit-000001".into(),
        kind,
        total_bytes: 0,
        items,
        destination: None,
    })
}

/// Two versions sharing a 10-byte source, and a 12 MiB + 4321 B file: 3 parts of 5 MiB.
fn small_unit() -> Planned {
    lead(
        UnitKind::Small,
        vec![
            item("syn1.1", "fh-a", 10),
            item("syn2.1", "fh-a", 10),
            item("syn3.1", "fh-b", 12 * MIB + 4321),
        ],
    )
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
}

#[test]
fn the_synapse_engine_starts_presigns_adds_each_part_and_completes_each_copy() {
    let mut work = Tally::default();
    let p = params(
        EngineKind::Synapse,
        FileVersionStrategy::New,
        CopyMode::Synapse,
    );
    work.add(&small_unit(), &p).unwrap();
    assert_eq!((work.files, work.copies, work.parts), (3, 2, 4));
    assert_eq!(work.bytes, 10 + 12 * MIB + 4321);
    assert_eq!((work.lead_units, work.part_batches), (1, 0));
    assert_eq!(
        work.synapse,
        counts(&[
            (endpoint::BUNDLE, 3),
            (endpoint::PUT_ENTITY, 3),
            // StartCopy reads the sources, Complete the copies: 2 handles, one call each.
            (endpoint::HANDLE_BATCH, 2),
            (endpoint::START_COPY, 2),
            // One presign for the single part, one for the 3 parts (8 a call).
            (endpoint::PRESIGN, 2),
            (endpoint::ADD_PART, 4),
            (endpoint::COMPLETE_COPY, 2),
        ])
    );
    assert_eq!(
        work.s3,
        counts(&[
            ("CreateMultipartUpload", 2),
            ("UploadPartCopy", 4),
            ("CompleteMultipartUpload", 2),
        ])
    );
}

#[test]
fn the_direct_engine_copies_small_sources_whole_and_registers_each() {
    let mut work = Tally::default();
    let p = params(
        EngineKind::Direct,
        FileVersionStrategy::Latest,
        CopyMode::Auto,
    );
    work.add(&small_unit(), &p).unwrap();
    assert_eq!((work.copies, work.parts), (2, 2));
    assert_eq!(
        work.synapse,
        counts(&[
            (endpoint::BUNDLE, 3),
            (endpoint::SWAP_HANDLE, 3),
            (endpoint::HANDLE_BATCH, 1),
            (endpoint::EXTERNAL_HANDLE, 2),
        ])
    );
    // auto: a HeadObject to choose, one at start, one of the copy; then one CopyObject.
    assert_eq!(work.s3, counts(&[("HeadObject", 6), ("CopyObject", 2)]));
}

#[test]
fn all_lists_versions_once_per_entity_with_a_second_version_and_deletes_sources_on_request() {
    let mut work = Tally::default();
    let mut p = params(
        EngineKind::Direct,
        FileVersionStrategy::All,
        CopyMode::Direct,
    );
    p.delete_sources = true;
    let unit = lead(
        UnitKind::Small,
        vec![
            item("syn1.1", "fh-1", 10),
            item("syn1.2", "fh-2", 10),
            item("syn1.3", "fh-3", 10),
            item("syn2.1", "fh-4", 10),
        ],
    );
    work.add(&unit, &p).unwrap();
    assert_eq!(work.synapse[endpoint::VERSIONS], 1);
    assert_eq!(work.synapse[endpoint::VERSION_BUNDLE], 4);
    assert_eq!(work.synapse[endpoint::DELETE_HANDLE], 4);
    assert_eq!(work.s3["HeadObject"], 8);
}

/// 1 TiB at the default 100 MiB parts would need 10,486 parts: the part size grows to
/// ceil(2^40 / 10,000) = 109,951,163 bytes, 10,000 parts. A batch is 600 s x 0.5 x 60 MiB/s =
/// 18,874,368,000 bytes: 171 parts' worth, times 8 in flight = 1,368 parts; 8 batches (7 full,
/// one of 424).
#[test]
fn a_big_file_is_cut_into_ten_thousand_parts_in_eight_batches() {
    let unit = lead(UnitKind::Large, vec![item("syn9.1", "fh-big", TIB)]);
    let options = MigrationOptions::default();
    let synapse = Params::new(&options, EngineKind::Synapse, &Tuning::default());
    let mut work = Tally::default();
    work.add(&unit, &synapse).unwrap();
    assert_eq!((work.parts, work.part_batches), (10_000, 8));
    assert_eq!(work.batch_bytes, TIB);
    assert_eq!(work.synapse[endpoint::ADD_PART], 10_000);
    // 7 x 1,368 / 8 + ceil(424 / 8).
    assert_eq!(work.synapse[endpoint::PRESIGN], 7 * 171 + 53);

    let direct = Params::new(&options, EngineKind::Direct, &Tuning::default());
    let mut work = Tally::default();
    work.add(&unit, &direct).unwrap();
    assert_eq!((work.parts, work.part_batches), (10_000, 8));
    assert_eq!(
        work.s3,
        counts(&[
            ("HeadObject", 2),
            ("ListMultipartUploads", 1),
            ("CreateMultipartUpload", 1),
            ("UploadPartCopy", 10_000),
            ("ListParts", 10),
            ("CompleteMultipartUpload", 1),
        ])
    );
}

#[test]
fn a_source_shared_by_more_items_than_a_unit_holds_is_copied_once_and_spread_over_followers() {
    let mut planner = UnitPlanner::new(UnitLimits::default()).unwrap();
    let p = params(
        EngineKind::Synapse,
        FileVersionStrategy::New,
        CopyMode::Synapse,
    );
    let mut work = Tally::default();
    let mut planned: Vec<Planned> = (1..=120)
        .flat_map(|n| planner.push(item(&format!("syn{n}.1"), "fh-shared", GIB / 2)))
        .collect();
    planned.extend(planner.finish());
    for unit in &planned {
        work.add(unit, &p).unwrap();
    }
    assert_eq!((work.lead_units, work.follower_units), (1, 2));
    assert_eq!((work.files, work.copies), (120, 1));
    assert_eq!(work.synapse[endpoint::START_COPY], 1);
    assert_eq!(work.synapse[endpoint::PUT_ENTITY], 120);
    work.add_run(true);
    // A listing page per 50 files; two manifests written and read, and the report.
    assert_eq!(work.synapse[endpoint::CHILDREN], 3);
    assert_eq!(work.s3["PutObject"], 3);
    assert_eq!(work.s3["GetObject"], 2);
    let estimate = Estimate::new(work, &p).unwrap();
    let t = Transitions::deployed().unwrap();
    assert_eq!(
        estimate.transitions,
        t.run_once + t.index_loop + 3 * t.per_unit + t.follower_pass
    );
}

#[test]
fn an_hour_of_calls_at_the_budget_takes_six_index_invocations() {
    let work = Tally {
        files: 3,
        lead_units: 1,
        synapse: counts(&[(endpoint::BUNDLE, 540 * 60)]),
        ..Tally::default()
    };
    let p = params(
        EngineKind::Synapse,
        FileVersionStrategy::New,
        CopyMode::Synapse,
    );
    let estimate = Estimate::new(work, &p).unwrap();
    assert_eq!(estimate.synapse_calls, 32_400);
    assert!((estimate.synapse_hours - 1.0).abs() < 1e-12);
    assert_eq!(estimate.bound_by, Bound::Synapse);
    let t = Transitions::deployed().unwrap();
    // 3,600 s of Index at its 600 s a invocation.
    assert_eq!(
        estimate.transitions,
        t.run_once + 6 * t.index_loop + t.per_unit
    );
    // Init, 6 Index, Plan, StartCopy, Complete, Report, Notify.
    assert_eq!(estimate.lambda.invocations, 12);
    // Reads (0.025 + 1 + 3) x 3 + 2 = 14.075; writes (1.13 + 3 + 7) x 3 + 16 + 32,400 / 9 =
    // 3,649.39; units at 1.08 and 1.7 a request, each rounded.
    assert_eq!(
        estimate.dynamodb,
        DynamoUse {
            reads: 14,
            writes: 3_649,
            read_units: 15,
            write_units: 6_203,
        }
    );
    let dollars = &estimate.dollars;
    assert!((dollars.dynamodb - (6_203.0 * 1.25 + 15.0 * 0.25) / 1e6).abs() < 1e-12);
    let sum = dollars.step_functions + dollars.lambda + dollars.dynamodb + dollars.s3;
    assert!((dollars.total - sum).abs() < 1e-12);
}

#[test]
fn bytes_bind_when_they_take_longer_than_the_calls() {
    // An hour of bytes: 60 MiB/s a request, 10 units x 4 sources in flight.
    let bytes = 60 * MIB * 10 * 4 * 3600;
    let work = Tally {
        files: 1,
        bytes,
        copies: 1,
        lead_units: 1,
        synapse: counts(&[(endpoint::EXTERNAL_HANDLE, 10)]),
        ..Tally::default()
    };
    let p = params(
        EngineKind::Direct,
        FileVersionStrategy::New,
        CopyMode::Direct,
    );
    let estimate = Estimate::new(work, &p).unwrap();
    assert!((estimate.copy_hours - 1.0).abs() < 1e-12);
    assert_eq!(estimate.hours, estimate.copy_hours);
    assert_eq!(estimate.bound_by, Bound::S3Copy);
}

#[test]
fn auto_counts_direct_copies_only_into_an_external_s3_destination() {
    assert_eq!(
        Params::engine_for(CopyMode::Auto, Some(true)),
        EngineKind::Direct
    );
    assert_eq!(
        Params::engine_for(CopyMode::Auto, Some(false)),
        EngineKind::Synapse
    );
    assert_eq!(
        Params::engine_for(CopyMode::Auto, None),
        EngineKind::Synapse
    );
    assert_eq!(
        Params::engine_for(CopyMode::Direct, None),
        EngineKind::Direct
    );
}

#[test]
fn an_index_budget_under_a_second_counts_as_a_second() {
    let work = Tally {
        synapse: counts(&[(endpoint::BUNDLE, 27)]),
        ..Tally::default()
    };
    let mut p = params(
        EngineKind::Synapse,
        FileVersionStrategy::New,
        CopyMode::Synapse,
    );
    p.tuning.index_time_budget = std::time::Duration::ZERO;
    // 27 calls at 540/min: 3 s, 3 invocations of a second.
    let estimate = Estimate::new(work, &p).unwrap();
    let t = Transitions::deployed().unwrap();
    assert_eq!(estimate.transitions, t.run_once + 3 * t.index_loop);
}

//! Unit tests of the stages that only touch the state store.

#[cfg(feature = "fault-injection")]
use std::sync::atomic::Ordering;
use std::sync::Arc;

use synapse_model::concrete;

use super::plan::units::{self, Planned, UnitItem, UnitLimits, WorkUnit};
use super::plan::Candidates;
use super::*;
use crate::config::MigrationOptions;
use crate::error::types;
use crate::state::memory::MemoryStore;
use crate::state::Lease;
use crate::state::{
    ItemError, ItemKey, ItemRecord, ItemStatus, RunStatus, StateStore, StatusName, Transition,
};
use crate::synapse::SynapseClient;
use crate::synapse::{ClientConfig, SynapseToken};
use crate::Error;

/// Services whose clients point at a closed port: these tests only touch the store.
fn services(store: Arc<MemoryStore>) -> Services {
    let synapse = SynapseClient::new(ClientConfig::new(
        "http://127.0.0.1:9/repo/v1",
        "http://127.0.0.1:9/file/v1",
        SynapseToken::new("unused").unwrap(),
    ))
    .unwrap();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .build(),
    );
    Services::new(synapse, store, s3, "bucket", Tuning::default())
}

fn run() -> RunContext {
    RunContext {
        project_id: "syn1".into(),
        destination_storage_location_id: Some(7001),
        run_id: "run-2".into(),
        options: MigrationOptions::default(),
        destination: serde_json::from_value(serde_json::json!({
            "concreteType": concrete::EXTERNAL_S3_STORAGE_LOCATION,
            "storageLocationId": 7001, "bucket": "dest"
        }))
        .unwrap(),
    }
}

fn item(entity: &str, status: ItemStatus, attempts: u32, lease: Option<Lease>) -> ItemRecord {
    ItemRecord {
        key: ItemKey::new(entity, 1).unwrap(),
        source_file_handle_id: format!("fh-{entity}"),
        size: 10,
        content_md5: None,
        source_storage_location_id: Some(1),
        file_name: "a.txt".into(),
        destination_file_name: None,
        entity: None,
        status,
        destination_file_handle_id: None,
        attempts,
        lease,
        updated_at: 0,
        run_id: "run-1".into(),
        verified_by: None,
        source_handle: None,
        destination_storage_location_id: None,
        column_name: None,
    }
}

fn errored(class: &str) -> ItemStatus {
    ItemStatus::Errored(ItemError {
        class: class.into(),
        message: "m".into(),
        retryable: types::is_retryable(class),
    })
}

/// Writes `items` in their status: put for the listed ones, then transitions for leases.
async fn seed(store: &MemoryStore, items: &[ItemRecord]) {
    let migration = run().migration().unwrap();
    for record in items {
        let in_flight = matches!(record.status, ItemStatus::Copying | ItemStatus::Copied);
        let mut indexed = record.clone();
        if in_flight {
            indexed.status = ItemStatus::Indexed;
        }
        store.put_item(&migration, &indexed, 100).await.unwrap();
        if in_flight {
            let lease = record.lease.clone().unwrap();
            let t = Transition {
                from: StatusName::Indexed,
                to: record.status.clone(),
                owner: lease.owner,
                lease_until: Some(lease.expires_at),
                destination_file_handle_id: None,
                count_attempt: false,
                verified_by: None,
                run_id: "run-1".into(),
                now: 0,
            };
            store
                .transition_item(&migration, &record.key, &t)
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn plan_takes_indexed_retryable_and_abandoned_items_only() {
    let store = Arc::new(MemoryStore::new());
    let expired = Some(Lease {
        owner: "run-1/unit-000001".into(),
        expires_at: 1,
    });
    let live = Some(Lease {
        owner: "run-1/unit-000002".into(),
        expires_at: now() + 3600,
    });
    seed(
        &store,
        &[
            item("syn10", ItemStatus::Indexed, 0, None),
            item("syn11", errored(types::TRANSIENT), 1, None),
            item("syn12", errored(types::TRANSIENT), 3, None),
            item("syn13", errored(types::FORBIDDEN), 1, None),
            item("syn14", ItemStatus::Copying, 1, expired),
            item("syn15", ItemStatus::Copying, 1, live),
            item("syn16", ItemStatus::Migrated, 1, None),
        ],
    )
    .await;
    let services = services(store);
    let mut keys: Vec<String> = candidates(&services)
        .await
        .into_iter()
        .map(|i| i.key.to_string())
        .collect();
    keys.sort();
    assert_eq!(keys, ["syn10.1", "syn11.1", "syn14.1"]);
}

/// Every candidate Plan reads, in its order.
async fn candidates(services: &Services) -> Vec<ItemRecord> {
    let mut candidates = Candidates::new(services.store.as_ref(), &run()).unwrap();
    let mut read = Vec::new();
    while let Some(item) = candidates.next().await.unwrap() {
        read.push(item);
    }
    read
}

#[tokio::test]
async fn plan_reads_candidates_of_every_status_biggest_source_first_and_a_source_together() {
    let store = Arc::new(MemoryStore::new());
    let expired = Some(Lease {
        owner: "run-1/unit-000001".into(),
        expires_at: 1,
    });
    // Two sources of the same size, each with items in three statuses, and a bigger and a
    // smaller one; more items of each status than a listing page holds, so the merge crosses
    // pages.
    let count = 3 * (crate::context::LIST_PAGE as usize + 50);
    let mut items = Vec::new();
    for n in 0..count {
        let (source, size) = match n % 4 {
            0 => ("fh-b", 50),
            1 => ("fh-a", 50),
            2 => ("fh-big", 900),
            _ => ("fh-small", 1),
        };
        let status = match n % 3 {
            0 => ItemStatus::Indexed,
            1 => errored(types::TRANSIENT),
            _ => ItemStatus::Copying,
        };
        let lease = matches!(status, ItemStatus::Copying).then(|| expired.clone().unwrap());
        let mut record = item(&format!("syn{}", 10000 + n), status, 1, lease);
        record.source_file_handle_id = source.into();
        record.size = size;
        items.push(record);
    }
    seed(&store, &items).await;
    let read = candidates(&services(store)).await;
    assert_eq!(read.len(), count);
    let order: Vec<(u64, &str)> = read
        .iter()
        .map(|i| (i.size, i.source_file_handle_id.as_str()))
        .collect();
    let mut sources: Vec<(u64, &str)> = order.clone();
    sources.dedup();
    assert_eq!(
        sources,
        [(900, "fh-big"), (50, "fh-a"), (50, "fh-b"), (1, "fh-small")],
        "each source's items come together, biggest source first"
    );
    // Within a source, by item key.
    let keys: Vec<String> = read.iter().map(|i| i.key.sk()).collect();
    for (pair, sources) in keys.windows(2).zip(order.windows(2)) {
        if sources[0] == sources[1] {
            assert!(pair[0] < pair[1], "{pair:?}");
        }
    }
}

/// A unit of `items` as Plan would make it (the first lead unit).
fn unit_of(items: impl IntoIterator<Item = UnitItem>) -> WorkUnit {
    match units::group_units(items, &UnitLimits::default())
        .unwrap()
        .remove(0)
    {
        Planned::Lead(unit) => unit,
        Planned::Follower(unit) => panic!("a follower first: {unit:?}"),
    }
}

#[tokio::test]
async fn record_failure_marks_unfinished_items_with_the_step_error() {
    let store = Arc::new(MemoryStore::new());
    seed(
        &store,
        &[
            item("syn20", ItemStatus::Indexed, 0, None),
            item(
                "syn21",
                ItemStatus::Copying,
                1,
                Some(Lease {
                    owner: "run-2/unit-000001".into(),
                    expires_at: now() + 600,
                }),
            ),
            item("syn22", ItemStatus::Migrated, 1, None),
        ],
    )
    .await;
    let migration = run().migration().unwrap();
    // syn21's and syn22's copies are finished; only syn22's entity points at its copy.
    for source in ["fh-syn21", "fh-syn22"] {
        store
            .claim_copy(&migration, source, "w", now() + 60, now())
            .await
            .unwrap();
        store
            .complete_copy(
                &migration,
                source,
                "w",
                &format!("{source}-copy"),
                None,
                now(),
            )
            .await
            .unwrap();
    }
    // syn20's copy was started by the failed unit and is still leased to it.
    store
        .claim_copy(
            &migration,
            "fh-syn20",
            "run-2/unit-000001",
            now() + 600,
            now(),
        )
        .await
        .unwrap();
    let services = services(store.clone());
    let unit = unit_of(["syn20", "syn21", "syn22"].map(|e| UnitItem {
        key: format!("{e}.1"),
        size: 10,
        source: format!("fh-{e}"),
        destination: None,
    }));
    let failure: StepFailure = serde_json::from_value(serde_json::json!({
        "Error": types::THROTTLED, "Cause": "Lambda throttled"
    }))
    .unwrap();
    let output = record_failure(
        &services,
        RecordFailureInput {
            run: run(),
            unit,
            failure,
        },
    )
    .await
    .unwrap();
    assert_eq!(output.errored, 2);
    // The unit is over: its copy lease is released, the next run claims the copy at once.
    let next = store
        .claim_copy(
            &migration,
            "fh-syn20",
            "run-3/unit-000001",
            now() + 600,
            now(),
        )
        .await
        .unwrap();
    assert_eq!(next.lease.unwrap().owner, "run-3/unit-000001");
    // The copy no entity points at is marked with the unit's failure; the used one is not.
    let orphans = crate::state::orphaned_copies(store.as_ref(), &migration)
        .await
        .unwrap();
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0].source_file_handle_id, "fh-syn21");
    assert_eq!(
        orphans[0].unused_reason.as_deref(),
        Some("Retryable.Throttled: Lambda throttled")
    );
    for (entity, expected) in [
        ("syn20", StatusName::Errored),
        ("syn21", StatusName::Errored),
        ("syn22", StatusName::Migrated),
    ] {
        let stored = store
            .get_item(&migration, &ItemKey::new(entity, 1).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.status.name(), expected, "{entity}");
        if let ItemStatus::Errored(error) = stored.status {
            assert_eq!(error.class, types::THROTTLED);
            assert!(error.retryable);
            assert_eq!(error.message, "Lambda throttled");
            assert!(stored.lease.is_none());
        }
    }
}

/// The error RecordFailure stores on an INDEXED item of a unit that failed with `error`.
async fn recorded_error(error: &str) -> ItemError {
    let store = Arc::new(MemoryStore::new());
    seed(&store, &[item("syn30", ItemStatus::Indexed, 0, None)]).await;
    let unit = unit_of([UnitItem {
        key: "syn30.1".into(),
        size: 10,
        source: "fh-syn30".into(),
        destination: None,
    }]);
    let failure: StepFailure =
        serde_json::from_value(serde_json::json!({"Error": error, "Cause": "c"})).unwrap();
    let input = RecordFailureInput {
        run: run(),
        unit,
        failure,
    };
    record_failure(&services(store.clone()), input)
        .await
        .unwrap();
    let stored = store
        .get_item(
            &run().migration().unwrap(),
            &ItemKey::new("syn30", 1).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    match stored.status {
        ItemStatus::Errored(error) => error,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_crashed_function_leaves_its_items_retryable() {
    for crash in ["Runtime.ExitError", "Sandbox.Timedout", "Lambda.Unknown"] {
        let error = recorded_error(crash).await;
        assert_eq!(error.class, crash);
        assert!(error.retryable, "{crash}");
    }
    // A run that lost its lock stops, and leaves its files to the run that took it.
    assert!(recorded_error(types::LOCK_LOST).await.retryable);
    assert!(!recorded_error("States.Runtime").await.retryable);
    assert!(!recorded_error(types::CONFLICT).await.retryable);
}

#[tokio::test]
async fn close_run_marks_the_run_failed_and_frees_the_lock_if_still_ours() {
    let store = Arc::new(MemoryStore::new());
    let services = services(store.clone());
    let run = run();
    let migration = run.migration().unwrap();
    store
        .acquire_lock(&migration, &run.run_id, now() + 3600, now())
        .await
        .unwrap();
    store
        .create_run(&migration, &run.run_id, &serde_json::json!({}), now())
        .await
        .unwrap();
    let input = || CloseRunInput {
        project_id: run.project_id.clone(),
        destination_storage_location_id: run.destination_storage_location_id,
        run_id: run.run_id.clone(),
    };
    let closed = close_run(&services, input()).await.unwrap();
    assert!(closed.released);
    assert_eq!(store.get_lock(&migration).await.unwrap(), None);
    let record = store
        .get_run(&migration, &run.run_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, RunStatus::Failed);
    // Repeated (a retry), and after another run took the lock: nothing of the other's is touched.
    store
        .acquire_lock(&migration, "next-run", now() + 3600, now())
        .await
        .unwrap();
    let again = close_run(&services, input()).await.unwrap();
    assert!(!again.released);
    assert_eq!(
        store.get_lock(&migration).await.unwrap().map(|l| l.owner),
        Some("next-run".to_owned())
    );
    // A run that never opened (Init failed before create_run) has nothing to mark.
    let unopened = CloseRunInput {
        run_id: "never-opened".into(),
        ..input()
    };
    let closed = close_run(&services, unopened).await.unwrap();
    assert!(!closed.released);
}

#[tokio::test]
async fn a_run_whose_lock_was_taken_stops_with_lock_lost() {
    let store = Arc::new(MemoryStore::new());
    let run = run();
    store
        .acquire_lock(&run.migration().unwrap(), "newer-run", now() + 600, now())
        .await
        .unwrap();
    let error = plan(&services(store), PlanInput { run }).await.unwrap_err();
    assert_eq!(error.error_type(), types::LOCK_LOST, "{error}");
    assert!(error.to_string().contains("newer-run"), "{error}");
}

#[test]
fn unfinished_files_are_counted_and_explained() {
    use super::report::Unfinished;
    let at = 1_800_000_000;
    let lease = |expires_at| {
        Some(Lease {
            owner: "dead/unit-000001".into(),
            expires_at,
        })
    };
    let mut unfinished = Unfinished::default();
    for item in [
        item("syn1", ItemStatus::Indexed, 0, None),
        item("syn2", ItemStatus::Copying, 1, lease(at + 60)),
        item("syn3", ItemStatus::Copied, 1, lease(at + 600)),
        item("syn4", ItemStatus::Copying, 1, lease(at - 1)),
        item("syn5", ItemStatus::Migrated, 1, None),
        item("syn6", errored(types::CONFLICT), 1, None),
    ] {
        unfinished.add(&item, at);
    }
    assert_eq!(unfinished.count(), 4);
    assert_eq!(
        unfinished.message().unwrap(),
        "2 files are held by an earlier attempt until 2027-01-15T08:10:00Z; run again after \
         that; 2 files were not migrated by this run; run again"
    );
    assert_eq!(Unfinished::default().message(), None);
}

#[cfg(feature = "fault-injection")]
#[test]
fn fault_hook_fires_as_often_as_armed() {
    let hooks = FaultHooks::default();
    assert!(!hooks.fire_after_entity_update());
    hooks.fail_after_entity_update.store(2, Ordering::SeqCst);
    assert!(hooks.fire_after_entity_update());
    assert!(hooks.fire_after_entity_update());
    assert!(!hooks.fire_after_entity_update());
}

#[test]
fn payloads_are_camel_case_and_keys_are_per_run() {
    let run = run();
    let json = serde_json::to_value(&run).unwrap();
    assert_eq!(json["projectId"], "syn1");
    assert_eq!(json["destinationStorageLocationId"], 7001);
    assert_eq!(json["options"]["fileVersionStrategy"], "new");
    assert_eq!(run.manifest_key(), "runs/run-2/manifest.json");
    assert_eq!(run.report_key(), "runs/run-2/report.csv");
    assert_eq!(run.unit_owner("unit-000003"), "run-2/unit-000003");
    let failure = StepFailure::from(&Error::Forbidden("no".into()));
    let json = serde_json::to_value(&failure).unwrap();
    assert_eq!(json["Error"], types::FORBIDDEN);
    let input: InitInput = serde_json::from_value(serde_json::json!({
        "projectId": "syn1", "destinationStorageLocationId": 7001, "executionName": "e"
    }))
    .unwrap();
    assert_eq!(input.options, MigrationOptions::default());
}

#[tokio::test]
async fn init_refuses_a_fan_out_above_the_deployments_ceiling() {
    let mut services = services(Arc::new(MemoryStore::new()));
    services.tuning.max_concurrency_ceiling = 5;
    let input = InitInput {
        project_id: "syn1".into(),
        destination_storage_location_id: Some(7001),
        execution_name: "run-1".into(),
        options: MigrationOptions {
            max_concurrency: 6,
            ..MigrationOptions::default()
        },
    };
    let refused = init(&services, input).await.unwrap_err();
    assert!(
        matches!(&refused, Error::InvalidInput(m) if m.contains("ceiling of 5")),
        "{refused}"
    );
}

#[test]
fn a_run_owns_its_units_leases_only() {
    let run = run();
    assert!(run.owns(&run.unit_owner("unit-000001")));
    assert!(!run.owns("run-22/unit-000001"));
    assert!(!run.owns("run-2"));
}

//! One conformance suite for every `StateStore`: run against the in-memory store and against
//! DynamoDB served by moto, so both give the same answers to the same requests.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::join_all;
use serde_json::json;
use synmigrate::error::types;
use synmigrate::state::dynamo::{create_table, DynamoStore};
use synmigrate::state::memory::MemoryStore;
use synmigrate::state::{
    orphaned_copies, BudgetRecord, CopyStatus, FolderRecord, ItemError, ItemKey, ItemRecord,
    ItemStatus, MigrationKey, PutOutcome, RunCounters, RunStatus, SavedFrontier, SeenFile,
    SkipReason, StateError, StateStore, StatusName, Transition, MAX_DOCUMENT_BYTES,
};
use synmigrate_testkit::AwsStack;

const SUITE_TIMEOUT: Duration = Duration::from_secs(180);
const MAX_ATTEMPTS: u32 = 3;

fn migration(project: &str) -> MigrationKey {
    MigrationKey::new(project, 9001).unwrap()
}

fn item(entity: &str, version: u64, status: ItemStatus) -> ItemRecord {
    ItemRecord {
        key: ItemKey::new(entity, version).unwrap(),
        source_file_handle_id: format!("fh-{entity}-{version}"),
        size: 1024 * version,
        content_md5: Some("0cc175b9c0f1b6a831c399e269772661".into()),
        source_storage_location_id: Some(1),
        file_name: format!("{entity}.bin"),
        destination_file_name: None,
        entity: None,
        status,
        destination_file_handle_id: None,
        attempts: 0,
        lease: None,
        updated_at: 100,
        run_id: "run-1".into(),
        verified_by: None,
        source_handle: None,
        destination_storage_location_id: None,
        column_name: None,
    }
}

fn errored(retryable: bool) -> ItemStatus {
    ItemStatus::Errored(ItemError {
        class: if retryable {
            types::TRANSIENT
        } else {
            types::FORBIDDEN
        }
        .into(),
        message: "boom".into(),
        retryable,
    })
}

fn transition(from: StatusName, to: ItemStatus, owner: &str, now: i64) -> Transition {
    Transition {
        from,
        to,
        owner: owner.into(),
        lease_until: None,
        destination_file_handle_id: None,
        count_attempt: false,
        verified_by: None,
        run_id: "run-1".into(),
        now,
    }
}

fn assert_lease_held<T: std::fmt::Debug>(result: Result<T, StateError>, holder: &str) {
    match result {
        Err(StateError::LeaseHeld { owner, .. }) => assert_eq!(owner, holder),
        other => panic!("expected LeaseHeld by {holder}, got {other:?}"),
    }
}

async fn lock_is_exclusive_expires_and_is_released_by_its_owner_only<S: StateStore>(store: &S) {
    let m = migration("synlock");
    let lease = store.acquire_lock(&m, "exec-a", 160, 100).await.unwrap();
    assert_eq!((lease.owner.as_str(), lease.expires_at), ("exec-a", 160));
    assert_lease_held(store.acquire_lock(&m, "exec-b", 200, 120).await, "exec-a");
    // The owner may take it again, which extends it.
    assert_eq!(
        store
            .acquire_lock(&m, "exec-a", 170, 120)
            .await
            .unwrap()
            .expires_at,
        170
    );
    assert_lease_held(store.renew_lock(&m, "exec-b", 300).await, "exec-a");
    assert_eq!(
        store
            .renew_lock(&m, "exec-a", 200)
            .await
            .unwrap()
            .expires_at,
        200
    );
    assert_lease_held(store.release_lock(&m, "exec-b").await, "exec-a");

    // Expired: another execution takes over, and the old owner can no longer renew or release.
    let taken = store.acquire_lock(&m, "exec-b", 400, 200).await.unwrap();
    assert_eq!(taken.owner, "exec-b");
    assert_eq!(store.get_lock(&m).await.unwrap(), Some(taken));
    assert_lease_held(store.renew_lock(&m, "exec-a", 500).await, "exec-b");
    assert_lease_held(store.release_lock(&m, "exec-a").await, "exec-b");

    store.release_lock(&m, "exec-b").await.unwrap();
    assert_eq!(store.get_lock(&m).await.unwrap(), None);
    store.release_lock(&m, "exec-b").await.unwrap();
    assert!(matches!(
        store.renew_lock(&m, "exec-b", 500).await,
        Err(StateError::NotFound(_))
    ));
    // Locks of different migrations are independent.
    store.acquire_lock(&m, "exec-c", 1000, 300).await.unwrap();
    store
        .acquire_lock(&migration("synother"), "exec-d", 1000, 300)
        .await
        .unwrap();
}

async fn runs_open_once_and_count_atomically<S: StateStore>(store: &S) {
    let m = migration("synrun");
    let settings = json!({"fileVersionStrategy": "new", "dryRun": false});
    let run = store.create_run(&m, "run-1", &settings, 100).await.unwrap();
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(run.settings, settings);
    assert_eq!(run.counters, RunCounters::default());
    assert_eq!((run.started_at, run.ended_at), (100, None));
    // Opening again (a retried Init) returns the run as it was.
    let again = store
        .create_run(&m, "run-1", &json!({"other": true}), 150)
        .await
        .unwrap();
    assert_eq!(again, run);
    assert_eq!(store.get_run(&m, "nope").await.unwrap(), None);
    assert!(matches!(
        store
            .add_to_counters(&m, "nope", &RunCounters::one(StatusName::Migrated))
            .await,
        Err(StateError::NotFound(_))
    ));

    let delta = RunCounters {
        bytes_copied: 10,
        ..RunCounters::one(StatusName::Migrated)
    };
    let adds = (0..25).map(|_| store.add_to_counters(&m, "run-1", &delta));
    for result in join_all(adds).await {
        result.unwrap();
    }
    store
        .add_to_counters(&m, "run-1", &RunCounters::one(StatusName::Errored))
        .await
        .unwrap();
    let counted = store.get_run(&m, "run-1").await.unwrap().unwrap();
    assert_eq!(counted.counters.by_status[&StatusName::Migrated], 25);
    assert_eq!(counted.counters.by_status[&StatusName::Errored], 1);
    assert_eq!(counted.counters.by_status.len(), 2);
    assert_eq!(counted.counters.bytes_copied, 250);

    let finished = store
        .finish_run(&m, "run-1", RunStatus::Succeeded, 900)
        .await
        .unwrap();
    assert_eq!(finished.status, RunStatus::Succeeded);
    assert_eq!(finished.ended_at, Some(900));
    assert_eq!(finished.counters, counted.counters);
    assert!(matches!(
        store.finish_run(&m, "nope", RunStatus::Failed, 900).await,
        Err(StateError::NotFound(_))
    ));
}

async fn frontier_round_trips_and_is_bounded<S: StateStore>(store: &S) {
    let m = migration("synfrontier");
    assert_eq!(store.load_frontier(&m).await.unwrap(), None);
    let saved = |run_id: &str, frontier: &serde_json::Value| SavedFrontier {
        run_id: run_id.to_owned(),
        frontier: frontier.clone(),
    };
    let frontier = json!({"queue": [{"parentId": "syn1", "nextPageToken": "abc"}], "done": 3});
    store
        .save_frontier(&m, "run-1", &frontier, 10_000)
        .await
        .unwrap();
    assert_eq!(
        store.load_frontier(&m).await.unwrap(),
        Some(saved("run-1", &frontier))
    );
    // One frontier per migration: the next run's replaces it.
    let next = json!({"queue": [], "done": 4});
    store
        .save_frontier(&m, "run-2", &next, 10_000)
        .await
        .unwrap();
    assert_eq!(
        store.load_frontier(&m).await.unwrap(),
        Some(saved("run-2", &next))
    );
    assert_eq!(
        store.load_frontier(&migration("synother")).await.unwrap(),
        None
    );
    let huge = json!({"queue": "x".repeat(MAX_DOCUMENT_BYTES)});
    assert!(matches!(
        store.save_frontier(&m, "run-1", &huge, 10_000).await,
        Err(StateError::Invalid(_))
    ));
}

async fn settled_listings_round_trip_in_batches<S: StateStore>(store: &S) {
    let m = migration("synseen");
    let seen = |version: i64| SeenFile {
        version,
        modified_on: format!("2026-11-28T10:00:0{version}.000Z"),
        scope: "[\"new\"]".to_owned(),
    };
    // More than one BatchGetItem's worth of keys.
    let ids: Vec<String> = (0..130).map(|n| format!("syn{}", 5000 + n)).collect();
    assert!(store.get_seen(&m, &ids).await.unwrap().is_empty());
    for id in ids.iter().step_by(2) {
        store.put_seen(&m, id, &seen(1)).await.unwrap();
    }
    store.put_seen(&m, &ids[0], &seen(2)).await.unwrap();
    let found = store.get_seen(&m, &ids).await.unwrap();
    assert_eq!(found.len(), 65);
    assert_eq!(
        found[&ids[0]],
        seen(2),
        "the later listing replaces the earlier"
    );
    assert_eq!(found[&ids[128]], seen(1));
    assert!(!found.contains_key(&ids[1]));
    assert!(store
        .get_seen(&migration("synother"), &ids)
        .await
        .unwrap()
        .is_empty());
}

async fn reindexing_never_overwrites_a_later_state<S: StateStore>(store: &S) {
    let m = migration("synput");
    let fresh = item("syn10", 1, ItemStatus::Indexed);
    let key = fresh.key.clone();
    assert_eq!(
        store.put_item(&m, &fresh, MAX_ATTEMPTS).await.unwrap(),
        PutOutcome::Created
    );
    assert_eq!(store.get_item(&m, &key).await.unwrap(), Some(fresh.clone()));
    let refreshed = ItemRecord {
        run_id: "run-2".into(),
        verified_by: None,
        source_handle: None,
        destination_storage_location_id: None,
        column_name: None,
        ..fresh.clone()
    };
    assert_eq!(
        store.put_item(&m, &refreshed, MAX_ATTEMPTS).await.unwrap(),
        PutOutcome::Replaced {
            previous: StatusName::Indexed
        }
    );

    // In flight: re-indexing leaves it alone, lease and all.
    let claim = Transition {
        lease_until: Some(500),
        count_attempt: true,
        verified_by: None,
        ..transition(StatusName::Indexed, ItemStatus::Copying, "worker-1", 110)
    };
    store.transition_item(&m, &key, &claim).await.unwrap();
    assert_eq!(
        store.put_item(&m, &fresh, MAX_ATTEMPTS).await.unwrap(),
        PutOutcome::Kept {
            current: StatusName::Copying
        }
    );
    let kept = store.get_item(&m, &key).await.unwrap().unwrap();
    assert_eq!(kept.status, ItemStatus::Copying);
    assert_eq!(kept.lease.as_ref().unwrap().owner, "worker-1");

    // A retryable error is re-indexed while attempts remain; the attempt count survives.
    store
        .transition_item(
            &m,
            &key,
            &transition(StatusName::Copying, errored(true), "worker-1", 120),
        )
        .await
        .unwrap();
    assert_eq!(
        store.put_item(&m, &fresh, MAX_ATTEMPTS).await.unwrap(),
        PutOutcome::Replaced {
            previous: StatusName::Errored
        }
    );
    let reset = store.get_item(&m, &key).await.unwrap().unwrap();
    assert_eq!(reset.status, ItemStatus::Indexed);
    assert_eq!(reset.attempts, 1);
    assert_eq!(reset.lease, None);

    // Out of attempts: kept as ERRORED.
    let spent = item("syn11", 1, errored(true));
    let spent = ItemRecord {
        attempts: MAX_ATTEMPTS,
        ..spent
    };
    assert_eq!(
        store.put_item(&m, &spent, MAX_ATTEMPTS).await.unwrap(),
        PutOutcome::Created
    );
    assert_eq!(
        store
            .put_item(&m, &item("syn11", 1, ItemStatus::Indexed), MAX_ATTEMPTS)
            .await
            .unwrap(),
        PutOutcome::Kept {
            current: StatusName::Errored
        }
    );

    // Fatal errors, finished and skipped items stay; "filtered out" is looked at again.
    for (entity, status, replaced) in [
        ("syn12", errored(false), false),
        ("syn13", ItemStatus::Migrated, false),
        ("syn14", ItemStatus::AlreadyMigrated, false),
        (
            "syn15",
            ItemStatus::Skipped {
                reason: SkipReason::ExternalLink,
            },
            false,
        ),
        (
            "syn16",
            ItemStatus::Skipped {
                reason: SkipReason::FilteredOut,
            },
            true,
        ),
    ] {
        let name = status.name();
        store
            .put_item(&m, &item(entity, 1, status), MAX_ATTEMPTS)
            .await
            .unwrap();
        let outcome = store
            .put_item(&m, &item(entity, 1, ItemStatus::Indexed), MAX_ATTEMPTS)
            .await
            .unwrap();
        let expected = if replaced {
            PutOutcome::Replaced { previous: name }
        } else {
            PutOutcome::Kept { current: name }
        };
        assert_eq!(outcome, expected, "{entity}");
    }
    // The item's details survive a round trip through the store.
    let skipped = store
        .get_item(&m, &ItemKey::new("syn15", 1).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(skipped, item("syn15", 1, skipped.status.clone()));
    assert_eq!(
        skipped.status,
        ItemStatus::Skipped {
            reason: SkipReason::ExternalLink
        }
    );
    let renamed = ItemRecord {
        file_name: "a:b?.bin".into(),
        destination_file_name: Some("a_b_.bin".into()),
        content_md5: None,
        source_storage_location_id: None,
        ..item("syn18", 2, ItemStatus::Indexed)
    };
    store.put_item(&m, &renamed, MAX_ATTEMPTS).await.unwrap();
    assert_eq!(
        store.get_item(&m, &renamed.key).await.unwrap(),
        Some(renamed)
    );
    // A table's cell and an aligned run's file keep their row, column and destination.
    let cell = ItemRecord {
        key: ItemKey::cell("syn19", 5, 77).unwrap(),
        column_name: Some("raw data".into()),
        destination_storage_location_id: Some(7003),
        ..item("syn19", 1, ItemStatus::Indexed)
    };
    store.put_item(&m, &cell, MAX_ATTEMPTS).await.unwrap();
    assert_eq!(store.get_item(&m, &cell.key).await.unwrap(), Some(cell));

    assert!(matches!(
        store
            .put_item(&m, &item("syn17", 1, ItemStatus::Copying), MAX_ATTEMPTS)
            .await,
        Err(StateError::Invalid(_))
    ));
    assert_eq!(
        store
            .get_item(&m, &ItemKey::new("syn17", 1).unwrap())
            .await
            .unwrap(),
        None
    );
}

async fn transitions_are_conditional_and_leases_expire<S: StateStore>(store: &S) {
    let m = migration("syntransition");
    let key = ItemKey::new("syn20", 3).unwrap();
    let missing = transition(StatusName::Indexed, ItemStatus::Copying, "w1", 100);
    assert!(matches!(
        store.transition_item(&m, &key, &missing).await,
        Err(StateError::NotFound(_))
    ));
    store
        .put_item(&m, &item("syn20", 3, ItemStatus::Indexed), MAX_ATTEMPTS)
        .await
        .unwrap();

    let wrong_from = transition(StatusName::Copied, ItemStatus::Migrated, "w1", 100);
    assert!(matches!(
        store.transition_item(&m, &key, &wrong_from).await,
        Err(StateError::ConditionFailed { .. })
    ));
    let backwards = transition(StatusName::Copied, ItemStatus::Copying, "w1", 100);
    assert!(matches!(
        store.transition_item(&m, &key, &backwards).await,
        Err(StateError::InvalidTransition { .. })
    ));

    let claim = |owner: &str, now: i64, until: i64| Transition {
        lease_until: Some(until),
        count_attempt: true,
        verified_by: None,
        ..transition(StatusName::Copying, ItemStatus::Copying, owner, now)
    };
    let first = Transition {
        from: StatusName::Indexed,
        ..claim("w1", 100, 200)
    };
    let claimed = store.transition_item(&m, &key, &first).await.unwrap();
    assert_eq!(claimed.status, ItemStatus::Copying);
    assert_eq!(claimed.attempts, 1);
    assert_eq!(claimed.lease.as_ref().unwrap().expires_at, 200);
    assert_eq!(store.get_item(&m, &key).await.unwrap(), Some(claimed));

    // A live lease keeps others out; an expired one lets the next claimer in.
    assert_lease_held(
        store
            .transition_item(&m, &key, &claim("w2", 150, 300))
            .await,
        "w1",
    );
    let taken = store
        .transition_item(&m, &key, &claim("w2", 200, 400))
        .await
        .unwrap();
    assert_eq!(taken.lease.as_ref().unwrap().owner, "w2");
    assert_eq!(taken.attempts, 2);
    let late = transition(StatusName::Copying, ItemStatus::Copied, "w1", 250);
    assert_lease_held(store.transition_item(&m, &key, &late).await, "w2");

    let copied = Transition {
        destination_file_handle_id: Some("fh-new".into()),
        verified_by: Some("etag-md5".into()),
        ..transition(StatusName::Copying, ItemStatus::Copied, "w2", 260)
    };
    let copied = store.transition_item(&m, &key, &copied).await.unwrap();
    assert_eq!(copied.status, ItemStatus::Copied);
    assert_eq!(copied.lease, None);
    assert_eq!(copied.destination_file_handle_id.as_deref(), Some("fh-new"));
    assert_eq!(copied.verified_by.as_deref(), Some("etag-md5"));
    assert_eq!(
        store.get_item(&m, &key).await.unwrap().as_ref(),
        Some(&copied)
    );
    assert_eq!(copied.updated_at, 260);

    // Errors carry their class and go away again when the item moves on.
    let failed = store
        .transition_item(
            &m,
            &key,
            &transition(StatusName::Copied, errored(true), "w3", 270),
        )
        .await
        .unwrap();
    assert_eq!(failed.status, errored(true));
    let migrated = store
        .transition_item(
            &m,
            &key,
            &transition(StatusName::Errored, ItemStatus::Migrated, "w3", 280),
        )
        .await
        .unwrap();
    assert_eq!(migrated.status, ItemStatus::Migrated);
    assert_eq!(
        migrated.destination_file_handle_id.as_deref(),
        Some("fh-new")
    );
    assert_eq!(store.get_item(&m, &key).await.unwrap(), Some(migrated));

    let after_end = transition(StatusName::Migrated, errored(false), "w3", 290);
    assert!(matches!(
        store.transition_item(&m, &key, &after_end).await,
        Err(StateError::InvalidTransition { .. })
    ));
}

async fn concurrent_claims_have_one_winner<S: StateStore>(store: &S) {
    let m = migration("synrace");
    let key = ItemKey::new("syn30", 1).unwrap();
    store
        .put_item(&m, &item("syn30", 1, ItemStatus::Indexed), MAX_ATTEMPTS)
        .await
        .unwrap();
    let claims: Vec<Transition> = (0..10)
        .map(|i| Transition {
            lease_until: Some(1_000),
            count_attempt: true,
            verified_by: None,
            ..transition(
                StatusName::Indexed,
                ItemStatus::Copying,
                &format!("w{i}"),
                100,
            )
        })
        .collect();
    let results = join_all(claims.iter().map(|t| store.transition_item(&m, &key, t))).await;
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for result in &results {
        if let Err(error) = result {
            assert!(
                matches!(
                    error,
                    StateError::ConditionFailed { .. } | StateError::LeaseHeld { .. }
                ),
                "{error:?}"
            );
        }
    }
    let stored = store.get_item(&m, &key).await.unwrap().unwrap();
    assert_eq!(stored.attempts, 1);
    assert_eq!(stored.lease, winners[0].lease);
}

async fn one_copy_per_source_handle<S: StateStore>(store: &S) {
    let m = migration("syncopy");
    assert_eq!(store.get_copy(&m, "fh-1").await.unwrap(), None);
    assert!(matches!(
        store
            .complete_copy(&m, "fh-1", "a", "fh-new", None, 100)
            .await,
        Err(StateError::NotFound(_))
    ));
    let claimed = store.claim_copy(&m, "fh-1", "a", 200, 100).await.unwrap();
    assert_eq!(claimed.status, CopyStatus::Copying);
    assert_eq!(claimed.lease.as_ref().unwrap().owner, "a");
    assert_eq!(claimed.engine_state, None);

    assert_lease_held(store.claim_copy(&m, "fh-1", "b", 300, 150).await, "a");
    let state = json!({"engine": "direct", "uploadId": "u-1"});
    assert_lease_held(
        store.save_copy_state(&m, "fh-1", "b", &state, 150).await,
        "a",
    );
    let saved = store
        .save_copy_state(&m, "fh-1", "a", &state, 150)
        .await
        .unwrap();
    assert_eq!(saved.engine_state.as_ref(), Some(&state));

    // After expiry the next claimer resumes from the saved engine state.
    let resumed = store.claim_copy(&m, "fh-1", "b", 400, 200).await.unwrap();
    assert_eq!(resumed.lease.as_ref().unwrap().owner, "b");

    // Only the holder releases a lease (others change nothing), and then anyone may claim it
    // before it would have expired, with the engine state kept.
    store.release_copy(&m, "fh-1", "a", 210).await.unwrap();
    assert_lease_held(store.claim_copy(&m, "fh-1", "c", 500, 220).await, "b");
    store.release_copy(&m, "fh-1", "b", 230).await.unwrap();
    let taken = store.claim_copy(&m, "fh-1", "c", 500, 240).await.unwrap();
    assert_eq!(taken.lease.as_ref().unwrap().owner, "c");
    assert_eq!(taken.engine_state.as_ref(), Some(&state));
    store.release_copy(&m, "fh-absent", "c", 240).await.unwrap();
    store.release_copy(&m, "fh-1", "c", 242).await.unwrap();
    let resumed = store.claim_copy(&m, "fh-1", "b", 400, 245).await.unwrap();
    assert_eq!(resumed.engine_state.as_ref(), Some(&state));
    assert_lease_held(
        store
            .complete_copy(&m, "fh-1", "a", "fh-new", None, 250)
            .await,
        "b",
    );

    let proof = serde_json::json!({"level": "bytes", "proof": "bytes-md5"});
    let done = store
        .complete_copy(&m, "fh-1", "b", "fh-new", Some(&proof), 260)
        .await
        .unwrap();
    assert_eq!(done.status, CopyStatus::Copied);
    assert_eq!(done.destination_file_handle_id.as_deref(), Some("fh-new"));
    assert_eq!(done.verification.as_ref(), Some(&proof));
    assert_eq!(
        store
            .get_copy(&m, "fh-1")
            .await
            .unwrap()
            .unwrap()
            .verification,
        Some(proof.clone())
    );
    assert_eq!(done.lease, None);
    // Repeating the completion is harmless; a different result is a conflict.
    assert_eq!(
        store
            .complete_copy(&m, "fh-1", "b", "fh-new", Some(&proof), 270)
            .await
            .unwrap(),
        done
    );
    assert!(matches!(
        store
            .complete_copy(&m, "fh-1", "c", "fh-other", None, 270)
            .await,
        Err(StateError::ConditionFailed { .. })
    ));
    // A finished copy is handed to any claimer as it is, without a lease.
    assert_eq!(
        store.claim_copy(&m, "fh-1", "c", 900, 280).await.unwrap(),
        done
    );
    assert!(matches!(
        store.save_copy_state(&m, "fh-1", "b", &state, 290).await,
        Err(StateError::ConditionFailed { .. })
    ));
    assert_eq!(store.get_copy(&m, "fh-1").await.unwrap(), Some(done));
}

/// A finished copy can be marked unused (an orphan) and cleared; copies list in pages, and only
/// the marked finished ones are orphans.
async fn unused_copies_are_marked_listed_and_cleared<S: StateStore>(store: &S) {
    let m = migration("synorphan");
    for source in ["fh-a", "fh-b", "fh-c"] {
        store.claim_copy(&m, source, "a", 200, 100).await.unwrap();
    }
    // Unfinished: nothing to mark.
    assert!(matches!(
        store.set_copy_unused(&m, "fh-a", Some("why"), 110).await,
        Err(StateError::ConditionFailed { .. })
    ));
    assert!(matches!(
        store.set_copy_unused(&m, "fh-none", Some("why"), 110).await,
        Err(StateError::NotFound(_))
    ));
    for source in ["fh-a", "fh-b"] {
        store
            .complete_copy(&m, source, "a", &format!("{source}-new"), None, 120)
            .await
            .unwrap();
    }
    let marked = store
        .set_copy_unused(&m, "fh-a", Some("syn1.1: Fatal.Forbidden: read-only"), 130)
        .await
        .unwrap();
    assert_eq!(
        marked.unused_reason.as_deref(),
        Some("syn1.1: Fatal.Forbidden: read-only")
    );
    assert!(marked.is_orphaned());
    let mut listed = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = store.list_copies(&m, 2, token.as_deref()).await.unwrap();
        listed.extend(page.items.into_iter().map(|c| c.source_file_handle_id));
        match page.next_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(listed, ["fh-a", "fh-b", "fh-c"]);
    let orphans = orphaned_copies(store, &m).await.unwrap();
    assert_eq!(orphans.len(), 1);
    assert_eq!(
        orphans[0].destination_file_handle_id.as_deref(),
        Some("fh-a-new")
    );
    let cleared = store.set_copy_unused(&m, "fh-a", None, 140).await.unwrap();
    assert_eq!(cleared.unused_reason, None);
    assert!(orphaned_copies(store, &m).await.unwrap().is_empty());
}

async fn items_list_by_status_in_pages<S: StateStore>(store: &S) {
    let m = migration("synlist");
    let other = migration("synlistother");
    let mut expected_indexed = BTreeSet::new();
    let mut expected_skipped = BTreeSet::new();
    for i in 0..23u64 {
        let status = if i % 3 == 0 {
            ItemStatus::Skipped {
                reason: SkipReason::NotS3,
            }
        } else {
            ItemStatus::Indexed
        };
        let mut record = item(&format!("syn{}", 100 + i), 1 + i % 2, status);
        // Sizes and shared sources, so the plan order differs from the key order.
        record.size = i % 4 * 1000;
        record.source_file_handle_id = format!("fh-{}", i % 5);
        match record.status.name() {
            StatusName::Indexed => expected_indexed.insert(record.key.to_string()),
            _ => expected_skipped.insert(record.key.to_string()),
        };
        store.put_item(&m, &record, MAX_ATTEMPTS).await.unwrap();
    }
    // Records that are not items, and items of another migration, stay out of the listing.
    store
        .put_item(
            &other,
            &item("syn100", 1, ItemStatus::Indexed),
            MAX_ATTEMPTS,
        )
        .await
        .unwrap();
    store.acquire_lock(&m, "exec", 1_000, 100).await.unwrap();
    store
        .create_run(&m, "run-1", &json!({}), 100)
        .await
        .unwrap();
    store.claim_copy(&m, "fh-x", "a", 1_000, 100).await.unwrap();

    let m = &m;
    let collect = |status: Option<StatusName>| async move {
        let mut keys = Vec::new();
        let mut orders = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..100 {
            let page = store
                .list_items(m, status, 4, token.as_deref())
                .await
                .unwrap();
            assert!(page.items.len() <= 4);
            for record in &page.items {
                if let Some(status) = status {
                    assert_eq!(record.status.name(), status);
                }
            }
            keys.extend(page.items.iter().map(|r| r.key.to_string()));
            // By status in plan order (what Plan's grouping relies on), else in key order.
            orders.extend(page.items.iter().map(|r| match status {
                Some(_) => r.plan_order(),
                None => r.key.sk(),
            }));
            token = page.next_token;
            if token.is_none() {
                assert!(orders.is_sorted(), "not in order: {orders:?}");
                return keys;
            }
        }
        panic!("listing did not end");
    };
    let unique = |keys: Vec<String>| {
        let set: BTreeSet<String> = keys.iter().cloned().collect();
        assert_eq!(set.len(), keys.len(), "duplicates in {keys:?}");
        set
    };
    assert_eq!(
        unique(collect(Some(StatusName::Indexed)).await),
        expected_indexed
    );
    assert_eq!(
        unique(collect(Some(StatusName::Skipped)).await),
        expected_skipped
    );
    let all = collect(None).await;
    assert_eq!(all.len(), 23);
    assert!(collect(Some(StatusName::Migrated)).await.is_empty());

    // A transition moves the item to the other status's listing.
    let moved = expected_indexed.iter().next().unwrap().clone();
    let key: ItemKey = moved.parse().unwrap();
    store
        .transition_item(
            m,
            &key,
            &transition(StatusName::Indexed, ItemStatus::AlreadyMigrated, "w", 100),
        )
        .await
        .unwrap();
    assert_eq!(
        collect(Some(StatusName::AlreadyMigrated)).await,
        vec![moved.clone()]
    );
    assert!(!collect(Some(StatusName::Indexed)).await.contains(&moved));

    assert!(matches!(
        store.list_items(m, None, 0, None).await,
        Err(StateError::Invalid(_))
    ));
}

/// One source's items of one status list apart from every other source's (the status index's
/// prefix), in pages; an item's source handle outcome is recorded on it.
async fn items_of_one_source_list_apart_and_keep_their_handle_outcome<S: StateStore>(store: &S) {
    let m = migration("synsource");
    let at = &m;
    let put = |entity: String, source: &'static str, size: u64, status: ItemStatus| {
        let mut record = item(&entity, 1, status);
        record.source_file_handle_id = source.to_owned();
        record.size = size;
        async move { store.put_item(at, &record, MAX_ATTEMPTS).await.unwrap() }
    };
    let mut expected = BTreeSet::new();
    for i in 0..5 {
        put(format!("syn{}", 300 + i), "fh-s", 10, ItemStatus::Indexed).await;
        expected.insert(format!("syn{}.1", 300 + i));
    }
    // Another source whose id starts with this one's, another size, another status.
    put("syn310".into(), "fh-s2", 10, ItemStatus::Indexed).await;
    put("syn311".into(), "fh-t", 10, ItemStatus::Indexed).await;
    put(
        "syn312".into(),
        "fh-s",
        10,
        ItemStatus::Skipped {
            reason: SkipReason::NotS3,
        },
    )
    .await;
    let mut listed = BTreeSet::new();
    let mut token: Option<String> = None;
    for _ in 0..10 {
        let page = store
            .list_items_of_source(&m, StatusName::Indexed, 10, "fh-s", 2, token.as_deref())
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        listed.extend(page.items.iter().map(|r| r.key.to_string()));
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(listed, expected);
    let none = store
        .list_items_of_source(&m, StatusName::Indexed, 11, "fh-s", 10, None)
        .await
        .unwrap();
    assert!(none.items.is_empty(), "another size is another source");
    let key: ItemKey = "syn300.1".parse().unwrap();
    store
        .set_source_handle(&m, &key, "kept: still in use")
        .await
        .unwrap();
    let noted = store.get_item(&m, &key).await.unwrap().unwrap();
    assert_eq!(noted.source_handle.as_deref(), Some("kept: still in use"));
    assert_eq!(noted.status, ItemStatus::Indexed);
    let absent: ItemKey = "syn399.1".parse().unwrap();
    assert!(matches!(
        store.set_source_handle(&m, &absent, "deleted").await,
        Err(StateError::NotFound(_))
    ));
}

/// The run's Synapse budget is written only over the version read (compare-and-set).
async fn budget_is_compare_and_set<S: StateStore>(store: &S) {
    let m = &migration("syn90");
    let run = "budget-run";
    assert_eq!(store.get_budget(m, run).await.unwrap(), None);
    let first = BudgetRecord {
        version: 1,
        next_slot_ms: 1_700_000_000_111,
        paused_until_ms: 0,
        cut_at_ms: 0,
        cut_rate: 0,
    };
    assert!(store
        .put_budget(m, run, &first, None, 4_000_000_000)
        .await
        .unwrap());
    // A second "first write" loses: someone else created it.
    assert!(!store
        .put_budget(m, run, &first, None, 4_000_000_000)
        .await
        .unwrap());
    let second = BudgetRecord {
        version: 2,
        next_slot_ms: 1_700_000_000_222,
        paused_until_ms: 1_700_000_005_000,
        cut_at_ms: 1_700_000_005_000,
        cut_rate: 378,
    };
    // Written over a stale version: refused, the record unchanged.
    assert!(!store
        .put_budget(m, run, &second, Some(0), 4_000_000_000)
        .await
        .unwrap());
    assert_eq!(store.get_budget(m, run).await.unwrap(), Some(first));
    assert!(store
        .put_budget(m, run, &second, Some(1), 4_000_000_000)
        .await
        .unwrap());
    assert_eq!(store.get_budget(m, run).await.unwrap(), Some(second));
    // Another run's budget is another record.
    assert_eq!(store.get_budget(m, "other-run").await.unwrap(), None);
    assert!(matches!(
        store
            .put_budget(m, "bad#run", &first, None, 4_000_000_000)
            .await,
        Err(StateError::Invalid(_))
    ));
}

/// The whole suite; every case uses its own migration key, so one table serves them all.
async fn folder_records_list_per_run_in_pages<S: StateStore>(store: &S) {
    let m = migration("syn-folders");
    let folder = |id: &str, to_copy| FolderRecord {
        folder_id: id.into(),
        destination_storage_location_id: 7003,
        not_writable: (id == "syn3").then(|| "not yours".to_owned()),
        to_copy,
        ..FolderRecord::default()
    };
    for (run, id) in [
        ("run-a", "syn1"),
        ("run-a", "syn2"),
        ("run-a", "syn3"),
        ("run-b", "syn1"),
    ] {
        store.put_folder(&m, run, &folder(id, 1), 0).await.unwrap();
    }
    // A repeat replaces the run's record of the folder.
    store
        .put_folder(&m, "run-a", &folder("syn2", 5), 0)
        .await
        .unwrap();
    let mut listed = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = store
            .list_folders(&m, "run-a", 2, token.as_deref())
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        listed.extend(page.items);
        match page.next_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(
        listed,
        vec![folder("syn1", 1), folder("syn2", 5), folder("syn3", 1)]
    );
    let other = store.list_folders(&m, "run-b", 10, None).await.unwrap();
    assert_eq!(other.items, vec![folder("syn1", 1)]);
}

async fn conformance<S: StateStore>(store: &S) {
    let suite = async {
        lock_is_exclusive_expires_and_is_released_by_its_owner_only(store).await;
        runs_open_once_and_count_atomically(store).await;
        frontier_round_trips_and_is_bounded(store).await;
        settled_listings_round_trip_in_batches(store).await;
        reindexing_never_overwrites_a_later_state(store).await;
        transitions_are_conditional_and_leases_expire(store).await;
        concurrent_claims_have_one_winner(store).await;
        one_copy_per_source_handle(store).await;
        unused_copies_are_marked_listed_and_cleared(store).await;
        items_list_by_status_in_pages(store).await;
        items_of_one_source_list_apart_and_keep_their_handle_outcome(store).await;
        budget_is_compare_and_set(store).await;
        folder_records_list_per_run_in_pages(store).await;
    };
    tokio::time::timeout(SUITE_TIMEOUT, suite)
        .await
        .expect("state store conformance suite timed out");
}

#[tokio::test]
async fn memory_store_conforms() {
    conformance(&MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamo_store_conforms() -> anyhow::Result<()> {
    let stack = tokio::task::spawn_blocking(AwsStack::start).await??;
    let client = aws_sdk_dynamodb::Client::new(&stack.sdk_config().await);
    let table = "synmigrate-state-test";
    create_table(&client, table).await?;
    // Creating it again is a no-op (the local stack and the tests may both try).
    create_table(&client, table).await?;
    let described = client.describe_table().table_name(table).send().await?;
    let indexes = described
        .table()
        .map(|t| t.global_secondary_indexes())
        .unwrap_or_default();
    assert!(indexes
        .iter()
        .any(|i| i.index_name() == Some(synmigrate::state::dynamo::STATUS_INDEX)));
    let ttl = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await?;
    assert_eq!(
        ttl.time_to_live_description()
            .and_then(|d| d.attribute_name()),
        Some(synmigrate::state::dynamo::TTL_ATTRIBUTE)
    );

    conformance(&DynamoStore::new(client, table)).await;
    drop(stack);
    Ok(())
}

use super::*;
use crate::error_types as types;

#[test]
fn transition_table() {
    use StatusName::*;
    let allowed = |from, to| transition_allowed(from, to);
    // Happy path, including skipped steps.
    for (from, to) in [
        (Indexed, Copying),
        (Indexed, Copied),
        (Indexed, Migrated),
        (Indexed, AlreadyMigrated),
        (Indexed, Skipped),
        (Copying, Copying),
        (Copying, Copied),
        (Copying, Migrated),
        (Copied, Copied),
        (Copied, Migrated),
        (Copied, AlreadyMigrated),
    ] {
        assert!(allowed(from, to), "{from} -> {to} should be allowed");
    }
    // Errors from anywhere unfinished, retries from ERRORED.
    for from in [Indexed, Copying, Copied, Errored] {
        assert!(allowed(from, Errored), "{from} -> ERRORED");
    }
    for to in StatusName::ALL {
        assert!(allowed(Errored, to), "ERRORED -> {to}");
    }
    // Never backwards, never out of a terminal status.
    for (from, to) in [
        (Indexed, Indexed),
        (Copying, Indexed),
        (Copied, Indexed),
        (Copied, Copying),
    ] {
        assert!(!allowed(from, to), "{from} -> {to} must be refused");
    }
    for from in [Migrated, AlreadyMigrated, Skipped] {
        for to in StatusName::ALL {
            assert!(!allowed(from, to), "{from} is terminal but went to {to}");
        }
    }
}

#[test]
fn names_round_trip() {
    for status in StatusName::ALL {
        assert_eq!(StatusName::parse(status.as_str()), Some(status));
        assert_eq!(
            serde_json::to_value(status).unwrap(),
            serde_json::json!(status.as_str())
        );
    }
    for reason in SkipReason::ALL {
        assert_eq!(SkipReason::parse(reason.as_str()), Some(reason));
    }
    for status in RunStatus::ALL {
        assert_eq!(RunStatus::parse(status.as_str()), Some(status));
    }
    assert_eq!(StatusName::parse("DONE"), None);
}

#[test]
fn keys() {
    let migration = MigrationKey::new("syn123", 4567).unwrap();
    assert_eq!(migration.pk(), "MIG#syn123#4567");
    assert_eq!(
        status_pk(&migration, StatusName::AlreadyMigrated),
        "MIG#syn123#4567#ALREADY_MIGRATED"
    );
    let key: ItemKey = "syn9.12".parse().unwrap();
    assert_eq!(key, ItemKey::new("syn9", 12).unwrap());
    assert_eq!(key.sk(), "ITEM#syn9#12");
    assert_eq!(key.to_string(), "syn9.12");
    assert_eq!(
        serde_json::to_value(&key).unwrap(),
        serde_json::json!("syn9.12")
    );
    for bad in [
        "syn9",
        "syn9.x",
        ".3",
        "sy#n.3",
        "syn9.5.77",
        "syn9.r5",
        "syn9.r5.cx",
    ] {
        assert!(bad.parse::<ItemKey>().is_err(), "{bad}");
    }
    let cell: ItemKey = "syn9.r5.c77".parse().unwrap();
    assert_eq!(cell, ItemKey::cell("syn9", 5, 77).unwrap());
    assert_eq!(cell.sk(), "ITEM#syn9#R5#C77");
    assert_eq!(cell.to_string(), "syn9.r5.c77");
    assert_ne!(cell.sk(), ItemKey::new("syn9", 5).unwrap().sk());
    let aligned = MigrationKey::aligned("syn123").unwrap();
    assert_eq!(aligned.pk(), "MIG#syn123#aligned");
    assert_eq!(aligned.destination_storage_location_id(), None);
    assert!(MigrationKey::new("", 1).is_err());
    assert!(MigrationKey::new("a#b", 1).is_err());
}

#[test]
fn reindexing_overwrites_only_earlier_states() {
    let retryable = ItemStatus::Errored(ItemError {
        class: types::TRANSIENT.into(),
        message: "timeout".into(),
        retryable: true,
    });
    assert!(ItemStatus::Indexed.reindexable(0, 3));
    assert!(retryable.reindexable(2, 3));
    assert!(!retryable.reindexable(3, 3));
    let fatal = ItemStatus::Errored(ItemError {
        class: types::FORBIDDEN.into(),
        message: "no".into(),
        retryable: false,
    });
    assert!(!fatal.reindexable(0, 3));
    assert!(ItemStatus::Skipped {
        reason: SkipReason::FilteredOut
    }
    .reindexable(0, 3));
    for later in [
        ItemStatus::Copying,
        ItemStatus::Copied,
        ItemStatus::Migrated,
        ItemStatus::AlreadyMigrated,
        ItemStatus::Skipped {
            reason: SkipReason::NotS3,
        },
    ] {
        assert!(!later.reindexable(0, 3), "{later:?}");
    }
}

#[test]
fn item_record_json_is_flat() {
    let record = ItemRecord {
        key: ItemKey::new("syn1", 2).unwrap(),
        source_file_handle_id: "77".into(),
        size: 5,
        content_md5: None,
        source_storage_location_id: Some(1),
        file_name: "a.txt".into(),
        destination_file_name: None,
        entity: None,
        status: ItemStatus::Skipped {
            reason: SkipReason::EmptyFile,
        },
        destination_file_handle_id: None,
        attempts: 0,
        lease: None,
        updated_at: 9,
        run_id: "r1".into(),
        verified_by: None,
        source_handle: None,
        destination_storage_location_id: None,
        column_name: None,
    };
    let json = serde_json::to_value(&record).unwrap();
    assert_eq!(json["status"], "SKIPPED");
    assert_eq!(json["reason"], "EMPTY_FILE");
    assert_eq!(json["key"], "syn1.2");
    let back: ItemRecord = serde_json::from_value(json).unwrap();
    assert_eq!(back, record);
}

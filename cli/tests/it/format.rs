//! Parsing and rendering without AWS: execution names, the execution input, tables, the JSON
//! line, progress lines and exit codes.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Parser;
use synmigrate::config::{FileVersionStrategy, MigrationOptions};
use synmigrate::copy::CopyMode;
use synmigrate::report::ItemTotals;
use synmigrate::stages::RunContext;
use synmigrate::state::{
    CopyRecord, CopyStatus, ItemError, ItemRecord, ItemStatus, Lease, RunCounters, RunRecord,
    RunStatus, SkipReason, StatusName,
};
use synmigrate_cli::args::{Command, StartArgs};
use synmigrate_cli::commands::{execution_input, manifest_key};
use synmigrate_cli::error::{EXIT_FAILURES, EXIT_OK, EXIT_SERVICE, EXIT_USAGE};
use synmigrate_cli::naming::{
    check_execution_name, execution_arn, execution_name, execution_name_of, window_start,
};
use synmigrate_cli::outcome::Outcome;
use synmigrate_cli::render::{self, Planned, Progress, Rates, RunReport, Sample};
use synmigrate_cli::{Cli, CliError, Verdict};

use crate::common::item_record;

/// 2026-11-21T06:36:40Z.
const NOW: i64 = 1_795_243_000;

fn start_args(extra: &[&str]) -> Result<StartArgs, clap::Error> {
    let base = [
        "synmigrate",
        "start",
        "--project",
        "syn123",
        "--destination",
        "12345",
    ];
    let cli = Cli::try_parse_from(base.iter().chain(extra))?;
    match cli.command {
        Command::Start(args) => Ok(args),
        other => panic!("parsed as {other:?}"),
    }
}

#[test]
fn execution_names_follow_the_window() {
    assert_eq!(
        execution_name("syn123", Some(12345), NOW, 60),
        "syn123-12345-20261121T0600"
    );
    assert_eq!(
        execution_name("syn123", Some(12345), NOW, 15),
        "syn123-12345-20261121T0630"
    );
    assert_eq!(
        execution_name("syn123", Some(12345), NOW, 24 * 60),
        "syn123-12345-20261121T0000"
    );
    // Without a window, a new name every second.
    assert_eq!(
        execution_name("syn123", Some(12345), NOW, 0),
        "syn123-12345-20261121T063640"
    );
    // Same window, same name; the next window, a new one.
    let window = window_start(NOW, 60);
    assert_eq!(
        execution_name("syn123", Some(12345), window, 60),
        execution_name("syn123", Some(12345), window + 3599, 60)
    );
    assert_ne!(
        execution_name("syn123", Some(12345), window, 60),
        execution_name("syn123", Some(12345), window + 3600, 60)
    );
    // Another destination is another migration.
    assert_ne!(
        execution_name("syn123", Some(1), NOW, 60),
        execution_name("syn123", Some(2), NOW, 60)
    );
    // Each folder's upload location is a migration of its own too.
    assert_eq!(
        execution_name("syn123", None, NOW, 60),
        "syn123-aligned-20261121T0600"
    );
}

#[test]
fn execution_arns_round_trip() {
    let machine = "arn:aws:states:us-east-1:123456789012:stateMachine:synmigrate";
    let arn = execution_arn(machine, "syn1-2-20261121T0600").unwrap();
    assert_eq!(
        arn,
        "arn:aws:states:us-east-1:123456789012:execution:synmigrate:syn1-2-20261121T0600"
    );
    assert_eq!(execution_name_of(&arn).unwrap(), "syn1-2-20261121T0600");
    for bad in ["", "synmigrate", "arn:aws:states:us-east-1:1:activity:x"] {
        let error = execution_arn(bad, "n").unwrap_err();
        assert_eq!(error.exit_code(), EXIT_USAGE, "{bad}");
        assert!(execution_name_of(bad).is_err(), "{bad}");
    }
    assert!(check_execution_name("syn1-2-rerun_1").is_ok());
    for bad in ["", "a b", "a#b", "a/b", &"x".repeat(81)] {
        assert!(check_execution_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn start_flags_become_the_options_json() {
    let args = start_args(&[
        "--strategy",
        "all",
        "--copy-mode",
        "auto",
        "--dry-run",
        "--continue-on-error",
        "--max-concurrency",
        "4",
        "--max-synapse-rpm",
        "270",
        "--part-size",
        "10485760",
        "--source-location",
        "1",
        "--source-location",
        "2",
    ])
    .unwrap();
    let options = args.options().unwrap();
    assert_eq!(
        options,
        MigrationOptions {
            file_version_strategy: FileVersionStrategy::All,
            source_storage_location_ids: vec![1, 2],
            continue_on_error: true,
            dry_run: true,
            copy_mode: CopyMode::Auto,
            part_size_bytes: 10 * 1024 * 1024,
            max_concurrency: 4,
            max_synapse_requests_per_minute: 270,
            ..MigrationOptions::default()
        }
    );
    let input = execution_input("syn123", Some(12345), &options);
    assert_eq!(input["projectId"], "syn123");
    assert_eq!(input["destinationStorageLocationId"], 12345);
    assert_eq!(input["options"]["fileVersionStrategy"], "all");
    assert_eq!(input["options"]["copyMode"], "auto");
    assert_eq!(
        input["options"]["sourceStorageLocationIds"],
        serde_json::json!([1, 2])
    );
    // The pipeline reads the options back exactly (it refuses unknown fields).
    let back: MigrationOptions = serde_json::from_value(input["options"].clone()).unwrap();
    assert_eq!(back, options);

    let defaults = start_args(&[]).unwrap();
    assert_eq!(defaults.window, 60);
    assert_eq!(defaults.options().unwrap(), MigrationOptions::default());
}

#[test]
fn watch_names_an_aligned_runs_folder_list() {
    let output = serde_json::json!({
        "reportBucket": "artifacts",
        "folders": {"key": "runs/r1/folders.csv", "folders": 6, "notWritable": 1,
                    "firstNotWritable": "syn9 uploads to storage location 1: not yours"}
    });
    let line = render::folder_list_line(Some(&output.to_string())).unwrap();
    assert!(
        line.contains("6 walked, 1 whose upload location cannot take copies")
            && line.contains("s3://artifacts/runs/r1/folders.csv")
            && line.contains("syn9 uploads to storage location 1"),
        "{line}"
    );
    let one_destination = serde_json::json!({"reportBucket": "artifacts"}).to_string();
    assert_eq!(render::folder_list_line(Some(&one_destination)), None);
    assert_eq!(render::folder_list_line(None), None);
}

#[test]
fn start_says_plainly_when_it_starts_nothing() {
    let existing = render::ExistingExecution {
        name: "syn1-7001-20261121T0600",
        status: "RUNNING",
        started_at: NOW,
        of_window: true,
        same_input: true,
    };
    assert_eq!(
        render::not_started(&existing),
        "Not started: execution syn1-7001-20261121T0600 of this time window already exists \
         (RUNNING, started 2026-11-21T06:36:40Z); showing it (its ARN follows). --window 0 or \
         --execution-name starts a new one."
    );
    let named = render::ExistingExecution {
        of_window: false,
        same_input: false,
        ..existing
    };
    let text = render::not_started(&named);
    assert!(
        text.starts_with(
            "Not started: execution syn1-7001-20261121T0600 already exists (RUNNING, started"
        ) && text.contains("with another input")
            && !text.contains("showing it"),
        "{text}"
    );
}

#[test]
fn entities_and_manifests_become_options() {
    let args = start_args(&["--entity", "syn5", "--entity", "syn6"]).unwrap();
    let options = args.options().unwrap();
    assert_eq!(options.entities, ["syn5", "syn6"]);
    let input = execution_input("syn123", Some(12345), &options);
    assert_eq!(
        input["options"]["entities"],
        serde_json::json!(["syn5", "syn6"])
    );
    let args = start_args(&["--manifest", "s3://bucket/list.csv"]).unwrap();
    assert_eq!(
        args.options().unwrap().manifest.as_deref(),
        Some("s3://bucket/list.csv")
    );
    // A version alone needs a strategy that swaps in place; both lists at once are refused.
    let error = start_args(&["--entity", "syn5.2"])
        .unwrap()
        .options()
        .unwrap_err();
    assert!(error.to_string().contains("all or latest"), "{error}");
    let both = start_args(&["--entity", "syn5", "--manifest", "s3://b/k"]).unwrap_err();
    assert_eq!(both.exit_code(), i32::from(EXIT_USAGE));
}

#[test]
fn bad_start_flags_are_usage_errors() {
    let tiny_parts = start_args(&["--part-size", "1024"]).unwrap();
    let error = tiny_parts.options().unwrap_err();
    assert_eq!(error.exit_code(), EXIT_USAGE);
    assert!(error.to_string().contains("partSizeBytes"), "{error}");

    let error = start_args(&["--max-concurrency", "0"])
        .unwrap()
        .options()
        .unwrap_err();
    assert!(error.to_string().contains("maxConcurrency"), "{error}");

    let error = start_args(&["--max-synapse-rpm", "601"])
        .unwrap()
        .options()
        .unwrap_err();
    assert!(
        error.to_string().contains("maxSynapseRequestsPerMinute"),
        "{error}"
    );

    // clap's own errors exit with 2 as well.
    for extra in [
        &["--strategy", "some"][..],
        &["--window", "5", "--execution-name", "x"],
        &["--part-size", "lots"],
    ] {
        let error = start_args(extra).unwrap_err();
        assert_eq!(error.exit_code(), i32::from(EXIT_USAGE), "{extra:?}");
    }
    let missing = Cli::try_parse_from(["synmigrate", "watch"]).unwrap_err();
    assert_eq!(missing.exit_code(), i32::from(EXIT_USAGE));
}

#[test]
fn exit_codes_are_distinct() {
    assert_eq!(Verdict::Clean.exit_code(), EXIT_OK);
    assert_eq!(Verdict::Failures.exit_code(), EXIT_FAILURES);
    assert_eq!(CliError::Usage("x".into()).exit_code(), EXIT_USAGE);
    assert_eq!(CliError::NotFound("x".into()).exit_code(), EXIT_USAGE);
    let unavailable = synmigrate::state::StateError::Transient("timeout".into());
    assert_eq!(CliError::from(unavailable).exit_code(), EXIT_SERVICE);
    let mut codes = vec![EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_SERVICE];
    codes.dedup();
    assert_eq!(codes.len(), 4);
}

#[test]
fn manifest_key_is_the_pipelines() {
    let context: RunContext = serde_json::from_value(serde_json::json!({
        "projectId": "syn1",
        "destinationStorageLocationId": 7001,
        "runId": "syn1-7001-20261121T0600",
        "options": {},
        "destination": {
            "concreteType": "org.sagebionetworks.repo.model.project.ExternalS3StorageLocationSetting",
            "storageLocationId": 7001
        }
    }))
    .unwrap();
    assert_eq!(manifest_key(&context.run_id), context.manifest_key());
}

fn run(counters: &[(StatusName, i64)], bytes_copied: i64, status: RunStatus) -> RunRecord {
    RunRecord {
        run_id: "syn1-7001-20261121T0600".into(),
        settings: serde_json::json!({}),
        status,
        counters: RunCounters {
            by_status: counters.iter().copied().collect(),
            bytes_copied,
        },
        started_at: NOW,
        ended_at: Some(NOW + 90),
    }
}

#[test]
fn status_lists_the_lock_and_the_runs_oldest_first() {
    let mut older = run(
        &[(StatusName::Indexed, 3), (StatusName::Migrated, 3)],
        3 * 1024,
        RunStatus::Succeeded,
    );
    older.run_id = "syn1-7001-20261121T0500".into();
    older.started_at = NOW - 3600;
    older.ended_at = Some(NOW - 3600 + 90);
    let mut current = run(&[(StatusName::Indexed, 1)], 0, RunStatus::Running);
    current.ended_at = None;
    let lease = Lease {
        owner: current.run_id.clone(),
        expires_at: NOW + 600,
    };
    let text = render::status_text("syn1", Some(7001), Some(&lease), &[current, older], NOW);
    let expected = "\
Migration syn1 -> storage location 7001
Lock: held by syn1-7001-20261121T0600 until 2026-11-21T06:46:40Z

RUN                      STATUS     STARTED               ENDED                 INDEXED  MIGRATED  SKIPPED  ERRORED  COPIED
-----------------------  ---------  --------------------  --------------------  -------  --------  -------  -------  --------
syn1-7001-20261121T0500  SUCCEEDED  2026-11-21T05:36:40Z  2026-11-21T05:38:10Z  3        3         0        0        3.00 KiB
syn1-7001-20261121T0600  RUNNING    2026-11-21T06:36:40Z  -                     1        0         0        0        0 B
";
    assert_eq!(text, expected);

    let expired = render::status_text("syn1", Some(7001), Some(&lease), &[], NOW + 601);
    assert!(
        expired.contains("Lock: free (last held by syn1-7001-20261121T0600"),
        "{expired}"
    );
    assert!(expired.ends_with("No runs yet.\n"), "{expired}");
    assert!(render::status_text("syn1", Some(7001), None, &[], NOW).contains("Lock: free\n"));
}

fn item(entity: &str, status: ItemStatus) -> ItemRecord {
    ItemRecord {
        source_file_handle_id: "100".into(),
        size: 2048,
        file_name: "a.txt".into(),
        updated_at: NOW,
        run_id: "syn1-7001-20261121T0600".into(),
        verified_by: None,
        source_handle: None,
        destination_storage_location_id: None,
        column_name: None,
        ..item_record(entity, status)
    }
}

fn sample_items() -> Vec<ItemRecord> {
    let mut migrated = item("syn10", ItemStatus::Migrated);
    migrated.destination_file_handle_id = Some("200".into());
    migrated.destination_file_name = Some("caf_.txt".into());
    vec![
        migrated,
        item(
            "syn11",
            ItemStatus::Skipped {
                reason: SkipReason::EmptyFile,
            },
        ),
        item(
            "syn12",
            ItemStatus::Errored(ItemError {
                class: "Fatal.Forbidden".into(),
                message: "no access,\nreally".into(),
                retryable: false,
            }),
        ),
    ]
}

fn sample_report(items: &[ItemRecord]) -> RunReport {
    let mut totals = ItemTotals::default();
    items.iter().for_each(|i| totals.add(i));
    RunReport {
        project_id: "syn1".into(),
        destination_storage_location_id: Some(7001),
        run: run(
            &[
                (StatusName::Indexed, 2),
                (StatusName::Skipped, 1),
                (StatusName::Migrated, 1),
                (StatusName::Errored, 1),
            ],
            2048,
            RunStatus::Failed,
        ),
        outcome: None,
        all_rows: false,
        totals,
        orphaned_copies: vec![CopyRecord {
            source_file_handle_id: "100".into(),
            status: CopyStatus::Copied,
            engine_state: None,
            destination_file_handle_id: Some("201".into()),
            unused_reason: Some("syn12.1: Fatal.Forbidden: no access,\nreally".into()),
            handle_requests: 1,
            verification: None,
            lease: None,
            updated_at: 0,
        }],
    }
}

#[test]
fn report_json_is_one_line_of_counts() {
    let items = sample_items();
    let report = sample_report(&items);
    let text = render::report_json(&report);
    assert_eq!(text.lines().count(), 1);
    assert!(text.ends_with('\n'));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["runId"], "syn1-7001-20261121T0600");
    assert_eq!(json["status"], "FAILED");
    assert_eq!(json["projectId"], "syn1");
    assert_eq!(json["destinationStorageLocationId"], 7001);
    assert_eq!(json["bytesCopied"], 2048);
    assert_eq!(json["startedAt"], "2026-11-21T06:36:40Z");
    // Every status is present, zeros included.
    let counts = json["counts"].as_object().unwrap();
    assert_eq!(counts.len(), StatusName::ALL.len());
    assert_eq!(counts["MIGRATED"], 1);
    assert_eq!(counts["ERRORED"], 1);
    assert_eq!(counts["ALREADY_MIGRATED"], 0);
    let totals = json["totals"].as_object().unwrap();
    assert_eq!(totals.len(), StatusName::ALL.len());
    assert_eq!(totals["SKIPPED"], 1);
    assert_eq!(json["items"], 3);
    assert_eq!(json["migratedBytes"], 2048);
    assert_eq!(json["orphanedCopies"], 1);
    assert_eq!(json["rowsOf"], "run");
    assert_eq!(json["outcome"], serde_json::Value::Null);
    assert!(render::run_failed(&report.run));
}

#[test]
fn report_table() {
    let items = sample_items();
    let report = sample_report(&items);
    let table = render::report_table(&report, &items);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0],
        "Migration syn1 -> storage location 7001, run syn1-7001-20261121T0600 (FAILED)"
    );
    assert_eq!(
        lines[2],
        "This run: INDEXED 2, MIGRATED 1, SKIPPED 1, ERRORED 1; 2.00 KiB copied"
    );
    assert_eq!(
        lines[3],
        "Rows of run syn1-7001-20261121T0600 (--all for the whole project's): 3 (MIGRATED 1, \
         SKIPPED 1, ERRORED 1); 2.00 KiB migrated"
    );
    assert_eq!(
        lines[5],
        "ITEM     STATUS    BYTES  FROM HANDLE  TO HANDLE  DETAIL"
    );
    assert_eq!(
        lines[7],
        "syn10.1  MIGRATED  2048   100          200        renamed to caf_.txt"
    );
    assert_eq!(
        lines[8],
        "syn11.1  SKIPPED   2048   100                     EMPTY_FILE"
    );
    // A message with a line break stays on its row.
    assert_eq!(
        lines[9],
        "syn12.1  ERRORED   2048   100                     Fatal.Forbidden: no access, really"
    );
    // The copy no entity points at, with why, after the items.
    assert!(
        lines[11].starts_with("Copies no entity points at (1;"),
        "{table}"
    );
    assert_eq!(lines[12], "FROM HANDLE  TO HANDLE  WHY");
    assert_eq!(
        lines[14],
        "100          201        syn12.1: Fatal.Forbidden: no access, really"
    );
    assert_eq!(lines.len(), 15);
}

#[test]
fn a_report_says_whose_rows_and_how_the_execution_ended() {
    let items = sample_items();
    let report = RunReport {
        all_rows: true,
        outcome: Some(Outcome::Failed {
            error: Some("Fatal.ItemsFailed".into()),
            cause: Some("items are ERRORED".into()),
        }),
        ..sample_report(&items)
    };
    let table = render::report_table(&report, &items);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[2],
        "Execution: Failed: Fatal.ItemsFailed: items are ERRORED"
    );
    assert!(
        lines[4].starts_with("Rows of the whole project (every run): 3 (MIGRATED 1"),
        "{table}"
    );
    let json: serde_json::Value = serde_json::from_str(&render::report_json(&report)).unwrap();
    assert_eq!(json["rowsOf"], "project");
    assert_eq!(
        json["outcome"],
        "Failed: Fatal.ItemsFailed: items are ERRORED"
    );
}

#[test]
fn a_report_of_an_execution_without_a_run_says_why() {
    let failed = Outcome::Failed {
        error: Some("Fatal.Forbidden".into()),
        cause: Some("you may not edit syn1".into()),
    };
    assert_eq!(
        render::report_without_run(
            "syn1",
            Some(7001),
            "syn1-7001-20261121T0700",
            &failed,
            Some("syn1-7001-20261121T0600")
        ),
        "Migration syn1 -> storage location 7001: execution syn1-7001-20261121T0700 has \
         recorded no run\n\
         Failed: Fatal.Forbidden: you may not edit syn1\n\
         The newest run recorded is syn1-7001-20261121T0600 (`--run syn1-7001-20261121T0600` \
         reports it)\n"
    );
    let first =
        render::report_without_run("syn1", None, "syn1-aligned-20261121T0700", &failed, None);
    assert_eq!(first.lines().count(), 2, "{first}");
}

fn copying(files_done: i64, bytes_done: i64, planned: Planned) -> Progress {
    let counters = RunCounters {
        by_status: BTreeMap::from([(StatusName::Migrated, files_done)]),
        bytes_copied: bytes_done,
    };
    Progress::new(&counters, Some(planned))
}

const MIB: u64 = 1024 * 1024;

#[test]
fn progress_lines() {
    let counters = RunCounters {
        by_status: BTreeMap::from([
            (StatusName::Indexed, 8),
            (StatusName::Skipped, 2),
            (StatusName::Migrated, 3),
            (StatusName::Errored, 1),
        ]),
        bytes_copied: 300 * 1024 * 1024,
    };
    let indexing = Progress::new(&counters, None);
    assert_eq!(
        indexing.message(Rates::default()),
        "indexing: 10 file versions found"
    );
    let planned = Planned {
        files: 8,
        bytes: 1024 * MIB,
    };
    let copying = Progress::new(&counters, Some(planned));
    assert_eq!(copying.files_done, 4);
    assert_eq!(copying.failures, 1);
    assert_eq!(
        copying.message(Rates::default()),
        "files 4/8 · 300.00 MiB/1.00 GiB · failures 1"
    );
    // 4 files and 300 MiB in 30 seconds: 724 MiB left take 72 seconds, 4 files 30.
    let rates = render::rates(
        Sample {
            at: Duration::from_secs(10),
            files: 0,
            bytes: 0,
        },
        copying.sample(Duration::from_secs(40)),
    );
    assert_eq!(rates.bytes_per_second, Some(10.0 * MIB as f64));
    assert_eq!(copying.eta(rates).map(|eta| eta.as_secs()), Some(72));
    assert_eq!(
        copying.message(rates),
        "files 4/8 · 300.00 MiB/1.00 GiB · 10.00 MiB/s · 0.1 files/s · ETA 72 seconds · failures 1"
    );
    // The bar shows the files itself; its text carries the rest.
    assert_eq!(
        copying.detail(rates),
        "300.00 MiB/1.00 GiB · 10.00 MiB/s · 0.1 files/s · ETA 72 seconds · failures 1"
    );
    let nothing = Progress::new(
        &RunCounters::default(),
        Some(Planned { files: 0, bytes: 0 }),
    );
    assert_eq!(nothing.message(Rates::default()), "nothing to copy");
}

#[test]
fn rates_count_files_and_bytes_apart() {
    let at = |seconds, files, bytes| Sample {
        at: Duration::from_secs(seconds),
        files,
        bytes,
    };
    assert_eq!(
        render::rates(at(2, 1, 100), at(6, 3, 500)),
        Rates {
            files_per_second: Some(0.5),
            bytes_per_second: Some(100.0)
        }
    );
    // What did not move has no rate (yet), nor has anything without time passing.
    assert_eq!(
        render::rates(at(2, 1, 100), at(6, 1, 500)),
        Rates {
            files_per_second: None,
            bytes_per_second: Some(100.0)
        }
    );
    assert_eq!(
        render::rates(at(2, 1, 100), at(2, 3, 200)),
        Rates::default()
    );
}

#[test]
fn the_eta_is_the_slower_of_files_and_bytes() {
    let planned = Planned {
        files: 100,
        bytes: 1000 * MIB,
    };
    let per_second = |files: f64, bytes: f64| Rates {
        files_per_second: Some(files),
        bytes_per_second: Some(bytes * MIB as f64),
    };
    // The biggest files went first: bytes are nearly done, files are not.
    let big_first = copying(10, 900 * MIB as i64, planned);
    // 90 files at 0.1/s: 900 seconds; 100 MiB at 10 MiB/s: 10 seconds.
    assert_eq!(
        big_first.eta(per_second(0.1, 10.0)),
        Some(Duration::from_secs(900))
    );
    // The other way round: 90 files at 1/s, 900 MiB at 2 MiB/s.
    let small_first = copying(10, 100 * MIB as i64, planned);
    assert_eq!(
        small_first.eta(per_second(1.0, 2.0)),
        Some(Duration::from_secs(450))
    );
    // One rate alone gives the ETA; none gives none.
    let files_only = Rates {
        files_per_second: Some(1.0),
        bytes_per_second: None,
    };
    assert_eq!(small_first.eta(files_only), Some(Duration::from_secs(90)));
    assert_eq!(small_first.eta(Rates::default()), None);
    assert!(big_first
        .message(per_second(0.1, 10.0))
        .contains("ETA 15 minutes"));
}

#[test]
fn watch_says_when_nothing_moves_instead_of_an_eta() {
    assert_eq!(render::stall_note(Duration::from_secs(30)), None);
    assert_eq!(
        render::stall_note(render::STALL_AFTER - Duration::from_secs(1)),
        None
    );
    let note = render::stall_note(Duration::from_secs(300)).unwrap();
    assert!(note.starts_with("no progress for 5 minutes: "), "{note}");
    assert!(note.contains("crashed invocation's lease"), "{note}");
}

#[test]
fn each_proof_is_shown_and_unproven_copies_are_counted() {
    let mut items = sample_items();
    items[0].verified_by = Some("bytes-md5".into());
    let mut unproven = item("syn13", ItemStatus::Migrated);
    unproven.verified_by = Some("none: no checksum on both objects".into());
    unproven.source_handle = Some("deleted".into());
    items.push(unproven);
    let report = sample_report(&items);
    let json: serde_json::Value = serde_json::from_str(&render::report_json(&report)).unwrap();
    assert_eq!(json["unproven"], 1);
    assert_eq!(json["sourceDeleted"], 1);
    assert_eq!(json["sourceKept"], 0);
    let table = render::report_table(&report, &items);
    assert!(
        table.contains("1 migrated files have no proof beyond their handles' fields"),
        "{table}"
    );
    assert!(
        table.contains("renamed to caf_.txt; verified: bytes-md5"),
        "{table}"
    );
    assert!(
        table.contains("verified: none: no checksum on both objects; old handle: deleted"),
        "{table}"
    );
}

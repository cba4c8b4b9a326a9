//! The built `synmigrate` binary against the local AWS stack (moto): `status` and `report` read
//! runs and items written through `DynamoStore`; `start` and `watch` drive a state machine with
//! a trivial Pass definition; `estimate` reads the index a dry run left.

use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{ensure, Context};
use aws_sdk_sfn::types::ExecutionStatus;
use md5::Digest;
use synmigrate::config::VerifyLevel;
use synmigrate::copy::verify::{CopiedObject, CopyProof, ObjectRef};
use synmigrate::report::{csv_row, CSV_HEADER};
use synmigrate::stages::now;
use synmigrate::state::dynamo::{create_table, DynamoStore};
use synmigrate::state::{
    ItemError, ItemRecord, ItemStatus, MigrationKey, RunCounters, RunStatus, SkipReason,
    StateStore, StatusName,
};
use synmigrate_cli::commands::manifest_key;
use synmigrate_cli::commands::verify::VERIFY_HEADER;
use synmigrate_cli::naming::execution_name;
use synmigrate_testkit::AwsStack;

use crate::common::item_record;

const TABLE: &str = "synmigrate-cli-test";
const BUCKET: &str = "synmigrate-cli-artifacts";
const PASS_MACHINE: &str = r#"{"StartAt":"Done","States":{"Done":{"Type":"Pass","End":true}}}"#;
/// Longest a single CLI invocation may take here.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the binary with the stack's environment plus `env`, killing it after the timeout.
fn synmigrate(stack: &AwsStack, env: &[(&str, &str)], args: &[&str]) -> anyhow::Result<Output> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_synmigrate"));
    command
        .args(args)
        .env_remove("SYNMIGRATE_STATE_MACHINE_ARN")
        .env_remove("SYNMIGRATE_TABLE")
        .env_remove("SYNMIGRATE_BUCKET")
        .envs(stack.env_vars())
        .env("SYNMIGRATE_S3_FORCE_PATH_STYLE", "true")
        .envs(env.iter().copied());
    let child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("starting synmigrate")?;
    let id = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || sender.send(child.wait_with_output()));
    match receiver.recv_timeout(COMMAND_TIMEOUT) {
        Ok(output) => Ok(output?),
        Err(_) => {
            // Only the child this test started, by its id.
            let _ = Command::new("kill").arg(id.to_string()).status();
            anyhow::bail!("synmigrate {args:?} did not finish within {COMMAND_TIMEOUT:?}")
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `command --project syn1000 --destination <destination>` followed by `rest`.
fn for_migration<'a>(command: &'a str, destination: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        command,
        "--project",
        "syn1000",
        "--destination",
        destination,
    ];
    args.extend_from_slice(rest);
    args
}

/// Fails unless the command exited with `code`, showing its stderr.
fn expect_exit(output: &Output, code: i32, what: &str) -> anyhow::Result<()> {
    ensure!(
        output.status.code() == Some(code),
        "{what}: exit code {:?}, expected {code}: {}",
        output.status.code(),
        text(&output.stderr)
    );
    Ok(())
}

/// A usage or configuration error: exit code 2 and a message naming every one of `needles`.
fn expect_usage_error(output: &Output, needles: &[&str]) -> anyhow::Result<()> {
    expect_exit(output, 2, "usage error")?;
    let message = text(&output.stderr);
    for needle in needles {
        ensure!(message.contains(needle), "{needle:?} not in: {message}");
    }
    Ok(())
}

fn item(entity: &str, status: ItemStatus, run_id: &str) -> anyhow::Result<ItemRecord> {
    Ok(ItemRecord {
        source_file_handle_id: format!("{entity}-handle"),
        size: 4096,
        file_name: format!("{entity}.txt"),
        updated_at: now(),
        run_id: run_id.to_owned(),
        verified_by: None,
        source_handle: None,
        destination_storage_location_id: None,
        column_name: None,
        ..item_record(entity, status)
    })
}

/// Writes one finished run with its items, as the pipeline would have.
async fn seed_run(
    store: &DynamoStore,
    migration: &MigrationKey,
    run_id: &str,
    items: &[ItemRecord],
    status: RunStatus,
) -> anyhow::Result<()> {
    let started = now() - 120;
    store
        .create_run(migration, run_id, &serde_json::json!({}), started)
        .await?;
    let mut counters = RunCounters::default();
    for item in items {
        store.put_item(migration, item, 3).await?;
        *counters.by_status.entry(item.status.name()).or_default() += 1;
        if item.status == ItemStatus::Migrated {
            counters.bytes_copied += item.size as i64;
        }
    }
    store.add_to_counters(migration, run_id, &counters).await?;
    store.finish_run(migration, run_id, status, now()).await?;
    Ok(())
}

#[test]
fn status_and_report_read_the_state_table() -> anyhow::Result<()> {
    let stack = AwsStack::start()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let store = runtime.block_on(state_table(&stack))?;
    let clean = MigrationKey::new("syn1000", 7001)?;
    let first_run = "syn1000-7001-20261121T0500";
    let mut migrated = item("syn1001", ItemStatus::Migrated, first_run)?;
    migrated.destination_file_handle_id = Some("9001".into());
    let skipped = item(
        "syn1002",
        ItemStatus::Skipped {
            reason: SkipReason::EmptyFile,
        },
        first_run,
    )?;
    let failing = MigrationKey::new("syn1000", 7002)?;
    let failed_run = "syn1000-7002-20261121T0500";
    let errored = item(
        "syn1001",
        ItemStatus::Errored(ItemError {
            class: "Fatal.Forbidden".into(),
            message: "you cannot write to storage location 7002".into(),
            retryable: false,
        }),
        failed_run,
    )?;
    let holder = "syn1000-7001-20261121T0600";
    // An item the second run indexed: its row, not the first run's.
    let indexed_later = item("syn1003", ItemStatus::Indexed, holder)?;
    runtime.block_on(async {
        seed_run(
            &store,
            &clean,
            first_run,
            &[migrated.clone(), skipped.clone()],
            RunStatus::Succeeded,
        )
        .await?;
        seed_run(&store, &failing, failed_run, &[errored], RunStatus::Failed).await?;
        // A second run of the clean migration that is under way and holds the lock.
        store
            .create_run(&clean, holder, &serde_json::json!({}), now())
            .await?;
        store
            .acquire_lock(&clean, holder, now() + 3600, now())
            .await?;
        store.put_item(&clean, &indexed_later, 3).await?;
        anyhow::Ok(())
    })?;
    let table = [("SYNMIGRATE_TABLE", TABLE)];

    let status = synmigrate(&stack, &table, &for_migration("status", "7001", &[]))?;
    let out = text(&status.stdout);
    expect_exit(&status, 0, "status")?;
    ensure!(
        out.contains(&format!("Lock: held by {holder} until")),
        "{out}"
    );
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("syn1000-")).collect();
    ensure!(rows.len() == 2, "two runs expected:\n{out}");
    ensure!(
        rows[0].starts_with(first_run) && rows[0].contains("SUCCEEDED"),
        "{out}"
    );
    ensure!(
        rows[1].starts_with(holder) && rows[1].contains("RUNNING"),
        "{out}"
    );

    // The newest run is the default; --run picks another. Either way the rows are the run's.
    let csv = synmigrate(
        &stack,
        &table,
        &for_migration("report", "7001", &["--run", first_run, "--format", "csv"]),
    )?;
    expect_exit(&csv, 0, "csv report")?;
    ensure!(
        text(&csv.stderr).contains(&format!(
            "Rows of run {first_run} (--all for the whole project's)"
        )),
        "{}",
        text(&csv.stderr)
    );
    let expected_csv = format!(
        "{CSV_HEADER}\n{}{}",
        csv_row(&migrated, Some(7001)),
        csv_row(&skipped, Some(7001))
    );
    ensure!(
        text(&csv.stdout) == expected_csv,
        "csv:\n{}",
        text(&csv.stdout)
    );

    let json = synmigrate(
        &stack,
        &table,
        &for_migration("report", "7001", &["--run", first_run, "--format", "json"]),
    )?;
    expect_exit(&json, 0, "json report")?;
    let stdout = text(&json.stdout);
    ensure!(stdout.lines().count() == 1, "one line expected: {stdout}");
    let line: serde_json::Value = serde_json::from_str(&stdout)?;
    ensure!(
        line["runId"] == first_run && line["status"] == "SUCCEEDED",
        "{line}"
    );
    ensure!(
        line["counts"]["MIGRATED"] == 1 && line["counts"]["SKIPPED"] == 1,
        "{line}"
    );
    ensure!(
        line["counts"]["ERRORED"] == 0 && line["bytesCopied"] == 4096,
        "{line}"
    );
    ensure!(line["items"] == 2, "{line}");

    let newest = synmigrate(
        &stack,
        &table,
        &for_migration("report", "7001", &["--format", "json"]),
    )?;
    let line: serde_json::Value = serde_json::from_slice(&newest.stdout)?;
    ensure!(
        line["runId"] == holder && line["status"] == "RUNNING",
        "{line}"
    );
    ensure!(
        line["rowsOf"] == "run" && line["items"] == 1 && line["totals"]["INDEXED"] == 1,
        "{line}"
    );
    let all = synmigrate(
        &stack,
        &table,
        &for_migration("report", "7001", &["--format", "json", "--all"]),
    )?;
    let line: serde_json::Value = serde_json::from_slice(&all.stdout)?;
    ensure!(
        line["runId"] == holder && line["rowsOf"] == "project" && line["items"] == 3,
        "{line}"
    );
    let all_csv = synmigrate(
        &stack,
        &table,
        &for_migration("report", "7001", &["--format", "csv", "--all"]),
    )?;
    ensure!(
        text(&all_csv.stdout).lines().count() == 4,
        "{}",
        text(&all_csv.stdout)
    );

    let table_report = synmigrate(
        &stack,
        &table,
        &for_migration("report", "7001", &["--run", first_run]),
    )?;
    let out = text(&table_report.stdout);
    ensure!(out.contains("syn1001.1  MIGRATED"), "{out}");
    ensure!(out.contains("EMPTY_FILE"), "{out}");
    ensure!(!out.contains("syn1003.1"), "{out}");

    // A state machine that cannot be asked does not keep the report from the state table.
    let elsewhere = "arn:aws:states:us-east-1:123456789012:stateMachine:elsewhere";
    let unasked = synmigrate(
        &stack,
        &[
            ("SYNMIGRATE_TABLE", TABLE),
            ("SYNMIGRATE_STATE_MACHINE_ARN", elsewhere),
        ],
        &for_migration("report", "7001", &[]),
    )?;
    expect_exit(&unasked, 0, "report without Step Functions")?;
    ensure!(
        text(&unasked.stdout).contains("syn1003.1  INDEXED")
            && text(&unasked.stderr).contains("Step Functions not asked"),
        "{}",
        text(&unasked.stderr)
    );

    // A run with failures: the report says so, and the exit code is 1.
    let failed = synmigrate(
        &stack,
        &table,
        &for_migration("report", "7002", &["--format", "json"]),
    )?;
    expect_exit(&failed, 1, "report of a failed run")?;
    let line: serde_json::Value = serde_json::from_slice(&failed.stdout)?;
    ensure!(
        line["status"] == "FAILED" && line["counts"]["ERRORED"] == 1,
        "{line}"
    );

    // Usage and configuration errors: exit code 2, naming the problem.
    let unknown_run = synmigrate(
        &stack,
        &table,
        &for_migration("report", "7001", &["--run", "nope"]),
    )?;
    expect_usage_error(&unknown_run, &["no run nope"])?;
    let no_table = synmigrate(&stack, &[], &for_migration("status", "7001", &[]))?;
    expect_usage_error(&no_table, &["--table", "SYNMIGRATE_TABLE"])?;
    let bad_project = synmigrate(
        &stack,
        &table,
        &["status", "--project", "project", "--destination", "7001"],
    )?;
    expect_usage_error(&bad_project, &["--project"])?;
    Ok(())
}

#[test]
fn start_is_idempotent_per_window_and_watch_follows_to_the_end() -> anyhow::Result<()> {
    let stack = AwsStack::start()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let (machine, store, s3) = runtime.block_on(async {
        let config = stack.sdk_config().await;
        let (machine, _) = state_machine(&config, "synmigrate-cli-test", PASS_MACHINE).await?;
        let dynamo = aws_sdk_dynamodb::Client::new(&config);
        create_table(&dynamo, TABLE).await?;
        let s3 = stack.s3_client().await;
        s3.create_bucket().bucket(BUCKET).send().await?;
        anyhow::Ok((machine, DynamoStore::new(dynamo, TABLE), s3))
    })?;
    let env = [
        ("SYNMIGRATE_STATE_MACHINE_ARN", machine.as_str()),
        ("SYNMIGRATE_TABLE", TABLE),
        ("SYNMIGRATE_BUCKET", BUCKET),
    ];
    let start = for_migration("start", "7001", &["--strategy", "all"]);

    let before = now();
    let first = synmigrate(&stack, &env, &start)?;
    let after = now();
    expect_exit(&first, 0, "start")?;
    let arn = text(&first.stdout).trim().to_owned();
    let name = arn.rsplit(':').next().unwrap_or_default().to_owned();
    let expected: Vec<String> = [before, after]
        .iter()
        .map(|t| execution_name("syn1000", Some(7001), *t, 60))
        .collect();
    ensure!(
        expected.contains(&name),
        "execution {name} is none of {expected:?}"
    );
    ensure!(
        arn.starts_with("arn:aws:states:") && arn.contains(":execution:synmigrate-cli-test:"),
        "{arn}"
    );

    // The same start again, in the same window: the same execution, not a second one.
    let again_at = now();
    let again = synmigrate(&stack, &env, &start)?;
    // Both starts fell in one window unless the clock crossed a full hour in between.
    let same_window = execution_name("syn1000", Some(7001), again_at, 60) == name
        && execution_name("syn1000", Some(7001), now(), 60) == name;
    expect_exit(&again, 0, "second start")?;
    let second_arn = text(&again.stdout).trim().to_owned();
    if same_window {
        ensure!(second_arn == arn, "{second_arn} != {arn}");
        let said = text(&again.stderr);
        ensure!(
            said.starts_with(&format!(
                "Not started: execution {name} of this time window already exists ("
            )) && said.contains("showing it"),
            "{said}"
        );
    }
    // A name given explicitly is not the window's; it is handed on the same way.
    let named = synmigrate(
        &stack,
        &env,
        &[&start[..], &["--execution-name", &name]].concat(),
    )?;
    expect_exit(&named, 0, "start --execution-name of an existing execution")?;
    ensure!(text(&named.stdout).trim() == arn, "{}", text(&named.stdout));
    ensure!(
        text(&named.stderr).starts_with(&format!("Not started: execution {name} already exists (")),
        "{}",
        text(&named.stderr)
    );
    // Other options under that name: refused, rather than handing on the first execution.
    let other = synmigrate(
        &stack,
        &env,
        &for_migration("start", "7001", &["--execution-name", &name]),
    )?;
    expect_usage_error(&other, &["Not started: execution", "with another input"])?;
    ensure!(other.stdout.is_empty(), "{}", text(&other.stdout));
    let executions = runtime.block_on(async {
        let sfn = aws_sdk_sfn::Client::new(&stack.sdk_config().await);
        let listed = sfn
            .list_executions()
            .state_machine_arn(&machine)
            .send()
            .await?;
        let described = sfn.describe_execution().execution_arn(&arn).send().await?;
        anyhow::Ok((listed.executions, described))
    })?;
    ensure!(
        executions.0.len() == usize::from(second_arn != arn) + 1,
        "{:?}",
        executions.0
    );
    let input: serde_json::Value = serde_json::from_str(executions.1.input().unwrap_or_default())?;
    ensure!(
        input["projectId"] == "syn1000" && input["destinationStorageLocationId"] == 7001,
        "{input}"
    );
    ensure!(input["options"]["fileVersionStrategy"] == "all", "{input}");

    // No window: a new execution.
    let fresh = synmigrate(&stack, &env, &[&start[..], &["--window", "0"]].concat())?;
    expect_exit(&fresh, 0, "start --window 0")?;
    let fresh_arn = text(&fresh.stdout).trim().to_owned();
    ensure!(fresh_arn != arn, "--window 0 reused {arn}");

    // The pipeline's records for the first execution: a finished run and its manifest.
    let migration = MigrationKey::new("syn1000", 7001)?;
    runtime.block_on(async {
        store
            .create_run(&migration, &name, &serde_json::json!({}), now())
            .await?;
        let counters = RunCounters {
            by_status: [(StatusName::Indexed, 2), (StatusName::Migrated, 2)].into(),
            bytes_copied: 8192,
        };
        store.add_to_counters(&migration, &name, &counters).await?;
        store
            .finish_run(&migration, &name, RunStatus::Succeeded, now())
            .await?;
        let manifest = serde_json::json!([{
            "unitId": "u0", "kind": "SMALL", "totalBytes": 8192,
            "items": [
                {"key": "syn1001.1", "size": 4096, "source": "1"},
                {"key": "syn1002.1", "size": 4096, "source": "2"}
            ]
        }]);
        s3.put_object()
            .bucket(BUCKET)
            .key(manifest_key(&name))
            .body(manifest.to_string().into_bytes().into())
            .send()
            .await?;
        // The Pass machine has finished by now, or soon.
        let sfn = aws_sdk_sfn::Client::new(&stack.sdk_config().await);
        for _ in 0..100 {
            let described = sfn.describe_execution().execution_arn(&arn).send().await?;
            if described.status != ExecutionStatus::Running {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::Ok(())
    })?;

    let watched = synmigrate(
        &stack,
        &env,
        &["watch", "--execution", &arn, "--interval", "0.2"],
    )?;
    let (out, err) = (text(&watched.stdout), text(&watched.stderr));
    expect_exit(&watched, 0, "watch")?;
    ensure!(
        out == format!(
            "Succeeded\nRun {name}: 2 indexed, 2 migrated, 0 skipped, 0 already migrated, 0 \
             errored; 8.00 KiB copied\n"
        ),
        "{out}"
    );
    // Not a terminal: plain progress lines with the plan's totals.
    ensure!(err.contains("files 2/2 · 8.00 KiB/8.00 KiB"), "{err}");

    // By project: the newest execution (the --window 0 one), which succeeded without a run.
    let newest = synmigrate(
        &stack,
        &env,
        &for_migration("watch", "7001", &["--interval", "0.2"]),
    )?;
    expect_exit(&newest, 1, "watch of an execution without a run")?;
    let out = text(&newest.stdout);
    let fresh_name = fresh_arn.rsplit(':').next().unwrap_or_default();
    ensure!(
        out.starts_with("Succeeded without recording a run in this state table")
            && out.contains(&format!("No run {fresh_name} in the state table")),
        "{out}"
    );

    let missing = synmigrate(
        &stack,
        &env,
        &["watch", "--execution", &format!("{arn}-missing")],
    )?;
    expect_usage_error(&missing, &["does not exist"])?;
    Ok(())
}

/// A state machine whose every execution fails at once, as one whose Init refuses the input.
const INIT_FAILS_MACHINE: &str = r#"{"StartAt":"InitFailed","States":{"InitFailed":{
    "Type":"Fail","Error":"Fatal.Forbidden","Cause":"the token's user may not edit syn1000"}}}"#;

/// Waits until the execution has ended.
/// The stack's state table, created.
async fn state_table(stack: &AwsStack) -> anyhow::Result<DynamoStore> {
    let client = aws_sdk_dynamodb::Client::new(&stack.sdk_config().await);
    create_table(&client, TABLE).await?;
    Ok(DynamoStore::new(client, TABLE))
}

/// A state machine of `definition` in the stack, and the client that made it.
async fn state_machine(
    config: &aws_config::SdkConfig,
    name: &str,
    definition: &str,
) -> anyhow::Result<(String, aws_sdk_sfn::Client)> {
    let sfn = aws_sdk_sfn::Client::new(config);
    let machine = sfn
        .create_state_machine()
        .name(name)
        .definition(definition)
        .role_arn("arn:aws:iam::123456789012:role/synmigrate-cli-test")
        .send()
        .await?
        .state_machine_arn;
    Ok((machine, sfn))
}

async fn ended(sfn: &aws_sdk_sfn::Client, arn: &str) -> anyhow::Result<()> {
    for _ in 0..100 {
        let described = sfn.describe_execution().execution_arn(arn).send().await?;
        if described.status != ExecutionStatus::Running {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{arn} still runs")
}

#[test]
fn watch_and_report_say_why_init_failed() -> anyhow::Result<()> {
    let stack = AwsStack::start()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let migration = MigrationKey::new("syn1000", 7003)?;
    let earlier_run = "syn1000-7003-20200101T0000";
    let (machine, store, sfn) = runtime.block_on(async {
        let config = stack.sdk_config().await;
        let (machine, sfn) =
            state_machine(&config, "synmigrate-cli-init-fails", INIT_FAILS_MACHINE).await?;
        let dynamo = aws_sdk_dynamodb::Client::new(&config);
        create_table(&dynamo, TABLE).await?;
        let store = DynamoStore::new(dynamo, TABLE);
        // An earlier run that went well: not what the newest execution did.
        seed_run(&store, &migration, earlier_run, &[], RunStatus::Succeeded).await?;
        anyhow::Ok((machine, store, sfn))
    })?;
    let env = [
        ("SYNMIGRATE_STATE_MACHINE_ARN", machine.as_str()),
        ("SYNMIGRATE_TABLE", TABLE),
        ("SYNMIGRATE_BUCKET", BUCKET),
    ];
    let started = synmigrate(&stack, &env, &for_migration("start", "7003", &[]))?;
    expect_exit(&started, 0, "start")?;
    let arn = text(&started.stdout).trim().to_owned();
    let name = arn.rsplit(':').next().unwrap_or_default().to_owned();
    runtime.block_on(ended(&sfn, &arn))?;
    let failure = "Failed: Fatal.Forbidden: the token's user may not edit syn1000";

    let watched = synmigrate(&stack, &env, &["watch", "--execution", &arn])?;
    expect_exit(&watched, 1, "watch of a failed execution")?;
    ensure!(
        text(&watched.stdout) == format!("{failure}\nNo run {name} in the state table\n"),
        "{}",
        text(&watched.stdout)
    );

    // No run record: the report gives the execution's error and cause, and the run before it.
    let report = synmigrate(&stack, &env, &for_migration("report", "7003", &[]))?;
    expect_exit(&report, 1, "report after a failed Init")?;
    let out = text(&report.stdout);
    ensure!(
        out.contains(&format!(
            "execution {name} has recorded no run\n{failure}\n"
        )) && out.contains(&format!("The newest run recorded is {earlier_run}")),
        "{out}"
    );
    let json = synmigrate(
        &stack,
        &env,
        &for_migration("report", "7003", &["--format", "json"]),
    )?;
    expect_exit(&json, 1, "json report after a failed Init")?;
    ensure!(json.stdout.is_empty(), "{}", text(&json.stdout));
    ensure!(
        text(&json.stderr).contains(failure),
        "{}",
        text(&json.stderr)
    );
    // The run before it is still reported by name.
    let earlier = synmigrate(
        &stack,
        &env,
        &for_migration("report", "7003", &["--run", earlier_run]),
    )?;
    expect_exit(&earlier, 0, "report of the earlier run")?;

    // Init opened the run before failing, and CloseInit marked it FAILED: the report shows the run
    // with the execution's error.
    runtime.block_on(seed_run(&store, &migration, &name, &[], RunStatus::Failed))?;
    let report = synmigrate(&stack, &env, &for_migration("report", "7003", &[]))?;
    expect_exit(&report, 1, "report of a run failed at Init")?;
    let out = text(&report.stdout);
    ensure!(
        out.starts_with(&format!(
            "Migration syn1000 -> storage location 7003, run {name} (FAILED)\n"
        )) && out.contains(&format!("Execution: {failure}\n")),
        "{out}"
    );
    Ok(())
}

#[test]
fn verify_proves_each_migrated_file_s_copy_again_and_names_the_failures() -> anyhow::Result<()> {
    let stack = AwsStack::start()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let migration = MigrationKey::new("syn1000", 7001)?;
    let bucket = "cli-verify";
    let bytes: Vec<u8> = (0..5000u32).map(|i| (i % 199) as u8).collect();
    let md5 = hex::encode(md5::Md5::digest(&bytes));
    let object = |key: &str| ObjectRef {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
    };
    let proof = |destination: &str| {
        CopyProof {
            level: VerifyLevel::Metadata,
            proof: "metadata".into(),
            object: Some(CopiedObject {
                source: Some(object("source")),
                source_md5: Some(md5.clone()),
                size: bytes.len() as u64,
                destination: object(destination),
            }),
        }
        .to_document()
    };
    runtime.block_on(async {
        let config = stack.sdk_config().await;
        let client = aws_sdk_dynamodb::Client::new(&config);
        create_table(&client, TABLE).await?;
        let store = DynamoStore::new(client, TABLE);
        let s3 = stack.s3_client().await;
        s3.create_bucket().bucket(bucket).send().await?;
        let put = |key: &'static str, body: Vec<u8>| {
            s3.put_object()
                .bucket(bucket)
                .key(key)
                .body(body.into())
                .send()
        };
        put("source", bytes.clone()).await?;
        s3.copy_object()
            .bucket(bucket)
            .key("good-copy")
            .copy_source(format!("{bucket}/source"))
            .send()
            .await?;
        // The same size, other bytes: what a mislabelled or damaged copy looks like.
        let mut other = bytes.clone();
        other[0] ^= 0xff;
        put("bad-copy", other).await?;
        let at = now();
        for (source, destination, recorded) in [
            ("101", "201", Some(proof("good-copy"))),
            ("102", "202", Some(proof("bad-copy"))),
            ("103", "203", None),
        ] {
            store
                .claim_copy(&migration, source, "w", at + 60, at)
                .await?;
            store
                .complete_copy(&migration, source, "w", destination, recorded.as_ref(), at)
                .await?;
        }
        // Unfinished: not a copy to prove.
        store
            .claim_copy(&migration, "104", "w", at + 60, at)
            .await?;
        // The migrated files: two share the good copy; one file is not migrated.
        for (entity, source, status) in [
            ("syn2001", "101", ItemStatus::Migrated),
            ("syn2002", "102", ItemStatus::Migrated),
            ("syn2003", "103", ItemStatus::Migrated),
            ("syn2004", "101", ItemStatus::Migrated),
            ("syn2005", "104", ItemStatus::Indexed),
        ] {
            let mut record = item(entity, status, "run")?;
            record.source_file_handle_id = source.to_owned();
            record.destination_file_handle_id = Some(format!("2{}", &source[1..]));
            store.put_item(&migration, &record, 3).await?;
        }
        anyhow::Ok(())
    })?;
    let env = [("SYNMIGRATE_TABLE", TABLE)];
    for (level, proven_by) in [("checksum", "etag-md5"), ("bytes", "bytes-md5")] {
        let output = synmigrate(
            &stack,
            &env,
            &for_migration("verify", "7001", &["--level", level]),
        )?;
        expect_exit(&output, 1, "verify with a failed copy")?;
        let out = text(&output.stdout);
        let rows: Vec<&str> = out.lines().collect();
        ensure!(rows.len() == 5, "{level}: {out}");
        ensure!(rows[0] == VERIFY_HEADER, "{out}");
        for (row, entity) in [(1, "syn2001"), (4, "syn2004")] {
            ensure!(
                rows[row]
                    == format!("{entity},1,101,201,s3://{bucket}/good-copy,proven,{proven_by}"),
                "{level}: {}",
                rows[row]
            );
        }
        ensure!(
            rows[2].starts_with(&format!("syn2002,1,102,202,s3://{bucket}/bad-copy,FAILED,"))
                && rows[2].contains(&md5),
            "{level}: {}",
            rows[2]
        );
        ensure!(
            rows[3].starts_with("syn2003,1,103,203,,not recorded,"),
            "{}",
            rows[3]
        );
        let err = text(&output.stderr);
        ensure!(
            err.contains("4 migrated files checked")
                && err.contains("2 proven")
                && err.contains("1 FAILED"),
            "{err}"
        );
    }
    let metadata = synmigrate(
        &stack,
        &env,
        &for_migration("verify", "7001", &["--level", "metadata"]),
    )?;
    expect_usage_error(&metadata, &["use checksum or bytes"])?;
    Ok(())
}

/// The concrete type Init records for an external S3 destination (`destinationType`).
const EXTERNAL_S3: &str = "org.sagebionetworks.repo.model.project.ExternalS3StorageLocationSetting";

#[test]
fn estimate_reads_the_index_a_dry_run_left() -> anyhow::Result<()> {
    let stack = AwsStack::start()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let store = runtime.block_on(state_table(&stack))?;
    let migration = MigrationKey::new("syn1000", 7001)?;
    let dry_run = "syn1000-7001-20261121T0600";
    let indexed = |entity: &str, source: &str| {
        let mut record = item(entity, ItemStatus::Indexed, dry_run)?;
        record.source_file_handle_id = source.to_owned();
        anyhow::Ok(record)
    };
    // Two files sharing a source, one of their own, and one migrated before.
    let items = [
        indexed("syn1001", "fh-1")?,
        indexed("syn1002", "fh-1")?,
        indexed("syn1003", "fh-3")?,
        item("syn1004", ItemStatus::Migrated, dry_run)?,
    ];
    let settings = serde_json::json!({
        "options": {"dryRun": true, "copyMode": "auto", "fileVersionStrategy": "latest"},
        "destinationStorageLocationId": 7001,
        "destinationType": EXTERNAL_S3,
    });
    runtime.block_on(async {
        store
            .create_run(&migration, dry_run, &settings, now() - 60)
            .await?;
        for record in &items {
            store.put_item(&migration, record, 3).await?;
        }
        store
            .finish_run(&migration, dry_run, RunStatus::Succeeded, now())
            .await?;
        anyhow::Ok(())
    })?;
    let table = [("SYNMIGRATE_TABLE", TABLE)];

    let json = |rest: &[&str]| -> anyhow::Result<serde_json::Value> {
        let mut args = vec!["--format", "json"];
        args.extend_from_slice(rest);
        let output = synmigrate(&stack, &table, &for_migration("estimate", "7001", &args))?;
        expect_exit(&output, 0, "estimate --format json")?;
        Ok(serde_json::from_str(&text(&output.stdout))?)
    };
    // auto into an external S3 location: the direct engine, one registration a copy.
    let direct = json(&[])?;
    ensure!(direct["indexOfRun"] == dry_run, "{direct}");
    let estimate = &direct["estimate"];
    ensure!(estimate["engine"] == "direct", "{estimate}");
    ensure!(estimate["work"]["files"] == 3, "{estimate}");
    ensure!(estimate["work"]["copies"] == 2, "{estimate}");
    let calls = &estimate["work"]["synapse"];
    ensure!(calls["POST /externalFileHandle/s3"] == 2, "{calls}");
    ensure!(
        calls["PUT /entity/{id}/version/{version}/filehandle"] == 3,
        "{calls}"
    );
    ensure!(estimate["requestsPerMinute"] == 540, "{estimate}");

    // The flags change the run's options: the Synapse engine at half the budget.
    let synapse = json(&["--copy-mode", "synapse", "--max-synapse-rpm", "270"])?;
    let estimate = &synapse["estimate"];
    ensure!(estimate["engine"] == "synapse", "{estimate}");
    ensure!(
        estimate["work"]["synapse"]["POST /file/multipart"] == 2,
        "{estimate}"
    );
    ensure!(estimate["requestsPerMinute"] == 270, "{estimate}");
    ensure!(
        estimate["synapseCalls"].as_u64() > direct["estimate"]["synapseCalls"].as_u64(),
        "{estimate}"
    );

    let table_output = synmigrate(&stack, &table, &for_migration("estimate", "7001", &[]))?;
    expect_exit(&table_output, 0, "estimate")?;
    let out = text(&table_output.stdout);
    ensure!(
        out.contains(&format!("from the index as of run {dry_run}")),
        "{out}"
    );
    ensure!(out.contains("Expected duration: "), "{out}");
    ensure!(out.contains("POST /externalFileHandle/s3"), "{out}");

    // A migration nobody indexed: nothing to estimate from, and how to get it.
    let none = synmigrate(&stack, &table, &for_migration("estimate", "7002", &[]))?;
    expect_usage_error(
        &none,
        &[
            "no index to estimate from",
            "synmigrate start --project syn1000 --destination 7002 --dry-run",
        ],
    )?;
    Ok(())
}

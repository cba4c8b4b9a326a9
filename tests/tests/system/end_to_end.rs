//! The product end to end: the repository's state machine runs in the local Step Functions (moto),
//! its Lambda tasks run the real function binaries, Synapse is the simulator with Synapse's
//! throttle on (600 requests a minute, 3 in flight, one key for every function instance). A seeded
//! project of about 50 files (nested folders, several versions, a shared handle, multi-part files at
//! 5 MiB parts, skip cases) is migrated with each copy engine; the test checks the destination
//! bytes (MD5), the entity versions, the DynamoDB items and the CSV report, that a second execution
//! changes nothing, and that of two executions started together one does the work and the other
//! ends as AlreadyRunning, without duplicate versions.
//!
//! The function binaries must be built first (`cargo build --workspace --bins`; `make test` does).

use std::collections::BTreeMap;

use anyhow::{ensure, Context};
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{json, Value};
use synapse_sim::{EntitySnapshot, Fixture, ThrottleConfig};
use synmigrate::config::MigrationOptions;
use synmigrate::report::CSV_HEADER;
use synmigrate::stages::RunContext;
use synmigrate::state::dynamo::DynamoStore;
use synmigrate::state::{ItemRecord, ItemStatus, MigrationKey, StateStore, StatusName, Transition};
use synmigrate_local::{LocalDeployment, LocalOptions};
use synmigrate_testkit::object_bytes;

use super::common::{
    bounded, handle_md5, handles, input_with, items, latest_handle, project, run_to_end, snapshots,
    DEST, EXECUTION_TIMEOUT, MIB,
};

/// Folders x subfolders x files of the generated tree.
const TREE: (usize, usize, usize) = (2, 4, 5);
/// Files of `fan-in/`, sharing one handle with two others.
const FAN_IN: usize = 24;
/// The MD5 `special/mislabelled.txt`'s handle claims: not its bytes' (Synapse never checks).
const MISLABELLED_MD5: &str = "00112233445566778899aabbccddeeff";
/// `maxSynapseRequestsPerMinute` by default, and the direct-engine run's lower one.
const DEFAULT_BUDGET: usize = 540;
const DIRECT_BUDGET: usize = 300;
/// Synapse requests that create or change something.
const SYNAPSE_WRITES: [&str; 5] = [
    "POST /file/multipart",
    "PUT /entity/{id}",
    "PUT /entity/{id}/version/{version}/filehandle",
    "POST /externalFileHandle/s3",
    "PUT /entity/{id}/annotations2",
];

/// A file the migrator may read but not change: its copy is refused (item ERRORED, Forbidden).
fn readonly_file() -> Value {
    json!({"type": "file", "name": "readonly.txt", "versions": [{"content": {"text": "hands off"}}],
           "acl": {"migrator": ["READ", "DOWNLOAD"]}})
}

/// The seeded project: a nested tree of 200 small files plus the special cases.
fn fixture() -> Fixture {
    let (folders, subfolders, files) = TREE;
    let tree: Vec<Value> = (0..folders)
        .map(|a| {
            let subs: Vec<Value> = (0..subfolders)
                .map(|b| {
                    let leaves: Vec<Value> = (0..files)
                        .map(|c| {
                            let seed = (a * 100 + b * 10 + c) as u64;
                            json!({"type": "file", "name": format!("f{c}.bin"),
                                   "versions": [{"content": {"size": 1000 + seed * 7, "seed": seed}}]})
                        })
                        .collect();
                    json!({"type": "folder", "name": format!("sub{b}"), "children": leaves})
                })
                .collect();
            json!({"type": "folder", "name": format!("dir{a}"), "children": subs})
        })
        .collect();
    // With shared-a and shared-b, more files share the handle than a unit holds (25): the
    // last of them go through the Map's second pass (follower units).
    let fan_in: Vec<Value> = (0..FAN_IN)
        .map(|i| {
            json!({"type": "file", "name": format!("link-{i:02}.txt"),
                        "versions": [{"handle": "shared"}]})
        })
        .collect();
    project(json!([
        {"type": "folder", "name": "tree", "children": tree},
        {"type": "folder", "name": "mixed", "children": [
            {"type": "file", "name": "versions.txt", "versions": [
                {"content": {"text": "version one"}},
                {"content": {"text": "version two"}},
                {"content": {"text": "version three"}, "contentType": "text/plain"}
            ]},
            {"type": "file", "name": "shared-a.txt", "versions": [{"handle": "shared"}]},
            {"type": "folder", "name": "elsewhere", "children": [
                {"type": "file", "name": "shared-b.txt", "versions": [{"handle": "shared"}]}
            ]},
            {"type": "folder", "name": "fan-in", "children": fan_in},
            {"type": "file", "name": "big-3-parts.bin",
             "versions": [{"content": {"size": 12 * MIB + 4321, "seed": 11}}]},
            {"type": "file", "name": "big-7-parts.bin",
             "versions": [{"content": {"size": 33 * MIB, "seed": 12}}]}
        ]},
        {"type": "folder", "name": "special", "children": [
            {"type": "file", "name": "in-destination.txt",
             "versions": [{"content": {"text": "already there"}, "storageLocationId": DEST,
                           "createdBy": "migrator"}]},
            {"type": "file", "name": "link.txt",
             "versions": [{"kind": "external", "externalUrl": "https://example.org/x"}]},
            {"type": "file", "name": "empty.txt", "versions": [{"content": {"text": ""}}]},
            {"type": "file", "name": "mislabelled.txt",
             "versions": [{"content": {"text": "not what the handle says"},
                           "declaredMd5": MISLABELLED_MD5}]},
            readonly_file()
        ]}
    ]))
}

/// What each file must end as, by its path below the project.
fn expected_status(path: &str) -> StatusName {
    match path {
        "special/in-destination.txt" => StatusName::AlreadyMigrated,
        "special/link.txt" | "special/empty.txt" => StatusName::Skipped,
        "special/readonly.txt" | "special/mislabelled.txt" => StatusName::Errored,
        _ => StatusName::Migrated,
    }
}

/// A deployment whose big files go through part batches: files above 8 MiB get their own unit,
/// a CopyParts batch holds six 5 MiB parts (so the 7-part file needs two), and the direct engine
/// uses multipart copies above 8 MiB.
async fn deploy(fixture: &Fixture) -> anyhow::Result<LocalDeployment> {
    let env = [
        ("SYNMIGRATE_UNIT_MAX_FILES", "25".to_owned()),
        ("SYNMIGRATE_LARGE_FILE_BYTES", (8 * MIB).to_string()),
        ("SYNMIGRATE_BATCH_SECONDS", "1".to_owned()),
        ("SYNMIGRATE_BATCH_CONCURRENCY", "1".to_owned()),
        ("SYNMIGRATE_COPY_OBJECT_THRESHOLD", (8 * MIB).to_string()),
        ("SYNMIGRATE_INDEX_SECONDS", "1".to_owned()),
    ];
    // Synapse's throttle, and each function instance allowed the whole budget: only the run's
    // shared budget keeps the fleet under the server's limit.
    let options = LocalOptions {
        throttle: ThrottleConfig::default(),
        max_synapse_rpm: 540,
        max_instances: 3,
        function_env: env.map(|(k, v)| (k.to_owned(), v)).to_vec(),
        ..LocalOptions::default()
    };
    Ok(LocalDeployment::start(fixture, options).await?)
}

fn input(deployment: &LocalDeployment, copy_mode: &str) -> Value {
    input_at(deployment, copy_mode, DEFAULT_BUDGET)
}

/// The input with a Synapse budget (`maxSynapseRequestsPerMinute`).
fn input_at(deployment: &LocalDeployment, copy_mode: &str, budget: usize) -> Value {
    input_with(
        deployment,
        json!({
            "copyMode": copy_mode,
            "verify": verify_level(copy_mode),
            "partSizeBytes": 5 * MIB,
            "maxConcurrency": 3,
            "continueOnError": true,
            "maxSynapseRequestsPerMinute": budget
        }),
    )
}

/// The Synapse engine's runs read every copy back (`bytes`), the direct engine's prove theirs
/// with S3's ETags and checksums (`checksum`).
fn verify_level(copy_mode: &str) -> &'static str {
    if copy_mode == "direct" {
        "checksum"
    } else {
        "bytes"
    }
}

/// How a migrated file's copy is proven at `verify`: every copy read back with `bytes`; with
/// `checksum`, a CopyObject's ETag, while the multipart copies of the big files have nothing
/// to compare (moto stores no checksum for a multipart upload that asked for none).
fn expected_proof(verify: &str, path: &str) -> &'static str {
    match (verify, path.starts_with("mixed/big-")) {
        ("bytes", _) => "bytes-md5",
        (_, false) => "etag-md5",
        (_, true) => "none: ",
    }
}

/// Runs one execution to its end; returns its output (the run's summary) if it succeeded.
async fn run(deployment: &LocalDeployment, name: &str, input: &Value) -> anyhow::Result<Value> {
    let done = run_to_end(deployment, name, input).await?;
    ensure!(
        done.status() == &ExecutionStatus::Succeeded,
        "{name} ended {:?}: {:?} {:?}",
        done.status(),
        done.error(),
        done.cause()
    );
    Ok(serde_json::from_str(done.output().unwrap_or("null"))?)
}

/// Checks a finished first migration against the project as it was before.
async fn check_migrated(
    deployment: &LocalDeployment,
    before: &BTreeMap<String, (String, EntitySnapshot)>,
    summary: &Value,
    verify: &str,
) -> anyhow::Result<()> {
    let s3 = deployment.s3_client().await;
    let after = snapshots(deployment);
    let items = items(deployment).await?;
    ensure!(
        items.len() == before.len(),
        "{} items for {} files",
        items.len(),
        before.len()
    );
    ensure!(before.len() > 40, "the project has {} files", before.len());
    let mut copies_of_shared = Vec::new();
    for (path, (id, old)) in before {
        let (_, now) = &after[path];
        let version = old.entity.version_number.context("a version")?;
        let key = format!("{id}.{version}");
        let item = items.get(&key).with_context(|| format!("no item {key}"))?;
        let status = expected_status(path);
        ensure!(
            item.status.name() == status,
            "{path}: {:?}, expected {status}",
            item.status
        );
        ensure!(
            item.lease.is_none(),
            "{path}: a finished item holds a lease"
        );
        if status != StatusName::Migrated {
            ensure!(
                handles(now) == handles(old),
                "{path} is {status} but changed"
            );
            // Its bytes are not what its handle claims: the bytes proof (Synapse engine) or
            // the source's ETag (direct engine) refuses it, and its entity keeps its file.
            if path == "special/mislabelled.txt" {
                ensure!(
                    matches!(&item.status, ItemStatus::Errored(e) if e.class == "Fatal.Verification"),
                    "{path}: {:?}",
                    item.status
                );
            }
            continue;
        }
        let proof = expected_proof(verify, path);
        ensure!(
            item.verified_by
                .as_deref()
                .is_some_and(|p| p.starts_with(proof)),
            "{path}: proven by {:?}, expected {proof}",
            item.verified_by
        );
        // Strategy `new`: one new version on top, pointing at a copy in the destination.
        ensure!(
            now.versions.len() == old.versions.len() + 1,
            "{path}: {} versions, had {}",
            now.versions.len(),
            old.versions.len()
        );
        ensure!(
            handles(now).starts_with(&handles(old)),
            "{path}: old versions changed"
        );
        // Labelled as the official client labels it: Synapse refuses a label already used.
        let label = now.entity.version_label.as_deref();
        ensure!(
            label == Some((version + 1).to_string().as_str()),
            "{path}: new version labelled {label:?}"
        );
        let (source, source_md5) = handle_md5(deployment, &s3, &latest_handle(old)?).await?;
        let new_id = latest_handle(now)?;
        let (copy, copy_md5) = handle_md5(deployment, &s3, &new_id).await?;
        ensure!(
            copy.storage_location_id == Some(DEST),
            "{path}: copy in {:?}",
            copy.storage_location_id
        );
        ensure!(copy_md5 == source_md5, "{path}: bytes differ");
        ensure!(
            copy.content_md5 == source.content_md5,
            "{path}: contentMd5 differs"
        );
        ensure!(
            item.destination_file_handle_id.as_deref() == Some(new_id.as_str()),
            "{path}: item records {:?}, entity points at {new_id}",
            item.destination_file_handle_id
        );
        if path.contains("shared-") {
            copies_of_shared.push(new_id);
        }
    }
    ensure!(
        copies_of_shared.len() == 2 && copies_of_shared[0] == copies_of_shared[1],
        "the shared handle is copied once: {copies_of_shared:?}"
    );

    let migrated = before
        .keys()
        .filter(|p| expected_status(p) == StatusName::Migrated)
        .count();
    ensure!(
        summary["totals"]["byStatus"]["MIGRATED"] == json!(migrated),
        "summary: {summary}"
    );
    // The read-only file's copy is the one copy no entity points at.
    ensure!(summary["orphanedCopies"] == json!(1), "summary: {summary}");
    let unproven = before
        .keys()
        .filter(|p| expected_status(p) == StatusName::Migrated)
        .filter(|p| expected_proof(verify, p).starts_with("none"))
        .count();
    ensure!(
        summary["totals"]["unproven"] == json!(unproven),
        "summary: {summary}"
    );
    let report = object_bytes(
        &s3,
        summary["reportBucket"].as_str().context("reportBucket")?,
        summary["reportKey"].as_str().context("reportKey")?,
    )
    .await?;
    let report = String::from_utf8(report)?;
    let mut lines = report.lines();
    ensure!(lines.next() == Some(CSV_HEADER), "the CSV header");
    let rows: Vec<&str> = lines.collect();
    ensure!(rows.len() == items.len(), "{} report rows", rows.len());
    for (key, item) in &items {
        let (entity, version) = key.split_once('.').context("item key")?;
        let prefix = format!("{entity},file,{version},");
        let row = rows
            .iter()
            .find(|r| r.starts_with(&prefix))
            .with_context(|| format!("no report row for {key}"))?;
        ensure!(
            row.contains(&format!(",{},", item.status.name().as_str())),
            "{key}: {row}"
        );
        // `verified_by`, then an empty `source_handle` (no clean-up in these runs), then the
        // destination.
        let row = row
            .strip_suffix(&format!(",{DEST}"))
            .with_context(|| format!("{key}: the to_storage_location_id column: {row}"))?;
        if let Some(proof) = &item.verified_by {
            let verified = row.strip_suffix(',').context("the source_handle column")?;
            let verified = verified.strip_suffix('"').unwrap_or(verified);
            ensure!(verified.ends_with(proof.as_str()), "{key}: {row}");
        }
    }
    Ok(())
}

/// Since the last reset of the simulator's request log, nothing was created or changed (a write
/// Synapse refused, such as the retried update of a read-only entity, changes nothing).
fn ensure_no_synapse_writes(deployment: &LocalDeployment) -> anyhow::Result<()> {
    let written: Vec<_> = deployment
        .sim()
        .requests()
        .into_iter()
        .filter(|r| (200..300).contains(&r.status))
        .filter(|r| SYNAPSE_WRITES.contains(&r.endpoint().as_str()))
        .collect();
    ensure!(written.is_empty(), "wrote {written:?}");
    Ok(())
}

/// Every Synapse request since the last reset of the request log went out within the run's
/// budget, whichever function instance sent it: no 429, and no 10 s window holds more than a
/// sixth of the budget plus the one second of leased slots an instance may send late.
fn ensure_within_budget(deployment: &LocalDeployment, per_minute: usize) -> anyhow::Result<()> {
    let mut requests = deployment.sim().requests();
    let throttled = requests.iter().filter(|r| r.status == 429).count();
    ensure!(throttled == 0, "{throttled} requests got 429");
    requests.sort_by_key(|r| r.received_ms);
    let ceiling = per_minute / 6 + per_minute / 60 + 1;
    for (i, first) in requests.iter().enumerate() {
        let window = requests[i..]
            .iter()
            .take_while(|r| r.received_ms < first.received_ms + 10_000)
            .count();
        ensure!(
            window <= ceiling,
            "{window} requests in the 10 s from {}; the budget allows {ceiling}",
            first.received_ms
        );
    }
    Ok(())
}

/// A later execution on a migrated project changes nothing: no copy starts, no entity writes.
async fn check_rerun_changes_nothing(
    deployment: &LocalDeployment,
    name: &str,
    copy_mode: &str,
) -> anyhow::Result<()> {
    let before = snapshots(deployment);
    let items_before = items(deployment).await?;
    deployment.sim().reset_requests();
    let summary = run(deployment, name, &input(deployment, copy_mode)).await?;
    ensure_no_synapse_writes(deployment)?;
    ensure_within_budget(deployment, DEFAULT_BUDGET)?;
    ensure!(snapshots(deployment) == before, "entities changed");
    let items_after = items(deployment).await?;
    for (key, item) in &items_before {
        ensure!(
            items_after[key].status == item.status,
            "{key} went from {:?} to {:?}",
            item.status,
            items_after[key].status
        );
    }
    ensure!(
        summary["runCounters"]["bytesCopied"] == json!(0),
        "the re-run copied bytes: {summary}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_engine_migrates_through_the_state_machine() -> anyhow::Result<()> {
    bounded(async {
        let deployment = deploy(&fixture()).await?;
        let before = snapshots(&deployment);
        let summary = run(&deployment, "e2e-synapse-1", &input(&deployment, "synapse")).await?;
        check_migrated(&deployment, &before, &summary, "bytes").await?;
        ensure_within_budget(&deployment, DEFAULT_BUDGET)?;
        // The big files went through the part-batch Map (processes start at the first call).
        ensure!(
            deployment.running_instances("synmigrate-copy-parts") > 0,
            "CopyParts never ran"
        );
        // The Map wrote its results to S3, not into the execution's state.
        let listed = deployment
            .s3_client()
            .await
            .list_objects_v2()
            .bucket(deployment.bucket())
            .prefix("map-results/")
            .send()
            .await?;
        ensure!(
            listed
                .contents()
                .iter()
                .any(|o| o.key().is_some_and(|k| k.ends_with("/manifest.json"))),
            "no Map results manifest: {:?}",
            listed.contents()
        );
        // The shared handle's 26 files: 25 in its lead unit, one in a follower unit, which
        // the Map's second pass migrated (check_migrated saw every file MIGRATED).
        let s3 = deployment.s3_client().await;
        let followers = object_bytes(
            &s3,
            deployment.bucket(),
            "runs/e2e-synapse-1/followers.json",
        )
        .await?;
        let followers: Value = serde_json::from_slice(&followers)?;
        ensure!(
            followers.as_array().map(Vec::len) == Some(1)
                && followers[0]["items"].as_array().map(Vec::len) == Some(1),
            "{followers}"
        );
        check_rerun_changes_nothing(&deployment, "e2e-synapse-2", "synapse").await?;
        deployment.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_engine_with_two_executions_started_together() -> anyhow::Result<()> {
    bounded(async {
        let deployment = deploy(&fixture()).await?;
        let before = snapshots(&deployment);
        // A budget below the deployment's: the run's option, not the instances' ceiling, binds.
        let input = input_at(&deployment, "direct", DIRECT_BUDGET);
        let (a, b) = tokio::try_join!(
            deployment.start_execution("e2e-direct-a", &input),
            deployment.start_execution("e2e-direct-b", &input),
        )?;
        let (a, b) = tokio::try_join!(
            deployment.wait_for_execution(&a, EXECUTION_TIMEOUT),
            deployment.wait_for_execution(&b, EXECUTION_TIMEOUT),
        )?;
        let (winner, loser) = if a.status() == &ExecutionStatus::Succeeded {
            (a, b)
        } else {
            (b, a)
        };
        ensure!(
            winner.status() == &ExecutionStatus::Succeeded,
            "one execution does the work: {:?} {:?}",
            winner.error(),
            winner.cause()
        );
        ensure!(
            loser.status() == &ExecutionStatus::Failed
                && loser.error() == Some("Fatal.AlreadyRunning"),
            "the other ends as AlreadyRunning: {:?} {:?} {:?}",
            loser.status(),
            loser.error(),
            loser.cause()
        );
        // Each execution notified how it ended, the loser too (no function of its reached Report).
        let mut endings: Vec<(String, String)> = deployment
            .inbox()
            .events()
            .await?
            .iter()
            .map(|e| {
                let arn = e["detail"]["executionArn"].as_str().unwrap_or_default();
                let status = e["detail"]["status"].as_str().unwrap_or_default();
                (arn.to_owned(), status.to_owned())
            })
            .collect();
        endings.sort();
        let mut expected = vec![
            (winner.execution_arn().to_owned(), "SUCCEEDED".to_owned()),
            (
                loser.execution_arn().to_owned(),
                "ALREADY_RUNNING".to_owned(),
            ),
        ];
        expected.sort();
        ensure!(endings == expected, "{endings:?}");
        let summary: Value = serde_json::from_str(winner.output().unwrap_or("null"))?;
        // check_migrated also proves that no entity got more than one new version.
        check_migrated(&deployment, &before, &summary, "checksum").await?;
        ensure_within_budget(&deployment, DIRECT_BUDGET)?;
        check_rerun_changes_nothing(&deployment, "e2e-direct-2", "direct").await?;
        deployment.shutdown().await;
        Ok(())
    })
    .await
}

/// The failure paths: RecordFailure (items ERRORED, one message on the failure queue) and a run
/// that stops on an ERRORED item when `continueOnError` is off, releasing the lock on its way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_recorded_and_stop_the_run() -> anyhow::Result<()> {
    bounded(async {
        let files: Vec<Value> = (0..3)
            .map(|i| json!({"type": "file", "name": format!("ok{i}.txt"),
                             "versions": [{"content": {"text": format!("fine {i}")}}]}))
            .chain([readonly_file()])
            .collect();
        let deployment = deploy(&project(Value::Array(files))).await?;
        let dry = json!({"dryRun": true});

        // Init refuses bad input; the execution fails with the function's error type.
        let mut bad = input_with(&deployment, json!({}));
        bad["projectId"] = json!("not-a-project");
        let refused = run_to_end(&deployment, "e2e-bad-input", &bad).await?;
        ensure!(
            refused.status() == &ExecutionStatus::Failed
                && refused.error() == Some("Fatal.InvalidInput")
                && refused.cause().is_some_and(|c| c.contains("not-a-project")),
            "{:?} {:?} {:?}",
            refused.status(),
            refused.error(),
            refused.cause()
        );

        // A dry run indexes and reports, and writes nothing to Synapse.
        deployment.sim().reset_requests();
        let summary = run(&deployment, "e2e-dry", &input_with(&deployment, dry)).await?;
        ensure_no_synapse_writes(&deployment)?;
        ensure!(summary["dryRun"] == json!(true), "{summary}");
        let indexed = items(&deployment).await?;
        ensure!(
            indexed.len() == 4 && indexed.values().all(|i| i.status.name() == StatusName::Indexed),
            "{indexed:?}"
        );

        // RecordFailure, as the Catch of a unit calls it, on the three readable files.
        let ok: Vec<&ItemRecord> = indexed
            .values()
            .filter(|i| i.file_name.starts_with("ok"))
            .collect();
        let unit = json!({
            "unitId": "unit-failed",
            "kind": "SMALL",
            "totalBytes": ok.iter().map(|i| i.size).sum::<u64>(),
            "items": ok.iter().map(|i| json!({"key": i.key.to_string(), "size": i.size,
                                              "source": i.source_file_handle_id})).collect::<Vec<_>>()
        });
        let run_context = RunContext {
            project_id: deployment.project_id().context("the project")?.to_owned(),
            destination_storage_location_id: Some(DEST),
            run_id: "e2e-dry".to_owned(),
            options: MigrationOptions::default(),
            destination: Some(
                deployment
                    .sim()
                    .storage_location(DEST)
                    .context("the destination")?,
            ),
        };
        let recorded = deployment
            .invoke(
                "synmigrate-complete",
                &json!({"stage": "recordFailure", "run": run_context, "unit": unit,
                        "failure": {"Error": "Retryable.Transient", "Cause": "the test broke it"}}),
            )
            .await?;
        ensure!(recorded["errored"] == json!(3), "{recorded}");
        let messages = aws_sdk_sqs::Client::new(deployment.sdk_config())
            .receive_message()
            .queue_url(deployment.queue_url())
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await?;
        let bodies: Vec<Value> = messages
            .messages()
            .iter()
            .map(|m| serde_json::from_str(m.body().unwrap_or("null")))
            .collect::<Result<_, _>>()?;
        ensure!(bodies.len() == 1, "one message per failed unit: {bodies:?}");
        ensure!(
            bodies[0]["unitId"] == "unit-failed"
                && bodies[0]["errorType"] == "Retryable.Transient"
                && bodies[0]["items"].as_array().map(Vec::len) == Some(3),
            "{bodies:?}"
        );
        for item in items(&deployment).await?.values() {
            let expected = if item.file_name.starts_with("ok") {
                StatusName::Errored
            } else {
                StatusName::Indexed
            };
            ensure!(item.status.name() == expected, "{item:?}");
        }

        // With continueOnError off, the refused file stops the run; the retryable failures are
        // retried (and migrate) in the same unit, and the report is written before it fails.
        let stop = json!({"continueOnError": false});
        let stopped = run_to_end(&deployment, "e2e-stop", &input_with(&deployment, stop.clone())).await?;
        ensure!(
            stopped.status() == &ExecutionStatus::Failed,
            "{:?} {:?}",
            stopped.status(),
            stopped.output()
        );
        ensure!(
            stopped.error() == Some("Fatal.ItemsFailed")
                || stopped.error() == Some("States.ExceedToleratedFailureThreshold"),
            "{:?} {:?}",
            stopped.error(),
            stopped.cause()
        );
        for item in items(&deployment).await?.values() {
            let expected = if item.file_name.starts_with("ok") {
                StatusName::Migrated
            } else {
                StatusName::Errored
            };
            ensure!(item.status.name() == expected, "{item:?}");
        }
        let s3 = deployment.s3_client().await;
        let report = object_bytes(&s3, deployment.bucket(), "runs/e2e-stop/report.csv").await?;
        ensure!(
            String::from_utf8(report)?.lines().count() == 5,
            "the aborted run's report"
        );

        // The stopped run released the lock: the next one runs. All it has left is the read-only
        // file, whose copy was kept: it retries the update with that copy (no second copy), is
        // refused again, and stops.
        deployment.sim().reset_requests();
        let again = run_to_end(&deployment, "e2e-after-stop", &input_with(&deployment, stop)).await?;
        ensure!(
            again.error() == Some("Fatal.ItemsFailed"),
            "{:?} {:?}",
            again.error(),
            again.cause()
        );
        ensure_no_synapse_writes(&deployment)?;
        let readonly = items(&deployment)
            .await?
            .into_values()
            .find(|i| i.file_name == "readonly.txt")
            .context("the read-only item")?;
        ensure!(readonly.attempts == 2, "{readonly:?}");
        deployment.shutdown().await;
        Ok(())
    })
    .await
}

/// A file held by a crashed attempt's unexpired lease keeps the next execution from succeeding,
/// even with `continueOnError`: it fails with `Fatal.Unfinished`, the cause naming the file count
/// and until when, after migrating the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_held_by_a_crashed_attempt_fails_the_execution_as_unfinished() -> anyhow::Result<()>
{
    bounded(async {
        let files: Vec<Value> = (0..2)
            .map(|i| {
                json!({"type": "file", "name": format!("f{i}.txt"),
                             "versions": [{"content": {"text": format!("bytes {i}")}}]})
            })
            .collect();
        let deployment = deploy(&project(Value::Array(files))).await?;
        run(
            &deployment,
            "e2e-held-dry",
            &input_with(&deployment, json!({"dryRun": true})),
        )
        .await?;
        let indexed = items(&deployment).await?;
        let held = indexed.values().next().context("an item")?;
        let store = DynamoStore::new(
            aws_sdk_dynamodb::Client::new(deployment.sdk_config()),
            deployment.table(),
        );
        let migration = MigrationKey::new(deployment.project_id().context("the project")?, DEST)?;
        store
            .transition_item(
                &migration,
                &held.key,
                &Transition {
                    from: StatusName::Indexed,
                    to: ItemStatus::Copying,
                    owner: "crashed-run/unit-000001".into(),
                    lease_until: Some(synmigrate::stages::now() + 3600),
                    destination_file_handle_id: None,
                    count_attempt: true,
                    verified_by: None,
                    run_id: "crashed-run".into(),
                    now: synmigrate::stages::now(),
                },
            )
            .await?;
        let done = run_to_end(&deployment, "e2e-held", &input(&deployment, "synapse")).await?;
        ensure!(
            done.status() == &ExecutionStatus::Failed
                && done.error() == Some("Fatal.Unfinished")
                && done
                    .cause()
                    .is_some_and(|c| c.contains("1 files are held by an earlier attempt until")),
            "{:?} {:?} {:?}",
            done.status(),
            done.error(),
            done.cause()
        );
        let after = items(&deployment).await?;
        for (key, item) in &after {
            let expected = if *key == held.key.to_string() {
                StatusName::Copying
            } else {
                StatusName::Migrated
            };
            ensure!(item.status.name() == expected, "{item:?}");
        }
        deployment.shutdown().await;
        Ok(())
    })
    .await
}

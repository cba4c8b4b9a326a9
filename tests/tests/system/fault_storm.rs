//! A fault storm at pipeline level (issue 10, item 6): the real state machine at `maxConcurrency`
//! 10 with three processes of each function, while the simulator answers 10% of Synapse requests
//! 503, throttles in bursts (429) and signs some part URLs to expire early, and the S3 behind
//! everything ([`S3FaultProxy`] in front of a second moto) answers a seeded share of copies and
//! multipart completions 503 SlowDown or 200 with an `<Error>` body. Every file must end MIGRATED
//! with the right bytes and exactly one new version, and each kind of fault must really have
//! happened (else the test proves nothing).
//!
//! The function binaries must be built first (`cargo build --workspace --bins`; `make test` does).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{json, Value};
use synapse_sim::{Burst, EntitySnapshot, FaultConfig, Fixture, ThrottleConfig};
use synmigrate::state::StatusName;
use synmigrate_local::{LocalDeployment, LocalOptions};
use synmigrate_testkit::{AwsStack, FaultRates, S3FaultConfig, S3FaultCounts, S3FaultProxy};

use super::common::{
    bounded, handle_md5, handles, input_with, items, latest_handle, project, run_to_end, snapshots,
    DEST, MIB,
};

const SEED: u64 = 20_260_810;
const SMALL_FILES: usize = 24;
const BIG_FILES: usize = 3;
/// Synapse's limit: with the throttle off, the run's budget is all that paces the fleet.
const BUDGET: u32 = 600;

/// 24 small files in 8 units of 3, and three 12 MiB files of three 5 MiB parts in a unit each.
fn fixture() -> Fixture {
    let small: Vec<Value> = (0..SMALL_FILES as u64)
        .map(|i| {
            json!({"type": "file", "name": format!("f{i}.bin"),
                   "versions": [{"content": {"size": 1000 + i * 150, "seed": i}}]})
        })
        .collect();
    let big: Vec<Value> = (0..BIG_FILES as u64)
        .map(|i| {
            json!({"type": "file", "name": format!("big{i}.bin"),
                   "versions": [{"content": {"size": 12 * MIB + i * 1000, "seed": 100 + i}}]})
        })
        .collect();
    project(json!([
        {"type": "folder", "name": "small", "children": small},
        {"type": "folder", "name": "big", "children": big}
    ]))
}

/// Synapse's faults: 10% 503 on every route, 2 requests of every 40 throttled, a quarter of the
/// part URLs signed for 5 s (which the proxy lets expire before use).
fn synapse_faults() -> FaultConfig {
    FaultConfig {
        seed: SEED,
        error_rates: BTreeMap::from([("*".to_owned(), 0.1)]),
        burst_429: Some(Burst {
            every: 40,
            length: 2,
        }),
        early_expiry_rate: 0.25,
        early_expiry: Duration::from_secs(5),
        ..FaultConfig::default()
    }
}

/// S3's faults: 30% of the copies and 20-40% of the completions. At most three in a row for one
/// request against the direct engine (its S3 client makes eight attempts; with the SDK's three,
/// three in a row left files ERRORED). With the Synapse engine the completions are the
/// simulator's own (Synapse's, whose S3 client makes three attempts), so at most two in a row
/// there and no error body: forwarded first, it would leave the simulator's retry facing
/// NoSuchUpload.
fn s3_faults(copy_mode: &str) -> S3FaultConfig {
    let direct = copy_mode == "direct";
    S3FaultConfig {
        seed: SEED,
        copy: FaultRates {
            slow_down: 0.15,
            error_body: 0.15,
        },
        complete: FaultRates {
            slow_down: 0.2,
            error_body: if direct { 0.2 } else { 0.0 },
        },
        max_in_a_row: if direct { 3 } else { 2 },
        hold_expiring: Some(Duration::from_secs(60)),
    }
}

/// The deployment, the S3 it copies in, and the proxy in between (dropped in this order).
struct Storm {
    deployment: LocalDeployment,
    proxy: S3FaultProxy,
    data: AwsStack,
}

/// Starts everything without faults (the simulator seeds its buckets through the proxy), then
/// turns the storm on.
async fn deploy(copy_mode: &str) -> anyhow::Result<Storm> {
    let data = tokio::task::spawn_blocking(AwsStack::start).await??;
    let proxy = S3FaultProxy::start(data.endpoint_url()).await?;
    let env = [
        ("SYNMIGRATE_UNIT_MAX_FILES", "3".to_owned()),
        ("SYNMIGRATE_LARGE_FILE_BYTES", (8 * MIB).to_string()),
        ("SYNMIGRATE_BATCH_SECONDS", "1".to_owned()),
        ("SYNMIGRATE_INDEX_SECONDS", "1".to_owned()),
        // The direct engine copies the smaller half of the small files with CopyObject, the
        // rest with UploadPartCopy and CompleteMultipartUpload.
        ("SYNMIGRATE_COPY_OBJECT_THRESHOLD", "2500".to_owned()),
    ];
    let options = LocalOptions {
        throttle: ThrottleConfig::disabled(),
        s3_endpoint: Some(proxy.endpoint().to_owned()),
        max_instances: 3,
        max_synapse_rpm: BUDGET,
        function_env: env.map(|(k, v)| (k.to_owned(), v)).to_vec(),
        ..LocalOptions::default()
    };
    let deployment = LocalDeployment::start(&fixture(), options).await?;
    deployment.sim().set_faults(synapse_faults());
    proxy.set_config(s3_faults(copy_mode));
    Ok(Storm {
        deployment,
        proxy,
        data,
    })
}

/// Every file MIGRATED with one new version on top, pointing at a copy in the destination with
/// the source's bytes; the old versions untouched.
async fn check_migrated(
    storm: &Storm,
    before: &BTreeMap<String, (String, EntitySnapshot)>,
) -> anyhow::Result<()> {
    let deployment = &storm.deployment;
    let s3 = storm.data.s3_client().await;
    let after = snapshots(deployment);
    let items = items(deployment).await?;
    ensure!(
        before.len() == SMALL_FILES + BIG_FILES && items.len() == before.len(),
        "{} items for {} files",
        items.len(),
        before.len()
    );
    for (path, (id, old)) in before {
        let (_, now) = &after[path];
        let key = format!("{id}.{}", old.entity.version_number.context("a version")?);
        let item = items.get(&key).with_context(|| format!("no item {key}"))?;
        ensure!(
            item.status.name() == StatusName::Migrated && item.lease.is_none(),
            "{path}: {:?}, lease {:?}",
            item.status,
            item.lease
        );
        ensure!(
            now.versions.len() == old.versions.len() + 1 && handles(now).starts_with(&handles(old)),
            "{path}: versions {:?}, had {:?}",
            handles(now),
            handles(old)
        );
        let new_id = latest_handle(now)?;
        ensure!(
            item.destination_file_handle_id.as_deref() == Some(new_id.as_str()),
            "{path}: item records {:?}, entity points at {new_id}",
            item.destination_file_handle_id
        );
        let (_, source_md5) = handle_md5(deployment, &s3, &latest_handle(old)?).await?;
        let (copy, copy_md5) = handle_md5(deployment, &s3, &new_id).await?;
        ensure!(
            copy.storage_location_id == Some(DEST) && copy_md5 == source_md5,
            "{path}: copy in {:?}, MD5 {copy_md5}, source {source_md5}",
            copy.storage_location_id
        );
    }
    Ok(())
}

/// Each kind of fault fired at least once, or the storm proved nothing.
fn check_faults_happened(storm: &Storm, copy_mode: &str) -> anyhow::Result<S3FaultCounts> {
    let by_status = storm.deployment.sim().request_counts().by_status;
    let s3 = storm.proxy.counts();
    let count = |status| by_status.get(&status).copied().unwrap_or_default();
    let mut fired = vec![
        ("Synapse 503", count(503)),
        ("Synapse 429", count(429)),
        ("S3 copy SlowDown", s3.copy_slow_down),
        ("S3 copy error body", s3.copy_error_body),
        ("S3 completion SlowDown", s3.complete_slow_down),
    ];
    if copy_mode == "direct" {
        fired.push(("S3 completion error body", s3.complete_error_body));
    } else {
        fired.extend([
            ("part URLs held until expired", s3.held_until_expired),
            ("expired part URLs refused", s3.presigned_refused),
        ]);
    }
    eprintln!("{copy_mode} storm: {fired:?}");
    let missing: Vec<&str> = fired
        .iter()
        .filter(|(_, n)| *n == 0)
        .map(|(name, _)| *name)
        .collect();
    ensure!(missing.is_empty(), "these faults never fired: {missing:?}");
    Ok(s3)
}

async fn storm(copy_mode: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let storm = deploy(copy_mode).await?;
    let deployment = &storm.deployment;
    let before = snapshots(deployment);
    let input = input_with(
        deployment,
        json!({
            "copyMode": copy_mode,
            "partSizeBytes": 5 * MIB,
            "maxConcurrency": 10,
            "continueOnError": true,
            "maxSynapseRequestsPerMinute": BUDGET
        }),
    );
    let name = format!("storm-{copy_mode}");
    let done = run_to_end(deployment, &name, &input).await?;
    let summary: Value = serde_json::from_str(done.output().unwrap_or("null"))?;
    // The files first: a failed file names itself and its error, the execution's only a count.
    check_migrated(&storm, &before).await.with_context(|| {
        format!(
            "{name} ended {:?} ({:?}: {:?}), summary {summary}",
            done.status(),
            done.error(),
            done.cause()
        )
    })?;
    ensure!(
        done.status() == &ExecutionStatus::Succeeded
            && summary["totals"]["byStatus"] == json!({"MIGRATED": SMALL_FILES + BIG_FILES}),
        "{name} ended {:?}, summary {summary}",
        done.status()
    );
    check_faults_happened(&storm, copy_mode)?;
    eprintln!(
        "{copy_mode} storm: {:?} in all, summary {summary}",
        started.elapsed()
    );
    let Storm {
        deployment,
        proxy,
        data,
    } = storm;
    deployment.shutdown().await;
    drop((proxy, data));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_engine_migrates_every_file_through_a_fault_storm() -> anyhow::Result<()> {
    bounded(storm("synapse")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_engine_migrates_every_file_through_a_fault_storm() -> anyhow::Result<()> {
    bounded(storm("direct")).await
}

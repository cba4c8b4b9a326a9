//! The crash matrix: each row kills a function process with SIGKILL at one named point
//! (`synmigrate::crash`) while the real state machine migrates a small project, lets the state
//! machine retry, starts the next execution where the row says its retries are spent, and checks
//! that nothing is lost, doubled or stranded: every file migrated with the source's bytes, no
//! duplicate version, no unfinished multipart upload in the destination bucket, every copy no
//! entity uses accounted in the report, each item's attempts counted once per real attempt, the
//! lock free, the report's counts right.
//!
//! The function binaries are debug builds (`cargo build --workspace --bins`; `make test` does):
//! release builds have no crash points.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{ensure, Context};
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{json, Value};
use synapse_sim::{Fixture, ThrottleConfig};
use synmigrate::crash;
use synmigrate::state::dynamo::DynamoStore;
use synmigrate::state::{MigrationKey, StateStore, StatusName};
use synmigrate_local::{LocalDeployment, LocalOptions};

use super::common::{
    bounded, handle_md5, handles, input_with, items, latest_handle, project, run_to_end, snapshots,
    DEST, MIB,
};

/// The destination storage location's bucket (see `project`).
const DESTINATION_BUCKET: &str = "destination";

/// One crash: where, how many times in a row (4 spends the state machine's 3 retries), with
/// which engine and version strategy, how the first execution ends, and what it takes to finish.
#[derive(Debug, Clone)]
struct Row {
    /// Points armed in order (one file each).
    points: Vec<&'static str>,
    copy_mode: &'static str,
    strategy: &'static str,
    /// How the first execution ends.
    first: ExecutionStatus,
    /// Executions until every file is migrated (the last one succeeds).
    executions: usize,
    /// The most attempts an item records in the end (each item records 1 up to this many).
    attempts: u32,
    /// The Map's `maxConcurrency`: 1 makes the crashes of a spent point hit one unit in a row.
    max_concurrency: u32,
}

impl Row {
    /// A crash the state machine's retry recovers from within the execution.
    fn once(point: &'static str) -> Self {
        Self {
            points: vec![point],
            copy_mode: "synapse",
            strategy: "new",
            first: ExecutionStatus::Succeeded,
            executions: 1,
            attempts: 1,
            max_concurrency: 3,
        }
    }

    /// A point that crashes every retry too: the first execution ends `first`, the next one
    /// finishes.
    fn spent(point: &'static str, first: ExecutionStatus) -> Self {
        Self {
            points: vec![point; 4],
            first,
            executions: 2,
            ..Self::once(point)
        }
    }

    fn engine(self, copy_mode: &'static str) -> Self {
        Self { copy_mode, ..self }
    }

    fn strategy(self, strategy: &'static str) -> Self {
        Self { strategy, ..self }
    }

    /// A unit's stage crashes until its retries are spent, then RecordFailure crashes once
    /// (after recording one item): the unit's items are left ERRORED as retryable, and the next
    /// execution migrates them as their second attempt.
    fn unit_spent(point: &'static str) -> Self {
        Self {
            points: vec![
                point,
                point,
                point,
                point,
                crash::RECORD_FAILURE_AFTER_FIRST_ITEM,
            ],
            executions: 2,
            attempts: 2,
            max_concurrency: 1,
            ..Self::once(point)
        }
    }
}

/// A crash directory (`SYNMIGRATE_CRASH_DIR`) with `armed/` and `fired/`; removed when dropped.
struct CrashDir(PathBuf);

impl CrashDir {
    fn arm(points: &[&str]) -> anyhow::Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "synmigrate-crash-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        for sub in ["armed", "fired"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        for (n, point) in points.iter().enumerate() {
            std::fs::write(dir.join("armed").join(format!("{n:02}-{point}")), "")?;
        }
        Ok(Self(dir))
    }

    fn count(&self, sub: &str) -> anyhow::Result<usize> {
        Ok(std::fs::read_dir(self.0.join(sub))?.count())
    }
}

impl Drop for CrashDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Four files: a 3-part one (its own unit, copied by CopyParts), one with two versions, two
/// small ones in a folder and at the top.
fn fixture() -> Fixture {
    project(json!([
        {"type": "file", "name": "big.bin",
         "versions": [{"content": {"size": 12 * MIB + 4321, "seed": 5}}]},
        {"type": "folder", "name": "dir", "children": [
            {"type": "file", "name": "two.txt", "versions": [
                {"content": {"text": "first version"}},
                {"content": {"text": "second version"}}
            ]},
            {"type": "file", "name": "b.txt", "versions": [{"content": {"text": "bee"}}]}
        ]},
        {"type": "file", "name": "c.txt", "versions": [{"content": {"text": "sea"}}]}
    ]))
}

async fn deploy(crash_dir: &CrashDir) -> anyhow::Result<LocalDeployment> {
    let env = [
        ("SYNMIGRATE_LARGE_FILE_BYTES", (8 * MIB).to_string()),
        ("SYNMIGRATE_COPY_OBJECT_THRESHOLD", (8 * MIB).to_string()),
        ("SYNMIGRATE_BATCH_CONCURRENCY", "1".to_owned()),
        ("SYNMIGRATE_INDEX_SECONDS", "1".to_owned()),
        (
            crash::CRASH_DIR_ENV,
            crash_dir.0.to_string_lossy().into_owned(),
        ),
    ];
    let options = LocalOptions {
        throttle: ThrottleConfig::disabled(),
        max_instances: 2,
        function_env: env.map(|(k, v)| (k.to_owned(), v)).to_vec(),
        ..LocalOptions::default()
    };
    Ok(LocalDeployment::start(&fixture(), options).await?)
}

/// Runs the row: crash, retries, next executions; then checks the project and the report.
async fn crash_and_recover(row: Row) -> anyhow::Result<()> {
    let crash_dir = CrashDir::arm(&row.points)?;
    let deployment = deploy(&crash_dir).await?;
    let before = snapshots(&deployment);
    let input = input_with(
        &deployment,
        json!({"copyMode": row.copy_mode, "fileVersionStrategy": row.strategy,
               "partSizeBytes": 5 * MIB, "maxConcurrency": row.max_concurrency,
               "continueOnError": true}),
    );
    let mut summary = Value::Null;
    for n in 1..=row.executions {
        let done = run_to_end(&deployment, &format!("crash-{n}"), &input).await?;
        let expected = if n == 1 {
            row.first.clone()
        } else {
            ExecutionStatus::Succeeded
        };
        ensure!(
            done.status() == &expected,
            "{row:?}: execution {n} ended {:?} ({:?}: {:?}), expected {expected:?}",
            done.status(),
            done.error(),
            done.cause()
        );
        if n == 1 {
            ensure!(
                crash_dir.count("fired")? == row.points.len() && crash_dir.count("armed")? == 0,
                "{row:?}: {} of {} crashes happened; are the function binaries debug builds?",
                crash_dir.count("fired")?,
                row.points.len()
            );
        }
        summary = serde_json::from_str(done.output().unwrap_or("null"))?;
    }
    check_recovered(&deployment, &row, &before, &summary)
        .await
        .with_context(|| format!("{row:?}"))?;
    deployment.shutdown().await;
    Ok(())
}

/// Every file migrated once with its source's bytes, nothing left behind, the report right.
async fn check_recovered(
    deployment: &LocalDeployment,
    row: &Row,
    before: &std::collections::BTreeMap<String, (String, synapse_sim::EntitySnapshot)>,
    summary: &Value,
) -> anyhow::Result<()> {
    let s3 = deployment.s3_client().await;
    let after = snapshots(deployment);
    let mut referenced = BTreeSet::new();
    let mut files = 0;
    for (path, (_, old)) in before {
        let now = &after[path].1;
        // (old handle, new handle) of each migrated version.
        let pairs: Vec<(String, String)> = if row.strategy == "new" {
            ensure!(
                now.versions.len() == old.versions.len() + 1
                    && handles(now).starts_with(&handles(old)),
                "{path}: versions {:?}, had {:?}",
                handles(now),
                handles(old)
            );
            vec![(latest_handle(old)?, latest_handle(now)?)]
        } else {
            ensure!(
                now.versions.len() == old.versions.len(),
                "{path}: versions {:?}, had {:?}",
                handles(now),
                handles(old)
            );
            old.versions
                .iter()
                .zip(&now.versions)
                .map(|(o, n)| {
                    Some((
                        o.data_file_handle_id.clone()?,
                        n.data_file_handle_id.clone()?,
                    ))
                })
                .collect::<Option<_>>()
                .context("a version without a handle")?
        };
        for (old_id, new_id) in pairs {
            let (_, old_md5) = handle_md5(deployment, &s3, &old_id).await?;
            let (copy, new_md5) = handle_md5(deployment, &s3, &new_id).await?;
            ensure!(
                copy.storage_location_id == Some(DEST) && new_md5 == old_md5,
                "{path}: {new_id} in {:?}, MD5 {new_md5}, source {old_md5}",
                copy.storage_location_id
            );
            referenced.insert(new_id);
            files += 1;
        }
    }
    let items = items(deployment).await?;
    ensure!(
        items.len() == files,
        "{} items for {files} files",
        items.len()
    );
    for (key, item) in &items {
        ensure!(
            item.status.name() == StatusName::Migrated
                && item.lease.is_none()
                && (1..=row.attempts).contains(&item.attempts),
            "{key}: {:?} after {} attempts, lease {:?}",
            item.status,
            item.attempts,
            item.lease
        );
    }
    ensure!(
        items.values().any(|item| item.attempts == row.attempts),
        "no item took {} attempts",
        row.attempts
    );
    ensure!(
        summary["totals"]["byStatus"]["MIGRATED"] == json!(files),
        "summary {summary}"
    );
    let unused: Vec<String> = deployment
        .sim()
        .file_handles_in(DEST)
        .into_iter()
        .map(|h| h.id)
        .filter(|id| !referenced.contains(id))
        .collect();
    let accounted = summary["orphanedCopies"].as_u64().unwrap_or_default()
        + summary["possiblyOrphanedHandles"]
            .as_u64()
            .unwrap_or_default();
    ensure!(
        unused.len() as u64 == accounted,
        "handles no entity uses {unused:?}, the report accounts {accounted}: {summary}"
    );
    let uploads = s3
        .list_multipart_uploads()
        .bucket(DESTINATION_BUCKET)
        .send()
        .await?;
    ensure!(
        uploads.uploads().is_empty(),
        "unfinished multipart uploads: {:?}",
        uploads.uploads()
    );
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(deployment.sdk_config()),
        deployment.table(),
    );
    let migration = MigrationKey::new(deployment.project_id().context("the project")?, DEST)?;
    let lock = store.get_lock(&migration).await?;
    ensure!(lock.is_none(), "the lock is held: {lock:?}");
    Ok(())
}

/// Runs the rows one after the other, within the test's time bound.
async fn matrix(rows: impl IntoIterator<Item = Row>) -> anyhow::Result<()> {
    bounded(async {
        for row in rows {
            let started = std::time::Instant::now();
            crash_and_recover(row.clone()).await?;
            println!(
                "{row:?}: recovered in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        Ok(())
    })
    .await
}

/// Rows before any copy: Init, Index, Plan, and StartCopy's claim and upload start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_before_the_copy() -> anyhow::Result<()> {
    matrix([
        Row::once(crash::INIT_AFTER_LOCK),
        Row::spent(crash::INIT_AFTER_LOCK, ExecutionStatus::Failed),
        Row::once(crash::INDEX_AFTER_PAGE),
        Row::spent(crash::INDEX_AFTER_PAGE, ExecutionStatus::Failed),
        Row::once(crash::PLAN_AFTER_MANIFEST),
        Row::once(crash::START_COPY_AFTER_CLAIM),
        Row::once(crash::START_COPY_AFTER_UPLOAD_STARTED),
        Row::once(crash::START_COPY_AFTER_UPLOAD_STARTED).engine("direct"),
    ])
    .await
}

/// Rows while copying: mid-batch, after the upload's completion, after the handle exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_during_the_copy() -> anyhow::Result<()> {
    matrix([
        Row::once(crash::AFTER_PART_COPIED),
        Row::once(crash::AFTER_PART_COPIED).engine("direct"),
        Row::once(crash::COMPLETE_AFTER_UPLOAD_COMPLETED),
        Row::once(crash::COMPLETE_AFTER_UPLOAD_COMPLETED).engine("direct"),
        Row::once(crash::COMPLETE_AFTER_HANDLE),
        Row::once(crash::COMPLETE_AFTER_HANDLE).engine("direct"),
    ])
    .await
}

/// Rows after the copy: before and after the entity update, RecordFailure, Report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_after_the_copy() -> anyhow::Result<()> {
    matrix([
        Row::once(crash::COMPLETE_AFTER_COPY_RECORDED),
        Row::once(crash::COMPLETE_AFTER_ENTITY_UPDATE),
        Row::once(crash::COMPLETE_AFTER_ENTITY_UPDATE).strategy("all"),
        Row::once(crash::COMPLETE_AFTER_ENTITY_UPDATE)
            .engine("direct")
            .strategy("all"),
        Row::unit_spent(crash::COMPLETE_AFTER_COPY_RECORDED),
        Row::once(crash::REPORT_BEFORE_LOCK_RELEASE),
        Row::spent(crash::REPORT_BEFORE_LOCK_RELEASE, ExecutionStatus::Failed),
    ])
    .await
}

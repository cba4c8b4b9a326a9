//! `deleteSourceFileHandles` through the state machine: with `all`, a dry run lists what would be
//! deleted and deletes nothing; the run deletes the migrator's own handles once every file that
//! used them points at its copy (a handle shared by more files than a unit holds only after the
//! last follower unit), keeps another user's (Synapse's 403) and a read-only file's (its update
//! failed, so it still uses it), says so per file, and a re-run deletes nothing more.

use anyhow::{ensure, Context};
use serde_json::{json, Value};
use synapse_sim::{Fixture, ThrottleConfig};
use synmigrate::state::StatusName;
use synmigrate_local::{LocalDeployment, LocalOptions};
use synmigrate_testkit::object_bytes;

use super::common::{bounded, input_with, items, project, run_to_end, snapshots};

/// Files sharing the migrator's handle `wide`, more than a unit holds.
const WIDE: usize = 5;
const UNIT_MAX_FILES: usize = 3;

fn fixture() -> Fixture {
    let mine = |text: &str| json!({"content": {"text": text}, "createdBy": "migrator"});
    let mut children = vec![
        json!({"type": "file", "name": "mine.txt", "versions": [mine("mine")]}),
        json!({"type": "file", "name": "mine-2-versions.txt",
               "versions": [mine("first"), mine("second")]}),
        json!({"type": "file", "name": "owners.txt",
               "versions": [{"content": {"text": "the owner's upload"}}]}),
        json!({"type": "file", "name": "readonly.txt", "versions": [mine("hands off")],
               "acl": {"migrator": ["READ", "DOWNLOAD"]}}),
    ];
    children.extend((0..WIDE).map(|i| {
        json!({"type": "file", "name": format!("wide-{i}.txt"), "versions": [{"handle": "wide"}]})
    }));
    project(Value::Array(children))
}

/// What each file's old handle must end as, by the file's path (the read-only file's update
/// failed, so nothing is said on it: only migrated files record the handle's fate).
fn expected_fate(path: &str) -> &'static str {
    match path {
        "owners.txt" => "kept: only its creator may delete it",
        "readonly.txt" => "",
        _ => "deleted",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_handles_are_deleted_once_every_file_uses_its_copy() -> anyhow::Result<()> {
    bounded(async {
        let options = LocalOptions {
            throttle: ThrottleConfig::default(),
            max_instances: 2,
            function_env: vec![(
                "SYNMIGRATE_UNIT_MAX_FILES".to_owned(),
                UNIT_MAX_FILES.to_string(),
            )],
            ..LocalOptions::default()
        };
        let deployment = LocalDeployment::start(&fixture(), options).await?;
        let before = snapshots(&deployment);
        let old_handles: Vec<(String, String)> = before
            .iter()
            .flat_map(|(path, (_, snapshot))| {
                snapshot
                    .versions
                    .iter()
                    .filter_map(|v| Some((path.clone(), v.data_file_handle_id.clone()?)))
                    .collect::<Vec<_>>()
            })
            .collect();
        let options = |dry_run: bool| {
            json!({"fileVersionStrategy": "all", "deleteSourceFileHandles": true,
                   "continueOnError": true, "dryRun": dry_run})
        };

        // The dry run deletes nothing and says, per file, what would happen.
        let dry = run_to_end(
            &deployment,
            "cleanup-dry",
            &input_with(&deployment, options(true)),
        )
        .await?;
        let summary: Value = serde_json::from_str(dry.output().context("dry run output")?)?;
        for (_, handle) in &old_handles {
            ensure!(
                deployment.sim().file_handle(handle).is_some(),
                "dry run deleted {handle}"
            );
        }
        let s3 = deployment.s3_client().await;
        let csv = object_bytes(
            &s3,
            summary["reportBucket"].as_str().context("reportBucket")?,
            summary["reportKey"].as_str().context("reportKey")?,
        )
        .await?;
        let csv = String::from_utf8(csv)?;
        let planned = csv
            .lines()
            .filter(|l| l.contains("would be deleted once"))
            .count();
        ensure!(
            planned == old_handles.len(),
            "{planned} rows say so:\n{csv}"
        );

        let done = run_to_end(
            &deployment,
            "cleanup-1",
            &input_with(&deployment, options(false)),
        )
        .await?;
        let summary: Value = serde_json::from_str(done.output().unwrap_or("null"))?;
        let items = items(&deployment).await?;
        let after = snapshots(&deployment);
        for (path, handle) in &old_handles {
            let (id, snapshot) = &after[path];
            let fate = expected_fate(path);
            let still_used = snapshot
                .versions
                .iter()
                .any(|v| v.data_file_handle_id.as_deref() == Some(handle));
            let exists = deployment.sim().file_handle(handle).is_some();
            ensure!(
                exists == (fate != "deleted"),
                "{path}: handle {handle} exists: {exists}, expected {fate}"
            );
            ensure!(
                still_used == (path == "readonly.txt"),
                "{path}: still uses {handle}: {still_used}"
            );
            for (key, item) in items
                .iter()
                .filter(|(k, _)| k.starts_with(&format!("{id}.")))
            {
                let recorded = item.source_handle.as_deref().unwrap_or_default();
                ensure!(
                    recorded.starts_with(fate) && (fate.is_empty() == recorded.is_empty()),
                    "{key} ({path}): {recorded:?}, expected {fate:?}"
                );
                let migrated = item.status.name() == StatusName::Migrated;
                ensure!(
                    migrated == (path != "readonly.txt"),
                    "{key}: {:?}",
                    item.status
                );
            }
        }
        ensure!(
            summary["totals"]["sourceDeleted"] == json!(3 + WIDE)
                && summary["totals"]["sourceKept"] == json!(1),
            "summary: {summary}"
        );

        // A re-run finds nothing to copy and nothing to delete.
        deployment.sim().reset_requests();
        run_to_end(
            &deployment,
            "cleanup-2",
            &input_with(&deployment, options(false)),
        )
        .await?;
        let deletes = deployment
            .sim()
            .requests()
            .into_iter()
            .filter(|r| r.endpoint() == "DELETE /fileHandle/{id}")
            .count();
        ensure!(deletes == 0, "the re-run sent {deletes} deletions");
        deployment.shutdown().await;
        Ok(())
    })
    .await
}

/// With `latest`, a handle an earlier version still uses is kept: Synapse refuses to delete it
/// (409), and the file says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_an_earlier_version_still_uses_is_kept() -> anyhow::Result<()> {
    bounded(async {
        let fixture = project(json!([
            {"type": "file", "name": "reused.txt",
             "versions": [{"handle": "wide"}, {"handle": "wide"}]}
        ]));
        let deployment = LocalDeployment::start(&fixture, LocalOptions::default()).await?;
        let before = snapshots(&deployment);
        let (id, snapshot) = &before["reused.txt"];
        let old = snapshot
            .entity
            .data_file_handle_id
            .clone()
            .context("a handle")?;
        let input = input_with(
            &deployment,
            json!({"fileVersionStrategy": "latest", "deleteSourceFileHandles": true}),
        );
        let done = run_to_end(&deployment, "cleanup-latest", &input).await?;
        let summary: Value = serde_json::from_str(done.output().unwrap_or("null"))?;
        ensure!(
            deployment.sim().file_handle(&old).is_some(),
            "{old} was deleted"
        );
        let items = items(&deployment).await?;
        let item = &items[&format!("{id}.2")];
        ensure!(
            item.status.name() == StatusName::Migrated,
            "{:?}",
            item.status
        );
        let fate = item.source_handle.as_deref().unwrap_or_default();
        ensure!(
            fate.starts_with("kept: Synapse says something else still uses it")
                && fate.contains("Cannot delete a file handle that has been assigned"),
            "{fate}"
        );
        ensure!(summary["totals"]["sourceKept"] == json!(1), "{summary}");
        deployment.shutdown().await;
        Ok(())
    })
    .await
}

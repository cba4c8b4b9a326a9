//! A manifest instead of the whole project, through the state machine: inline entities (a folder,
//! walked, and a file) in a dry run and then for real (after a dry run of the whole project left
//! every file INDEXED: the manifest's run takes only its own), a CSV manifest in the deployment's bucket
//! (with an entity that does not exist, recorded as ERRORED), one version alone with `all`, a
//! re-run that writes nothing, and a manifest Init refuses with its line named.

use anyhow::{ensure, Context};
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{json, Value};
use synmigrate::state::StatusName;
use synmigrate_local::{LocalDeployment, LocalOptions};

use super::common::{bounded, items, latest_handle, project, run_to_end, snapshots, DEST};

fn fixture() -> synapse_sim::Fixture {
    let file = |name: &str, texts: &[&str]| {
        let versions: Vec<Value> = texts
            .iter()
            .map(|t| json!({"content": {"text": t}}))
            .collect();
        json!({"type": "file", "name": name, "versions": versions})
    };
    project(json!([
        {"type": "folder", "name": "picked", "children": [
            file("p1.txt", &["p1"]),
            file("p2.txt", &["p2"]),
            {"type": "folder", "name": "deeper", "children": [file("p3.txt", &["p3"])]}
        ]},
        {"type": "folder", "name": "other", "children": [file("o1.txt", &["o1"])]},
        file("single.txt", &["first", "second"]),
        file("left.txt", &["left"])
    ]))
}

/// The handle each file's versions point at now, by path.
fn handle_of(deployment: &LocalDeployment, path: &str) -> anyhow::Result<String> {
    latest_handle(&snapshots(deployment)[path].1)
}

/// Whether the file's latest version points into the destination.
fn in_destination(deployment: &LocalDeployment, path: &str) -> anyhow::Result<bool> {
    let handle = handle_of(deployment, path)?;
    let stored = deployment
        .sim()
        .file_handle(&handle)
        .with_context(|| format!("{path}'s handle {handle}"))?;
    Ok(stored.storage_location_id == Some(DEST))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_migrates_its_entities_and_nothing_else() -> anyhow::Result<()> {
    bounded(async {
        let deployment = LocalDeployment::start(&fixture(), LocalOptions::default()).await?;
        let project_id = deployment.project_id().context("the project")?.to_owned();
        let before = snapshots(&deployment);
        let id = |path: &str| -> anyhow::Result<String> {
            let paths = deployment.sim().paths();
            paths
                .into_iter()
                .find(|(p, _)| p.ends_with(&format!("/{path}")))
                .map(|(_, id)| id)
                .with_context(|| format!("{path} was seeded"))
        };
        let input = |options: Value| {
            json!({"projectId": project_id, "destinationStorageLocationId": DEST,
                   "options": options})
        };
        let inline = json!([id("picked")?, id("single.txt")?]);

        // A dry run of the inline entities: their files are indexed, nothing else is.
        let dry = run_to_end(
            &deployment,
            "manifest-dry",
            &input(json!({"entities": inline, "dryRun": true})),
        )
        .await?;
        ensure!(dry.status == ExecutionStatus::Succeeded, "{dry:?}");
        let indexed = items(&deployment).await?;
        let expected: Vec<String> = ["picked/p1.txt", "picked/p2.txt", "picked/deeper/p3.txt"]
            .iter()
            .map(|p| Ok(format!("{}.1", id(p)?)))
            .chain([Ok(format!("{}.2", id("single.txt")?))])
            .collect::<anyhow::Result<_>>()?;
        let mut keys: Vec<&String> = indexed.keys().collect();
        keys.sort();
        let mut wanted: Vec<&String> = expected.iter().collect();
        wanted.sort();
        ensure!(keys == wanted, "indexed {keys:?}, expected {wanted:?}");
        ensure!(
            snapshots(&deployment) == before,
            "the dry run changed an entity"
        );

        // A dry run of the whole project leaves every file INDEXED; the manifest's run must
        // still take only its own files, and not count the others as unfinished.
        run_to_end(&deployment, "project-dry", &input(json!({"dryRun": true}))).await?;
        ensure!(
            items(&deployment).await?.len() == 6,
            "the project has 6 files"
        );

        // For real: those four files move, the rest of the project stays.
        let done = run_to_end(
            &deployment,
            "manifest-1",
            &input(json!({"entities": inline})),
        )
        .await?;
        ensure!(done.status == ExecutionStatus::Succeeded, "{done:?}");
        for path in [
            "picked/p1.txt",
            "picked/p2.txt",
            "picked/deeper/p3.txt",
            "single.txt",
        ] {
            ensure!(
                in_destination(&deployment, path)?,
                "{path} was not migrated"
            );
        }
        for path in ["other/o1.txt", "left.txt"] {
            ensure!(
                snapshots(&deployment)[path] == before[path],
                "{path} is not in the manifest but changed"
            );
        }

        // A CSV manifest in the deployment's bucket, with an entity that does not exist.
        let s3 = deployment.s3_client().await;
        let csv = format!(
            "id,version\n{},\n{},\nsyn999999,\n",
            id("other")?,
            id("left.txt")?
        );
        s3.put_object()
            .bucket(deployment.bucket())
            .key("manifests/rest.csv")
            .body(csv.into_bytes().into())
            .send()
            .await?;
        let uri = format!("s3://{}/manifests/rest.csv", deployment.bucket());
        let options = json!({"manifest": uri, "continueOnError": true});
        run_to_end(&deployment, "manifest-2", &input(options.clone())).await?;
        for path in ["other/o1.txt", "left.txt"] {
            ensure!(
                in_destination(&deployment, path)?,
                "{path} was not migrated"
            );
        }
        let missing = items(&deployment)
            .await?
            .remove("syn999999.1")
            .context("the missing entity is recorded")?;
        ensure!(
            missing.status.name() == StatusName::Errored,
            "{:?}",
            missing.status
        );

        // Its re-run reads the manifest again and writes nothing.
        deployment.sim().reset_requests();
        let after = snapshots(&deployment);
        let again = run_to_end(&deployment, "manifest-3", &input(options)).await?;
        let summary: Value = serde_json::from_str(again.output().unwrap_or("null"))?;
        let migrated_now = summary["runCounters"]["byStatus"]["MIGRATED"]
            .as_i64()
            .unwrap_or(0);
        ensure!(
            migrated_now == 0,
            "the re-run migrated {migrated_now}: {summary}"
        );
        ensure!(
            snapshots(&deployment) == after,
            "the re-run changed an entity"
        );

        // One version alone, swapped in place with `all`: the other versions keep their handles.
        let single = id("single.txt")?;
        let versions =
            |snapshots: &std::collections::BTreeMap<_, (String, synapse_sim::EntitySnapshot)>| {
                snapshots["single.txt"]
                    .1
                    .versions
                    .iter()
                    .map(|v| v.data_file_handle_id.clone())
                    .collect::<Vec<_>>()
            };
        let old = versions(&after);
        run_to_end(
            &deployment,
            "manifest-version",
            &input(json!({"entities": [format!("{single}.1")], "fileVersionStrategy": "all"})),
        )
        .await?;
        let now = versions(&snapshots(&deployment));
        ensure!(
            now[1..] == old[1..],
            "other versions changed: {old:?} -> {now:?}"
        );
        let first = now[0].as_deref().context("version 1's handle")?;
        let stored = deployment.sim().file_handle(first).context("the copy")?;
        ensure!(
            now[0] != old[0] && stored.storage_location_id == Some(DEST),
            "version 1: {old:?} -> {now:?}"
        );

        // A manifest without an id column is refused before anything starts, its problem named.
        s3.put_object()
            .bucket(deployment.bucket())
            .key("manifests/bad.csv")
            .body(b"name\nsingle.txt\n".to_vec().into())
            .send()
            .await?;
        let bad = format!("s3://{}/manifests/bad.csv", deployment.bucket());
        let refused = run_to_end(
            &deployment,
            "manifest-bad",
            &input(json!({"manifest": bad})),
        )
        .await?;
        ensure!(refused.status == ExecutionStatus::Failed, "{refused:?}");
        let cause = refused.cause().unwrap_or_default();
        ensure!(
            refused.error() == Some("Fatal.InvalidInput") && cause.contains("no id"),
            "{:?}: {cause}",
            refused.error()
        );
        // An input without a project is refused by Init, named, not failed by the state machine.
        let no_project = json!({"destinationStorageLocationId": DEST});
        let refused = run_to_end(&deployment, "no-project", &no_project).await?;
        ensure!(
            refused.error() == Some("Fatal.InvalidInput")
                && refused.cause().unwrap_or_default().contains("projectId"),
            "{:?}: {:?}",
            refused.error(),
            refused.cause()
        );
        deployment.shutdown().await;
        Ok(())
    })
    .await
}

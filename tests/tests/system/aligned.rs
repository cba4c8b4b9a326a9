//! Re-aligning a project to each folder's upload location (no destination in the input), through
//! the state machine: every file goes where its folder uploads to (its own upload setting or the
//! nearest ancestor's), files already there are ALREADY_MIGRATED, a handle shared by files in
//! folders with different locations is copied once into each, folders whose location the
//! migrator did not create (another user's, Synapse's own storage) are reported once each with
//! the reason and their files SKIPPED; the dry run lists the plan per folder; a re-run copies
//! nothing.

use std::collections::BTreeMap;

use anyhow::{ensure, Context};
use serde_json::{json, Value};
use synapse_sim::Fixture;
use synmigrate::state::StatusName;
use synmigrate_local::{LocalDeployment, LocalOptions};

use super::common::{
    bounded, csv_rows, items_of, latest_handle, run_to_end, snapshots, DEST, PROJECT,
};

/// The migrator's second bucket.
const SECOND: i64 = 7005;
/// The owner's bucket: the migrator may not copy into it.
const OWNERS: i64 = 7002;
/// Synapse's own storage.
const SYNAPSE: i64 = 1;

fn fixture() -> Fixture {
    let text = |t: &str| json!({"content": {"text": t}});
    let file =
        |name: &str, version: Value| json!({"type": "file", "name": name, "versions": [version]});
    let fixture = json!({
        "users": [
            {"userName": "owner", "ownerId": "3350001", "token": "owner-token"},
            {"userName": "migrator", "ownerId": "3350002", "token": "migrator-token"}
        ],
        "storageLocations": [
            {"storageLocationId": SYNAPSE, "kind": "synapse", "bucket": "synapse-storage"},
            {"storageLocationId": DEST, "kind": "externalS3", "bucket": "destination",
             "baseKey": "migrated", "createdBy": "migrator"},
            {"storageLocationId": SECOND, "kind": "externalS3", "bucket": "second",
             "createdBy": "migrator"},
            {"storageLocationId": OWNERS, "kind": "externalS3", "bucket": "owners",
             "createdBy": "owner"}
        ],
        "fileHandles": {"shared": {"content": {"text": "shared bytes"}, "fileName": "shared.txt"}},
        "projects": [{
            "name": PROJECT, "owner": "owner", "uploadLocations": [DEST],
            "acl": {"migrator": ["READ", "DOWNLOAD", "UPDATE"]},
            "children": [
                file("root.txt", text("root")),
                file("root-shared.txt", json!({"handle": "shared"})),
                file("root-there.txt", json!({"content": {"text": "there"}, "storageLocationId": DEST})),
                {"type": "folder", "name": "second", "uploadLocations": [SECOND, DEST], "children": [
                    file("a.txt", text("a")),
                    file("a-shared.txt", json!({"handle": "shared"})),
                    {"type": "folder", "name": "deep", "children": [file("b.txt", text("b"))]}
                ]},
                {"type": "folder", "name": "owners", "uploadLocations": [OWNERS], "children": [
                    file("c.txt", text("c")),
                    {"type": "folder", "name": "sub", "children": [file("d.txt", text("d"))]}
                ]},
                {"type": "folder", "name": "synapse", "uploadLocations": [SYNAPSE], "children": [
                    file("e.txt", text("e")),
                    file("f.txt", json!({"content": {"text": "f"}, "storageLocationId": DEST}))
                ]}
            ]
        }]
    });
    Fixture::from_json(&fixture.to_string()).expect("the test fixture parses")
}

/// Where each file must end and how, by path: (location, status).
fn expected() -> BTreeMap<&'static str, (i64, StatusName)> {
    use StatusName::*;
    BTreeMap::from([
        ("root.txt", (DEST, Migrated)),
        ("root-shared.txt", (DEST, Migrated)),
        ("root-there.txt", (DEST, AlreadyMigrated)),
        ("second/a.txt", (SECOND, Migrated)),
        ("second/a-shared.txt", (SECOND, Migrated)),
        ("second/deep/b.txt", (SECOND, Migrated)),
        ("owners/c.txt", (OWNERS, Skipped)),
        ("owners/sub/d.txt", (OWNERS, Skipped)),
        ("synapse/e.txt", (SYNAPSE, AlreadyMigrated)),
        ("synapse/f.txt", (SYNAPSE, Skipped)),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_file_goes_to_its_folders_upload_location() -> anyhow::Result<()> {
    bounded(async {
        let deployment = LocalDeployment::start(&fixture(), LocalOptions::default()).await?;
        let project = deployment.project_id().context("the project")?.to_owned();
        let before = snapshots(&deployment);
        let input = |dry_run: bool| json!({"projectId": project, "options": {"dryRun": dry_run}});
        // Folder paths below the project ("" for the project itself), by id.
        let root = format!("{PROJECT}/");
        let ids: BTreeMap<String, String> = deployment
            .sim()
            .paths()
            .into_iter()
            .map(|(path, id)| (id, path.strip_prefix(&root).unwrap_or_default().to_owned()))
            .collect();
        let folder_of = |id: &str| match ids.get(id) {
            _ if id == project => String::new(),
            Some(path) => path.clone(),
            None => id.to_owned(),
        };

        // The dry run: the plan per folder, nothing copied.
        let dry = run_to_end(&deployment, "aligned-dry", &input(true)).await?;
        let summary: Value = serde_json::from_str(dry.output().context("dry run output")?)?;
        ensure!(
            summary["destinationStorageLocationId"].is_null(),
            "{summary}"
        );
        let folders = csv_rows(&deployment, &summary, &summary["folders"]["key"]).await?;
        let plan: BTreeMap<String, (String, String, String)> = folders
            .iter()
            .map(|row| {
                (
                    folder_of(&row["folder_id"]),
                    (
                        row["to_storage_location_id"].clone(),
                        row["to_copy"].clone(),
                        row["not_writable"].clone(),
                    ),
                )
            })
            .collect();
        let writable = |location: i64, to_copy: u32| (location.to_string(), to_copy.to_string());
        for (folder, (location, to_copy)) in [
            ("", writable(DEST, 2)),
            ("second", writable(SECOND, 2)),
            ("second/deep", writable(SECOND, 1)),
            ("owners", writable(OWNERS, 0)),
            ("owners/sub", writable(OWNERS, 0)),
            ("synapse", writable(SYNAPSE, 0)),
        ] {
            let (got_location, got_to_copy, not_writable) = plan
                .get(folder)
                .with_context(|| format!("{folder:?} in {plan:?}"))?;
            ensure!(
                (got_location, got_to_copy) == (&location, &to_copy),
                "{folder:?}: {got_location} {got_to_copy}, expected {location} {to_copy}"
            );
            let refused = location == OWNERS.to_string() || location == SYNAPSE.to_string();
            ensure!(
                refused
                    == not_writable
                        .contains(&format!("did not create storage location {location}")),
                "{folder:?}: not writable {not_writable:?}"
            );
        }
        ensure!(plan.len() == 6, "one row per folder: {plan:?}");
        ensure!(summary["folders"]["notWritable"] == json!(3), "{summary}");
        ensure!(
            snapshots(&deployment) == before,
            "the dry run changed an entity"
        );

        let done = run_to_end(&deployment, "aligned-1", &input(false)).await?;
        let summary: Value = serde_json::from_str(done.output().context("run output")?)?;
        let rows = csv_rows(&deployment, &summary, &summary["reportKey"]).await?;
        let after = snapshots(&deployment);
        let mut copies = BTreeMap::new();
        for (path, (location, status)) in expected() {
            let (id, snapshot) = &after[path];
            let row = rows
                .iter()
                .find(|r| &r["id"] == id)
                .with_context(|| format!("{path} in the report"))?;
            ensure!(
                row["status"] == status.as_str()
                    && row["to_storage_location_id"] == location.to_string(),
                "{path}: {row:?}, expected {status} into {location}"
            );
            if status == StatusName::Skipped {
                ensure!(
                    row["reason"] == "DESTINATION_NOT_WRITABLE",
                    "{path}: {row:?}"
                );
            }
            let handle = latest_handle(snapshot)?;
            let stored = deployment
                .sim()
                .file_handle(&handle)
                .with_context(|| format!("{path}'s handle {handle}"))?;
            let moved = status == StatusName::Migrated;
            ensure!(
                moved == (snapshot.versions.len() == 2),
                "{path}: {} versions",
                snapshot.versions.len()
            );
            if moved || status == StatusName::AlreadyMigrated {
                ensure!(
                    stored.storage_location_id == Some(location),
                    "{path} is in {:?}, expected {location}",
                    stored.storage_location_id
                );
            } else {
                ensure!(
                    latest_handle(&before[path].1)? == handle,
                    "{path} was skipped but its handle changed"
                );
            }
            copies.insert(path, handle);
        }
        // The shared handle went to two locations: two copies, one in each.
        ensure!(
            copies["root-shared.txt"] != copies["second/a-shared.txt"],
            "one copy for two locations: {copies:?}"
        );

        // A re-run copies nothing and writes no entity.
        deployment.sim().reset_requests();
        let again = run_to_end(&deployment, "aligned-2", &input(false)).await?;
        let summary: Value = serde_json::from_str(again.output().context("re-run output")?)?;
        let migrated_now = summary["runCounters"]["byStatus"]["MIGRATED"]
            .as_i64()
            .unwrap_or(0);
        ensure!(
            migrated_now == 0,
            "the re-run migrated {migrated_now}: {summary}"
        );
        let writes = deployment
            .sim()
            .requests()
            .into_iter()
            .filter(|r| {
                r.endpoint().starts_with("PUT /entity") || r.endpoint() == "POST /file/multipart"
            })
            .count();
        ensure!(writes == 0, "the re-run sent {writes} writes");
        ensure!(
            snapshots(&deployment) == after,
            "the re-run changed an entity"
        );
        let items = items_of(&deployment, None).await?;
        ensure!(items.len() == expected().len(), "{} items", items.len());
        deployment.shutdown().await;
        Ok(())
    })
    .await
}

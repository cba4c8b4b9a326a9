//! Proof of fidelity: the official Python client (`synapse migrate`, pinned synapseclient from PyPI)
//! migrates a seeded project through the simulator, and the result is what that client promises.
//!
//! If the simulator diverged from Synapse in a way the client notices (a field, a status code, a
//! paging rule, a presigned URL it cannot use), these tests fail.
//!
//! Module `differential`: the same client and synmigrate on two identical projects, end states compared.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context};
use md5::{Digest, Md5};
use serde_json::{json, Value};
use synapse_model::FileHandle;
use synapse_sim::{Fixture, RunningSim, SimConfig, Simulator};
use synmigrate_testkit::official_client::{synapse_migrate, SynapseMigrate};
use synmigrate_testkit::AwsStack;

mod differential;

const MIGRATOR_TOKEN: &str = "fidelity-migrator-token";
const DESTINATION: i64 = 7001;
const SOURCE_BUCKET: &str = "synapse-storage";
const DESTINATION_BUCKET: &str = "lab-destination";
const PROJECT: &str = "Fidelity";
/// Two parts at the official client's copy part size (`max(100 MiB, size / 10000)`).
const BIG_FILE_BYTES: u64 = 101 * 1024 * 1024;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(600);
/// Files the migration must leave as they are: one already in the destination, one not in S3.
const UNTOUCHED: [&str; 2] = ["already.txt", "link.txt"];

fn text(body: &str) -> Value {
    json!({ "content": { "text": body }, "contentType": "text/plain" })
}

fn file(name: &str, versions: Vec<Value>) -> Value {
    json!({ "type": "file", "name": name, "versions": versions })
}

/// Every case the issue names: nesting, a folder of more than 50 children, several versions, a shared
/// handle, annotations, a file already in the destination, a non-S3 handle, a two-part file.
fn fidelity_fixture() -> anyhow::Result<Fixture> {
    let many: Vec<Value> = (0..55)
        .map(|i| {
            file(
                &format!("item-{i:02}.txt"),
                vec![text(&format!("small file {i}"))],
            )
        })
        .collect();
    let fixture = json!({
        "users": [
            { "userName": "migrator", "ownerId": "3350001", "token": MIGRATOR_TOKEN }
        ],
        "storageLocations": [
            { "storageLocationId": 1, "kind": "synapse", "bucket": SOURCE_BUCKET },
            { "storageLocationId": DESTINATION, "kind": "externalS3", "bucket": DESTINATION_BUCKET,
              "baseKey": "migrated", "createdBy": "migrator" }
        ],
        "fileHandles": { "shared": text("bytes shared by two entities") },
        "projects": [{
            "name": PROJECT, "owner": "migrator",
            "children": [
                { "type": "folder", "name": "outer", "children": [
                    { "type": "folder", "name": "inner", "children": [
                        file("deep.csv", vec![text("a,b\n1,2\n"), text("a,b\n1,2\n3,4\n")]),
                        file("shared-one.txt", vec![json!({ "handle": "shared" })])
                    ]}
                ]},
                { "type": "folder", "name": "many", "children": many },
                file("shared-two.txt", vec![json!({ "handle": "shared" })]),
                file("versions.bin", vec![
                    json!({ "content": { "size": 1000, "seed": 1 } }),
                    json!({ "content": { "size": 2000, "seed": 2 } }),
                    json!({ "content": { "size": 3000, "seed": 3 } })
                ]),
                { "type": "file", "name": "annotated.txt", "versions": [text("annotated")],
                  "annotations": { "tissue": ["liver"], "assay": ["rnaSeq"] } },
                file("already.txt", vec![json!({
                    "content": { "text": "already there" }, "storageLocationId": DESTINATION
                })]),
                file("link.txt", vec![json!({ "kind": "external", "externalUrl": "https://example.org/x" })]),
                file("big.bin", vec![json!({ "content": { "size": BIG_FILE_BYTES, "seed": 42 } })])
            ]
        }]
    });
    Ok(serde_json::from_value(fixture)?)
}

struct World {
    stack: AwsStack,
    sim: RunningSim,
    s3: aws_sdk_s3::Client,
    workdir: PathBuf,
}

impl World {
    async fn start(name: &str) -> anyhow::Result<Self> {
        let stack = AwsStack::start()?;
        let sim = Simulator::start(
            SimConfig::new(stack.sdk_config().await),
            &fidelity_fixture()?,
        )
        .await?;
        let s3 = stack.s3_client().await;
        let workdir =
            std::env::temp_dir().join(format!("synmigrate-fidelity-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&workdir)?;
        std::fs::write(
            workdir.join("synapseConfig"),
            format!(
                "[endpoints]\nrepoEndpoint={}\nauthEndpoint={}\nfileHandleEndpoint={}\nportalEndpoint={}/\n",
                sim.repo_endpoint(),
                sim.auth_endpoint(),
                sim.file_endpoint(),
                sim.base_url()
            ),
        )?;
        Ok(Self {
            stack,
            sim,
            s3,
            workdir,
        })
    }

    fn id(&self, path: &str) -> anyhow::Result<String> {
        self.sim
            .entity_id(&format!("{PROJECT}/{path}"))
            .with_context(|| format!("no entity at {path}"))
    }

    /// Runs `synapse migrate` as a user would; returns the CSV log's rows.
    fn migrate(&self, strategy: &str, run: &str) -> anyhow::Result<Vec<BTreeMap<String, String>>> {
        let project = self.sim.project_id(PROJECT).context("project")?;
        let csv = self.workdir.join(format!("{run}.csv"));
        synapse_migrate(&SynapseMigrate {
            workdir: &self.workdir,
            env: self.stack.env_vars(),
            token: MIGRATOR_TOKEN,
            project: &project,
            destination: DESTINATION,
            db: &self.workdir.join(format!("{run}.db")),
            options: &["--file_version_strategy", strategy],
            csv: &csv,
            timeout: CLIENT_TIMEOUT,
        })?;
        read_csv(&csv)
    }

    fn handle(&self, id: &str) -> anyhow::Result<FileHandle> {
        self.sim
            .file_handle(id)
            .with_context(|| format!("no file handle {id}"))
    }

    /// The version handles (oldest first) of every file at `paths`, by path.
    fn handles_by_path<P: AsRef<str>>(
        &self,
        paths: &[P],
    ) -> anyhow::Result<BTreeMap<String, Vec<FileHandle>>> {
        paths
            .iter()
            .map(|p| {
                let path = p.as_ref();
                Ok((path.to_owned(), self.version_handles(&self.id(path)?)?))
            })
            .collect()
    }

    /// The file handle of every version of an entity, oldest first.
    fn version_handles(&self, entity_id: &str) -> anyhow::Result<Vec<FileHandle>> {
        let snapshot = self.sim.entity(entity_id).context("entity")?;
        let mut versions = snapshot.versions;
        versions.sort_by_key(|v| v.version_number);
        versions
            .iter()
            .map(|v| self.handle(v.data_file_handle_id.as_deref().context("no handle")?))
            .collect()
    }

    async fn object_md5(&self, handle: &FileHandle) -> anyhow::Result<String> {
        let object = self
            .s3
            .get_object()
            .bucket(handle.bucket_name.as_deref().context("bucket")?)
            .key(handle.key.as_deref().context("key")?)
            .send()
            .await?;
        let bytes = object.body.collect().await?.into_bytes();
        Ok(hex::encode(Md5::digest(&bytes)))
    }

    /// Every object of a bucket with its ETag: sources must be exactly the same after a migration.
    async fn objects(&self, bucket: &str) -> anyhow::Result<BTreeMap<String, String>> {
        let mut objects = BTreeMap::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for object in page?.contents() {
                objects.insert(
                    object.key().unwrap_or_default().to_owned(),
                    object.e_tag().unwrap_or_default().to_owned(),
                );
            }
        }
        Ok(objects)
    }

    /// Paths of the files whose handles the fixture puts in S3 outside the destination.
    fn migratable_paths(&self) -> Vec<String> {
        self.sim
            .paths()
            .into_iter()
            .filter(|(_, id)| self.sim.entity(id).is_some_and(|e| e.entity.is_file()))
            .filter_map(|(path, _)| path.strip_prefix(&format!("{PROJECT}/")).map(str::to_owned))
            .filter(|path| !UNTOUCHED.contains(&path.as_str()))
            .collect()
    }

    async fn assert_copy_of(&self, copy: &FileHandle, source: &FileHandle) -> anyhow::Result<()> {
        ensure!(
            copy.storage_location_id == Some(DESTINATION),
            "{} not in the destination",
            copy.id
        );
        ensure!(copy.bucket_name.as_deref() == Some(DESTINATION_BUCKET));
        ensure!(
            copy.content_md5 == source.content_md5,
            "handle MD5 differs for {}",
            source.id
        );
        ensure!(
            copy.file_name == source.file_name,
            "file name differs for {}",
            source.id
        );
        let (copied, original) = (self.object_md5(copy).await?, self.object_md5(source).await?);
        ensure!(
            copied == original,
            "bytes differ: {} vs {}",
            copy.id,
            source.id
        );
        ensure!(
            Some(&copied) == source.content_md5.as_ref(),
            "source bytes do not match their MD5"
        );
        Ok(())
    }
}

fn read_csv(path: &Path) -> anyhow::Result<Vec<BTreeMap<String, String>>> {
    let text = std::fs::read_to_string(path)?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().context("empty CSV")?.split(',').collect();
    ensure!(
        header
            == [
                "id",
                "type",
                "version",
                "row_id",
                "col_name",
                "from_storage_location_id",
                "from_file_handle_id",
                "to_file_handle_id",
                "status",
                "exception"
            ],
        "unexpected CSV header {header:?}"
    );
    // No field of these rows holds a comma (no exceptions are expected).
    Ok(lines
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            header
                .iter()
                .map(|h| h.to_string())
                .zip(line.split(',').map(str::to_owned))
                .collect()
        })
        .collect())
}

fn statuses(rows: &[BTreeMap<String, String>]) -> BTreeMap<(String, String), String> {
    rows.iter()
        .filter(|row| row["type"] == "file")
        .map(|row| {
            (
                (row["id"].clone(), row["version"].clone()),
                row["status"].clone(),
            )
        })
        .collect()
}

/// Successful requests to routes (templates like `PUT /entity/{id}`) starting with `prefix`.
fn successful(sim: &RunningSim, prefix: &str) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.endpoint().starts_with(prefix) && r.status < 300)
        .count()
}

/// Successful requests to exactly this route.
fn exact(sim: &RunningSim, endpoint: &str) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.endpoint() == endpoint && r.status < 300)
        .count()
}

fn multipart_starts(sim: &RunningSim) -> usize {
    exact(sim, "POST /file/multipart")
}

fn entity_writes(sim: &RunningSim) -> usize {
    successful(sim, "PUT /entity/")
}

/// Every S3-backed file is copied once (the shared handle once for both entities), the two-part
/// file adds two parts, and the log really names the routes the second run must not call.
fn assert_first_run_traffic(
    sim: &RunningSim,
    copies: usize,
    entity_updates: usize,
) -> anyhow::Result<()> {
    ensure!(
        multipart_starts(sim) >= copies,
        "expected at least {copies} copy starts"
    );
    let parts = successful(sim, "PUT /file/multipart/{upload}/add/");
    ensure!(
        parts == copies + 1,
        "expected {} parts added, saw {parts}",
        copies + 1
    );
    let updates = exact(sim, "PUT /entity/{id}")
        + successful(sim, "PUT /entity/{id}/version/{version}/filehandle");
    ensure!(
        updates == entity_updates,
        "expected {entity_updates} version writes, saw {updates}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_migrates_with_new_versions() -> anyhow::Result<()> {
    let world = World::start("new").await?;
    let sources_before = world.objects(SOURCE_BUCKET).await?;
    let paths = world.migratable_paths();
    let before = world.handles_by_path(&paths)?;
    let untouched = world.handles_by_path(&UNTOUCHED)?;

    ensure!(
        paths.len() > 60,
        "the fixture should give more than 60 files, got {}",
        paths.len()
    );
    let rows = world.migrate("new", "first")?;
    let status = statuses(&rows);
    // One copy per file but one for both sharers; one new version per file.
    assert_first_run_traffic(&world.sim, paths.len() - 1, paths.len())?;

    for path in &paths {
        let id = world.id(path)?;
        let after = world.version_handles(&id)?;
        let old = &before[path];
        ensure!(
            after.len() == old.len() + 1,
            "{path}: expected exactly one new version"
        );
        ensure!(
            after[..old.len()]
                .iter()
                .map(|h| &h.id)
                .eq(old.iter().map(|h| &h.id)),
            "{path}: old versions changed"
        );
        world
            .assert_copy_of(
                after.last().context("latest")?,
                old.last().context("source")?,
            )
            .await?;
        ensure!(
            status.get(&(id.clone(), String::new())).map(String::as_str) == Some("MIGRATED"),
            "{path}: CSV status {:?}",
            status.get(&(id, String::new()))
        );
    }
    ensure!(
        world.handles_by_path(&UNTOUCHED)? == untouched,
        "{UNTOUCHED:?} must not change"
    );
    let already = world.id("already.txt")?;
    ensure!(
        status
            .get(&(already.clone(), String::new()))
            .map(String::as_str)
            == Some("ALREADY_MIGRATED"),
        "already.txt: CSV status {:?}",
        status.get(&(already, String::new()))
    );
    ensure!(
        !status.contains_key(&(world.id("link.txt")?, String::new())),
        "non-S3 handles are not recorded"
    );

    let shared: BTreeSet<String> = ["outer/inner/shared-one.txt", "shared-two.txt"]
        .iter()
        .map(|p| {
            Ok(world
                .version_handles(&world.id(p)?)?
                .last()
                .context("latest")?
                .id
                .clone())
        })
        .collect::<anyhow::Result<_>>()?;
    ensure!(
        shared.len() == 1,
        "the shared handle was copied more than once: {shared:?}"
    );
    ensure!(
        world.objects(SOURCE_BUCKET).await? == sources_before,
        "source objects changed"
    );

    // A second run, with a fresh index, finds everything migrated and writes nothing.
    world.sim.reset_requests();
    let versions_after_first = world.handles_by_path(&paths)?;
    let second = world.migrate("new", "second")?;
    ensure!(
        multipart_starts(&world.sim) == 0,
        "the second run started a copy"
    );
    ensure!(
        entity_writes(&world.sim) == 0,
        "the second run wrote an entity"
    );
    let versions_after_second = world.handles_by_path(&paths)?;
    ensure!(
        versions_after_first == versions_after_second,
        "the second run changed versions"
    );
    ensure!(
        !second.is_empty() && statuses(&second).values().all(|s| s == "ALREADY_MIGRATED"),
        "second run statuses: {:?}",
        statuses(&second)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_migrates_every_version_in_place() -> anyhow::Result<()> {
    let world = World::start("all").await?;
    let sources_before = world.objects(SOURCE_BUCKET).await?;
    let paths = world.migratable_paths();
    let before = world.handles_by_path(&paths)?;

    let rows = world.migrate("all", "first")?;
    let status = statuses(&rows);
    let versions: usize = before.values().map(Vec::len).sum();
    // One copy per version but one for both sharers; one handle swap per version.
    assert_first_run_traffic(&world.sim, versions - 1, versions)?;

    for path in &paths {
        let id = world.id(path)?;
        let after = world.version_handles(&id)?;
        let old = &before[path];
        ensure!(
            after.len() == old.len(),
            "{path}: `all` must not add versions"
        );
        for (version, (copy, source)) in after.iter().zip(old).enumerate() {
            world.assert_copy_of(copy, source).await?;
            let key = (id.clone(), (version + 1).to_string());
            ensure!(
                status.get(&key).map(String::as_str) == Some("MIGRATED"),
                "{path} v{}: CSV status {:?}",
                version + 1,
                status.get(&key)
            );
        }
    }
    ensure!(
        world.objects(SOURCE_BUCKET).await? == sources_before,
        "source objects changed"
    );

    world.sim.reset_requests();
    let second = world.migrate("all", "second")?;
    ensure!(
        multipart_starts(&world.sim) == 0,
        "the second run started a copy"
    );
    ensure!(
        entity_writes(&world.sim) == 0,
        "the second run wrote an entity"
    );
    ensure!(
        !second.is_empty() && statuses(&second).values().all(|s| s == "ALREADY_MIGRATED"),
        "second run statuses: {:?}",
        statuses(&second)
    );
    Ok(())
}

//! Whole migrations through the stage functions (the in-process runner), against the simulator
//! and moto (S3 for bytes, manifests and reports; DynamoDB for state): every engine with every
//! version strategy keeps the bytes and changes versions as promised, a second run does nothing,
//! a crash between entity update and state write never yields a second version, skips and
//! refusals carry readable reasons, throttling costs no file, a dry run copies nothing, and the
//! project lock keeps a second run out.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use md5::{Digest, Md5};
use synapse_model::FileHandle;
use synapse_sim::{Content, EntitySnapshot, FaultConfig, Fixture, RunningSim, ThrottleConfig};
use synmigrate::config::{FileVersionStrategy, MigrationOptions};
use synmigrate::copy::{CopyMode, EngineConfig};
use synmigrate::error::types;
use synmigrate::plan::{BatchBudget, UnitLimits, MIB};
use synmigrate::runner::run_migration;
use synmigrate::stages::{self, InitInput, ReportInput, Services, Summary, Tuning};
use synmigrate::state::dynamo::{create_table, DynamoStore};
use synmigrate::state::memory::MemoryStore;
use synmigrate::state::{
    CopyStatus, ItemKey, ItemRecord, ItemStatus, MigrationKey, RunStatus, StateStore, StatusName,
    Transition,
};
use synmigrate::synapse::SynapseClient;
use synmigrate_testkit::{object_bytes, AwsStack};

use crate::common::{
    bounded, client_config, fixture_from, handle_bytes, numbered_files, start_sim,
};

const TOKEN: &str = "migrator-token";
const OWNER_TOKEN: &str = "owner-token";
const PROJECT: &str = "Migration";
const DEST: i64 = 7001;
/// An external location the migrator did not create.
const FOREIGN: i64 = 7002;
const SYNAPSE_STORAGE: i64 = 1;
const EU_STORAGE: i64 = 3;
const TABLE: &str = "synmigrate-state";
const BUCKET: &str = "synmigrate-runs";
const PART_SIZE: u64 = 5 * MIB;
/// Three 5 MiB parts, the last one short.
const BIG: Content = Content::Generated {
    size: 12 * MIB + 4321,
    seed: 7,
};
/// A file name the copy's name rule refuses, on an entity with a valid name.
const ODD_NAME: &str = "données #1.txt";
const ODD_ENTITY: &str = "donnees 1.txt";
/// The label the `new` strategy would give labelled.txt's next version, taken by its first.
const LABELLED_AHEAD: &str = "2";
/// A file the migrator may not even read.
const HIDDEN: &str = "special/hidden.txt";
/// More than one children page (50).
const MANY: usize = 51;
const TEST_TIMEOUT: Duration = Duration::from_secs(300);

/// The seeded project: see the module docs of the simulator for the format.
fn fixture(many: usize) -> Fixture {
    let many = numbered_files(many, "many");
    let json = serde_json::json!({
        "users": [
            {"userName": "owner", "ownerId": "3350001", "token": OWNER_TOKEN},
            {"userName": "migrator", "ownerId": "3350002", "token": TOKEN},
            {"userName": "reader", "ownerId": "3350003", "token": "reader-token"},
            {"userName": "newcomer", "ownerId": "3350004", "token": "newcomer-token"}
        ],
        "uncertifiedUsers": ["newcomer"],
        "storageLocations": [
            {"storageLocationId": SYNAPSE_STORAGE, "kind": "synapse", "bucket": "synapse-storage"},
            {"storageLocationId": EU_STORAGE, "kind": "synapse", "bucket": "eu-storage",
             "region": "eu-west-1"},
            {"storageLocationId": DEST, "kind": "externalS3", "bucket": "destination",
             "baseKey": "migrated", "createdBy": "migrator"},
            {"storageLocationId": FOREIGN, "kind": "externalS3", "bucket": "foreign",
             "createdBy": "owner"}
        ],
        "fileHandles": {"shared": {"content": {"text": "shared bytes"}, "fileName": "shared.txt"}},
        "projects": [{
            "name": PROJECT, "owner": "owner",
            "acl": {"migrator": ["READ", "DOWNLOAD", "UPDATE"], "reader": ["READ", "DOWNLOAD"],
                    "newcomer": ["READ", "DOWNLOAD", "UPDATE"]},
            "children": [
                {"type": "folder", "name": "data", "children": [
                    {"type": "folder", "name": "deep", "children": [
                        {"type": "folder", "name": "deeper", "children": [
                            {"type": "file", "name": "leaf.txt",
                             "versions": [{"content": {"text": "deep leaf"}}]}
                        ]}
                    ]},
                    {"type": "file", "name": "versions.txt", "versions": [
                        {"content": {"text": "version one"}},
                        {"content": {"text": "version two"}},
                        {"content": {"text": "version three"}, "contentType": "text/plain"}
                    ]},
                    {"type": "file", "name": "annotated.csv",
                     "versions": [{"content": {"text": "a,b\n1,2\n"}, "contentType": "text/csv"}],
                     "annotations": {"tissue": ["liver"]}},
                    {"type": "file", "name": "shared-a.txt", "versions": [{"handle": "shared"}]},
                    {"type": "file", "name": "big.bin",
                     "versions": [{"content": BIG, "contentType": "application/octet-stream"}]},
                    {"type": "file", "name": ODD_ENTITY,
                     "versions": [{"content": {"text": "odd"}, "fileName": ODD_NAME}]}
                ]},
                {"type": "folder", "name": "other", "children": [
                    {"type": "file", "name": "shared-b.txt", "versions": [{"handle": "shared"}]}
                ]},
                {"type": "folder", "name": "special", "children": [
                    {"type": "file", "name": "in-destination.txt",
                     "versions": [{"content": {"text": "already there"}, "storageLocationId": DEST,
                                   "createdBy": "migrator"}]},
                    {"type": "file", "name": "link.txt",
                     "versions": [{"kind": "external", "externalUrl": "https://example.org/x"}]},
                    {"type": "file", "name": "labelled.txt",
                     "versions": [{"content": {"text": "labelled ahead"}}],
                     "versionMeta": [{"label": LABELLED_AHEAD}]},
                    {"type": "file", "name": "gcs.txt",
                     "versions": [{"kind": "googleCloud", "content": {"text": "gcs"}}]},
                    {"type": "file", "name": "proxy.txt", "versions": [{"kind": "proxy"}]},
                    {"type": "file", "name": "empty.txt", "versions": [{"content": {"text": ""}}]},
                    {"type": "file", "name": "readonly.txt",
                     "versions": [{"content": {"text": "hands off"}}],
                     "acl": {"migrator": ["READ", "DOWNLOAD"]}},
                    {"type": "file", "name": "hidden.txt",
                     "versions": [{"content": {"text": "not for the migrator"}}],
                     "acl": {"migrator": []}},
                    {"type": "file", "name": "eu.txt",
                     "versions": [{"content": {"text": "far away"}, "storageLocationId": EU_STORAGE}]}
                ]},
                {"type": "folder", "name": "many", "children": many}
            ]
        }]
    });
    fixture_from(json)
}

/// Moto, the simulator and a state table; everything stops when dropped.
struct Env {
    sim: RunningSim,
    s3: aws_sdk_s3::Client,
    dynamo: aws_sdk_dynamodb::Client,
    project_id: String,
    _stack: AwsStack,
}

impl Env {
    async fn start(many: usize, throttle: ThrottleConfig) -> anyhow::Result<Self> {
        Self::start_with(&fixture(many), throttle).await
    }

    /// Over another fixture, whose project is also named [`PROJECT`].
    async fn start_with(fixture: &Fixture, throttle: ThrottleConfig) -> anyhow::Result<Self> {
        let (stack, sim) = start_sim(fixture, throttle).await?;
        let s3 = stack.s3_client().await;
        s3.create_bucket().bucket(BUCKET).send().await?;
        let dynamo = aws_sdk_dynamodb::Client::new(&stack.sdk_config().await);
        create_table(&dynamo, TABLE).await?;
        let project_id = sim.project_id(PROJECT).context("the project was seeded")?;
        Ok(Self {
            sim,
            s3,
            dynamo,
            project_id,
            _stack: stack,
        })
    }

    fn store(&self) -> Arc<dyn StateStore> {
        Arc::new(DynamoStore::new(self.dynamo.clone(), TABLE))
    }

    /// A client that does not pace itself unless `paced` (the simulator's throttle is off); the
    /// services' run budget is on with it.
    fn client(&self, token: &str, paced: bool) -> SynapseClient {
        let mut config = client_config(&self.sim, token, 20, Duration::from_millis(500));
        if !paced {
            config.requests_per_minute = 600_000;
            config.burst = 10_000;
        }
        SynapseClient::new(config).unwrap()
    }

    /// Small batches and units, so that the big file goes through CopyParts batch by batch.
    fn services_with(&self, token: &str, paced: bool, index_budget: Duration) -> Services {
        let tuning = Tuning {
            index_time_budget: index_budget,
            unit_limits: UnitLimits {
                max_files: 10,
                max_bytes: 64 * MIB,
                large_threshold: 8 * MIB,
            },
            batch_budget: BatchBudget {
                time_budget: Duration::from_secs(1),
                safety_factor: 1.0,
                throughput_bytes_per_sec: PART_SIZE,
                concurrency: 1,
            },
            // The big file takes the direct engine's multipart path, the small ones CopyObject.
            engine: EngineConfig {
                copy_object_threshold: 8 * MIB,
                ..EngineConfig::default()
            },
            run_budget: paced,
            ..Tuning::default()
        };
        Services::new(
            self.client(token, paced),
            self.store(),
            self.s3.clone(),
            BUCKET,
            tuning,
        )
    }

    fn services(&self) -> Services {
        self.services_with(TOKEN, false, Duration::from_secs(60))
    }

    fn input(&self, execution: &str, options: MigrationOptions) -> InitInput {
        InitInput {
            project_id: self.project_id.clone(),
            destination_storage_location_id: Some(DEST),
            execution_name: execution.to_owned(),
            options,
        }
    }

    fn id(&self, path: &str) -> String {
        self.sim
            .entity_id(&format!("{PROJECT}/{path}"))
            .unwrap_or_else(|| panic!("no entity at {path}"))
    }

    fn snapshots(&self) -> BTreeMap<String, EntitySnapshot> {
        self.sim
            .paths()
            .into_iter()
            .filter_map(|(_, id)| self.sim.entity(&id).map(|s| (id, s)))
            .collect()
    }

    fn handle(&self, id: &str) -> anyhow::Result<FileHandle> {
        self.sim
            .file_handle(id)
            .with_context(|| format!("no file handle {id}"))
    }

    async fn object_md5(&self, handle: &FileHandle) -> anyhow::Result<String> {
        let bytes = handle_bytes(&self.s3, handle).await?;
        Ok(hex::encode(Md5::digest(&bytes)))
    }

    async fn items(&self) -> anyhow::Result<BTreeMap<String, ItemRecord>> {
        let migration = MigrationKey::new(&self.project_id, DEST)?;
        let page = self
            .store()
            .list_items(&migration, None, 1000, None)
            .await?;
        ensure!(page.next_token.is_none(), "more than one page of items");
        Ok(page
            .items
            .into_iter()
            .map(|item| (item.key.to_string(), item))
            .collect())
    }

    async fn report_csv(&self, summary: &Summary) -> anyhow::Result<String> {
        self.object_text(&summary.report_bucket, &summary.report_key)
            .await
    }

    async fn object_text(&self, bucket: &str, key: &str) -> anyhow::Result<String> {
        Ok(String::from_utf8(
            object_bytes(&self.s3, bucket, key).await?,
        )?)
    }

    fn count(&self, endpoint: &str) -> usize {
        self.sim
            .request_counts()
            .by_endpoint
            .get(endpoint)
            .copied()
            .unwrap_or_default()
    }

    /// Write requests Synapse carried out (a refused one changes nothing).
    fn writes(&self) -> usize {
        const WRITES: [&str; 5] = [
            "POST /file/multipart",
            "PUT /entity/{id}",
            "PUT /entity/{id}/version/{version}/filehandle",
            "POST /externalFileHandle/s3",
            "PUT /entity/{id}/annotations2",
        ];
        self.sim
            .requests()
            .iter()
            .filter(|r| (200..300).contains(&r.status) && WRITES.contains(&r.endpoint().as_str()))
            .count()
    }
}

fn options(strategy: FileVersionStrategy, mode: CopyMode) -> MigrationOptions {
    MigrationOptions {
        file_version_strategy: strategy,
        copy_mode: mode,
        continue_on_error: true,
        part_size_bytes: PART_SIZE,
        max_concurrency: 4,
        ..MigrationOptions::default()
    }
}

/// What each file of the fixture must end as. `eu.txt` sits in another region: Synapse refuses
/// to copy across regions, the direct engine copies it itself.
fn expected_status(path: &str, mode: CopyMode) -> (StatusName, Option<&'static str>) {
    match path {
        "special/in-destination.txt" => (StatusName::AlreadyMigrated, None),
        "special/link.txt" => (StatusName::Skipped, Some("EXTERNAL_LINK")),
        "special/gcs.txt" | "special/proxy.txt" => (StatusName::Skipped, Some("NOT_S3")),
        "special/empty.txt" => (StatusName::Skipped, Some("EMPTY_FILE")),
        "special/readonly.txt" => (StatusName::Errored, Some(types::FORBIDDEN)),
        "special/eu.txt" if mode == CopyMode::Synapse => {
            (StatusName::Errored, Some(types::INVALID_INPUT))
        }
        _ => (StatusName::Migrated, None),
    }
}

/// Version numbers with their file handles (etags and dates change with any write).
fn handles(snapshot: &EntitySnapshot) -> Vec<(Option<i64>, Option<String>)> {
    snapshot
        .versions
        .iter()
        .map(|v| (v.version_number, v.data_file_handle_id.clone()))
        .collect()
}

/// Checks items, bytes, entity versions and the report after a first run.
async fn check_first_run(
    env: &Env,
    strategy: FileVersionStrategy,
    mode: CopyMode,
    before: &BTreeMap<String, EntitySnapshot>,
    summary: &Summary,
) -> anyhow::Result<()> {
    let items = env.items().await?;
    let migration = MigrationKey::new(&env.project_id, DEST)?;
    let store = env.store();
    let mut expected_items = 0;
    for (path, id) in env.sim.paths() {
        let Some(path) = path.strip_prefix(&format!("{PROJECT}/")) else {
            continue;
        };
        let old = &before[&id];
        if !old.entity.is_file() {
            continue;
        }
        if path == HIDDEN {
            // Synapse leaves a child the caller cannot read out of the listing: never indexed.
            ensure!(
                !items.keys().any(|k| k.starts_with(&format!("{id}."))),
                "{path} is invisible to the migrator but was indexed"
            );
            continue;
        }
        let versions: Vec<i64> = match strategy {
            FileVersionStrategy::All => old
                .versions
                .iter()
                .filter_map(|v| v.version_number)
                .collect(),
            _ => vec![old.entity.version_number.context("a version")?],
        };
        let (status, reason) = expected_status(path, mode);
        let now = env.sim.entity(&id).context("entity still there")?;
        for version in versions {
            expected_items += 1;
            let key = format!("{id}.{version}");
            let item = items
                .get(&key)
                .with_context(|| format!("no item {key} for {path}"))?;
            ensure!(
                item.status.name() == status,
                "{path}: {:?}, expected {status}",
                item.status
            );
            ensure!(item.lease.is_none(), "{path}: finished items hold no lease");
            match (&item.status, reason) {
                (ItemStatus::Skipped { reason: r }, Some(want)) => {
                    ensure!(r.as_str() == want, "{path}: skipped for {r:?}")
                }
                (ItemStatus::Errored(error), Some(want)) => {
                    ensure!(error.class == want, "{path}: {error:?}");
                    // The read-only file's copy is kept: the next run retries its update.
                    let copied = path == "special/readonly.txt";
                    ensure!(error.retryable == copied, "{path}: {error:?}");
                    let why = match path {
                        "special/readonly.txt" => "read-only",
                        _ => "stored in a different region than the destination",
                    };
                    ensure!(error.message.contains(why), "{path}: {}", error.message);
                }
                _ => {}
            }
            let old_version = old
                .versions
                .iter()
                .find(|v| v.version_number == Some(version))
                .context("old version")?;
            let source_id = old_version.data_file_handle_id.clone().context("handle")?;
            if status != StatusName::Migrated {
                ensure!(
                    now.versions == old.versions,
                    "{path} is {status} but its versions changed"
                );
                continue;
            }
            ensure!(
                item.attempts == 1,
                "{path}: one attempt, got {}",
                item.attempts
            );
            let destination_id = item
                .destination_file_handle_id
                .clone()
                .context("migrated items record their destination")?;
            let source = env.handle(&source_id)?;
            let destination = env.handle(&destination_id)?;
            ensure!(destination.storage_location_id == Some(DEST), "{path}");
            ensure!(destination.content_md5 == source.content_md5, "{path}");
            ensure!(destination.content_size == source.content_size, "{path}");
            ensure!(
                env.object_md5(&destination).await? == env.object_md5(&source).await?,
                "{path}: destination bytes differ from the source"
            );
            ensure!(
                env.object_md5(&source).await? == source.content_md5.clone().unwrap_or_default(),
                "{path}: the source object changed"
            );
            let copy = store
                .get_copy(&migration, &source_id)
                .await?
                .context("a copy record per source")?;
            ensure!(copy.status == CopyStatus::Copied);
            ensure!(copy.destination_file_handle_id.as_deref() == Some(destination_id.as_str()));
            match strategy {
                FileVersionStrategy::New => {
                    ensure!(
                        now.versions.len() == old.versions.len() + 1,
                        "{path}: new adds exactly one version"
                    );
                    ensure!(
                        now.entity.data_file_handle_id.as_deref() == Some(destination_id.as_str())
                    );
                    ensure!(
                        handles(&now)[..old.versions.len()] == handles(old)[..],
                        "{path}: new leaves earlier versions alone"
                    );
                    // The official client's label, str(n + 1); when a version has it already,
                    // `{n + 1}-migrated` (Synapse refuses a used label).
                    let next = (version + 1).to_string();
                    let label = if next == LABELLED_AHEAD && path == "special/labelled.txt" {
                        format!("{next}-migrated")
                    } else {
                        next
                    };
                    ensure!(
                        now.entity.version_label.as_deref() == Some(label.as_str()),
                        "{path}: labelled {:?}, expected {label}",
                        now.entity.version_label
                    );
                }
                FileVersionStrategy::All | FileVersionStrategy::Latest => {
                    ensure!(
                        now.versions.len() == old.versions.len(),
                        "{path}: no new version"
                    );
                    let swapped = now
                        .versions
                        .iter()
                        .find(|v| v.version_number == Some(version))
                        .context("version")?;
                    ensure!(
                        swapped.data_file_handle_id.as_deref() == Some(destination_id.as_str()),
                        "{path}.{version} was not swapped"
                    );
                }
            }
            if strategy == FileVersionStrategy::Latest {
                for (old_v, now_v) in handles(old).iter().zip(&handles(&now)) {
                    if old_v.0 != Some(version) {
                        ensure!(old_v == now_v, "{path}: latest leaves older versions");
                    }
                }
            }
            ensure!(now.annotations.annotations == old.annotations.annotations);
        }
    }
    ensure!(
        items.len() == expected_items,
        "{} items, expected {expected_items}",
        items.len()
    );

    // The shared handle is copied once and both entities point at the same copy.
    let a = &items[&format!("{}.1", env.id("data/shared-a.txt"))];
    let b = &items[&format!("{}.1", env.id("other/shared-b.txt"))];
    ensure!(a.source_file_handle_id == b.source_file_handle_id);
    ensure!(a.destination_file_handle_id == b.destination_file_handle_id);

    // The odd name was sanitised and the rename reported.
    let odd = items
        .values()
        .find(|i| i.key.entity_id == env.id(&format!("data/{ODD_ENTITY}")))
        .context("odd item")?;
    let renamed = odd
        .destination_file_name
        .clone()
        .context("a sanitised name")?;
    ensure!(renamed == "donn_es _1.txt", "{renamed}");
    let copy = env.handle(odd.destination_file_handle_id.as_deref().context("dest")?)?;
    ensure!(copy.file_name.as_deref() == Some(renamed.as_str()));

    // Summary and report. Bytes count each copied source once (the read-only file's copy too:
    // it was made, and is kept for a later run).
    let mut copied_sources = BTreeMap::new();
    for item in items.values() {
        let copy = store
            .get_copy(&migration, &item.source_file_handle_id)
            .await?;
        if copy.is_some_and(|c| c.status == CopyStatus::Copied) {
            copied_sources.insert(item.source_file_handle_id.clone(), item.size);
        }
    }
    let copied: u64 = copied_sources.values().sum();
    ensure!(
        summary.run_counters.bytes_copied == copied as i64,
        "{summary:?}"
    );
    ensure!(
        summary
            .run_counters
            .by_status
            .get(&StatusName::Migrated)
            .copied()
            == Some(summary.totals.count(StatusName::Migrated) as i64),
        "{summary:?}"
    );
    ensure!(summary.totals.items == expected_items as u64);
    ensure!(
        summary.status == RunStatus::Failed,
        "refusals make the run fail"
    );
    let csv = env.report_csv(summary).await?;
    let mut lines = csv.lines();
    ensure!(lines.next() == Some(synmigrate::report::CSV_HEADER));
    ensure!(csv.lines().count() == expected_items + 1);
    let readonly = env.id("special/readonly.txt");
    let row = csv
        .lines()
        .find(|l| l.starts_with(&format!("{readonly},")))
        .context("readonly row")?;
    ensure!(
        row.contains("ERRORED") && row.contains("read-only"),
        "{row}"
    );
    ensure!(csv.contains(&format!(",MIGRATED,,,{renamed},")), "{csv}");
    ensure!(csv.contains(",SKIPPED,,EXTERNAL_LINK,"));

    // The read-only file's copy is the one no entity points at: counted and listed with why.
    ensure!(summary.orphaned_copies == 1, "{summary:?}");
    let key = summary
        .orphaned_copies_key
        .as_deref()
        .context("the orphaned copies' CSV")?;
    let orphans = env.object_text(&summary.report_bucket, key).await?;
    let readonly_item = &items[&format!("{readonly}.1")];
    ensure!(
        orphans.starts_with(synmigrate::report::ORPHANED_COPIES_HEADER)
            && orphans.contains(&format!(
                "{},{}",
                readonly_item.source_file_handle_id,
                readonly_item
                    .destination_file_handle_id
                    .as_deref()
                    .unwrap_or("?")
            ))
            && orphans.contains("read-only"),
        "{orphans}"
    );
    Ok(())
}

/// First run, checks, then a second run that must change nothing.
async fn migrate_and_rerun(strategy: FileVersionStrategy, mode: CopyMode) -> anyhow::Result<()> {
    let env = Env::start(MANY, ThrottleConfig::disabled()).await?;
    let before = env.snapshots();
    let services = env.services();
    let first = run_migration(&services, env.input("run-1", options(strategy, mode))).await?;
    check_first_run(&env, strategy, mode, &before, &first).await?;
    match mode {
        CopyMode::Direct => ensure!(env.count("POST /file/multipart") == 0),
        _ => ensure!(env.count("POST /externalFileHandle/s3") == 0),
    }

    let after_first = env.snapshots();
    env.sim.reset_requests();
    let second = run_migration(&services, env.input("run-2", options(strategy, mode))).await?;
    ensure!(env.writes() == 0, "{:?}", env.sim.request_counts());
    ensure!(
        second.totals == first.totals,
        "{:?} vs {:?}",
        second.totals,
        first.totals
    );
    ensure!(second.run_counters.bytes_copied == 0);
    ensure!(
        env.snapshots() == after_first,
        "the second run changed entities"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn synapse_engine_new_strategy() -> anyhow::Result<()> {
    bounded(
        TEST_TIMEOUT,
        migrate_and_rerun(FileVersionStrategy::New, CopyMode::Synapse),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn synapse_engine_all_strategy() -> anyhow::Result<()> {
    bounded(
        TEST_TIMEOUT,
        migrate_and_rerun(FileVersionStrategy::All, CopyMode::Synapse),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn synapse_engine_latest_strategy() -> anyhow::Result<()> {
    bounded(
        TEST_TIMEOUT,
        migrate_and_rerun(FileVersionStrategy::Latest, CopyMode::Synapse),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn direct_engine_new_strategy() -> anyhow::Result<()> {
    bounded(
        TEST_TIMEOUT,
        migrate_and_rerun(FileVersionStrategy::New, CopyMode::Direct),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn direct_engine_all_strategy() -> anyhow::Result<()> {
    bounded(
        TEST_TIMEOUT,
        migrate_and_rerun(FileVersionStrategy::All, CopyMode::Direct),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn direct_engine_latest_strategy() -> anyhow::Result<()> {
    bounded(
        TEST_TIMEOUT,
        migrate_and_rerun(FileVersionStrategy::Latest, CopyMode::Direct),
    )
    .await
}

/// A crash after the entity update and before the state write: the re-run finds the entity
/// already pointing at the copy and records MIGRATED without a second version (or a 412).
async fn crash_after_update(strategy: FileVersionStrategy) -> anyhow::Result<()> {
    let env = Env::start(2, ThrottleConfig::disabled()).await?;
    let before = env.snapshots();
    let services = env.services();
    services
        .faults
        .fail_after_entity_update
        .store(1, Ordering::SeqCst);
    let first = run_migration(
        &services,
        env.input("crash-1", options(strategy, CopyMode::Synapse)),
    )
    .await?;
    let items = env.items().await?;
    let crashed: Vec<&ItemRecord> = items
        .values()
        .filter(|i| matches!(&i.status, ItemStatus::Errored(e) if e.class == types::TRANSIENT))
        .collect();
    ensure!(crashed.len() == 1, "one injected crash: {crashed:?}");
    let crashed = crashed[0].clone();
    // The crash, the read-only file and the file in another region.
    ensure!(
        first.totals.count(StatusName::Errored) == 3,
        "{:?}",
        first.totals
    );
    let entity = env.sim.entity(&crashed.key.entity_id).context("entity")?;
    let old = &before[&crashed.key.entity_id];
    let expected_versions = match strategy {
        FileVersionStrategy::New => old.versions.len() + 1,
        _ => old.versions.len(),
    };
    ensure!(
        entity.versions.len() == expected_versions,
        "the update was made"
    );

    env.sim.reset_requests();
    let second = run_migration(
        &services,
        env.input("crash-2", options(strategy, CopyMode::Synapse)),
    )
    .await?;
    let item = env.items().await?[&crashed.key.to_string()].clone();
    ensure!(item.status == ItemStatus::Migrated, "{item:?}");
    ensure!(item.attempts == 2, "{item:?}");
    let entity = env.sim.entity(&crashed.key.entity_id).context("entity")?;
    ensure!(
        entity.versions.len() == expected_versions,
        "no second version after the re-run"
    );
    ensure!(env.writes() == 0, "{:?}", env.sim.request_counts());
    ensure!(
        second.totals.count(StatusName::Errored) == 2,
        "{:?}",
        second.totals
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_between_update_and_state_write_new() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, crash_after_update(FileVersionStrategy::New)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_between_update_and_state_write_all() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, crash_after_update(FileVersionStrategy::All)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throttled_server_loses_no_file() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start(8, ThrottleConfig::default()).await?;
        env.sim.set_throttle(ThrottleConfig {
            enabled: true,
            per_minute: 600,
            in_flight: 3,
        });
        let services = env.services_with(TOKEN, true, Duration::from_secs(60));
        let mut opts = options(FileVersionStrategy::New, CopyMode::Synapse);
        opts.max_concurrency = 8;
        let summary = run_migration(&services, env.input("throttled", opts)).await?;
        let items = env.items().await?;
        let unexpected: Vec<_> = items
            .values()
            .filter(|i| i.status.name() == StatusName::Errored)
            .filter(|i| {
                let refused = ["readonly", "eu"].map(|f| env.id(&format!("special/{f}.txt")));
                !refused.contains(&i.key.entity_id)
            })
            .collect();
        ensure!(unexpected.is_empty(), "failed files: {unexpected:?}");
        ensure!(summary.totals.count(StatusName::Migrated) > 8);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dry_run_indexes_and_copies_nothing() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start(MANY, ThrottleConfig::disabled()).await?;
        let before = env.snapshots();
        // A zero index budget makes every Index call take one page: the frontier carries on,
        // through nested folders and the second children page of `many`.
        let services = env.services_with(TOKEN, false, Duration::ZERO);
        let mut opts = options(FileVersionStrategy::All, CopyMode::Synapse);
        opts.dry_run = true;
        let summary = run_migration(&services, env.input("dry", opts)).await?;
        ensure!(summary.dry_run);
        ensure!(
            summary.totals.count(StatusName::Errored) == 0,
            "{summary:?}"
        );
        ensure!(summary.status == RunStatus::Succeeded, "{summary:?}");
        ensure!(env.writes() == 0, "{:?}", env.sim.request_counts());
        ensure!(env.snapshots() == before);
        let items = env.items().await?;
        ensure!(summary.totals.count(StatusName::Indexed) > 0);
        ensure!(items
            .values()
            .all(|i| !matches!(i.status.name(), StatusName::Migrated | StatusName::Copying)));
        // Every version of every file the migrator can see (Synapse hides the others).
        let hidden = env.id(HIDDEN);
        let versions: usize = before
            .iter()
            .filter(|(id, s)| s.entity.is_file() && **id != hidden)
            .map(|(_, s)| s.versions.len())
            .sum();
        ensure!(
            items.len() == versions,
            "{} items for {versions} versions",
            items.len()
        );
        let pages = env.count("POST /entity/children");
        ensure!(pages == 8, "one call per container page (8), got {pages}");
        // versions.txt: all three versions indexed.
        let versions = env.id("data/versions.txt");
        ensure!(
            items
                .values()
                .filter(|i| i.key.entity_id == versions)
                .count()
                == 3
        );
        let manifest = stages::read_manifest(&services, "runs/dry/manifest.json").await?;
        ensure!(manifest.is_empty(), "a dry run plans no unit");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_lock_keeps_a_second_run_out_and_init_refuses_bad_input() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start(1, ThrottleConfig::disabled()).await?;
        let services = env.services();
        let opts = || options(FileVersionStrategy::New, CopyMode::Synapse);
        let run = stages::init(&services, env.input("first", opts())).await?;
        match stages::init(&services, env.input("second", opts())).await {
            Err(error) => {
                ensure!(error.error_type() == types::ALREADY_RUNNING, "{error}");
                ensure!(error.to_string().contains("already running"), "{error}");
            }
            Ok(_) => bail!("a second run started while the first holds the lock"),
        }
        stages::report(&services, ReportInput { run, aborted: true }).await?;
        let again = stages::init(&services, env.input("third", opts())).await?;
        ensure!(again.run_id == "third", "the lock is free after Report");

        let mut foreign = env.input("foreign", opts());
        foreign.destination_storage_location_id = Some(FOREIGN);
        let error = stages::init(&services, foreign).await.unwrap_err();
        ensure!(error.error_type() == types::FORBIDDEN, "{error}");
        ensure!(
            error
                .to_string()
                .contains(&format!("you did not create storage location {FOREIGN}")),
            "{error}"
        );

        // A token that may not update the files is refused before anything is copied: one
        // without EDIT, and one whose user is not certified (the project's canEdit holds for
        // it, the files' does not). A dry run needs only read access. (Into each folder's
        // location: these users did not create the destination, which Init would refuse first.)
        let aligned = |name: &str, dry_run: bool| {
            let mut input = env.input(name, opts());
            input.destination_storage_location_id = None;
            input.options.dry_run = dry_run;
            input
        };
        for (token, why) in [
            ("reader-token", "may not edit it"),
            ("newcomer-token", "not a certified user"),
        ] {
            let services = env.services_with(token, false, Duration::from_secs(60));
            let error = stages::init(&services, aligned("no-edit", false))
                .await
                .unwrap_err();
            ensure!(
                error.error_type() == types::FORBIDDEN && error.to_string().contains(why),
                "{token}: {error}"
            );
        }
        let reader = env.services_with("reader-token", false, Duration::from_secs(60));
        let run = stages::init(&reader, aligned("reader-dry", true)).await?;
        stages::report(&reader, ReportInput { run, aborted: true }).await?;

        let mut bad = env.input("bad", opts());
        bad.project_id = "project-1".into();
        let error = stages::init(&services, bad).await.unwrap_err();
        ensure!(error.error_type() == types::INVALID_INPUT, "{error}");
        let mut bad = env.input("bad", opts());
        bad.options.part_size_bytes = 1;
        let error = stages::init(&services, bad).await.unwrap_err();
        ensure!(error.to_string().contains("partSizeBytes"), "{error}");
        Ok(())
    })
    .await
}

/// Entity updates that fail after the copies were made leave orphaned copies, counted and marked
/// with why; the next run uses them (no second copy) and the marks go away, except the read-only
/// file's, which stays listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_next_run_uses_orphaned_copies() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start(2, ThrottleConfig::disabled()).await?;
        let services = env.services();
        let opts = || options(FileVersionStrategy::New, CopyMode::Synapse);
        env.sim.set_faults(FaultConfig {
            error_rates: BTreeMap::from([("PUT /entity/{id}".to_owned(), 1.0)]),
            ..FaultConfig::default()
        });
        let first = run_migration(&services, env.input("orphans-1", opts())).await?;
        let leaf = format!("{}.1", env.id("data/deep/deeper/leaf.txt"));
        let item = env.items().await?[&leaf].clone();
        ensure!(
            matches!(&item.status, ItemStatus::Errored(e) if e.retryable),
            "{item:?}"
        );
        ensure!(first.orphaned_copies > 1, "{first:?}");
        let migration = MigrationKey::new(&env.project_id, DEST)?;
        let copy = env
            .store()
            .get_copy(&migration, &item.source_file_handle_id)
            .await?
            .context("the leaf's copy")?;
        ensure!(copy.is_orphaned(), "{copy:?}");

        env.sim.set_faults(FaultConfig::default());
        let second = run_migration(&services, env.input("orphans-2", opts())).await?;
        let item = env.items().await?[&leaf].clone();
        ensure!(item.status == ItemStatus::Migrated, "{item:?}");
        ensure!(
            item.destination_file_handle_id == copy.destination_file_handle_id,
            "the kept copy was used"
        );
        ensure!(second.run_counters.bytes_copied == 0, "{second:?}");
        let copy = env
            .store()
            .get_copy(&migration, &item.source_file_handle_id)
            .await?
            .context("the leaf's copy")?;
        ensure!(copy.unused_reason.is_none(), "{copy:?}");
        ensure!(
            second.orphaned_copies == 1,
            "only the read-only file's: {second:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_continue_on_error_the_first_failure_stops_the_run() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start(2, ThrottleConfig::disabled()).await?;
        let mut services = env.services();
        // One file per unit: the `many` files come after the refused ones in unit order.
        services.tuning.unit_limits.max_files = 1;
        let mut opts = options(FileVersionStrategy::New, CopyMode::Synapse);
        opts.continue_on_error = false;
        opts.max_concurrency = 1;
        let summary = run_migration(&services, env.input("strict", opts.clone())).await?;
        ensure!(summary.status == RunStatus::Aborted, "{summary:?}");
        ensure!(summary.totals.count(StatusName::Errored) >= 1);
        ensure!(
            summary.totals.count(StatusName::Indexed) >= 1,
            "units after the failure stay INDEXED: {:?}",
            summary.totals
        );
        let items = env.items().await?;
        ensure!(items.values().all(|i| i.lease.is_none()), "no claim left");
        // The lock was released: the next run starts and finishes what is left.
        opts.continue_on_error = true;
        let next = run_migration(&services, env.input("lenient", opts)).await?;
        ensure!(
            next.totals.count(StatusName::Indexed) == 0,
            "{:?}",
            next.totals
        );
        Ok(())
    })
    .await
}

/// A file changed by its owner between Index and Complete is left alone: the migration never
/// replaces a newer file with the copy of an older one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_changed_after_indexing_is_left_alone() -> anyhow::Result<()> {
    use synmigrate::stages::{
        complete, copy_parts, index, plan, start_copy, CompleteInput, CopyPartsInput, IndexInput,
        PlanInput, UnitInput,
    };
    bounded(TEST_TIMEOUT, async {
        let env = Env::start(1, ThrottleConfig::disabled()).await?;
        let services = env.services();
        let run = stages::init(
            &services,
            env.input(
                "changed",
                options(FileVersionStrategy::New, CopyMode::Synapse),
            ),
        )
        .await?;
        while !index(
            &services,
            IndexInput {
                run: run.clone(),
                time_budget_seconds: None,
            },
        )
        .await?
        .done
        {}
        let planned = plan(&services, PlanInput { run: run.clone() }).await?;

        // The owner points leaf.txt at other bytes (the shared handle, which the owner created).
        let leaf = env.id("data/deep/deeper/leaf.txt");
        let shared = env
            .sim
            .entity(&env.id("data/shared-a.txt"))
            .and_then(|s| s.entity.data_file_handle_id)
            .context("shared handle")?;
        let owner = env.client(OWNER_TOKEN, false);
        let mut entity = owner.get_entity(&leaf).await?;
        entity.data_file_handle_id = Some(shared.clone());
        entity.version_label = None; // the server labels the new version with its number
        owner.put_entity(&leaf, &entity, true).await?;
        let before = env.sim.entity(&leaf).context("leaf")?;

        for unit in stages::read_manifest(&services, &planned.key).await? {
            let input = UnitInput {
                run: run.clone(),
                unit: unit.clone(),
            };
            let started = start_copy(&services, input).await?;
            for batch in started.batches {
                copy_parts(
                    &services,
                    CopyPartsInput {
                        run: run.clone(),
                        unit_id: unit.unit_id.clone(),
                        job: batch.job,
                        batch: batch.batch,
                    },
                )
                .await?;
            }
            complete(
                &services,
                CompleteInput {
                    run: run.clone(),
                    unit,
                    jobs: started.jobs,
                },
            )
            .await?;
        }
        let summary = stages::report(
            &services,
            ReportInput {
                run,
                aborted: false,
            },
        )
        .await?;
        let item = env
            .items()
            .await?
            .into_values()
            .find(|i| i.key.entity_id == leaf)
            .context("leaf item")?;
        match &item.status {
            ItemStatus::Errored(error) => {
                ensure!(error.class == types::CONFLICT, "{error:?}");
                ensure!(!error.retryable);
                ensure!(
                    error.message.contains("changed after indexing"),
                    "{error:?}"
                );
            }
            other => bail!("expected ERRORED, got {other:?}"),
        }
        let after = env.sim.entity(&leaf).context("leaf")?;
        ensure!(handles(&after) == handles(&before), "leaf.txt was touched");
        ensure!(after.entity.data_file_handle_id.as_deref() == Some(shared.as_str()));
        ensure!(summary.totals.count(StatusName::Migrated) > 5);
        Ok(())
    })
    .await
}

/// A file still held by a crashed attempt's lease is not skipped silently: the next run leaves it
/// alone (the lease may still be live) but does not report success; its summary names how many
/// files are held and until when, and the execution fails with `Fatal.Unfinished` on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn files_held_by_a_crashed_attempt_keep_the_run_from_succeeding() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start(1, ThrottleConfig::disabled()).await?;
        let services = env.services();
        let opts = options(FileVersionStrategy::New, CopyMode::Synapse);
        // A first run indexes, then its StartCopy claims one file and dies with the lease.
        let crashed = stages::init(&services, env.input("crashed", opts.clone())).await?;
        while !stages::index(
            &services,
            stages::IndexInput {
                run: crashed.clone(),
                time_budget_seconds: None,
            },
        )
        .await?
        .done
        {}
        let migration = MigrationKey::new(&env.project_id, DEST)?;
        let leaf = ItemKey::new(env.id("data/deep/deeper/leaf.txt"), 1)?;
        let held_until = stages::now() + 3600;
        let store = env.store();
        store
            .transition_item(
                &migration,
                &leaf,
                &Transition {
                    from: StatusName::Indexed,
                    to: ItemStatus::Copying,
                    owner: "crashed/unit-000001".into(),
                    lease_until: Some(held_until),
                    destination_file_handle_id: None,
                    count_attempt: true,
                    verified_by: None,
                    run_id: "crashed".into(),
                    now: stages::now(),
                },
            )
            .await?;
        store.release_lock(&migration, "crashed").await?;

        let summary = run_migration(&services, env.input("recovery", opts)).await?;
        ensure!(summary.unfinished == 1, "{summary:?}");
        ensure!(summary.status == RunStatus::Failed, "{summary:?}");
        let message = summary.unfinished_message.clone().unwrap_or_default();
        let until = aws_sdk_s3::primitives::DateTime::from_secs(held_until)
            .fmt(aws_sdk_s3::primitives::DateTimeFormat::DateTime)?;
        ensure!(
            message.contains("1 files are held by an earlier attempt until")
                && message.contains(&until),
            "{message}"
        );
        // Everything else was migrated; the held file is untouched.
        let items = env.items().await?;
        ensure!(items[&leaf.to_string()].status == ItemStatus::Copying);
        let others_done = items
            .values()
            .filter(|i| i.key != leaf)
            .all(|i| i.status.name() != StatusName::Indexed);
        ensure!(others_done, "{items:?}");
        Ok(())
    })
    .await
}

/// Walks with one-page Index invocations until done; returns the pages listed.
async fn walk_pages(services: &Services, run: &stages::RunContext) -> anyhow::Result<u64> {
    let mut pages = 0;
    loop {
        let output = stages::index(
            services,
            stages::IndexInput {
                run: run.clone(),
                time_budget_seconds: Some(0),
            },
        )
        .await?;
        pages += output.counts.pages;
        if output.done {
            return Ok(pages);
        }
    }
}

/// A run whose walk stopped midway (a crash, or Index's retries spent) leaves the migration's
/// frontier: the next run continues it instead of listing the project again from the root, and
/// a run after a finished walk starts a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_successor_continues_the_walk_a_crashed_run_left_unfinished() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start(1, ThrottleConfig::disabled()).await?;
        let services = env.services();
        let opts = options(FileVersionStrategy::New, CopyMode::Synapse);
        let migration = MigrationKey::new(&env.project_id, DEST)?;
        // The crashed run lists two pages and dies (its lock released, as CloseRun does).
        let crashed = stages::init(&services, env.input("walk-crashed", opts.clone())).await?;
        for _ in 0..2 {
            let step = stages::index(
                &services,
                stages::IndexInput {
                    run: crashed.clone(),
                    time_budget_seconds: Some(0),
                },
            )
            .await?;
            ensure!(!step.done && step.counts.pages == 1, "{step:?}");
        }
        env.store().release_lock(&migration, "walk-crashed").await?;
        let successor = stages::init(&services, env.input("walk-next", opts.clone())).await?;
        let rest = walk_pages(&services, &successor).await?;
        env.store().release_lock(&migration, "walk-next").await?;
        // After a finished walk, the next run walks the whole project.
        let fresh = stages::init(&services, env.input("walk-fresh", opts.clone())).await?;
        let whole = walk_pages(&services, &fresh).await?;
        ensure!(
            rest + 2 == whole,
            "the successor listed {rest} pages after the crashed run's 2; a whole walk is {whole}"
        );
        // A run with other options cannot continue a walk: it starts over.
        env.store().release_lock(&migration, "walk-fresh").await?;
        let other = stages::init(&services, env.input("walk-all-1", opts.clone())).await?;
        stages::index(
            &services,
            stages::IndexInput {
                run: other.clone(),
                time_budget_seconds: Some(0),
            },
        )
        .await?;
        env.store().release_lock(&migration, "walk-all-1").await?;
        let all = options(FileVersionStrategy::All, CopyMode::Synapse);
        let restarted = stages::init(&services, env.input("walk-all-2", all)).await?;
        ensure!(walk_pages(&services, &restarted).await? == whole);
        Ok(())
    })
    .await
}

/// A copy whose files failed for good leaves Synapse's multipart upload unfinished (Synapse has
/// no abort): the report counts it, lists it, and tells the user what becomes of its parts after
/// reading the destination bucket's lifecycle rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_report_counts_unfinished_uploads_and_checks_the_lifecycle_rule() -> anyhow::Result<()>
{
    use aws_sdk_s3::types::{
        AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus,
        LifecycleRule, LifecycleRuleFilter,
    };
    use synmigrate::stages::plan::units::UnitKind;
    use synmigrate::stages::{RecordFailureInput, StepFailure, UnitInput};
    bounded(TEST_TIMEOUT, async {
        let env = Env::start(1, ThrottleConfig::disabled()).await?;
        let services = env.services();
        let opts = options(FileVersionStrategy::New, CopyMode::Synapse);
        let run = stages::init(&services, env.input("abandoned", opts)).await?;
        while !stages::index(
            &services,
            stages::IndexInput {
                run: run.clone(),
                time_budget_seconds: None,
            },
        )
        .await?
        .done
        {}
        let planned = stages::plan(&services, stages::PlanInput { run: run.clone() }).await?;
        let unit = stages::read_manifest(&services, &planned.key)
            .await?
            .into_iter()
            .find(|u| u.kind == UnitKind::Large)
            .context("a large unit")?;
        let input = UnitInput {
            run: run.clone(),
            unit: unit.clone(),
        };
        let started = stages::start_copy(&services, input).await?;
        ensure!(!started.batches.is_empty(), "{started:?}");
        // Its part batches fail for good: the unit's files are ERRORED, not to be retried.
        stages::record_failure(
            &services,
            RecordFailureInput {
                run: run.clone(),
                unit,
                failure: StepFailure {
                    error: types::VERIFICATION.to_owned(),
                    cause: "the source changed".to_owned(),
                },
            },
        )
        .await?;
        let report = || {
            stages::report(
                &services,
                ReportInput {
                    run: run.clone(),
                    aborted: true,
                },
            )
        };
        let summary = report().await?;
        ensure!(summary.unfinished_uploads == 1, "{summary:?}");
        let advice = summary.upload_cleanup.clone().unwrap_or_default();
        ensure!(
            advice.contains("s3://destination") && advice.contains("has no lifecycle rules"),
            "{advice}"
        );
        let listed = env
            .object_text(
                BUCKET,
                summary.orphaned_copies_key.as_deref().unwrap_or_default(),
            )
            .await?;
        ensure!(listed.contains("Synapse's multipart upload"), "{listed}");
        // With a rule that aborts incomplete uploads, the report says so instead.
        let rule = LifecycleRule::builder()
            .id("abort-incomplete-uploads")
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("").build())
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(7)
                    .build(),
            )
            .build()?;
        env.s3
            .put_bucket_lifecycle_configuration()
            .bucket("destination")
            .lifecycle_configuration(
                BucketLifecycleConfiguration::builder()
                    .rules(rule)
                    .build()?,
            )
            .send()
            .await?;
        let advice = report().await?.upload_cleanup.unwrap_or_default();
        ensure!(advice.contains("aborts them 7 days after"), "{advice}");
        Ok(())
    })
    .await
}

/// A large artifact (the report, the manifest) goes up a part at a time and reads back whole; a
/// small one is a single object.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn artifacts_stream_to_s3_in_parts() -> anyhow::Result<()> {
    use synmigrate::artifacts::ArtifactWriter;
    bounded(TEST_TIMEOUT, async {
        let env = Env::start(1, ThrottleConfig::disabled()).await?;
        let services = env.services();
        let rows = "syn1,file,1,,,1,100,200,MIGRATED,,,,42\n".repeat(1000);
        let part = usize::try_from(5 * MIB)?;
        let mut writer =
            ArtifactWriter::with_part_bytes(&services, "runs/t/big.csv", "text/csv", part);
        let mut expected = String::new();
        while expected.len() < 12 * part / 5 {
            writer.write(rows.as_bytes()).await?;
            expected.push_str(&rows);
        }
        writer.finish().await?;
        ensure!(env.object_text(BUCKET, "runs/t/big.csv").await? == expected);
        let head = env
            .s3
            .head_object()
            .bucket(BUCKET)
            .key("runs/t/big.csv")
            .send()
            .await?;
        let etag = head.e_tag().unwrap_or_default().trim_matches('"');
        ensure!(etag.ends_with("-3"), "three parts: {etag}");
        let mut small = ArtifactWriter::new(&services, "runs/t/small.csv", "text/csv");
        small.write(b"a,b\n").await?;
        small.finish().await?;
        ensure!(env.object_text(BUCKET, "runs/t/small.csv").await? == "a,b\n");
        Ok(())
    })
    .await
}

/// Files in the project for the re-run cost tests: enough that the listings (a page per 50
/// files, one per folder) and Init cost what they cost a large project, per file.
const RERUN_FILES: usize = 500;

/// Migrates, then re-runs the unchanged project (twice with `latest` and `all`, whose first
/// re-run reads each file once to learn the listing their swaps left), counting the Synapse
/// calls; then changes one file and checks the next run finds and migrates it.
async fn rerun_reads_only_the_listings(strategy: FileVersionStrategy) -> anyhow::Result<()> {
    let env = Env::start(RERUN_FILES, ThrottleConfig::disabled()).await?;
    // State in memory: what is counted is Synapse's calls, and three of these tests through
    // moto's DynamoDB (~14 requests a copied file) took 4 minutes each side by side. The
    // migrations above run on moto's DynamoDB, and the store's SEEN records are checked on it
    // by the state store tests.
    let mut services = env.services();
    services.store = Arc::new(MemoryStore::new());
    // A handle of the owner's, for the change below (the migration repoints every entity).
    let owners_handle = env
        .sim
        .entity(&env.id("data/shared-a.txt"))
        .and_then(|s| s.entity.data_file_handle_id)
        .context("shared handle")?;
    // The direct engine: the first migration is the test's slow part.
    let opts = options(strategy, CopyMode::Direct);
    let first = run_migration(&services, env.input("rerun-1", opts.clone())).await?;
    let files = first.totals.items;
    let mut runs = 1;
    // `latest` and `all` swap handles, which moves each file's modifiedOn: the first re-run
    // reads each file once more to learn the listing the swap left.
    if strategy != FileVersionStrategy::New {
        runs += 1;
        run_migration(&services, env.input("rerun-2", opts.clone())).await?;
    }
    env.sim.reset_requests();
    runs += 1;
    let unchanged =
        run_migration(&services, env.input(&format!("rerun-{runs}"), opts.clone())).await?;
    let cost = env.sim.request_counts().total as f64 / files as f64;
    eprintln!("{strategy:?} re-run: {cost:.3} Synapse calls per file of {files}");
    ensure!(
        cost <= 0.05,
        "{cost:.3} Synapse calls per file re-running an unchanged project of {files} files: {:?}",
        env.sim.request_counts().by_endpoint
    );
    ensure!(unchanged.totals == first.totals);

    // The owner gives one file new bytes (a new version): the next run reads it and migrates it.
    let changed = env.id("many/f007.txt");
    let owner = env.client(OWNER_TOKEN, false);
    let mut entity = owner.get_entity(&changed).await?;
    entity.data_file_handle_id = Some(owners_handle);
    entity.version_label = None;
    let updated = owner.put_entity(&changed, &entity, true).await?;
    runs += 1;
    let after = run_migration(&services, env.input(&format!("rerun-{runs}"), opts)).await?;
    let version = u64::try_from(updated.version_number.context("a version")?)?;
    let item = services
        .store
        .get_item(
            &MigrationKey::new(&env.project_id, DEST)?,
            &ItemKey::new(&changed, version)?,
        )
        .await?
        .context("the changed file's new version is indexed")?;
    ensure!(item.status.name() == StatusName::Migrated, "{item:?}");
    ensure!(after.totals.items == files + 1, "{:?}", after.totals);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rerun_of_an_unchanged_project_reads_only_the_listings_new() -> anyhow::Result<()> {
    bounded(
        TEST_TIMEOUT,
        rerun_reads_only_the_listings(FileVersionStrategy::New),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rerun_of_an_unchanged_project_reads_only_the_listings_all() -> anyhow::Result<()> {
    bounded(
        TEST_TIMEOUT,
        rerun_reads_only_the_listings(FileVersionStrategy::All),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rerun_of_an_unchanged_project_reads_only_the_listings_latest() -> anyhow::Result<()> {
    bounded(
        TEST_TIMEOUT,
        rerun_reads_only_the_listings(FileVersionStrategy::Latest),
    )
    .await
}

/// A project of `children` in Synapse storage, the destination and `handles`, without the
/// special cases of [`fixture`].
fn plain_fixture(handles: serde_json::Value, children: serde_json::Value) -> Fixture {
    fixture_from(serde_json::json!({
        "users": [
            {"userName": "owner", "ownerId": "3350001", "token": OWNER_TOKEN},
            {"userName": "migrator", "ownerId": "3350002", "token": TOKEN}
        ],
        "storageLocations": [
            {"storageLocationId": SYNAPSE_STORAGE, "kind": "synapse", "bucket": "synapse-storage"},
            {"storageLocationId": DEST, "kind": "externalS3", "bucket": "destination",
             "baseKey": "migrated", "createdBy": "migrator"}
        ],
        "fileHandles": handles,
        "projects": [{
            "name": PROJECT, "owner": "owner",
            "acl": {"migrator": ["READ", "DOWNLOAD", "UPDATE"]},
            "children": children
        }]
    }))
}

/// Files sharing one source handle: more than a unit holds (the services' `max_files`, 10).
const FAN_IN: usize = 25;

/// A source shared by more files than a unit holds is copied once, by the lead unit, and the
/// other files' entity updates go to follower units of at most a unit's worth each, which the
/// runner (like the state machine's second Map pass) runs after the lead units.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_widely_shared_source_is_copied_once_and_its_updates_spread_over_units(
) -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let files: Vec<serde_json::Value> = (0..FAN_IN)
            .map(|i| {
                serde_json::json!({"type": "file", "name": format!("copy-{i:02}.txt"),
                                   "versions": [{"handle": "wide"}]})
            })
            .collect();
        let fixture = plain_fixture(
            serde_json::json!({"wide": {"content": {"text": "one source, many entities"},
                                        "fileName": "wide.txt"}}),
            serde_json::json!([{"type": "folder", "name": "fan", "children": files}]),
        );
        let env = Env::start_with(&fixture, ThrottleConfig::disabled()).await?;
        let services = env.services();
        let summary = run_migration(
            &services,
            env.input(
                "fan-in",
                options(FileVersionStrategy::New, CopyMode::Synapse),
            ),
        )
        .await?;
        ensure!(summary.status == RunStatus::Succeeded, "{summary:?}");

        // One lead unit of 10 (it copies), then followers of 10 and 5 (they only update).
        let sizes = |units: Vec<synmigrate::plan::WorkUnit>| -> Vec<usize> {
            units.iter().map(|u| u.items.len()).collect()
        };
        let leads = stages::read_manifest(&services, "runs/fan-in/manifest.json").await?;
        let followers = stages::read_manifest(&services, "runs/fan-in/followers.json").await?;
        ensure!(sizes(leads) == [10], "lead units");
        ensure!(sizes(followers) == [10, 5], "follower units");

        // Every file MIGRATED, all onto the one copy in the destination.
        let items = env.items().await?;
        ensure!(items.len() == FAN_IN);
        let copies = env.sim.file_handles_in(DEST);
        ensure!(
            copies.len() == 1,
            "{} copies of the one source",
            copies.len()
        );
        for item in items.values() {
            ensure!(item.status.name() == StatusName::Migrated, "{item:?}");
            ensure!(
                item.destination_file_handle_id.as_deref() == Some(copies[0].id.as_str()),
                "{item:?}"
            );
            let entity = env.sim.entity(&item.key.entity_id).context("entity")?;
            ensure!(entity.entity.data_file_handle_id.as_deref() == Some(copies[0].id.as_str()));
        }
        Ok(())
    })
    .await
}

/// Folders x files of the 10^4-file re-run test.
const TEN_K: (usize, usize) = (100, 100);

/// The measure at its size: a project of 10^4 files (here already in the destination,
/// which keeps the first run to a read of each file instead of 10^4 copies), run once to settle
/// every file, then re-run unchanged: at most 0.05 Synapse calls per file. A file then given a
/// new version in Synapse storage is found and migrated by the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rerun_of_an_unchanged_ten_thousand_file_project_costs_at_most_a_twentieth_call_a_file(
) -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let (folders, per_folder) = TEN_K;
        let children: Vec<serde_json::Value> = (0..folders)
            .map(|f| {
                // A folder's files share a handle: one object a folder keeps moto's seeding
                // short, and a listing cannot tell.
                let files: Vec<serde_json::Value> = (0..per_folder)
                    .map(|i| {
                        serde_json::json!({"type": "file", "name": format!("f{i:03}.txt"),
                            "versions": [{"handle": format!("d{f:03}")}]})
                    })
                    .collect();
                serde_json::json!({"type": "folder", "name": format!("d{f:03}"), "children": files})
            })
            .collect();
        let mut handles: serde_json::Map<String, serde_json::Value> = (0..folders)
            .map(|f| {
                let handle = serde_json::json!({"content": {"text": format!("folder {f}")},
                    "storageLocationId": DEST, "createdBy": "migrator"});
                (format!("d{f:03}"), handle)
            })
            .collect();
        handles.insert(
            "owners".into(),
            serde_json::json!({"content": {"text": "new bytes"}, "fileName": "new.txt"}),
        );
        let fixture = plain_fixture(handles.into(), children.into());
        let env = Env::start_with(&fixture, ThrottleConfig::disabled()).await?;
        // State in memory: moto's DynamoDB takes ~25 ms a write on this scale, and the calls
        // counted here are Synapse's.
        let mut services = env.services();
        services.store = Arc::new(MemoryStore::new());
        let opts = options(FileVersionStrategy::New, CopyMode::Direct);
        let first = run_migration(&services, env.input("ten-k-1", opts.clone())).await?;
        let files = first.totals.items;
        ensure!(files == (folders * per_folder) as u64, "{:?}", first.totals);

        env.sim.reset_requests();
        let unchanged = run_migration(&services, env.input("ten-k-2", opts.clone())).await?;
        let counts = env.sim.request_counts();
        let cost = counts.total as f64 / files as f64;
        eprintln!(
            "re-run of {files} unchanged files: {} Synapse calls, {cost:.4} a file",
            counts.total
        );
        ensure!(
            cost <= 0.05,
            "{cost:.4} calls a file: {:?}",
            counts.by_endpoint
        );
        ensure!(unchanged.totals == first.totals);

        // The owner gives a file a new version in Synapse storage: the next run migrates it.
        let changed = env.id("d042/f017.txt");
        let owners = env
            .sim
            .file_handles_in(SYNAPSE_STORAGE)
            .into_iter()
            .find(|h| h.file_name.as_deref() == Some("new.txt"))
            .context("the owner's handle")?;
        let owner = env.client(OWNER_TOKEN, false);
        let mut entity = owner.get_entity(&changed).await?;
        entity.data_file_handle_id = Some(owners.id);
        entity.version_label = None;
        let updated = owner.put_entity(&changed, &entity, true).await?;
        run_migration(&services, env.input("ten-k-3", opts)).await?;
        let version = u64::try_from(updated.version_number.context("a version")?)?;
        let item = services
            .store
            .get_item(
                &MigrationKey::new(&env.project_id, DEST)?,
                &ItemKey::new(&changed, version)?,
            )
            .await?
            .context("the new version is indexed")?;
        ensure!(item.status.name() == StatusName::Migrated, "{item:?}");
        Ok(())
    })
    .await
}

//! Synapse calls per migrated file, counted by endpoint in the simulator's request log over a
//! whole run (Init, Index, Plan, the copy stages, Report): the budget that decides how fast a
//! migration can go under Synapse's 600 requests a minute. Small single-part files in one
//! folder, most with one version, a few with three (`all` migrates each version). A dry run's
//! estimate of the same calls is checked against the run that follows it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context};
use synapse_sim::{Fixture, ThrottleConfig};
use synmigrate::config::{FileVersionStrategy, MigrationOptions};
use synmigrate::copy::CopyMode;
use synmigrate::estimate::endpoint;
use synmigrate::runner::run_migration;
use synmigrate::stages::{InitInput, Services, Tuning};
use synmigrate::state::memory::MemoryStore;
use synmigrate::state::StatusName;
use synmigrate::synapse::SynapseClient;

use crate::common::{bounded, client_config, fixture_from, numbered_files, SimEnv};

const TOKEN: &str = "migrator-token";
const PROJECT: &str = "Budget";
const DEST: i64 = 7001;
const BUCKET: &str = "synmigrate-runs";
/// One-version files: most of a real project.
const SINGLE: usize = 20;
/// Three-version files.
const MULTI: usize = 4;
const TEST_TIMEOUT: Duration = Duration::from_secs(300);

fn fixture() -> Fixture {
    let mut files = numbered_files(SINGLE, "single");
    files.extend((0..MULTI).map(|i| {
        let version =
            |n: usize| serde_json::json!({"content": {"text": format!("multi {i} v{n}")}});
        serde_json::json!({"type": "file", "name": format!("m{i:03}.txt"),
                           "versions": [version(1), version(2), version(3)]})
    }));
    fixture_from(serde_json::json!({
        "users": [{"userName": "migrator", "ownerId": "3350001", "token": TOKEN}],
        "storageLocations": [
            {"storageLocationId": 1, "kind": "synapse", "bucket": "synapse-storage"},
            {"storageLocationId": DEST, "kind": "externalS3", "bucket": "destination",
             "baseKey": "migrated", "createdBy": "migrator"}
        ],
        "projects": [{"name": PROJECT, "owner": "migrator",
                      "children": [{"type": "folder", "name": "data", "children": files}]}]
    }))
}

/// Services on the seeded simulator, with an in-memory state store.
async fn services(env: &SimEnv) -> anyhow::Result<Services> {
    env.s3.create_bucket().bucket(BUCKET).send().await?;
    let mut config = client_config(&env.sim, TOKEN, 5, Duration::from_millis(500));
    config.requests_per_minute = 600_000;
    config.burst = 10_000;
    Ok(Services::new(
        SynapseClient::new(config)?,
        Arc::new(MemoryStore::new()),
        env.s3.clone(),
        BUCKET,
        // The simulator throttles nobody here: no pacing, the count is the same.
        Tuning {
            run_budget: false,
            ..Tuning::default()
        },
    ))
}

/// A run of the seeded project into [`DEST`].
fn input(
    env: &SimEnv,
    name: &str,
    strategy: FileVersionStrategy,
    mode: CopyMode,
    dry_run: bool,
) -> anyhow::Result<InitInput> {
    Ok(InitInput {
        project_id: env
            .sim
            .project_id(PROJECT)
            .context("the project was seeded")?,
        destination_storage_location_id: Some(DEST),
        execution_name: name.into(),
        options: MigrationOptions {
            file_version_strategy: strategy,
            copy_mode: mode,
            dry_run,
            ..MigrationOptions::default()
        },
    })
}

/// The simulator's request log by endpoint.
fn by_endpoint(env: &SimEnv) -> BTreeMap<String, usize> {
    let mut by_endpoint = BTreeMap::new();
    for record in &env.sim.requests() {
        *by_endpoint.entry(record.endpoint()).or_default() += 1;
    }
    by_endpoint
}

/// Runs one migration on a fresh project and returns its Synapse calls by endpoint and the
/// number of migrated items.
async fn calls(
    strategy: FileVersionStrategy,
    mode: CopyMode,
) -> anyhow::Result<(BTreeMap<String, usize>, usize)> {
    let env = SimEnv::seeded(&fixture(), ThrottleConfig::disabled()).await?;
    let services = services(&env).await?;
    let input = input(&env, "calls", strategy, mode, false)?;
    env.sim.reset_requests();
    let summary = run_migration(&services, input).await?;
    let migrated = summary.totals.count(StatusName::Migrated) as usize;
    ensure!(
        migrated == summary.totals.items as usize,
        "everything migrates: {summary:?}"
    );
    let requests = env.sim.requests();
    let refused: Vec<_> = requests.iter().filter(|r| r.status >= 400).collect();
    ensure!(refused.is_empty(), "refused calls: {refused:?}");
    let by_endpoint = by_endpoint(&env);
    let per_item: BTreeMap<&String, f64> = by_endpoint
        .iter()
        .map(|(endpoint, &n)| (endpoint, n as f64 / migrated as f64))
        .collect();
    eprintln!(
        "{strategy:?} with the {mode:?} engine: {} calls for {migrated} items, {:.3} per item: \
         {per_item:#?}",
        requests.len(),
        requests.len() as f64 / migrated as f64
    );
    Ok((by_endpoint, migrated))
}

/// The calls every run makes once whatever its size: Init checks the project and the
/// destination, Index lists the project and its folder (one page each), StartCopy reads the
/// unit's source handles in one batch.
fn per_run() -> BTreeMap<String, usize> {
    [
        ("GET /entity/{id}", 1),
        ("GET /entity/{id}/permissions", 1),
        ("GET /storageLocation/{id}", 1),
        ("POST /entity/children", 2),
        ("POST /fileHandle/batch", 1),
    ]
    .into_iter()
    .map(|(endpoint, n)| (endpoint.to_owned(), n))
    .collect()
}

/// [`per_run`] plus, for each group of endpoints, that many calls of each.
fn expected(groups: &[(&[&str], usize)]) -> BTreeMap<String, usize> {
    let mut calls = per_run();
    for (endpoints, n) in groups {
        for endpoint in *endpoints {
            *calls.entry((*endpoint).to_owned()).or_default() += n;
        }
    }
    calls
}

/// A single-part copy by Synapse: start, presign, add the part, complete.
const SYNAPSE_COPY: &[&str] = &[
    "POST /file/multipart",
    "POST /file/multipart/{upload}/presigned/url/batch",
    "PUT /file/multipart/{upload}/add/{part}",
    "PUT /file/multipart/{upload}/complete",
];
/// The unit's copies read back and verified in one call.
const VERIFY: &[&str] = &["POST /fileHandle/batch"];
const BUNDLE: &[&str] = &["POST /entity/{id}/bundle2"];
const SWAP: &[&str] = &["PUT /entity/{id}/version/{version}/filehandle"];
const FILES: usize = SINGLE + MULTI;
const VERSIONS: usize = SINGLE + 3 * MULTI;

/// Runs the migration, checks its calls against `want` and the calls per item against `most`
/// plus the per-run calls spread over the items.
async fn check(
    strategy: FileVersionStrategy,
    mode: CopyMode,
    items: usize,
    want: &[(&[&str], usize)],
    most: f64,
) -> anyhow::Result<()> {
    let (calls, migrated) = calls(strategy, mode).await?;
    ensure!(
        migrated == items,
        "{migrated} items migrated, expected {items}"
    );
    assert_eq!(calls, expected(want));
    let per_item = calls.values().sum::<usize>() as f64 / items as f64;
    let per_run: usize = per_run().values().sum();
    let bound = most + (per_run + usize::from(mode == CopyMode::Synapse)) as f64 / items as f64;
    ensure!(
        per_item <= bound,
        "{per_item} calls per item, at most {bound}"
    );
    Ok(())
}

/// `new`: the index's bundle, the copy, one PUT of the entity as indexed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_with_synapse_copies() -> anyhow::Result<()> {
    let want: &[(&[&str], usize)] = &[
        (BUNDLE, FILES),
        (SYNAPSE_COPY, FILES),
        (VERIFY, 1),
        (&["PUT /entity/{id}"], FILES),
    ];
    bounded(
        TEST_TIMEOUT,
        check(
            FileVersionStrategy::New,
            CopyMode::Synapse,
            FILES,
            want,
            6.0,
        ),
    )
    .await
}

/// `latest`: the index's bundle, the copy, one swap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn latest_with_synapse_copies() -> anyhow::Result<()> {
    let want: &[(&[&str], usize)] = &[
        (BUNDLE, FILES),
        (SYNAPSE_COPY, FILES),
        (VERIFY, 1),
        (SWAP, FILES),
    ];
    bounded(
        TEST_TIMEOUT,
        check(
            FileVersionStrategy::Latest,
            CopyMode::Synapse,
            FILES,
            want,
            6.0,
        ),
    )
    .await
}

/// `all`: the version listing only for the files with more than one version (one page each),
/// then per version its bundle, the copy and one swap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn all_with_synapse_copies() -> anyhow::Result<()> {
    let want: &[(&[&str], usize)] = &[
        (&["GET /entity/{id}/version"], MULTI),
        (&["POST /entity/{id}/version/{version}/bundle2"], VERSIONS),
        (SYNAPSE_COPY, VERSIONS),
        (VERIFY, 1),
        (SWAP, VERSIONS),
    ];
    let most = 6.0 + MULTI as f64 / VERSIONS as f64;
    bounded(
        TEST_TIMEOUT,
        check(
            FileVersionStrategy::All,
            CopyMode::Synapse,
            VERSIONS,
            want,
            most,
        ),
    )
    .await
}

/// `latest` with the direct engine: the index's bundle, the registration, one swap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn latest_with_direct_copies() -> anyhow::Result<()> {
    let want: &[(&[&str], usize)] = &[
        (BUNDLE, FILES),
        (&["POST /externalFileHandle/s3"], FILES),
        (SWAP, FILES),
    ];
    bounded(
        TEST_TIMEOUT,
        check(
            FileVersionStrategy::Latest,
            CopyMode::Direct,
            FILES,
            want,
            3.0,
        ),
    )
    .await
}

/// A dry run's estimate ([`synmigrate::estimate`]) against the run that follows it on the same
/// index: the calls of every endpoint as the simulator counted them, but the folder listings,
/// which the estimate counts at a page per 50 files, a lower bound.
async fn estimate_matches_the_run(
    strategy: FileVersionStrategy,
    mode: CopyMode,
) -> anyhow::Result<()> {
    let env = SimEnv::seeded(&fixture(), ThrottleConfig::disabled()).await?;
    let services = services(&env).await?;
    let dry = run_migration(&services, input(&env, "dry", strategy, mode, true)?).await?;
    let estimate = dry
        .estimate
        .context("a dry run's summary carries its estimate")?;
    env.sim.reset_requests();
    let summary = run_migration(&services, input(&env, "real", strategy, mode, false)?).await?;
    ensure!(summary.estimate.is_none(), "only a dry run estimates");
    let migrated = summary.totals.count(StatusName::Migrated);
    ensure!(
        estimate.work.files == migrated,
        "{estimate:?} for {migrated} files"
    );
    let mut made: BTreeMap<String, u64> = by_endpoint(&env)
        .into_iter()
        .map(|(endpoint, n)| (endpoint, n as u64))
        .collect();
    let mut estimated = estimate.work.synapse.clone();
    let pages = made.remove(endpoint::CHILDREN).unwrap_or_default();
    let estimated_pages = estimated.remove(endpoint::CHILDREN).unwrap_or_default();
    ensure!(
        (1..=pages).contains(&estimated_pages),
        "{estimated_pages} listing pages estimated, {pages} made"
    );
    assert_eq!(made, estimated);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dry_runs_estimate_counts_the_synapse_engines_calls() -> anyhow::Result<()> {
    bounded(
        TEST_TIMEOUT,
        estimate_matches_the_run(FileVersionStrategy::New, CopyMode::Synapse),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dry_runs_estimate_counts_every_versions_calls() -> anyhow::Result<()> {
    bounded(
        TEST_TIMEOUT,
        estimate_matches_the_run(FileVersionStrategy::All, CopyMode::Synapse),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dry_runs_estimate_counts_the_direct_engines_calls() -> anyhow::Result<()> {
    bounded(
        TEST_TIMEOUT,
        estimate_matches_the_run(FileVersionStrategy::Latest, CopyMode::Direct),
    )
    .await
}

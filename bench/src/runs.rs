//! One measured migration per tool: the official client, synmigrate through the local state
//! machine, and synmigrate's in-process runner; each on its own copy of the project, counted in
//! the simulator's request log from a reset log and a fresh throttle block.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context};
use serde_json::json;
use synapse_sim::{RequestRecord, ThrottleConfig};
use synmigrate::config::{FileVersionStrategy, MigrationOptions};
use synmigrate::copy::CopyMode;
use synmigrate::runner::run_migration;
use synmigrate::stages::{InitInput, Services, Summary, Tuning};
use synmigrate::state::memory::MemoryStore;
use synmigrate::state::StatusName;
use synmigrate::synapse::{ClientConfig, SynapseClient, SynapseToken};
use synmigrate_local::LocalDeployment;
use synmigrate_testkit::official_client::{synapse_migrate, SynapseMigrate};

/// The fixtures' migrating user (sample and generated).
pub const TOKEN: &str = "migrator-token";
/// The migrator's external S3 location in both fixtures.
pub const DESTINATION: i64 = 7001;
/// Every row migrates with the same strategy: both tools' default.
pub const STRATEGY: &str = "new";
/// The Distributed Map's (and the in-process runner's) units in flight.
pub const MAX_CONCURRENCY: u32 = 10;
/// synmigrate's default run budget (`maxSynapseRequestsPerMinute`).
pub const SYNMIGRATE_BUDGET: u32 = 540;
/// The server's limit: the official client has no budget of its own.
pub const SERVER_LIMIT: u32 = 600;

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Official,
    StateMachine(CopyMode),
    InProcess(CopyMode),
}

impl Tool {
    pub const ALL: [Tool; 5] = [
        Tool::Official,
        Tool::StateMachine(CopyMode::Synapse),
        Tool::StateMachine(CopyMode::Direct),
        Tool::InProcess(CopyMode::Synapse),
        Tool::InProcess(CopyMode::Direct),
    ];

    /// Names the run's project copy and its execution.
    pub fn tag(self) -> &'static str {
        match self {
            Self::Official => "official",
            Self::StateMachine(CopyMode::Direct) => "sfn-direct",
            Self::StateMachine(_) => "sfn-synapse",
            Self::InProcess(CopyMode::Direct) => "inproc-direct",
            Self::InProcess(_) => "inproc-synapse",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Official => "official client",
            Self::StateMachine(CopyMode::Direct) => "state machine, direct",
            Self::StateMachine(_) => "state machine, synapse",
            Self::InProcess(CopyMode::Direct) => "in-process, direct",
            Self::InProcess(_) => "in-process, synapse",
        }
    }

    pub fn budget(self) -> u32 {
        match self {
            Self::Official => SERVER_LIMIT,
            _ => SYNMIGRATE_BUDGET,
        }
    }
}

/// One run's result; the times are epoch milliseconds, like the request log's.
pub struct Measurement {
    pub tool: Tool,
    pub project: String,
    pub files: usize,
    pub started_ms: u64,
    pub ended_ms: u64,
    pub wall: Duration,
    pub migrated: u64,
    pub failed: u64,
    /// Every Synapse request of the run, 429s included.
    pub requests: Vec<RequestRecord>,
    /// Why the run did not finish cleanly, if it did not.
    pub error: Option<String>,
}

/// Migrated and failed files of a run.
type Outcome = (u64, u64);

/// Runs `tool` on the project copy `project_name` and measures it.
pub async fn measure(
    deployment: &LocalDeployment,
    tool: Tool,
    project_label: &str,
    project_name: &str,
    files: usize,
) -> anyhow::Result<Measurement> {
    let sim = deployment.sim();
    let project_id = sim
        .project_id(project_name)
        .with_context(|| format!("{project_name:?} was not seeded"))?;
    // A fresh 60 s block, as for a run that starts on a quiet account.
    sim.set_throttle(ThrottleConfig::default());
    sim.reset_requests();
    let limit = run_limit(files);
    let started_ms = epoch_ms();
    let clock = Instant::now();
    let name = format!("bench-{}-{}", tool.tag(), started_ms);
    let outcome = match tool {
        Tool::Official => official(deployment, &project_id, &name, limit).await,
        Tool::StateMachine(mode) => {
            state_machine(deployment, &project_id, &name, mode, limit).await
        }
        Tool::InProcess(mode) => in_process(deployment, &project_id, &name, mode).await,
    };
    let wall = clock.elapsed();
    let ended_ms = epoch_ms();
    let (migrated, failed, error) = match outcome {
        Ok((migrated, failed)) => (migrated, failed, None),
        Err(error) => (0, 0, Some(format!("{error:#}"))),
    };
    Ok(Measurement {
        tool,
        project: project_label.to_owned(),
        files,
        started_ms,
        ended_ms,
        wall,
        migrated,
        failed,
        requests: sim.requests(),
        error,
    })
}

/// Ten minutes plus a second a file: far beyond a throttled run at 5 calls a file.
fn run_limit(files: usize) -> Duration {
    Duration::from_secs(600 + files as u64)
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// `synapse migrate` with `--continue_on_error`, counted from its CSV log.
async fn official(
    deployment: &LocalDeployment,
    project_id: &str,
    name: &str,
    limit: Duration,
) -> anyhow::Result<Outcome> {
    let workdir = std::env::temp_dir().join(format!("synmigrate-{name}"));
    std::fs::create_dir_all(&workdir)?;
    std::fs::write(
        workdir.join("synapseConfig"),
        deployment.sim().python_client_config(),
    )?;
    let env = deployment.env_vars();
    let project = project_id.to_owned();
    let dir = workdir.clone();
    let csv = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let csv = dir.join("migration.csv");
        synapse_migrate(&SynapseMigrate {
            workdir: &dir,
            env,
            token: TOKEN,
            project: &project,
            destination: DESTINATION,
            db: &dir.join("index.db"),
            options: &["--continue_on_error", "--file_version_strategy", STRATEGY],
            csv: &csv,
            timeout: limit,
        })?;
        Ok(std::fs::read_to_string(&csv)?)
    })
    .await?;
    let _ = std::fs::remove_dir_all(&workdir);
    Ok(count_csv(&csv?))
}

/// MIGRATED and FAILED file rows of the client's CSV log. The status is the ninth column; the
/// eight before it are ids and numbers, so only the exception (last) can hold a comma.
fn count_csv(csv: &str) -> Outcome {
    let mut outcome = (0, 0);
    for line in csv.lines().skip(1) {
        let fields: Vec<&str> = line.splitn(10, ',').collect();
        if fields.get(1) != Some(&"file") {
            continue;
        }
        match fields.get(8) {
            Some(&"MIGRATED") => outcome.0 += 1,
            Some(&"FAILED") => outcome.1 += 1,
            _ => {}
        }
    }
    outcome
}

fn options(mode: CopyMode) -> MigrationOptions {
    MigrationOptions {
        file_version_strategy: FileVersionStrategy::New,
        copy_mode: mode,
        continue_on_error: true,
        max_concurrency: MAX_CONCURRENCY,
        ..MigrationOptions::default()
    }
}

fn outcome(summary: &Summary) -> Outcome {
    (
        summary.totals.count(StatusName::Migrated),
        summary.totals.count(StatusName::Errored),
    )
}

/// An execution of the local state machine, to its end.
async fn state_machine(
    deployment: &LocalDeployment,
    project_id: &str,
    name: &str,
    mode: CopyMode,
    limit: Duration,
) -> anyhow::Result<Outcome> {
    let input = json!({
        "projectId": project_id,
        "destinationStorageLocationId": DESTINATION,
        "options": {
            "fileVersionStrategy": STRATEGY,
            "copyMode": mode,
            "maxConcurrency": MAX_CONCURRENCY,
            "continueOnError": true
        },
    });
    let arn = deployment.start_execution(name, &input).await?;
    let done = deployment.wait_for_execution(&arn, limit).await?;
    let output = done.output().unwrap_or_default();
    ensure!(
        !output.is_empty(),
        "execution ended {:?}: {:?} {:?}",
        done.status(),
        done.error(),
        done.cause()
    );
    Ok(outcome(&serde_json::from_str(output)?))
}

/// `run_migration` in this process with the functions' Synapse limits (540 a minute, 3 in
/// flight) and an in-memory state store.
async fn in_process(
    deployment: &LocalDeployment,
    project_id: &str,
    name: &str,
    mode: CopyMode,
) -> anyhow::Result<Outcome> {
    let sim = deployment.sim();
    let config = ClientConfig::new(
        sim.repo_endpoint(),
        sim.file_endpoint(),
        SynapseToken::new(TOKEN)?,
    );
    let services = Services::new(
        SynapseClient::new(config)?,
        Arc::new(MemoryStore::new()),
        deployment.s3_client().await,
        deployment.bucket(),
        Tuning::default(),
    );
    let input = InitInput {
        project_id: project_id.to_owned(),
        destination_storage_location_id: Some(DESTINATION),
        execution_name: name.to_owned(),
        options: options(mode),
    };
    Ok(outcome(&run_migration(&services, input).await?))
}

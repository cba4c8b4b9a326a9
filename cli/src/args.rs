//! Command-line syntax. Deployment settings come from flags or, failing those, the environment
//! (`.stack/env` locally, the stack's Outputs on AWS).

use clap::{Args, Parser, Subcommand, ValueEnum};
use synmigrate::config::{env, FileVersionStrategy, MigrationOptions, VerifyLevel};
use synmigrate::copy::CopyMode;

use crate::error::CliError;

/// Environment variable naming the state machine (the stack's `StateMachineArn` output).
pub const STATE_MACHINE_ARN_ENV: &str = env::STATE_MACHINE_ARN;
/// `true` makes S3 requests path-style, as a local endpoint given by IP address needs.
pub const S3_FORCE_PATH_STYLE_ENV: &str = env::S3_FORCE_PATH_STYLE;

const EXIT_CODES: &str = "Exit codes: 0 done without failures; 1 the migration finished with \
failures or its execution failed; 2 usage or configuration error; 3 an AWS request failed.";

/// Migrate every file of a Synapse project into another storage location, server-side.
#[derive(Debug, Parser)]
#[command(name = "synmigrate", version, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    pub deployment: Deployment,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the deployed pipeline lives.
#[derive(Debug, Clone, Default, Args)]
pub struct Deployment {
    /// The migration state machine.
    #[arg(long, global = true, env = STATE_MACHINE_ARN_ENV, value_name = "ARN")]
    pub state_machine_arn: Option<String>,
    /// The DynamoDB state table.
    #[arg(long, global = true, env = env::TABLE, value_name = "NAME")]
    pub table: Option<String>,
    /// The bucket holding manifests and reports.
    #[arg(long, global = true, env = env::BUCKET, value_name = "NAME")]
    pub bucket: Option<String>,
}

impl Deployment {
    pub fn state_machine_arn(&self) -> Result<&str, CliError> {
        required(
            &self.state_machine_arn,
            "state machine",
            "--state-machine-arn",
            STATE_MACHINE_ARN_ENV,
        )
    }

    pub fn table(&self) -> Result<&str, CliError> {
        required(&self.table, "state table", "--table", env::TABLE)
    }

    pub fn bucket(&self) -> Result<&str, CliError> {
        required(&self.bucket, "bucket", "--bucket", env::BUCKET)
    }
}

fn required<'a>(
    value: &'a Option<String>,
    what: &str,
    flag: &str,
    variable: &str,
) -> Result<&'a str, CliError> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            CliError::Usage(format!(
                "no {what} given: pass {flag} or set {variable} (`source .stack/env` locally)"
            ))
        })
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a migration; prints the execution ARN. Starting again in the same time window
    /// returns the execution already started instead of a second one.
    Start(StartArgs),
    /// Follow an execution with a progress bar until it ends, then print its result.
    Watch(WatchArgs),
    /// A run's summary and one row per file version it indexed or changed (--all: the whole
    /// project's); for an execution that recorded no run (a failed Init), why.
    Report(ReportArgs),
    /// The project's lock holder and its runs.
    Status(MigrationArgs),
    /// What copying the files a migration's index holds would take: files, bytes, Synapse calls
    /// by endpoint, hours at the Synapse budget, AWS charges. Reads the state table: run a dry
    /// run (`start --dry-run`) first.
    Estimate(EstimateArgs),
    /// Prove the copy of every migrated file again (S3 only, no Synapse call): one CSV row per
    /// file, then a summary on standard error.
    Verify(VerifyArgs),
}

/// Which migration: a project into one destination storage location, or each file into its
/// folder's upload location.
#[derive(Debug, Clone, Args)]
pub struct MigrationArgs {
    /// The project's Synapse id (syn123).
    #[arg(long, value_name = "SYN_ID")]
    pub project: String,
    /// The destination storage location id; without it every file goes to the storage
    /// location its folder uploads to (its folder's or an ancestor's upload setting).
    #[arg(long, value_name = "ID")]
    pub destination: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Strategy {
    /// Store the copy as a new version of each file (history kept).
    New,
    /// Point every version at its copy.
    All,
    /// Point the latest version at its copy.
    Latest,
}

impl From<Strategy> for FileVersionStrategy {
    fn from(strategy: Strategy) -> Self {
        match strategy {
            Strategy::New => FileVersionStrategy::New,
            Strategy::All => FileVersionStrategy::All,
            Strategy::Latest => FileVersionStrategy::Latest,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Synapse's multipart copy (works for every destination).
    Synapse,
    /// S3 UploadPartCopy straight into an external S3 destination.
    Direct,
    /// Direct where it can work, Synapse elsewhere.
    Auto,
}

impl From<Mode> for CopyMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Synapse => CopyMode::Synapse,
            Mode::Direct => CopyMode::Direct,
            Mode::Auto => CopyMode::Auto,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Level {
    /// The new handle's size and MD5 fields match the source's.
    Metadata,
    /// Also S3's proof without reading: the ETag as MD5, or one full-object checksum on both.
    Checksum,
    /// Read the copy and compare its MD5 with the source's.
    Bytes,
}

impl From<Level> for VerifyLevel {
    fn from(level: Level) -> Self {
        match level {
            Level::Metadata => VerifyLevel::Metadata,
            Level::Checksum => VerifyLevel::Checksum,
            Level::Bytes => VerifyLevel::Bytes,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    #[command(flatten)]
    pub migration: MigrationArgs,
    /// Which file versions to migrate, and how.
    #[arg(long, value_enum, default_value_t = Strategy::New)]
    pub strategy: Strategy,
    /// Which engine copies the bytes.
    #[arg(long, value_enum, default_value_t = Mode::Synapse)]
    pub copy_mode: Mode,
    /// Index and report only; copy nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep going after a file fails.
    #[arg(long)]
    pub continue_on_error: bool,
    /// Work units copied at the same time.
    #[arg(long, value_name = "N")]
    pub max_concurrency: Option<u32>,
    /// Synapse requests per minute of the whole run, every function instance together (1 to 600;
    /// Synapse allows 600 per user). Give each of two runs with the same token a share.
    #[arg(long, value_name = "N")]
    pub max_synapse_rpm: Option<u32>,
    /// Percent of work units that may fail before the run stops copying (0 to 100).
    #[arg(long, value_name = "PERCENT")]
    pub tolerated_failure_percentage: Option<u32>,
    /// Preferred part size in bytes (5 MiB to 5 GiB).
    #[arg(long, value_name = "BYTES")]
    pub part_size: Option<u64>,
    /// How each copy is proven before its entities are updated: the handles' fields
    /// (`metadata`), S3's ETag or checksums (`checksum`), or its bytes read (`bytes`).
    #[arg(long, value_enum, default_value_t = Level::Metadata)]
    pub verify: Level,
    /// Delete each old file handle once every file that used it points at its verified copy
    /// (with --strategy all or latest; Synapse refuses handles still in use or not yours).
    #[arg(long)]
    pub delete_source_file_handles: bool,
    /// Migrate only files in this storage location (repeatable).
    #[arg(long = "source-location", value_name = "ID")]
    pub source_locations: Vec<i64>,
    /// Migrate only this entity instead of the whole project (repeatable, at most 100): a file
    /// (syn123, or syn123.4 for that version alone, with --strategy all or latest) or a folder,
    /// which is walked.
    #[arg(
        long = "entity",
        value_name = "SYN_ID[.VERSION]",
        conflicts_with = "manifest"
    )]
    pub entities: Vec<String>,
    /// The same for a list in a CSV (an `id` column, optionally `version`) or JSON file in the
    /// deployment's bucket.
    #[arg(long, value_name = "s3://BUCKET/KEY")]
    pub manifest: Option<String>,
    /// Also migrate the files tables' FILEHANDLEID cells name, and point the cells at the
    /// copies (each table kept as a snapshot version first).
    #[arg(long)]
    pub include_table_files: bool,
    /// Starts within this many minutes share one execution name, so a repeated start (a retried
    /// script, a double click) does not run twice. 0: a new execution every second.
    #[arg(long, value_name = "MINUTES", default_value_t = 60)]
    pub window: u32,
    /// Use exactly this execution name instead of one derived from the window.
    #[arg(long, value_name = "NAME", conflicts_with = "window")]
    pub execution_name: Option<String>,
}

impl StartArgs {
    /// The options the execution gets, validated.
    pub fn options(&self) -> Result<MigrationOptions, CliError> {
        let defaults = MigrationOptions::default();
        let options = MigrationOptions {
            file_version_strategy: self.strategy.into(),
            source_storage_location_ids: self.source_locations.clone(),
            continue_on_error: self.continue_on_error,
            dry_run: self.dry_run,
            copy_mode: self.copy_mode.into(),
            verify: self.verify.into(),
            delete_source_file_handles: self.delete_source_file_handles,
            entities: self.entities.clone(),
            manifest: self.manifest.clone(),
            include_table_files: self.include_table_files,
            part_size_bytes: self.part_size.unwrap_or(defaults.part_size_bytes),
            max_concurrency: self.max_concurrency.unwrap_or(defaults.max_concurrency),
            max_synapse_requests_per_minute: self
                .max_synapse_rpm
                .unwrap_or(defaults.max_synapse_requests_per_minute),
            tolerated_failure_percentage: self
                .tolerated_failure_percentage
                .unwrap_or(defaults.tolerated_failure_percentage),
            ..defaults
        };
        options
            .validate()
            .map_err(|e| CliError::Usage(e.to_string()))?;
        Ok(options)
    }
}

#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// The execution to follow.
    #[arg(long, value_name = "ARN", conflicts_with_all = ["project", "destination"])]
    pub execution: Option<String>,
    /// Follow the newest execution of this project (with --destination, or without for the
    /// run into each folder's upload location).
    #[arg(long, value_name = "SYN_ID", required_unless_present = "execution")]
    pub project: Option<String>,
    #[arg(long, value_name = "ID")]
    pub destination: Option<i64>,
    /// Seconds between two looks at the execution and its counters.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    pub interval: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A summary and an aligned table for people.
    Table,
    /// The official client's CSV log columns, then `reason`, `renamed_to`, `bytes`, `verified_by`, `source_handle`.
    Csv,
    /// One JSON line: the run, its counts per status and bytes.
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub migration: MigrationArgs,
    /// The run (execution name); the newest run when omitted.
    #[arg(long, value_name = "RUN")]
    pub run: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Rows of the whole project (every run's items); without it, only the items the run
    /// indexed or changed last.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EstimateFormat {
    /// The figures and their assumptions for people.
    Table,
    /// One JSON line: the run whose index and options it used, and the estimate.
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct EstimateArgs {
    #[command(flatten)]
    pub migration: MigrationArgs,
    /// The run whose options (and, for a run of part of a project, whose items) to estimate
    /// with; the newest run when omitted.
    #[arg(long, value_name = "RUN")]
    pub run: Option<String>,
    /// Estimate with this engine instead of the run's.
    #[arg(long, value_enum)]
    pub copy_mode: Option<Mode>,
    /// Estimate at this Synapse budget instead of the run's.
    #[arg(long, value_name = "N")]
    pub max_synapse_rpm: Option<u32>,
    /// Estimate with this many units in flight instead of the run's.
    #[arg(long, value_name = "N")]
    pub max_concurrency: Option<u32>,
    /// Estimate with this part size instead of the run's.
    #[arg(long, value_name = "BYTES")]
    pub part_size: Option<u64>,
    #[arg(long, value_enum, default_value_t = EstimateFormat::Table)]
    pub format: EstimateFormat,
}

impl EstimateArgs {
    /// The run's options with the flags' changes, validated.
    pub fn options(&self, mut options: MigrationOptions) -> Result<MigrationOptions, CliError> {
        if let Some(mode) = self.copy_mode {
            options.copy_mode = mode.into();
        }
        options.max_synapse_requests_per_minute = self
            .max_synapse_rpm
            .unwrap_or(options.max_synapse_requests_per_minute);
        options.max_concurrency = self.max_concurrency.unwrap_or(options.max_concurrency);
        options.part_size_bytes = self.part_size.unwrap_or(options.part_size_bytes);
        options
            .validate()
            .map_err(|e| CliError::Usage(e.to_string()))?;
        Ok(options)
    }
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub migration: MigrationArgs,
    /// `checksum` reads no data; `bytes` reads every copy, whatever its size.
    #[arg(long, value_enum, default_value_t = Level::Checksum)]
    pub level: Level,
    /// Copies proven at the same time.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub concurrency: usize,
}

//! `make scale`: for each size (`SCALE_FILES`, default 10,000 and 30,000 files), a fresh local
//! deployment with a generated project of tiny files, and synmigrate's stages run as the real
//! function processes (the local Lambda host), invoked directly in the order the state machine
//! calls them: Init, Index until done, Plan, StartCopy / CopyParts / Complete for a sample of the
//! manifest's units, Report. Per stage it measures the wall time, the function process's peak
//! RSS, the Synapse calls (the simulator's request log) and the DynamoDB and S3 requests (a
//! counting proxy between the functions and moto); then it projects the measured costs per file
//! to 10^6 and 10^7 files and 1 TB and 100 TB, and prints markdown tables. Then Plan and Report
//! alone on state tables of `SCALE_SEEDED_FILES` items (default 100,000), for their memory.
//!
//! The function binaries must be built first (`cargo build --workspace --bins`; `make scale`
//! does).

use std::time::Instant;

use clap::Parser;

mod measure;
mod memory;
mod model;
mod tables;

#[derive(Parser)]
#[command(about = "synmigrate's stages on big generated projects, measured and projected")]
pub struct Args {
    /// Project sizes in files, comma-separated; each gets its own fresh deployment and every
    /// stage.
    #[arg(
        long,
        env = "SCALE_FILES",
        value_delimiter = ',',
        default_value = "10000,30000"
    )]
    files: Vec<usize>,
    /// State-table sizes in items for Plan and Report alone (items cloned from a small
    /// project's, see `measure::run_seeded_size`), comma-separated; 0 for none.
    #[arg(
        long,
        env = "SCALE_SEEDED_FILES",
        value_delimiter = ',',
        default_value = "100000"
    )]
    seeded_files: Vec<usize>,
    /// Measure the release binaries `sam build` deploys, from cargo-lambda's directory
    /// (`target/lambda`, `<binary>/bootstrap`; `make sam-build` makes them) instead of the
    /// workspace's debug build.
    #[arg(long, env = "SCALE_LAMBDA_BUILD")]
    lambda_build: Option<std::path::PathBuf>,
    /// Seed of the generated projects.
    #[arg(long, env = "SCALE_SEED", default_value_t = 11)]
    seed: u64,
    /// Work units of the Plan's manifest copied per size (spread evenly over the manifest).
    #[arg(long, env = "SCALE_SAMPLE_UNITS", default_value_t = 4)]
    sample_units: usize,
    /// The run's Synapse budget (`maxSynapseRequestsPerMinute`).
    #[arg(long, env = "SCALE_BUDGET", default_value_t = synmigrate_bench::runs::SYNMIGRATE_BUDGET)]
    budget: u32,
    /// The Synapse rate of the stages after Init (run option and process limit) on this
    /// machine, with the simulator's throttle off; the projection uses `budget`.
    #[arg(long, env = "SCALE_HARNESS_RPM", default_value_t = 60_000)]
    harness_rpm: u32,
    /// Smallest and largest generated file, bytes (moto holds every object in memory).
    #[arg(long, env = "SCALE_MIN_BYTES", default_value_t = 256)]
    min_bytes: u64,
    #[arg(long, env = "SCALE_MAX_BYTES", default_value_t = 4096)]
    max_bytes: u64,
    /// Assumed S3 server-side copy throughput of one CopyObject / UploadPartCopy request, MiB/s
    /// (not measured here: moto copies in memory).
    #[arg(long, env = "SCALE_COPY_MIBS", default_value_t = 100.0)]
    copy_mib_per_s: f64,
    /// Assumed time of one DynamoDB or S3 request on AWS, ms (Plan's and Report's projected
    /// duration: moto's is not AWS's).
    #[arg(long, env = "SCALE_AWS_REQUEST_MS", default_value_t = 10.0)]
    aws_request_ms: f64,
    /// Also write the measurements to this JSON file (after each size).
    #[arg(long, env = "SCALE_SAVE")]
    save: Option<std::path::PathBuf>,
    /// Print the tables from measurements a run saved, instead of measuring.
    #[arg(long, env = "SCALE_FROM")]
    from: Option<std::path::PathBuf>,
}

impl Args {
    /// What [`Args::lambda_build`] measures, in words.
    fn build(&self) -> String {
        match &self.lambda_build {
            None => measure::DEBUG_BUILD.to_owned(),
            Some(_) => "release build (cargo-lambda's, as deployed)".to_owned(),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(dir) = &args.lambda_build {
        anyhow::ensure!(
            dir.is_dir(),
            "SCALE_LAMBDA_BUILD: {} is not a directory (make sam-build makes target/lambda)",
            dir.display()
        );
    }
    anyhow::ensure!(!args.files.is_empty(), "no size given (SCALE_FILES)");
    anyhow::ensure!(
        args.min_bytes >= 1 && args.max_bytes > args.min_bytes,
        "SCALE_MIN_BYTES must be at least 1 and below SCALE_MAX_BYTES"
    );
    let clock = Instant::now();
    let mut sizes = Vec::new();
    if let Some(path) = &args.from {
        let text = std::fs::read_to_string(path)?;
        sizes = measure::from_json(&serde_json::from_str(&text)?)?;
    } else {
        for &files in &args.files {
            sizes.push(measure::run_size(&args, files).await?);
            if let Some(path) = &args.save {
                std::fs::write(path, measure::to_json(&sizes).to_string())?;
            }
        }
        for &files in args.seeded_files.iter().filter(|&&files| files > 0) {
            sizes.push(measure::run_seeded_size(&args, files).await?);
            if let Some(path) = &args.save {
                std::fs::write(path, measure::to_json(&sizes).to_string())?;
            }
        }
    }
    let model = model::Model::load(&args, &sizes)?;
    tables::print(&args, &sizes, &model, clock.elapsed());
    Ok(())
}

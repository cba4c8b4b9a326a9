//! `make bench`: on one local deployment (moto's Step Functions running the real function binaries,
//! the Synapse simulator with Synapse's throttle on: 600 requests a minute, 3 in flight), migrates
//! the sample project and a generated project of small files with the official client, synmigrate
//! through the state machine (both engines) and synmigrate's in-process runner (both engines), each
//! on its own fresh copy, and prints markdown tables: throughput against the Synapse budget, calls
//! per file by endpoint, and where the wall time goes.
//!
//! The function binaries must be built first (`cargo build --workspace --bins`; `make bench` does).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use synapse_sim::{Fixture, ThrottleConfig};
use synmigrate_local::{LocalDeployment, LocalOptions};
use synmigrate_testkit::workspace_root;

use synmigrate_bench::projects::{Kind, Projects};
use synmigrate_bench::report;
use synmigrate_bench::runs::{self, Tool, MAX_CONCURRENCY, STRATEGY, SYNMIGRATE_BUDGET};

#[derive(Parser)]
#[command(about = "The official client against synmigrate on one throttled Synapse simulator")]
struct Args {
    /// Files of the generated project (0: the sample project only).
    #[arg(long, env = "BENCH_FILES", default_value_t = 2000)]
    files: usize,
    /// Seed of the generated project.
    #[arg(long, env = "BENCH_SEED", default_value_t = 7)]
    seed: u64,
    /// The sample project (default: the repository's `fixtures/sample-project.json`).
    #[arg(long, env = "BENCH_SAMPLE")]
    sample: Option<PathBuf>,
    /// Only these tools, by tag (official, sfn-synapse, sfn-direct, inproc-synapse,
    /// inproc-direct), comma-separated: big projects take minutes per tool.
    #[arg(long, env = "BENCH_TOOLS", value_delimiter = ',')]
    tools: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sample_path = args
        .sample
        .unwrap_or_else(|| workspace_root().join("fixtures/sample-project.json"));
    let sample = Fixture::from_file(&sample_path)
        .with_context(|| format!("reading {}", sample_path.display()))?;
    let mut kinds = vec![Kind::Sample];
    if args.files > 0 {
        kinds.push(Kind::Generated {
            files: args.files,
            seed: args.seed,
        });
    }
    let tools: Vec<Tool> = Tool::ALL
        .into_iter()
        .filter(|t| args.tools.is_empty() || args.tools.iter().any(|a| a == t.tag()))
        .collect();
    anyhow::ensure!(
        !tools.is_empty(),
        "no tool is named {:?}; the tags are {:?}",
        args.tools,
        Tool::ALL.map(Tool::tag)
    );
    let tags: Vec<&str> = tools.iter().map(|t| t.tag()).collect();
    let projects = Projects::build(sample, &kinds, &tags)?;

    let clock = Instant::now();
    let options = LocalOptions {
        throttle: ThrottleConfig::default(),
        // One process per unit in flight, so the Lambda host never caps the Distributed Map.
        max_instances: MAX_CONCURRENCY as usize,
        ..LocalOptions::default()
    };
    let deployment = LocalDeployment::start(&projects.fixture, options).await?;
    eprintln!(
        "deployment up and {} project copies seeded in {:.1} s",
        projects.fixture.projects.len(),
        clock.elapsed().as_secs_f64()
    );

    let mut measured = Vec::new();
    for &kind in &kinds {
        for &tool in &tools {
            let (name, files) = projects.copy(kind, tool.tag())?;
            eprintln!("{} on {name:?} ...", tool.label());
            let m = runs::measure(&deployment, tool, &kind.label(), name, files).await?;
            eprintln!(
                "  {:.1} s, {} migrated, {} failed, {} Synapse calls{}",
                m.wall.as_secs_f64(),
                m.migrated,
                m.failed,
                m.requests.len(),
                m.error
                    .as_deref()
                    .map(|e| format!(", error: {e}"))
                    .unwrap_or_default()
            );
            measured.push(m);
        }
    }
    deployment.shutdown().await;

    println!(
        "Strategy `{STRATEGY}` for every run; simulator throttle 600 requests/min and 3 in flight \
         per caller; synmigrate budget {SYNMIGRATE_BUDGET}/min, maxConcurrency {MAX_CONCURRENCY}.\n"
    );
    println!("{}", report::summary(&measured));
    println!("{}", report::endpoints(&measured));
    println!("Where the wall time goes (synmigrate runs):\n");
    println!("{}", report::breakdown(&measured));
    Ok(())
}

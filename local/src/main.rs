//! `synmigrate-local up [--fixture F | --generate N]`: the whole pipeline on this machine (see the
//! library docs). Prints the settings a CLI needs as `KEY=VALUE` lines, then `SYNAPSE_PROJECT=`,
//! `SYNAPSE_DESTINATION=` and `READY`; writes the same lines to `.stack/env`; serves until
//! SIGINT, SIGTERM or EOF on standard input (the parent went away).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use synapse_sim::{Fixture, ThrottleConfig};
use synmigrate_local::{LocalDeployment, LocalOptions};

#[derive(Parser)]
#[command(version, about = "The synmigrate pipeline on the local stack")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the stack, the functions and the simulator, and serve until stopped.
    Up {
        /// A simulator fixture (JSON); default: the repository's sample project.
        #[arg(long, conflicts_with = "generate")]
        fixture: Option<PathBuf>,
        /// Generate a project of this many files instead.
        #[arg(long)]
        generate: Option<usize>,
        /// Seed of the generated project.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Where to write the settings.
        #[arg(long, default_value = ".stack/env")]
        env_file: PathBuf,
        /// Turn the simulator's Synapse throttle (600 requests/minute, 3 in flight) off.
        #[arg(long)]
        no_throttle: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Command::Up {
        fixture,
        generate,
        seed,
        env_file,
        no_throttle,
    } = Cli::parse().command;
    let fixture = match (fixture, generate) {
        (_, Some(files)) => Fixture::generate(files, seed),
        (Some(path), None) => Fixture::from_file(&path)
            .with_context(|| format!("reading the fixture {}", path.display()))?,
        (None, None) => {
            let path = synmigrate_testkit::workspace_root().join("fixtures/sample-project.json");
            Fixture::from_file(&path)
                .with_context(|| format!("reading the fixture {}", path.display()))?
        }
    };
    let mut options = LocalOptions::default();
    if no_throttle {
        options.throttle = ThrottleConfig::disabled();
    }
    let deployment = LocalDeployment::start(&fixture, options)
        .await
        .context("starting the local deployment")?;
    let mut lines: Vec<String> = deployment
        .env_vars()
        .into_iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    lines.push(format!("SYNAPSE_PROJECT={}", deployment.project_id()));
    if let Some(destination) = deployment.destination_id() {
        lines.push(format!("SYNAPSE_DESTINATION={destination}"));
    }
    if let Some(dir) = env_file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&env_file, lines.join("\n") + "\n")
        .with_context(|| format!("writing {}", env_file.display()))?;
    for line in &lines {
        println!("{line}");
    }
    println!("READY");
    wait_for_stop().await?;
    deployment.shutdown().await;
    Ok(())
}

/// SIGTERM, SIGINT or EOF on stdin.
async fn wait_for_stop() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // A plain thread, not tokio's stdin: the runtime waits for its blocking reads at exit.
    let (closed, stdin_closed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let _ = closed.send(());
    });
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = stdin_closed => {}
    }
    Ok(())
}

//! `synapse-sim`: seed a fixture into the local S3 and serve the Synapse API until stopped.
//! S3 comes from the usual AWS environment (`AWS_ENDPOINT_URL`, credentials, region).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use synapse_sim::{Fixture, SimConfig, Simulator, ThrottleConfig};
use tokio::io::AsyncReadExt;

#[derive(Parser)]
#[command(about = "A local Synapse server for storage-migration tests")]
struct Args {
    /// Fixture JSON to seed (see the crate docs for the format).
    #[arg(long, conflicts_with = "generate")]
    fixture: Option<PathBuf>,
    /// Instead of a fixture, generate a project with this many files.
    #[arg(long)]
    generate: Option<usize>,
    /// Seed for --generate.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the generated fixture here (it holds the tokens of its users).
    #[arg(long, requires = "generate")]
    write_fixture: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    port: u16,
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Turn the per-user throttle off.
    #[arg(long)]
    no_throttle: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let fixture = match (&args.fixture, args.generate) {
        (Some(path), _) => Fixture::from_file(path)
            .with_context(|| format!("reading fixture {}", path.display()))?,
        (None, Some(files)) => Fixture::generate(files, args.seed),
        (None, None) => anyhow::bail!("pass --fixture FILE or --generate N"),
    };
    if let Some(path) = &args.write_fixture {
        std::fs::write(path, serde_json::to_string_pretty(&fixture)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let sdk = aws_config::load_from_env().await;
    let mut config = SimConfig::new(sdk);
    if args.no_throttle {
        config.throttle = ThrottleConfig::disabled();
    }
    let sim = Simulator::start_on(config, &fixture, SocketAddr::new(args.bind, args.port))
        .await
        .context("starting the simulator")?;
    println!("SYNAPSE_REPO_ENDPOINT={}", sim.repo_endpoint());
    println!("SYNAPSE_FILE_ENDPOINT={}", sim.file_endpoint());
    println!("SYNAPSE_AUTH_ENDPOINT={}", sim.auth_endpoint());
    for project in &fixture.projects {
        if let Some(id) = sim.project_id(&project.name) {
            println!("SYNAPSE_PROJECT={id} {}", project.name);
        }
    }
    println!("READY");
    wait_for_stop().await?;
    sim.shutdown().await;
    Ok(())
}

/// SIGTERM, SIGINT or EOF on stdin (the parent went away).
async fn wait_for_stop() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stdin_closed = async {
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 256];
        while let Ok(n) = stdin.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = stdin_closed => {}
    }
    Ok(())
}

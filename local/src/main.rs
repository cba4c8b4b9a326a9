//! `synmigrate-local up [--fixture F | --generate N]`: the whole pipeline on this machine (see the
//! library docs). Prints the settings a CLI needs as `KEY=VALUE` lines, then `SYNAPSE_PROJECT=`,
//! `SYNAPSE_DESTINATION=` and `READY`; writes the same lines to `.stack/env`; serves until
//! SIGINT, SIGTERM or EOF on standard input (the parent went away).
//!
//! `synmigrate-local up --synapse-repo-endpoint R --synapse-file-endpoint F` runs the same pipeline
//! against that Synapse instead of the simulator (which is then not started), with the token from
//! `--synapse-token-file` or `SYNAPSE_AUTH_TOKEN`; the token is never printed or written.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use synapse_sim::{Fixture, ThrottleConfig};
use synmigrate::synapse::{TokenSource, TOKEN_ENV_VAR};
use synmigrate_local::{ExternalSynapse, LocalDeployment, LocalOptions};

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
        /// Run against this Synapse instead of the simulator (e.g.
        /// https://repo-staging.prod.sagebase.org/repo/v1); needs --synapse-file-endpoint.
        #[arg(
            long,
            value_name = "URL",
            requires = "synapse_file_endpoint",
            conflicts_with_all = ["fixture", "generate", "no_throttle"]
        )]
        synapse_repo_endpoint: Option<String>,
        /// The file endpoint of that Synapse (e.g. https://repo-staging.prod.sagebase.org/file/v1).
        #[arg(long, value_name = "URL", requires = "synapse_repo_endpoint")]
        synapse_file_endpoint: Option<String>,
        /// A file holding the token the functions use with that Synapse; default: the
        /// SYNAPSE_AUTH_TOKEN environment variable.
        #[arg(long, value_name = "PATH", requires = "synapse_repo_endpoint")]
        synapse_token_file: Option<PathBuf>,
        /// The project to migrate on that Synapse, announced as SYNAPSE_PROJECT.
        #[arg(long, value_name = "SYN_ID", requires = "synapse_repo_endpoint")]
        project: Option<String>,
        /// The destination storage location there, announced as SYNAPSE_DESTINATION.
        #[arg(long, value_name = "ID", requires = "synapse_repo_endpoint")]
        destination: Option<i64>,
        /// Send the functions' and the CLI's S3 calls (artifacts bucket, direct copies) here
        /// instead of the local stack's S3; requests are path-style, signed with the stack's
        /// test credentials.
        #[arg(long, value_name = "URL")]
        s3_endpoint: Option<String>,
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
        synapse_repo_endpoint,
        synapse_file_endpoint,
        synapse_token_file,
        project,
        destination,
        s3_endpoint,
    } = Cli::parse().command;
    let mut options = LocalOptions {
        s3_endpoint,
        ..LocalOptions::default()
    };
    let deployment = match (synapse_repo_endpoint, synapse_file_endpoint) {
        (Some(repo_endpoint), Some(file_endpoint)) => {
            let source = match synapse_token_file {
                Some(path) => TokenSource::File(path),
                None => TokenSource::Env(TOKEN_ENV_VAR.to_owned()),
            };
            // The error names the file or the variable, never the token.
            let token = source.load().context("reading the Synapse token")?;
            let synapse = ExternalSynapse {
                repo_endpoint,
                file_endpoint,
                token,
                project_id: project,
                destination_id: destination,
            };
            LocalDeployment::start_external(synapse, options).await
        }
        _ => {
            let fixture = match (fixture, generate) {
                (_, Some(files)) => Fixture::generate(files, seed),
                (Some(path), None) => Fixture::from_file(&path)
                    .with_context(|| format!("reading the fixture {}", path.display()))?,
                (None, None) => {
                    let path =
                        synmigrate_testkit::workspace_root().join("fixtures/sample-project.json");
                    Fixture::from_file(&path)
                        .with_context(|| format!("reading the fixture {}", path.display()))?
                }
            };
            if no_throttle {
                options.throttle = ThrottleConfig::disabled();
            }
            LocalDeployment::start(&fixture, options).await
        }
    }
    .context("starting the local deployment")?;
    let mut lines: Vec<String> = deployment
        .env_vars()
        .into_iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    if let Some(project) = deployment.project_id() {
        lines.push(format!("SYNAPSE_PROJECT={project}"));
    }
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

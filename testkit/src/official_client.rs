//! The pinned official client's `synapse migrate`, run as a user runs it: shared by the fidelity
//! and differential tests and by the benchmark, so all of them measure the same invocation.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context};

use crate::python;

/// One `synapse migrate` of the pinned official client: the config file `synapseConfig` in
/// `workdir` (pointing at the simulator), a token, `--force`.
pub struct SynapseMigrate<'a> {
    pub workdir: &'a Path,
    pub env: Vec<(String, String)>,
    pub token: &'a str,
    pub project: &'a str,
    pub destination: i64,
    pub db: &'a Path,
    /// More options (`--file_version_strategy new`, `--continue_on_error`, ...).
    pub options: &'a [&'a str],
    pub csv: &'a Path,
    pub timeout: Duration,
}

/// Runs it; fails with the client's output unless it exits 0.
pub fn synapse_migrate(call: &SynapseMigrate) -> anyhow::Result<()> {
    let mut command = Command::new(python()?.with_file_name("synapse"));
    command
        .current_dir(call.workdir)
        .env("HOME", call.workdir)
        .env("SYNAPSE_CACHE", call.workdir.join("cache"))
        .envs(call.env.iter().cloned())
        .arg("-s")
        .arg("-c")
        .arg(call.workdir.join("synapseConfig"))
        .args(["-p", call.token, "migrate", call.project])
        .arg(call.destination.to_string())
        .arg(call.db)
        .arg("--force")
        .args(call.options)
        .arg("--csv_log_path")
        .arg(call.csv);
    let output = run_with_timeout(command, call.timeout)?;
    ensure!(
        output.status.success(),
        "synapse migrate failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

fn run_with_timeout(mut command: Command, limit: Duration) -> anyhow::Result<Output> {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the synapse CLI from .venv")?;
    let id = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(limit) {
        Ok(output) => Ok(output?),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
            bail!("synapse migrate did not finish within {limit:?}")
        }
    }
}

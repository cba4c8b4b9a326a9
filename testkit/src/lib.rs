//! Test helpers shared by the workspace's integration tests.
//!
//! [`AwsStack`] starts the local AWS stack (`scripts/stack.py`: moto with Step Functions execution and
//! Lambda forwarding) on a free loopback port and stops it when dropped. Every test gets its own
//! instance, so tests run in parallel and never share state. The launcher also exits when its standard
//! input closes, so a test process that dies does not leave a server behind.
//!
//! [`S3FaultProxy`] stands between the functions and the local S3, injecting seeded S3 faults.
//! [`AwsCountingProxy`] stands between the functions and the whole stack, counting their requests.
//!
//! [`official_client`] runs the pinned official client's `synapse migrate` (the system tests and
//! the benchmark).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use aws_config::{BehaviorVersion, Region, SdkConfig};

mod aws_counter;
mod lambda_host;
mod loopback_proxy;
pub mod official_client;
mod s3_faults;
pub use aws_counter::{AwsCountingProxy, AwsCounts};
pub use lambda_host::{FunctionSpec, LambdaHost};
pub use s3_faults::{FaultRates, S3FaultConfig, S3FaultCounts, S3FaultProxy};

/// Region of the local stack; moto accepts any, the tests and the simulator agree on this one.
pub const REGION: &str = "us-east-1";
const ACCESS_KEY_ID: &str = "testing";
const SECRET_ACCESS_KEY: &str = "testing";
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// An HTTP client for the tests' loopback servers. reqwest is built without a TLS provider of its
/// own (the workspace keeps ring out), so the process's default, aws-lc-rs, is installed first.
pub fn http_client() -> reqwest::Client {
    http_client_builder()
        .build()
        .expect("an HTTP client with the default TLS settings builds")
}

/// [`http_client`]'s builder, for clients that need more settings.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    // Err only when a provider is installed already, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
}

/// The bytes of an S3 object; the error names the object.
pub async fn object_bytes(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> anyhow::Result<Vec<u8>> {
    let object = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .with_context(|| format!("reading s3://{bucket}/{key}"))?;
    Ok(object.body.collect().await?.into_bytes().to_vec())
}

/// The workspace root (the folder holding `scripts/` and `.venv/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives one level below the workspace root")
        .to_path_buf()
}

/// A binary of this workspace's target directory (`CARGO_TARGET_DIR` or `target/`, debug profile),
/// where `cargo build --workspace --bins` leaves it.
pub fn workspace_binary(name: &str) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("debug")
        .join(name)
}

/// The project's Python, from `SYNMIGRATE_PYTHON` or the virtual environment `scripts/venv.sh` makes.
pub fn python() -> anyhow::Result<PathBuf> {
    if let Some(explicit) = std::env::var_os("SYNMIGRATE_PYTHON") {
        return Ok(PathBuf::from(explicit));
    }
    let venv = workspace_root().join(".venv/bin/python");
    if venv.exists() {
        Ok(venv)
    } else {
        bail!(
            "no Python environment at .venv: run `scripts/venv.sh` (or `make test`, which runs it) first"
        )
    }
}

/// Options for [`AwsStack::start_with`].
#[derive(Debug, Default, Clone)]
pub struct StackOptions {
    /// Where Lambda invocations go (a `cargo lambda watch` invoke address); `None` makes every
    /// Lambda Task fail with `Local.NoFunctionRuntime`.
    pub lambda_invoke_url: Option<String>,
}

/// A running local AWS stack, stopped on drop.
#[derive(Debug)]
pub struct AwsStack {
    endpoint_url: String,
    child: Child,
    // Held open: the launcher exits when it closes.
    _stdin: ChildStdin,
}

impl AwsStack {
    /// Starts a stack with default options.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(StackOptions::default())
    }

    /// Starts a stack and waits until it serves requests.
    pub fn start_with(options: StackOptions) -> anyhow::Result<Self> {
        let mut command = Command::new(python()?);
        command
            .arg(workspace_root().join("scripts/stack.py"))
            .args(["--host", "127.0.0.1", "--port", "0", "--stop-on-stdin-eof"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(url) = &options.lambda_invoke_url {
            command.args(["--lambda-invoke-url", url]);
        }
        let mut child = command.spawn().context("starting scripts/stack.py")?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        match read_announcement(stdout) {
            Ok(endpoint_url) => Ok(Self {
                endpoint_url,
                child,
                _stdin: stdin,
            }),
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(error)
            }
        }
    }

    /// `http://127.0.0.1:PORT` of the moto server.
    pub fn endpoint_url(&self) -> &str {
        &self.endpoint_url
    }

    /// The SDK configuration a deployed function would load, pointed at this stack: the same
    /// `aws_config::defaults` loader, with the endpoint the `AWS_ENDPOINT_URL` variable would give.
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(&self.endpoint_url)
            .credentials_provider(aws_credential_types::Credentials::new(
                ACCESS_KEY_ID,
                SECRET_ACCESS_KEY,
                None,
                None,
                "synmigrate-testkit",
            ))
            .load()
            .await
    }

    /// An S3 client for this stack (path-style addressing: the endpoint is an IP address).
    pub async fn s3_client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::config::Builder::from(&self.sdk_config().await)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// The environment a child process (a CLI, the simulator binary, the Python client) needs to
    /// reach this stack.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint_url.as_str()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
    }
}

impl Drop for AwsStack {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the launcher's `KEY=value` lines up to `READY` and returns the endpoint it announced.
fn read_announcement(stdout: std::process::ChildStdout) -> anyhow::Result<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut endpoint = None;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(url) = line.strip_prefix("AWS_ENDPOINT_URL=") {
                endpoint = Some(url.to_owned());
            }
            if line == "READY" {
                let _ = sender.send(endpoint.take());
                return;
            }
        }
        let _ = sender.send(None);
    });
    match receiver.recv_timeout(START_TIMEOUT) {
        Ok(Some(url)) => Ok(url),
        Ok(None) => Err(anyhow!(
            "scripts/stack.py exited before it was ready (its error output is above)"
        )),
        Err(_) => Err(anyhow!(
            "scripts/stack.py was not ready within {START_TIMEOUT:?}"
        )),
    }
}

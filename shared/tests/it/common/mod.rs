//! Shared by the integration tests that run against the simulator and moto: starting both, a
//! client configuration with fast retries, a time bound per test, and reading objects back.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use synapse_model::FileHandle;
use synapse_sim::{Fixture, RunningSim, SimConfig, Simulator, ThrottleConfig};
use synmigrate::synapse::{ClientConfig, RetryPolicy, SynapseToken};
use synmigrate_testkit::{object_bytes, AwsStack};

/// A local AWS stack (started off the async runtime: it blocks while moto starts) and a simulator
/// over it seeded with `fixture`. The caller keeps the stack alive as long as the simulator.
pub async fn start_sim(
    fixture: &Fixture,
    throttle: ThrottleConfig,
) -> anyhow::Result<(AwsStack, RunningSim)> {
    let stack = tokio::task::spawn_blocking(AwsStack::start).await??;
    let mut config = SimConfig::new(stack.sdk_config().await);
    config.throttle = throttle;
    let sim = Simulator::start(config, fixture).await?;
    Ok((stack, sim))
}

/// A simulator with an S3 client for the stack under it; both stop when this is dropped.
pub struct SimEnv {
    pub sim: RunningSim,
    pub s3: aws_sdk_s3::Client,
    _stack: AwsStack,
}

impl SimEnv {
    pub async fn seeded(fixture: &Fixture, throttle: ThrottleConfig) -> anyhow::Result<Self> {
        let (stack, sim) = start_sim(fixture, throttle).await?;
        let s3 = stack.s3_client().await;
        Ok(Self {
            sim,
            s3,
            _stack: stack,
        })
    }
}

/// A client configuration for `token` against `sim`. Retries start at 20 ms: the tests check the
/// policy, not the delays, and stay short.
pub fn client_config(
    sim: &RunningSim,
    token: &str,
    max_attempts: u32,
    max_delay: Duration,
) -> ClientConfig {
    let mut config = ClientConfig::new(
        sim.repo_endpoint(),
        sim.file_endpoint(),
        SynapseToken::new(token).unwrap(),
    );
    config.retry = RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(20),
        max_delay,
    };
    config.request_timeout = Duration::from_secs(30);
    config
}

/// Runs a test body under `limit`, so that a hang fails instead of blocking the run.
pub async fn bounded<F: Future<Output = anyhow::Result<()>>>(
    limit: Duration,
    test: F,
) -> anyhow::Result<()> {
    tokio::time::timeout(limit, test)
        .await
        .context("the test timed out")?
}

/// The bytes of the S3 object behind `handle`.
pub async fn handle_bytes(s3: &aws_sdk_s3::Client, handle: &FileHandle) -> anyhow::Result<Vec<u8>> {
    let bucket = handle.bucket_name.as_deref().context("no bucket")?;
    let key = handle.key.as_deref().context("no key")?;
    object_bytes(s3, bucket, key).await
}

/// A test's fixture from its JSON (the format is in the simulator's module docs).
pub fn fixture_from(json: serde_json::Value) -> Fixture {
    Fixture::from_json(&json.to_string()).expect("the test fixture parses")
}

/// `count` one-version text files `f000.txt`, `f001.txt`, … holding `"{text} {i}"`: the children
/// of a folder large enough to need more than one page of children.
pub fn numbered_files(count: usize, text: &str) -> Vec<serde_json::Value> {
    (0..count)
        .map(|i| {
            serde_json::json!({"type": "file", "name": format!("f{i:03}.txt"),
                               "versions": [{"content": {"text": format!("{text} {i}")}}]})
        })
        .collect()
}

//! Simulator settings: where S3 is, how strict the throttle is, which faults to inject.

use std::collections::BTreeMap;
use std::time::Duration;

/// Everything `Simulator::start` needs besides the fixture.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The local S3 (moto) the simulator stores bytes in; its endpoint is also the host of presigned URLs.
    pub sdk_config: aws_config::SdkConfig,
    /// Region of Synapse's own storage and the default region of external locations.
    pub region: String,
    pub throttle: ThrottleConfig,
    /// `X-Amz-Expires` of presigned part URLs (Synapse: 15 minutes).
    pub presign_expiry: Duration,
    /// Keys the simulator signs presigned URLs with (dummy ones: moto accepts any).
    pub presign_access_key: String,
    pub presign_secret_key: String,
    pub faults: FaultConfig,
}

impl SimConfig {
    /// Synapse-like defaults: throttle on (600/min, 3 in flight), 900 s URLs, no faults.
    pub fn new(sdk_config: aws_config::SdkConfig) -> Self {
        let region = sdk_config
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".to_owned());
        Self {
            sdk_config,
            region,
            throttle: ThrottleConfig::default(),
            presign_expiry: Duration::from_secs(900),
            presign_access_key: "synapse-sim".to_owned(),
            presign_secret_key: "synapse-sim-secret".to_owned(),
            faults: FaultConfig::default(),
        }
    }
}

/// The server's per-caller limits: requests per fixed 60 s block and concurrent requests.
#[derive(Clone, Debug, PartialEq)]
pub struct ThrottleConfig {
    pub enabled: bool,
    pub per_minute: usize,
    pub in_flight: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            per_minute: 600,
            in_flight: 3,
        }
    }
}

impl ThrottleConfig {
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }
}

/// Deterministic fault injection: the same seed and the same request sequence give the same faults.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultConfig {
    pub seed: u64,
    /// Probability (0..=1) of a 503 per route template (`POST /file/multipart`); key `*` applies to all.
    pub error_rates: BTreeMap<String, f64>,
    /// Delay added before every API request is handled.
    pub latency: Duration,
    /// Of every `every` API requests, the last `length` answer 429.
    pub burst_429: Option<Burst>,
    /// Probability that a presigned URL is signed with `early_expiry` instead of the configured expiry.
    pub early_expiry_rate: f64,
    pub early_expiry: Duration,
    /// Polls of each asynchronous table job answered 202 with its status (`PROCESSING`) before
    /// its result, as the server answers while a worker still runs the job
    /// (`AsynchronousJobServicesImpl`: `NotReadyException`). 0: every job is done when started.
    pub running_job_polls: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Burst {
    pub every: u64,
    pub length: u64,
}

impl FaultConfig {
    /// Whether any fault can fire; lets the hot path skip the RNG entirely.
    pub(crate) fn any(&self) -> bool {
        !self.error_rates.is_empty()
            || !self.latency.is_zero()
            || self.burst_429.is_some()
            || self.early_expiry_rate > 0.0
    }
}

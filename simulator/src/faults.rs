//! Seeded fault injection: injected errors, throttling bursts, latency and early-expiring
//! presigned URLs, reproducible from the seed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::FaultConfig;
use crate::error::ApiError;
use crate::util::lock;

/// Seeded fault injection. Each route has its own RNG stream, so one endpoint's decisions do not
/// depend on how requests to other endpoints interleave.
pub struct Faults {
    state: Mutex<FaultState>,
}

struct FaultState {
    config: FaultConfig,
    rngs: HashMap<String, ChaCha8Rng>,
    counter: u64,
}

impl FaultState {
    fn rng(&mut self, stream: &str) -> &mut ChaCha8Rng {
        let seed = self.config.seed;
        self.rngs
            .entry(stream.to_owned())
            .or_insert_with(|| ChaCha8Rng::seed_from_u64(seed ^ fnv1a(stream)))
    }
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Faults {
    pub fn new(config: FaultConfig) -> Self {
        Self {
            state: Mutex::new(FaultState {
                config,
                rngs: HashMap::new(),
                counter: 0,
            }),
        }
    }

    /// Replaces the configuration and restarts every random stream.
    pub fn set_config(&self, config: FaultConfig) {
        *lock(&self.state) = FaultState {
            config,
            rngs: HashMap::new(),
            counter: 0,
        };
    }

    /// How many polls a new asynchronous job answers as still running
    /// ([`FaultConfig::running_job_polls`]).
    pub(crate) fn running_job_polls(&self) -> u32 {
        lock(&self.state).config.running_job_polls
    }

    /// Latency to add, then an injected error if one fires for this request.
    pub(crate) fn roll(&self, endpoint: &str) -> (Duration, Option<ApiError>) {
        let mut state = lock(&self.state);
        if !state.config.any() {
            return (Duration::ZERO, None);
        }
        let latency = state.config.latency;
        let n = state.counter;
        state.counter += 1;
        if let Some(burst) = state.config.burst_429 {
            if burst.every > 0 && n % burst.every >= burst.every - burst.length.min(burst.every) {
                return (
                    latency,
                    Some(ApiError::Throttled("Injected throttling burst".into())),
                );
            }
        }
        let rate = state
            .config
            .error_rates
            .get(endpoint)
            .or_else(|| state.config.error_rates.get("*"))
            .copied()
            .unwrap_or(0.0);
        if rate > 0.0 && state.rng(endpoint).gen_bool(rate.clamp(0.0, 1.0)) {
            return (
                latency,
                Some(ApiError::Unavailable("Injected server error".into())),
            );
        }
        (latency, None)
    }

    /// The expiry for the next presigned URL: sometimes much shorter than `normal`.
    pub fn presign_expiry(&self, normal: Duration) -> Duration {
        let mut state = lock(&self.state);
        let rate = state.config.early_expiry_rate;
        let early = state.config.early_expiry.max(Duration::from_secs(1));
        if rate > 0.0 && state.rng("presign").gen_bool(rate.clamp(0.0, 1.0)) {
            early
        } else {
            normal
        }
    }
}

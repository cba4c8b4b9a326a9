//! Synapse's per-caller throttle: requests per fixed time block and requests in flight.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::ThrottleConfig;
use crate::util::lock;

const WINDOW: Duration = Duration::from_secs(60);

/// One caller's counters: requests admitted in the current time block and requests in flight.
#[derive(Default)]
struct Window {
    block_start: Option<Instant>,
    admitted: usize,
    in_flight: usize,
}

/// Synapse's per-caller limits (`UserConcurrentConnectionThrottler`,
/// `UserRequestFrequencyThrottler` with `MemoryTimeBlockCountingSemaphoreImpl`): at most
/// `in_flight` concurrent requests, and at most `per_minute` requests in a fixed 60 s block that
/// starts with the block's first request (a refused request is not counted). The caller is
/// `userId|sessionId|ip` (`HttpRequestIdentifier.getUserMachineIdentifierString`).
pub struct Throttle {
    config: Mutex<ThrottleConfig>,
    callers: Mutex<HashMap<String, Window>>,
}

/// Holds one in-flight slot until dropped.
pub struct Admission<'a> {
    throttle: &'a Throttle,
    caller: Option<String>,
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if let Some(caller) = &self.caller {
            if let Some(w) = lock(&self.throttle.callers).get_mut(caller) {
                w.in_flight = w.in_flight.saturating_sub(1);
            }
        }
    }
}

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            config: Mutex::new(config),
            callers: Mutex::new(HashMap::new()),
        }
    }

    pub fn set_config(&self, config: ThrottleConfig) {
        *lock(&self.config) = config;
        lock(&self.callers).clear();
    }

    /// An in-flight slot for `caller`, or the reason of the 429.
    pub(crate) fn admit(&self, caller: &str) -> Result<Admission<'_>, String> {
        let config = lock(&self.config).clone();
        if !config.enabled {
            return Ok(Admission {
                throttle: self,
                caller: None,
            });
        }
        let mut callers = lock(&self.callers);
        let window = callers.entry(caller.to_owned()).or_default();
        if window.in_flight >= config.in_flight {
            return Err(format!(
                "Too many concurrent requests. Allowed {} concurrent connections at any time.",
                config.in_flight
            ));
        }
        let now = Instant::now();
        if window
            .block_start
            .is_none_or(|start| now.duration_since(start) >= WINDOW)
        {
            window.block_start = Some(now);
            window.admitted = 0;
        }
        if window.admitted >= config.per_minute {
            return Err(format!(
                "Requests are too frequent. Allowed {} requests every {} seconds.",
                config.per_minute,
                WINDOW.as_secs()
            ));
        }
        window.admitted += 1;
        window.in_flight += 1;
        Ok(Admission {
            throttle: self,
            caller: Some(caller.to_owned()),
        })
    }
}

//! Retries with exponential backoff and full jitter, as the official client does for 429, 5xx and
//! connection errors, but bounded so that a Lambda gives up (and Step Functions retries) in time.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use super::error::SynapseError;

/// How many times to try a call and how long to wait between tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries, the first one included (1 = no retry).
    pub max_attempts: u32,
    /// Ceiling of the first wait; doubled for every further failure.
    pub base_delay: Duration,
    /// No single wait is longer, not even one the server asks for with `Retry-After`.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// What to do after a failed try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try the same request again, waiting at least `retry_after` if the server said so.
    Again { retry_after: Option<Duration> },
    /// Retrying the same request cannot help.
    GiveUp,
}

/// Decides whether the very same request is worth sending again. A rejected presigned URL is not
/// (it needs presigning again, the caller's job); neither are 501/505 or any 4xx but 429.
pub fn classify(err: &SynapseError) -> Retry {
    let again = match err {
        SynapseError::Throttled { .. } | SynapseError::Transport { .. } => true,
        SynapseError::Server { status, .. } => matches!(status, 500 | 502 | 503 | 504),
        SynapseError::S3 { .. } => err.is_retryable(),
        _ => false,
    };
    if again {
        Retry::Again {
            retry_after: err.retry_after(),
        }
    } else {
        Retry::GiveUp
    }
}

/// Wait before the next try after `failures` failed tries (1 for the first failure).
/// Full jitter: a uniform pick in `[0, min(max_delay, base * 2^(failures-1))]`, with `jitter` in
/// `[0, 1]` the random fraction; never shorter than `retry_after`, never longer than `max_delay`.
pub fn backoff(
    policy: &RetryPolicy,
    failures: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let exponent = failures.saturating_sub(1).min(31);
    let ceiling = policy
        .base_delay
        .saturating_mul(1u32 << exponent)
        .min(policy.max_delay);
    let jittered = ceiling.mul_f64(jitter.clamp(0.0, 1.0));
    jittered
        .max(retry_after.unwrap_or_default())
        .min(policy.max_delay)
}

/// Runs `attempt` until it succeeds, fails for good, or the policy's tries are used up; returns
/// the last error then. `attempt` gets the 1-based try number.
pub async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    mut attempt: F,
) -> Result<T, SynapseError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, SynapseError>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        let err = match attempt(tries).await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        let retry_after = match classify(&err) {
            Retry::Again { retry_after } if tries < policy.max_attempts => retry_after,
            _ => return Err(err),
        };
        let wait = backoff(policy, tries, retry_after, rand::thread_rng().gen());
        tracing::warn!(
            call = what,
            attempt = tries,
            error_type = err.error_type(),
            error = %err,
            wait_ms = wait.as_millis() as u64,
            "retrying Synapse call"
        );
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
        }
    }

    #[test]
    fn classify_retries_throttling_5xx_and_transport_only() {
        let again = |err: SynapseError| classify(&err) != Retry::GiveUp;
        for status in [429, 500, 502, 503, 504] {
            assert!(again(SynapseError::from_status(
                status,
                String::new(),
                None
            )));
        }
        for status in [400, 401, 403, 404, 412, 501, 505] {
            assert!(!again(SynapseError::from_status(
                status,
                String::new(),
                None
            )));
        }
        assert!(again(SynapseError::Transport {
            endpoint: "repo".into(),
            message: "connection reset".into()
        }));
        assert!(!again(SynapseError::PresignedUrlRejected {
            code: "AccessDenied".into(),
            message: String::new()
        }));
        assert!(again(SynapseError::S3 {
            status: 503,
            code: "SlowDown".into(),
            message: String::new()
        }));
        assert!(!again(SynapseError::S3 {
            status: 412,
            code: "PreconditionFailed".into(),
            message: String::new()
        }));
        assert_eq!(
            classify(&SynapseError::from_status(
                429,
                String::new(),
                Some(Duration::from_secs(3))
            )),
            Retry::Again {
                retry_after: Some(Duration::from_secs(3))
            }
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_full_jitter() {
        let p = policy();
        assert_eq!(backoff(&p, 1, None, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(&p, 2, None, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(&p, 3, None, 1.0), Duration::from_secs(4));
        assert_eq!(backoff(&p, 4, None, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(&p, 5, None, 1.0), Duration::from_secs(10));
        assert_eq!(backoff(&p, 500, None, 1.0), Duration::from_secs(10));
        assert_eq!(backoff(&p, 3, None, 0.0), Duration::ZERO);
        assert_eq!(backoff(&p, 3, None, 0.5), Duration::from_secs(2));
    }

    #[test]
    fn backoff_honours_retry_after_within_the_cap() {
        let p = policy();
        let after = |s| Some(Duration::from_secs(s));
        assert_eq!(backoff(&p, 1, after(5), 0.0), Duration::from_secs(5));
        assert_eq!(backoff(&p, 4, after(5), 1.0), Duration::from_secs(8));
        assert_eq!(backoff(&p, 1, after(120), 0.3), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn with_retries_stops_after_max_attempts() {
        let calls = AtomicU32::new(0);
        let err = with_retries(&policy(), "test", |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(SynapseError::from_status(503, "down".into(), None)) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(err.error_type(), "Retryable.Transient");
    }

    #[tokio::test(start_paused = true)]
    async fn with_retries_returns_the_first_success_and_never_retries_fatal_errors() {
        let value = with_retries(&policy(), "test", |n| async move {
            if n < 3 {
                Err(SynapseError::from_status(429, "slow".into(), None))
            } else {
                Ok(n)
            }
        })
        .await
        .unwrap();
        assert_eq!(value, 3);

        let calls = AtomicU32::new(0);
        let err = with_retries(&policy(), "test", |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(SynapseError::from_status(404, "gone".into(), None)) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(err.error_type(), "Fatal.NotFound");
    }

    #[tokio::test(start_paused = true)]
    async fn with_retries_waits_at_least_retry_after() {
        let start = tokio::time::Instant::now();
        with_retries(&policy(), "test", |n| async move {
            if n == 1 {
                Err(SynapseError::from_status(
                    429,
                    String::new(),
                    Some(Duration::from_secs(7)),
                ))
            } else {
                Ok(())
            }
        })
        .await
        .unwrap();
        assert!(start.elapsed() >= Duration::from_secs(7));
        assert!(start.elapsed() < Duration::from_secs(8));
    }
}

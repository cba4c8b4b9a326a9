//! The seam between the client and a request budget shared beyond this process: the client asks
//! it before every Synapse request and tells it about every 429. The fleet-wide implementation
//! lives beside the state store (the crate's budget module); without one, the process limiter
//! alone applies.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

/// A budget of Synapse requests shared with other processes.
#[async_trait]
pub trait RequestBudget: Send + Sync + fmt::Debug {
    /// Waits until one more request may go out.
    async fn admit(&self);

    /// Synapse answered 429: everyone sharing the budget waits and slows down.
    async fn throttled(&self, throttling: Throttling);
}

/// What a 429 was about. Synapse has two throttles with their own texts: requests per time block
/// (`UserRequestFrequencyThrottler`) and requests in flight (`UserConcurrentConnectionThrottler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttling {
    /// Too many requests in the caller's time block (with the server's `Retry-After`, if any).
    Rate { retry_after: Option<Duration> },
    /// More requests in flight than the caller may have: the block's budget is not spent, the
    /// requests only overlapped.
    InFlight,
}

impl Throttling {
    /// Tells the two apart by the server's reason ("Too many concurrent requests. Allowed 3
    /// concurrent connections at any time.").
    pub fn of(reason: &str, retry_after: Option<Duration>) -> Self {
        if reason.contains("concurrent") {
            Self::InFlight
        } else {
            Self::Rate { retry_after }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_reason_names_the_throttle() {
        let in_flight =
            "Too many concurrent requests. Allowed 3 concurrent connections at any time.";
        assert_eq!(Throttling::of(in_flight, None), Throttling::InFlight);
        let after = Some(Duration::from_secs(2));
        assert_eq!(
            Throttling::of("Too many requests", after),
            Throttling::Rate { retry_after: after }
        );
    }
}

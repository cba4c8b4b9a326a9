//! Process-wide limits on Synapse calls: requests per minute and requests in flight. Synapse
//! throttles per (user, session, IP) at 600/min and 3 concurrent; every task of a process shares
//! one `Arc<RateLimiter>` so that together they stay under what the server allows.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Token bucket in its "virtual scheduling" form (GCRA): each caller reserves the next free
/// slot under a short lock, then sleeps outside it, so waiters are served in arrival order.
#[derive(Debug)]
pub struct RateLimiter {
    /// Time between two requests at the steady rate.
    interval: Duration,
    /// How far ahead of the steady schedule a burst may run.
    burst_allowance: Duration,
    /// Theoretical arrival time of the next request.
    next: Mutex<Option<Instant>>,
    in_flight: Arc<Semaphore>,
}

/// Held for the whole duration of one request; dropping it frees an in-flight slot.
#[derive(Debug)]
pub struct RequestPermit {
    _slot: OwnedSemaphorePermit,
}

impl RateLimiter {
    /// `requests_per_minute` and `max_in_flight` are clamped to at least 1; `burst` is how many
    /// requests may go out back to back after an idle period (at least 1).
    pub fn new(requests_per_minute: u32, burst: u32, max_in_flight: usize) -> Self {
        let interval = Duration::from_secs(60) / requests_per_minute.max(1);
        Self {
            interval,
            burst_allowance: interval * (burst.max(1) - 1),
            next: Mutex::new(None),
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
        }
    }

    /// Waits for an in-flight slot, then for the request's turn under the rate.
    pub async fn acquire(&self) -> RequestPermit {
        let slot = Arc::clone(&self.in_flight)
            .acquire_owned()
            .await
            .expect("the limiter never closes its semaphore");
        let start_at = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let tat = next.map_or(now, |t| t.max(now));
            *next = Some(tat + self.interval);
            tat.checked_sub(self.burst_allowance)
                .map_or(now, |t| t.max(now))
        };
        tokio::time::sleep_until(start_at).await;
        RequestPermit { _slot: slot }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run_requests(limiter: Arc<RateLimiter>, n: usize, hold: Duration) -> Duration {
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            let limiter = Arc::clone(&limiter);
            tasks.spawn(async move {
                let _permit = limiter.acquire().await;
                tokio::time::sleep(hold).await;
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn rate_spaces_requests_after_the_burst() {
        // 60/min = one per second; a burst of 5 goes at once, the other 5 one second apart.
        let limiter = Arc::new(RateLimiter::new(60, 5, 100));
        let elapsed = run_requests(limiter, 10, Duration::ZERO).await;
        assert_eq!(elapsed, Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn burst_of_one_is_a_steady_rate() {
        let limiter = Arc::new(RateLimiter::new(120, 1, 100));
        let elapsed = run_requests(limiter, 7, Duration::ZERO).await;
        assert_eq!(elapsed, Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_limit_serialises_slow_requests() {
        // A high rate, but only 2 at a time and each takes 10 s: 6 requests need 30 s.
        let limiter = Arc::new(RateLimiter::new(6000, 100, 2));
        let elapsed = run_requests(limiter, 6, Duration::from_secs(10)).await;
        assert_eq!(elapsed, Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_limiter_refills_its_burst() {
        let limiter = Arc::new(RateLimiter::new(60, 3, 100));
        assert_eq!(
            run_requests(Arc::clone(&limiter), 3, Duration::ZERO).await,
            Duration::ZERO
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            run_requests(limiter, 4, Duration::ZERO).await,
            Duration::from_secs(1)
        );
    }
}

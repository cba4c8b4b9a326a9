//! The seam between the client and a request budget shared beyond this process: the client asks
//! it before every Synapse request and tells it about every 429. The fleet-wide implementation
//! lives in `crate::budget`; without one, the process limiter alone applies.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

/// A budget of Synapse requests shared with other processes.
#[async_trait]
pub trait RequestBudget: Send + Sync + fmt::Debug {
    /// Waits until one more request may go out.
    async fn admit(&self);

    /// Synapse answered 429 (with its `Retry-After`, if any): everyone sharing the budget waits
    /// and slows down.
    async fn throttled(&self, retry_after: Option<Duration>);
}

//! The Synapse side of the migration: a typed REST client for the calls a migration makes, the
//! process-wide rate limiter and the seam to a fleet-wide budget, retries, the token, and the presigned S3 part copy.

mod budget;
mod client;
mod error;
mod limiter;
mod presigned;
mod retry;
mod token;

pub use budget::{RequestBudget, Throttling};
pub use client::{
    check_endpoint, ClientConfig, RequestCounts, SynapseClient, PROD_FILE_ENDPOINT,
    PROD_REPO_ENDPOINT,
};
pub use error::SynapseError;
pub use limiter::{RateLimiter, RequestPermit};
pub use retry::RetryPolicy;
pub use token::{SynapseToken, TokenSource, TOKEN_ENV_VAR};

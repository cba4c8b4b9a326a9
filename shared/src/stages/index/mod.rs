//! Stage 2, Index: walks the project for one time budget ([`walk`]), repeated until `done`.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::init::renew_lock;
use crate::context::{RunContext, Services};
use crate::Result;

mod classify;
mod files;
mod locations;
mod tables;
pub mod walk;

pub use classify::classify;
pub use walk::IndexCounts;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexInput {
    pub run: RunContext,
    /// Overrides the configured time budget of this invocation.
    #[serde(default)]
    pub time_budget_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexOutput {
    pub done: bool,
    pub counts: IndexCounts,
}

/// Walks the project for one time budget; call again until `done`.
pub async fn index(services: &Services, input: IndexInput) -> Result<IndexOutput> {
    input.run.use_budget(services)?;
    renew_lock(services, &input.run).await?;
    let budget = input
        .time_budget_seconds
        .map(Duration::from_secs)
        .unwrap_or(services.tuning.index_time_budget);
    let outcome = walk::walk(services, &input.run, Instant::now() + budget).await?;
    Ok(IndexOutput {
        done: outcome.done,
        counts: outcome.counts,
    })
}

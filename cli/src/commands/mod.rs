//! The commands, one per file: each checks its flags and settings first (a usage error needs no
//! AWS), then talks to Step Functions, DynamoDB and S3 through the default AWS configuration, so
//! `AWS_ENDPOINT_URL` points every client at a local stack. This file is the list and the
//! dispatch; `executions` and `records` are what the commands share of Step Functions and of the
//! state table.

use std::io::Write;

use crate::args::{Command, Deployment};
use crate::error::{CliError, Verdict};

mod estimate;
mod executions;
mod records;
mod report;
mod start;
mod status;
pub mod verify;
mod watch;

pub use executions::execution_input;
/// Where Plan writes a run's manifest (the tests and the watch read it).
pub use synmigrate::context::manifest_key;

/// Runs one command, writing its result to `out` (progress goes to standard error).
pub async fn run(
    deployment: &Deployment,
    command: &Command,
    out: &mut dyn Write,
) -> Result<Verdict, CliError> {
    match command {
        Command::Start(args) => start::start(deployment, args, out).await,
        Command::Watch(args) => watch::watch(deployment, args, out).await,
        Command::Report(args) => report::report(deployment, args, out).await,
        Command::Status(args) => status::status(deployment, args, out).await,
        Command::Estimate(args) => estimate::estimate(deployment, args, out).await,
        Command::Verify(args) => verify::verify(deployment, args, out).await,
    }
}

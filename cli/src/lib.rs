//! The `synmigrate` command line: starts migrations on the deployed state machine and reads
//! their progress and results from the state table, on AWS or (through `AWS_ENDPOINT_URL`) on
//! the local stack. The binary is a thin `main`; everything here is testable.

pub mod args;
mod aws;
pub mod commands;
pub mod error;
pub mod naming;
pub mod outcome;
pub mod render;

pub use args::Cli;
pub use error::{CliError, Verdict};

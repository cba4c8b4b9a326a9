//! Migration core of synmigrate: everything the Lambdas, the CLI and the tests share.

pub mod config;
pub mod copy;
pub mod error;
pub mod index;
pub mod plan;
pub mod report;
pub mod runner;
pub mod stages;
pub mod state;
pub mod synapse;
pub mod update;

pub use error::{Error, Result};

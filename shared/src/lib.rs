//! Migration core of synmigrate: everything the Lambdas, the CLI and the tests share.

pub mod copy;
pub mod error;
pub mod plan;
pub mod state;
pub mod synapse;

pub use error::{Error, Result};

//! The crate's integration tests as one test binary (one link of the AWS SDK instead of one per
//! file): each file is a module, `common` holds what they share.

mod calls_per_file;
mod common;
mod copy_engines;
mod entity_updates;
mod migration;
mod state_store;
mod synapse_client;
mod verify;

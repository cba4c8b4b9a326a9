//! The simulator's integration tests as one test binary (one link instead of one per file): each
//! file is a module, `common` holds what they share.

mod api_basics;
mod binary;
mod common;
mod entity_updates;
mod multipart_copy;
mod permissions;
mod python_client;
mod sample_fixture;
mod tables;
mod throttle_faults_log;

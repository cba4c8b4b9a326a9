//! The CLI's integration tests as one test binary (one link instead of one per file); `common`
//! holds what they share.

mod against_moto;
mod common;
mod format;
mod outcome;

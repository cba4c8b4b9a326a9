//! The whole-system tests as one test binary (one link instead of one per file): the end-to-end
//! runs, the crash matrix, the fault storm and the clean-up of source handles (sharing `common`), and the official client against
//! the simulator with its `differential` submodule.

mod aligned;
mod common;
mod crash_matrix;
mod end_to_end;
mod fault_storm;
mod manifest;
mod observability;
mod official_client;
mod source_cleanup;
mod tables;
mod template_rules;

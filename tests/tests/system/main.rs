//! The whole-system tests as one test binary (one link instead of one per file): the end-to-end
//! runs, the crash matrix and the fault storm (sharing `common`), and the official client against
//! the simulator with its `differential` submodule.

mod common;
mod crash_matrix;
mod end_to_end;
mod fault_storm;
mod official_client;

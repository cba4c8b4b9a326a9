//! The testkit's integration tests as one test binary (one link instead of one per file).

mod lambda_host;
mod local_stack;

//! The local deployment's integration tests as one test binary (one link instead of one per file).

mod definition;
mod events;
mod up;

//! The benchmarks' shared code: `make bench` (`src/main.rs`) and `make scale` (`src/scale/`) both
//! build their projects and name their runs with these modules.

pub mod projects;
pub mod report;
pub mod runs;

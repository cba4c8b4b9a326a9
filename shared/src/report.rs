//! Old path of the CSV rows and item totals, now [`crate::stages::report::csv`].

pub use crate::stages::report::csv::*;

//! Old path of the Index stage's tree walk, now [`crate::stages::index::walk`].

pub use crate::stages::index::walk::*;

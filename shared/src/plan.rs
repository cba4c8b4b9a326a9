//! Old path of the part arithmetic ([`crate::copy::parts`]) and the unit grouping
//! ([`crate::stages::plan::units`]).

pub use crate::copy::parts::*;
pub use crate::stages::plan::units::*;

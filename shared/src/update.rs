//! Old path of the entity update, now [`crate::stages::complete::update`].

pub use crate::stages::complete::update::*;

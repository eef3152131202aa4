//! tmp
mod check;
mod model;
mod types;

pub use check::{check, CheckReport, PropertyOutcome, PropertyResult};
pub use model::LeaseModel;
pub use types::*;

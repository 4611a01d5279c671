//! Training and evaluation metrics: definitions, the metrics log, and numbers that may be NaN in
//! JSON ([`nullable`]).

pub mod log;
pub mod nullable;
pub mod stats;

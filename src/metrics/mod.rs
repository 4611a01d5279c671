//! Training and evaluation metrics: definitions and the metrics log.

pub mod log;
pub mod stats;

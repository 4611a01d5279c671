//! Training: schedules, the optimizer, one step, checkpoints, the run log's records, and the
//! loop that drives them.

pub mod adam;
pub mod adam_host;
pub mod checkpoint;
pub mod control;
pub mod error;
pub mod export;
pub mod firing;
pub mod fresh;
pub mod intent;
pub mod lm;
pub mod memory;
pub mod report;
pub mod schedule;
pub mod setup;
pub mod step;
pub mod trainer;

//! Training: schedules, the optimizer, one step, checkpoints, and the loop that drives them.

pub mod adam;
pub mod checkpoint;
pub mod control;
pub mod schedule;
pub mod step;
pub mod trainer;

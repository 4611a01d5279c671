//! Sweeps: many SAEs trained side by side from one data stream. The configuration and its
//! members are in `spec`, the loop that reads once and steps every member in `driver`, and the
//! L0–FVU frontier in `frontier`; the sweep's own log (`sweep.jsonl`) is `crate::schema::sweep`.

pub mod driver;
pub mod frontier;
pub mod spec;

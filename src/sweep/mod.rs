//! Sweeps: many SAEs trained side by side from one data stream. The configuration and its
//! members are in `spec`, the loop that reads once and steps every member in `run`, and the
//! sweep's own log (`sweep.jsonl`) in `record`, the L0–FVU frontier in `frontier`.

pub mod frontier;
pub mod record;
pub mod run;
pub mod spec;

//! Sweeps: many SAEs trained side by side from one data stream. The configuration and its
//! members are in `spec`.

pub mod spec;

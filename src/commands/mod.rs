//! The subcommands' front ends: turn parsed arguments into library calls and print results.

pub mod bench;
pub mod eval;
pub mod export;
pub mod store;
pub mod train;

//! jumpscope: train and inspect JumpReLU sparse autoencoders on language-model activations.
//!
//! ```text
//! config.toml ─► config::Config ─► train::trainer::Trainer ◄── Control (mpsc) ◄── CLI / signals
//!                                    │  data::batches (HDF5 via data::store)
//!                                    │  train::step (sae::loss forward+backward, train::adam)
//!                                    └─► TrainEvent sink (progress bar) + metrics.jsonl + checkpoints/
//! ```

pub mod atomic;
pub mod bench;
pub mod config;
pub mod data;
pub mod device;
pub mod eval;
pub mod metrics;
pub mod sae;
pub mod train;
pub mod tui;

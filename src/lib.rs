//! jumpscope: train and inspect JumpReLU sparse autoencoders on language-model activations.
//!
//! ```text
//! config.toml ─► config::Config ─► train::trainer::Trainer ◄── Control (mpsc) ◄── CLI / signals
//!                                    │  data::batches (HDF5 via data::store)
//!                                    │  train::step (sae::loss forward+backward, train::adam)
//!                                    └─► TrainEvent sink (screen or progress bar) + metrics.jsonl + checkpoints/
//!
//! saved SAE (sae::io) + store ─► inspect::inspect (encode on the device, scan on the host)
//!                              ─► inspect::report::Inspection (JSON, reopened without the store)
//! ```

pub mod bench;
pub mod compare;
pub mod config;
pub mod data;
pub mod device;
pub mod doctor;
pub mod durable;
pub mod eval;
pub mod health;
pub mod inspect;
pub mod isa;
pub mod live;
pub mod lmeval;
pub mod lock;
pub mod metrics;
pub mod sae;
pub mod schema;
pub mod seams;
pub mod selftest;
pub mod session;
pub mod sweep;
pub mod train;
pub mod tui;

//! Activation data: HDF5 stores and SAELens caches, vocabularies, batching, the input scale, and synthetic data.

pub mod arrow_cache;
pub mod batches;
pub mod block;
pub mod dtype;
pub mod fault;
pub mod norm;
pub mod prefetch;
pub mod raw;
pub mod scan;
pub mod store;
pub mod synth;
pub mod vocab;

//! Activation data: HDF5 stores and SAELens caches, a transcoder's paired stores, vocabularies,
//! batching, the input scale, and synthetic data.

pub mod arrow_cache;
pub mod batches;
pub mod block;
pub mod dtype;
pub mod fault;
pub mod norm;
pub mod pair;
pub mod prefetch;
pub mod raw;
pub mod scan;
pub mod store;
pub mod synth;
pub mod vocab;

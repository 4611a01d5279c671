//! The sparse autoencoder: parameters, loss with its straight-through gradients, and file formats.

pub mod fused;
pub mod io;
pub mod jumprelu;
pub mod loss;
pub mod model;

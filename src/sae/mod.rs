//! The sparse autoencoder: parameters, loss with its straight-through gradients, and file formats.

pub mod io;
pub mod loss;
pub mod model;

//! The sparse autoencoder: parameters and the inference form ([`model`]), the elementwise
//! kernels of a training step ([`kernels`]), the loss with its straight-through gradients
//! ([`loss`]) and its sparse form for host memory ([`sparse`]), and file formats ([`io`]).

pub mod io;
pub mod kernels;
pub mod loss;
pub mod model;
pub mod sparse;

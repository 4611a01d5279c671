//! The sparse autoencoder: parameters and the inference form ([`model`]), the elementwise
//! kernels of a training step ([`kernels`]), the loss with its straight-through gradients
//! ([`loss`]) and its sparse forms for host memory ([`sparse`]) and LibTorch (`sparse_libtorch`), and file formats ([`io`]).

pub mod auxk;
pub mod io;
pub mod kernels;
pub mod loss;
pub mod model;
pub mod perturb;
pub mod sparse;
#[cfg(feature = "tch")]
pub mod sparse_libtorch;

//! The one integration-test binary.

mod bad_input;
mod common;
mod golden;
mod paths;
mod stores;
mod training;

//! The one integration-test binary.

mod architectures;
mod bad_input;
mod common;
mod compare;
mod docs;
mod golden;
mod health;
mod inspect;
mod inspect_screen;
mod intent;
mod isa;
mod layers;
mod lm_eval;
mod matryoshka;
mod nothing_lost;
mod paths;
mod records;
mod recovery;
mod screen;
mod selftest;
mod session;
mod sparse;
mod stores;
mod sweep;
mod sweep_screen;
#[cfg(feature = "tch")]
mod tch;
mod theme;
mod training;
mod transcoders;
mod tui;

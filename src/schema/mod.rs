//! The shared vocabulary: the run log's records ([`record`]), the sweep log's ([`sweep`]), one
//! reader of a log still being written ([`tail`]), the health rules' kinds and
//! settings ([`health`]), the memory estimate ([`memory`]) and the one table of configuration
//! keys ([`keys`]). Everything from `config` up may
//! use it; it uses only the computing layers below it (`sae`, `metrics`, `eval`), so that the
//! trainer, the rules, live edits and the screens can share these types without importing
//! one another (the layer order is in `docs/code-layout.md`, checked by a test).

pub mod health;
pub mod keys;
pub mod memory;
pub mod record;
pub mod sweep;
pub mod tail;

//! The live training workbench: state and update rule ([`app`]), drawing ([`view`]), keys
//! ([`keymap`]), bounded chart histories ([`history`]), colours ([`theme`]), a run's
//! metrics.jsonl read back ([`follow`]) and the threads that tie them to a trainer or a followed run ([`run`]);
//! the inspection screen ([`inspect`]); the sweep screen ([`sweep`]); `compare`'s screen ([`compare`]).

pub mod app;
pub mod compare;
pub mod follow;
pub mod history;
pub mod inspect;
pub mod keymap;
pub mod run;
pub mod sweep;
pub mod theme;
pub mod tty;
pub mod view;

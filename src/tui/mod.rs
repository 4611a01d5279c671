//! The live training workbench: state and update rule ([`app`]), drawing ([`view`]), keys
//! ([`keymap`]), the watched run config ([`config_watch`]), bounded chart histories ([`history`]), colours ([`theme`]) and the threads that
//! tie them to a running trainer ([`run`]).

pub mod app;
pub mod config_watch;
pub mod history;
pub mod keymap;
pub mod run;
pub mod theme;
pub mod view;

//! The screens: the training screen's state and update rule ([`app`]) and drawing ([`view`]),
//! what every live screen receives ([`msg`]) and how one is driven on the terminal ([`drive`]),
//! keys ([`keymap`]), bounded chart histories ([`history`]), colours ([`theme`]), the terminal's
//! liveness ([`tty`]); the inspection screen ([`inspect`]); the sweep screen ([`sweep`]);
//! `compare`'s screen ([`compare`]); the parts they share ([`widgets`]).

pub mod app;
pub mod compare;
pub mod drive;
pub mod history;
pub mod inspect;
pub mod keymap;
pub mod msg;
pub mod sweep;
pub mod theme;
pub mod tty;
pub mod view;
pub mod widgets;

//! The training screen's keys: one table ([`BINDINGS`]) that the input handling, the help overlay
//! and the footer all read, so what is shown is what works.

use crate::tui::widgets::keys::{Binding, bind, ch, ctrl, lookup, named};
use ratatui::crossterm::event::{KeyCode, KeyEvent};

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Quit (asks first while training).
    Quit,
    /// Stop with a checkpoint at once (Ctrl-C).
    Interrupt,
    /// Show the help overlay.
    Help,
    /// Show the active health warnings.
    Warnings,
    /// Close an overlay or cancel an edit.
    Close,
    /// Focus the next pane.
    NextPane,
    /// Focus the previous pane.
    PrevPane,
    /// Select the previous hyperparameter.
    Up,
    /// Select the next hyperparameter.
    Down,
    /// Step the selected hyperparameter down.
    Decrease,
    /// Step the selected hyperparameter up.
    Increase,
    /// Type a new value for the selected hyperparameter (Enter again applies it).
    Edit,
    /// Pause or resume training.
    Pause,
    /// Write a checkpoint now.
    Checkpoint,
    /// Show fewer steps (a shorter recent window).
    ZoomIn,
    /// Show more steps.
    ZoomOut,
    /// Switch between the whole run and the recent window.
    ToggleWindow,
    /// Log scale for the MSE chart.
    ToggleLog,
    /// The next loss chart (FVU, nMSE, ΔLM) where they do not all fit.
    NextLossChart,
    /// The events pane: a page up.
    PageUp,
    /// The events pane: a page down.
    PageDown,
    /// The events pane: back to following the newest.
    End,
}

/// The screen's keys as text (for `train --help`), from the same table as the help overlay.
pub fn keys_text() -> String {
    let mut out = String::from("Keys on the training screen (? shows them there too):\n");
    for b in BINDINGS.iter().filter(|b| !b.shown.is_empty()) {
        out.push_str(&format!("  {:<16} {}\n", b.shown, b.help));
    }
    out.push_str(
        "\nThe configuration file's keys and their defaults: docs/configuration.md in the repository.",
    );
    out
}

/// Whether `b` applies on a screen that is (or is not) watching a run in another process.
pub fn applies(b: &Binding<Action>, watching: bool) -> bool {
    !(watching && matches!(b.action, Action::Pause | Action::Checkpoint))
}

/// `b`'s help text there.
pub fn help_for(b: &Binding<Action>, watching: bool) -> &'static str {
    match (watching, b.action) {
        (true, Action::Quit | Action::Interrupt) => "leave the viewer (the run goes on)",
        (true, Action::Increase) => "step the selected value (written to config.toml)",
        (true, Action::Edit) => "type a new value, written to the run's config.toml",
        _ => b.help,
    }
}

/// Every binding of the training screen, in help order (a row with nothing shown is the other
/// half of the row before it).
pub const BINDINGS: &[Binding<Action>] = &[
    bind(
        &[ch('q')],
        "q",
        Action::Quit,
        "quit (asks: y stops with a checkpoint, n or Esc keeps training)",
        "quit",
    ),
    bind(
        &[ctrl('c')],
        "Ctrl-C",
        Action::Interrupt,
        "stop now, writing a checkpoint",
        "",
    ),
    bind(&[ch('?')], "?", Action::Help, "this help", "help"),
    bind(
        &[named(KeyCode::Esc)],
        "Esc",
        Action::Close,
        "close help (so do ? and q) / an event / cancel an edit",
        "",
    ),
    bind(
        &[named(KeyCode::Tab)],
        "Tab / Shift-Tab",
        Action::NextPane,
        "next / previous pane",
        "",
    ),
    bind(&[named(KeyCode::BackTab)], "", Action::PrevPane, "", ""),
    bind(
        &[named(KeyCode::Up), ch('k')],
        "↑ k / ↓ j",
        Action::Up,
        "select a hyperparameter (events pane focused: an event)",
        "select",
    ),
    bind(&[named(KeyCode::Down), ch('j')], "", Action::Down, "", ""),
    bind(
        &[named(KeyCode::Right), ch('l')],
        "← h / → l",
        Action::Increase,
        "step the selected value down / up",
        "step",
    ),
    bind(
        &[named(KeyCode::Left), ch('h')],
        "",
        Action::Decrease,
        "",
        "",
    ),
    bind(
        &[named(KeyCode::Enter)],
        "Enter",
        Action::Edit,
        "type a new value (Enter applies, Esc cancels); events pane: show the event whole",
        "edit",
    ),
    bind(
        &[named(KeyCode::PageUp)],
        "PgUp / PgDn",
        Action::PageUp,
        "scroll the events a page (End: back to the newest)",
        "",
    ),
    bind(&[named(KeyCode::PageDown)], "", Action::PageDown, "", ""),
    bind(&[named(KeyCode::End)], "", Action::End, "", ""),
    bind(
        &[ch('p'), ch(' ')],
        "p",
        Action::Pause,
        "pause / resume",
        "pause",
    ),
    bind(
        &[ch('c')],
        "c",
        Action::Checkpoint,
        "checkpoint now",
        "checkpoint",
    ),
    bind(
        &[ch('+'), ch('=')],
        "+ / -",
        Action::ZoomIn,
        "zoom the step axis in / out (recent window)",
        "",
    ),
    bind(&[ch('-')], "", Action::ZoomOut, "", ""),
    bind(
        &[ch('w')],
        "w",
        Action::ToggleWindow,
        "whole run / recent window",
        "window",
    ),
    bind(&[ch('L')], "L", Action::ToggleLog, "log scale for nMSE", ""),
    bind(
        &[ch('m')],
        "m",
        Action::NextLossChart,
        "next loss chart: FVU, nMSE, ΔLM (when they do not all fit)",
        "",
    ),
    bind(
        &[ch('W')],
        "W",
        Action::Warnings,
        "the active health warnings, with what to change",
        "",
    ),
];

/// The action of a key press on the main screen, if any.
pub fn action(key: &KeyEvent) -> Option<Action> {
    lookup(BINDINGS, key)
}

//! The subcommands' front ends: turn parsed arguments into library calls and print results.

pub mod bench;
pub mod compare;
pub mod doctor;
pub mod eval;
pub mod export;
pub mod inspect;
pub mod selftest;
pub mod store;
pub mod sweep;
pub mod train;
pub mod watch;

/// The screens' theme from `--theme`/`--marker` and the environment.
pub fn theme(look: &crate::cli::LookArgs) -> anyhow::Result<jumpscope::tui::theme::Theme> {
    use crate::cli::MarkerArg;
    use ratatui::symbols::Marker;
    let marker = look.marker.map(|m| match m {
        MarkerArg::Braille => Marker::Braille,
        MarkerArg::Dot => Marker::Dot,
        MarkerArg::Block => Marker::Block,
    });
    Ok(jumpscope::tui::theme::Theme::resolve(
        look.theme.as_deref(),
        marker,
    )?)
}

/// A progress bar on stderr when it is a terminal, hidden otherwise (logs, CI, nohup).
pub fn progress_bar(len: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    let target = if std::io::stderr().is_terminal() {
        indicatif::ProgressDrawTarget::stderr()
    } else {
        indicatif::ProgressDrawTarget::hidden()
    };
    indicatif::ProgressBar::with_draw_target(Some(len), target)
}

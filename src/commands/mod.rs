//! The subcommands' front ends: turn parsed arguments into library calls and print results.

pub mod bench;
pub mod eval;
pub mod export;
pub mod store;
pub mod train;

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

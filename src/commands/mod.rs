//! The subcommands' front ends: turn parsed arguments into library calls and print results.

pub mod bench;
pub mod compare;
pub mod doctor;
pub mod eval;
pub mod export;
pub mod inspect;
pub mod lm_eval;
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

/// Run a job through the session layer: its screen when stdout is a terminal and `--headless`
/// was not given, else headless (a progress bar when stderr is a terminal); print how it ended.
/// Returns the exit code: 0 finished, 130 stopped with checkpoints.
pub fn run_job<J: jumpscope::session::Job>(
    job: J,
    headless: bool,
    theme: jumpscope::tui::theme::Theme,
) -> anyhow::Result<i32> {
    use jumpscope::session::{self, Output};
    use std::io::IsTerminal;
    let closing = if !headless && std::io::stdout().is_terminal() {
        let (job, outcome) = session::on_screen(job, theme)?;
        job.closing(&outcome)
    } else {
        session::headless(job, std::io::stderr().is_terminal(), &Output::std())?
    };
    // a closed stderr (`… 2>&1 | head`) must not turn a finished run into a panic: the run's
    // work is saved, only the line is lost
    let _ = std::io::Write::write_fmt(
        &mut std::io::stderr(),
        format_args!("{}\n", closing.message),
    );
    Ok(closing.code)
}

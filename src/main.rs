//! The `jumpscope` binary: parse the command line, run the command, map errors to exit codes.
//! Every error a user can cause prints one line and exits with code 2.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;
mod commands;

use clap::{CommandFactory, FromArgMatches};
use cli::{Cli, Command};
use std::io::Write;

fn main() {
    // `train --help` lists the screen's keys from the table the screen reads
    let command = Cli::command().mut_subcommand("train", |c| {
        c.after_long_help(jumpscope::tui::keymap::keys_text())
    });
    let cli = Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit());
    if !matches!(cli.command, Command::Train(_) | Command::Sweep(_)) {
        // a reader piped into `head` ends quietly when the pipe closes, as other tools do,
        // instead of panicking on its next print; a job keeps Rust's default (SIGPIPE ignored,
        // a failed write is an error it handles), so that it still checkpoints
        // SAFETY: setting a signal's disposition before any thread is started
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // a JUMPSCOPE_ISA that cannot be honoured is refused before any work, not ignored
    if let Err(e) = jumpscope::isa::check_env() {
        let _ = writeln!(std::io::stderr(), "error: {e}");
        std::process::exit(2);
    }
    let result = match cli.command {
        Command::Train(a) => commands::train::exec(a),
        Command::Sweep(a) => commands::sweep::exec(a),
        Command::Compare(a) => commands::compare::exec(a),
        Command::Watch(a) => commands::watch::exec(a),
        Command::Doctor(a) => commands::doctor::exec(a),
        Command::Inspect(a) => commands::inspect::exec(a),
        Command::Eval(a) => commands::eval::exec(a),
        Command::LmEval(a) => commands::lm_eval::exec(a),
        Command::Export(a) => commands::export::exec(a),
        Command::Store(c) => commands::store::exec(c),
        Command::Bench(a) => commands::bench::exec(a),
        Command::Selftest(a) => commands::selftest::exec(a),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            // written, not printed: a closed stderr must not become a panic
            let _ = writeln!(std::io::stderr(), "error: {}", one_line(&e));
            std::process::exit(2);
        }
    }
}

/// The error and the causes it does not already say, on one line (most of our errors quote
/// their source, and anyhow's `{:#}` would say it again).
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg = format!("{msg}: {c}");
        }
    }
    msg.replace('\n', " ")
}

//! The `jumpscope` binary: parse the command line, run the command, map errors to exit codes.
//! Every error a user can cause prints one line and exits with code 2.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;
mod commands;

use clap::Parser;
use cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
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
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            std::process::exit(2);
        }
    }
}

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
        Command::Train(a) => commands::train::run(a),
        Command::Sweep(a) => commands::sweep::run(a),
        Command::Compare(a) => commands::compare::run(a),
        Command::Watch(a) => commands::watch::run(a),
        Command::Doctor(a) => commands::doctor::run(a),
        Command::Inspect(a) => commands::inspect::run(a),
        Command::Eval(a) => commands::eval::run(a),
        Command::Export(a) => commands::export::run(a),
        Command::Store(c) => commands::store::run(c),
        Command::Bench(a) => commands::bench::run(a),
        Command::Selftest(a) => commands::selftest::run(a),
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

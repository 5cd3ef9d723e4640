//! The kvxfer command line: parse, run, report, exit code.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kvxfer: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

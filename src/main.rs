//! The kvxfer command line: parse, run, report, exit code.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let outcome = cli::run(args);
    // What the libraries' clean-up could not do, recorded by their Drop impls; the error, if
    // any, stays the last line.
    for failure in kvxfer::teardown::take() {
        eprintln!("kvxfer: warning: {failure}");
    }
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kvxfer: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

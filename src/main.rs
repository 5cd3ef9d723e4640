//! The kvxfer command line: parse, run, report, exit code.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let code = match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kvxfer: error: {e:#}");
            ExitCode::from(1)
        }
    };
    // What the libraries' clean-up could not do, recorded by their Drop impls.
    for failure in kvxfer::teardown::take() {
        eprintln!("kvxfer: warning: {failure}");
    }
    code
}

//! The kvxfer command line: parse, run, report, exit code.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    // The libraries took SIGINT and SIGTERM over as they loaded (before main): a command that
    // measures makes them requests to stop, the others end on them as by default.
    let signals = if args.stops_on_signal() {
        kvxfer::stop::catch()
    } else {
        kvxfer::stop::default_action()
    };
    if let Err(e) = signals {
        eprintln!("kvxfer: warning: cannot set the SIGINT and SIGTERM handlers: {e}");
    }
    // A panic anywhere ends the process (a thread waiting on it would hang otherwise).
    cli::end_on_panic();
    let outcome = cli::run(args);
    // What the libraries' clean-up could not do, recorded by their Drop impls; the error, if
    // any, stays the last line.
    for failure in kvxfer::teardown::take() {
        eprintln!("kvxfer: warning: {failure}");
    }
    match (outcome, kvxfer::stop::requested()) {
        (Ok(code), None) => code,
        (Ok(_), Some(s)) => {
            eprintln!("kvxfer: stopped by {s} as the command ended (it had finished)");
            ExitCode::from(s.exit_code())
        }
        (Err(e), Some(s)) => {
            eprintln!("kvxfer: stopped by {s}: {e:#}");
            ExitCode::from(s.exit_code())
        }
        (Err(e), None) => {
            eprintln!("kvxfer: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

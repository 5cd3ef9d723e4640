//! Command-line options and dispatch; no measurement logic lives here.

mod common;
mod crosscheck;
mod info;
mod parse;
mod pingpong;
mod plan;
mod record;
mod task;
mod ucx_perf;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// kvxfer: measure the network under disaggregated LLM inference.
#[derive(Debug, Parser)]
#[command(name = "kvxfer", version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("KVXFER_GIT_SHA"), ")"))]
#[command(about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Providers, fabrics, domains and endpoint attributes libfabric offers here.
    Info(info::InfoArgs),
    /// fi_pingpong's latency measurement (L0): half round trips of messages, per size.
    Pingpong(pingpong::PingPongArgs),
    /// Record result files to an MLflow tracking server, each exactly once.
    Record(record::RecordArgs),
    /// A reference tool's printed output into a result document.
    Parse(parse::ParseArgs),
    /// Experiment plans: validate, generate task definitions.
    Plan(plan::PlanArgs),
    /// Task definitions: run one on this host.
    Task(task::TaskArgs),
    /// kvxfer's results beside the stock tools': ratios and verdicts.
    Crosscheck(crosscheck::CrosscheckArgs),
    /// ucx_perftest's tag_lat and tag_bw over UCX (L3), configured by UCX_TLS and friends.
    UcxPerf(ucx_perf::UcxPerfArgs),
}

/// Runs the chosen subcommand.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Info(a) => info::run(a),
        Command::Pingpong(a) => pingpong::run(a),
        Command::Record(a) => record::run(a),
        Command::Parse(a) => parse::run(a),
        Command::Plan(a) => plan::run(a),
        Command::Task(a) => task::run(a),
        Command::Crosscheck(a) => crosscheck::run(a),
        Command::UcxPerf(a) => ucx_perf::run(a),
    }
}

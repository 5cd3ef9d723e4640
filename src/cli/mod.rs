//! Command-line options and dispatch; no measurement logic lives here.

mod common;
mod info;
mod pingpong;
mod record;
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
    /// ucx_perftest's tag_lat and tag_bw over UCX (L3), configured by UCX_TLS and friends.
    UcxPerf(ucx_perf::UcxPerfArgs),
}

/// Runs the chosen subcommand.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Info(a) => info::run(a),
        Command::Pingpong(a) => pingpong::run(a),
        Command::Record(a) => record::run(a),
        Command::UcxPerf(a) => ucx_perf::run(a),
    }
}

//! `kvxfer rma-pingpong`: fi_rma_pingpong's measurement (L0).

use std::process::ExitCode;

use clap::Args;
use kvxfer::channel::RmaPingPongOp;
use kvxfer::run::pingpong::rma::RmaPingPongConfig;

use super::pingpong::{base_config, drive, PairArgs, SegArgs};

/// `--op`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RmaOpArg {
    /// fi_write; the receiver spins on the last byte (host memory only).
    Write,
    /// fi_writedata; the receiver waits for the remote CQ data.
    Writedata,
    /// fi_read; full round trips, measured by the initiator only.
    Read,
}

/// Options of `kvxfer rma-pingpong`.
#[derive(Debug, Args)]
pub struct RmaPingPongArgs {
    #[command(flatten)]
    pair: PairArgs,
    /// The RMA operation (fi_rma_pingpong's -o).
    #[arg(short, long, value_enum, default_value = "write")]
    op: RmaOpArg,
    /// Never inject writes (fi_inject_write), even below the inject size.
    #[arg(long)]
    no_inject: bool,
    #[command(flatten)]
    mem: SegArgs,
}

/// Runs `kvxfer rma-pingpong`.
pub fn run(a: RmaPingPongArgs) -> anyhow::Result<ExitCode> {
    let mut base = base_config(&a.pair)?;
    base.inject = !a.no_inject;
    base.mem = a.mem.kinds();
    let cfg = RmaPingPongConfig {
        base,
        op: match a.op {
            RmaOpArg::Write => RmaPingPongOp::Write,
            RmaOpArg::Writedata => RmaPingPongOp::WriteData,
            RmaOpArg::Read => RmaPingPongOp::Read,
        },
    };
    drive(&a.pair, &cfg, "rma-pingpong", cfg.base.sizes.len())
}

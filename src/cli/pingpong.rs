//! `kvxfer pingpong`: fi_pingpong's measurement (L0).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use kvxfer::channel::MsgMode;
use kvxfer::report::{export, table};
use kvxfer::run::pingpong::{PingPongConfig, AUTO_ROUNDS};
use kvxfer::run::two_sided::PairRun;
use kvxfer::stats::Count;

use super::common::{parse_sizes, run_pair, EndpointArg, ModeArg, OutputArgs, PathArgs};

/// Options shared by `pingpong` and `rma-pingpong`.
#[derive(Debug, Args)]
pub struct PairArgs {
    /// libfabric provider (tcp, shm, udp, efa, ...) (fi_pingpong's -p).
    #[arg(short, long, default_value = "tcp")]
    pub provider: String,
    /// Endpoint type (fi_pingpong's -e).
    #[arg(short, long, value_enum, default_value = "rdm")]
    pub endpoint: EndpointArg,
    /// Domain (interface) to use; by default the one holding the control connection's address
    /// (fi_pingpong's -d).
    #[arg(short, long)]
    pub domain: Option<String>,
    /// Message sizes: a comma-separated list with binary suffixes (1K = 1024), or `all`
    /// (fi_pingpong's -S).
    #[arg(short = 'S', long, default_value = "64,1K,64K,1M,10M,100M", value_parser = parse_sizes)]
    pub sizes: std::vec::Vec<u64>,
    /// Timed iterations per size, 1 to 10^12 (fi_pingpong's -I), or auto: in batches until the
    /// median is known to --precision [default: 10000 below 64K, 1000 below 1M, 100 from 1M].
    #[arg(short = 'I', long, value_parser = super::count::parse_iterations)]
    pub iterations: Option<super::count::IterationsArg>,
    #[command(flatten)]
    pub pacing: super::count::PacingArgs,
    /// Rounds, 1 to 1000: passes over every size, each on fresh endpoints and buffers; a
    /// size's median interval then spans its rounds' medians too, spread over the whole run
    /// [default: 6 with --iterations auto, which share its limits; else 1]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub rounds: Option<u64>,
    /// Untimed iterations before each size, 0 to 10^12 (0 reproduces fi_pingpong, which has
    /// none).
    #[arg(short, long, default_value_t = 10, value_parser = super::common::parse_warmup)]
    pub warmup: u64,
    /// Pin each side's thread to one of these CPUs (e.g. 2,3): the initiator's first, then a
    /// one-process run's target; each side of two processes takes the first of its own list
    #[arg(long, value_name = "LIST", value_parser = super::common::parse_cpus)]
    pub cpus: Option<kvxfer::run::sched::CpuPlan>,
    /// Fill and check the payload of every message (fi_pingpong's -c; elsewhere -c is
    /// --concurrency).
    #[arg(short = 'c', long)]
    pub verify: bool,
    /// Be the target: listen for the initiator on [ADDR][:PORT] (default 0.0.0.0:47590).
    #[arg(long, value_name = "[ADDR][:PORT]", num_args = 0..=1, default_missing_value = "", conflicts_with = "peer")]
    pub listen: Option<String>,
    /// Be the initiator: connect to the target at HOST[:PORT].
    #[arg(long, value_name = "HOST[:PORT]")]
    pub peer: Option<String>,
    /// Seconds to wait for the peer and for each completion.
    #[arg(long, default_value = "30", value_parser = super::common::parse_timeout)]
    pub timeout: Duration,
    #[command(flatten)]
    pub path: PathArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Options of `kvxfer pingpong`.
#[derive(Debug, Args)]
pub struct PingPongArgs {
    #[command(flatten)]
    pair: PairArgs,
    /// Send/receive (msg) or tagged send/receive (fi_pingpong's -m).
    #[arg(short, long, value_enum, default_value = "msg")]
    mode: ModeArg,
    /// Never use fi_inject, even below the inject size.
    #[arg(long)]
    no_inject: bool,
    #[command(flatten)]
    mem: SegArgs,
}

/// The memory options of `pingpong` and `rma-pingpong`.
#[derive(Debug, Args)]
pub struct SegArgs {
    /// The initiator's message buffers: DRAM (host) or VRAM (GPU; the provider needs FI_HMEM).
    #[arg(long, value_enum, ignore_case = true, default_value = "dram")]
    initiator_seg: super::xfer::SegArg,
    /// The target's message buffers: DRAM (host) or VRAM (GPU).
    #[arg(long, value_enum, ignore_case = true, default_value = "dram")]
    target_seg: super::xfer::SegArg,
    /// CUDA device that holds VRAM buffers (default: the launcher's local rank modulo the
    /// GPU count, else 0).
    #[arg(long, allow_negative_numbers = true)]
    gpu: Option<i32>,
}

impl SegArgs {
    /// Both sides' memory as the options give it (never staged, never --vmm).
    pub fn kinds(&self) -> kvxfer::run::segments::MemKinds {
        super::xfer::mem_kinds(self.initiator_seg, self.target_seg, self.gpu, false, false)
    }
}

/// The ping-pong configuration the shared options describe (message mode, inject on).
pub fn base_config(a: &PairArgs) -> anyhow::Result<PingPongConfig> {
    let iterations = a.pacing.count(a.iterations)?;
    Ok(PingPongConfig {
        provider: a.provider.clone(),
        endpoint: a.endpoint.into(),
        mode: MsgMode::Msg,
        domain: a.domain.clone(),
        sizes: a.sizes.clone(),
        rounds: a.rounds.unwrap_or(match iterations {
            Some(Count::Auto(_)) => AUTO_ROUNDS,
            _ => 1,
        }),
        iterations,
        warmup: a.warmup,
        verify: a.verify,
        inject: true,
        timeout: a.timeout,
        mem: Default::default(),
        cpus: a.cpus.clone().unwrap_or_default(),
    })
}

/// Runs one side or both of a pair measurement as the options say, prints the table and
/// writes the document.
pub fn drive<C: PairRun>(
    a: &PairArgs,
    cfg: &C,
    what: &str,
    sizes: usize,
) -> anyhow::Result<ExitCode> {
    let waiting = format!("{} {}", a.provider, a.endpoint.name());
    a.output.check()?;
    kvxfer::fabric::load()?;
    let outcome = run_pair(
        cfg,
        a.listen.as_deref(),
        a.peer.as_deref(),
        what,
        sizes,
        &waiting,
    );
    let mut doc = match outcome {
        Ok(o) => o.doc,
        Err(e) => return a.output.fail(e, table::pingpong),
    };
    let judged = a.path.judge(&mut doc);
    a.output
        .publish(&mut doc, Some(&export::Table(table::pingpong)))?;
    a.path.exit(judged, &a.output)
}

/// Runs `kvxfer pingpong`.
pub fn run(a: PingPongArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = base_config(&a.pair)?;
    cfg.mode = match a.mode {
        ModeArg::Msg => MsgMode::Msg,
        ModeArg::Tagged => MsgMode::Tagged,
    };
    cfg.inject = !a.no_inject;
    cfg.mem = a.mem.kinds();
    drive(&a.pair, &cfg, "pingpong", cfg.sizes.len())
}

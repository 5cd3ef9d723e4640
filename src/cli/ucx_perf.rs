//! `kvxfer ucx-perf`: ucx_perftest's tag_lat and tag_bw (L3).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use kvxfer::report::{export, table};
use kvxfer::run::ucx_perf::{MemoryKind, UcxPerfConfig, UcxTest};
use kvxfer::stats::{Count, AUTO_ROUNDS};

use super::common::{parse_sizes, run_pair, OutputArgs, PathArgs};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum TestArg {
    /// Tagged ping-pong; latency is half the round trip.
    #[value(name = "tag_lat")]
    TagLat,
    /// Tagged stream with a window of outstanding sends, acknowledged at the end.
    #[value(name = "tag_bw")]
    TagBw,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum MemoryArg {
    /// Host memory.
    Host,
    /// CUDA device memory (needs a `--features cuda` build, a CUDA driver and a UCX with CUDA
    /// transports).
    Cuda,
}

/// Options of `kvxfer ucx-perf`. UCX itself is configured by its environment (UCX_TLS,
/// UCX_NET_DEVICES, ...), as ucx_perftest is.
#[derive(Debug, Args)]
pub struct UcxPerfArgs {
    /// The test (ucx_perftest's -t).
    #[arg(short, long, value_enum)]
    test: TestArg,
    /// Message sizes: a comma-separated list with binary suffixes (1K = 1024) (ucx_perftest's
    /// -s).
    #[arg(short, long, default_value = "64", value_parser = parse_sizes)]
    sizes: std::vec::Vec<u64>,
    /// Timed iterations per size, 1 to 10^12 (ucx_perftest's -n), or auto (tag_lat: in batches
    /// until the median is known to --precision) (default by size: 10000 below 64K, 1000
    /// below 1M, 100 below 64M, 10 above).
    #[arg(short = 'n', long, value_parser = super::count::parse_iterations)]
    iterations: Option<super::count::IterationsArg>,
    #[command(flatten)]
    pacing: super::count::PacingArgs,
    /// tag_lat: rounds, 1 to 1000: passes over every size, each on a fresh worker, endpoint
    /// and buffers; a size's median interval then spans its rounds' medians [default: 6 with
    /// --iterations auto, which share its limits; else 1]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1000))]
    rounds: Option<u64>,
    /// Untimed iterations before each size, 0 to 10^12 (ucx_perftest's -w; default: a tenth of
    /// the iterations).
    #[arg(short, long, value_parser = super::common::parse_warmup)]
    warmup: Option<u64>,
    /// tag_bw: most sends outstanding at once (ucx_perftest's -O).
    #[arg(short = 'O', long, default_value_t = 32)]
    outstanding: usize,
    /// Where the buffers live (ucx_perftest's -m).
    #[arg(short, long, value_enum, default_value = "host")]
    memory: MemoryArg,
    /// The CUDA device of --memory cuda (its ordinal, as the driver counts them).
    #[arg(long, default_value_t = 0, value_name = "N", value_parser = clap::value_parser!(i32).range(0..))]
    device: i32,
    /// Fill and check the payload of every message (no short flag: ucx_perftest's -c is CPU
    /// affinity, kvxfer's is --concurrency).
    #[arg(long)]
    verify: bool,
    /// Pass the buffers' memory handles with every send and receive (ucx_perftest's -z);
    /// without it UCX looks the registration up itself, as ucx_perftest does by default.
    #[arg(short = 'z', long)]
    prereg: bool,
    /// Pin each side's thread to one of these CPUs (ucx_perftest's -c), the initiator's first,
    /// then a one-process run's target; each side of two processes takes the first of its own
    #[arg(long, value_name = "LIST", value_parser = super::common::parse_cpus)]
    cpus: Option<kvxfer::run::sched::CpuPlan>,
    /// Be the target: listen for the initiator on [ADDR][:PORT] (default 0.0.0.0:47590).
    #[arg(long, value_name = "[ADDR][:PORT]", num_args = 0..=1, default_missing_value = "", conflicts_with = "peer")]
    listen: Option<String>,
    /// Be the initiator: connect to the target at HOST[:PORT].
    #[arg(long, value_name = "HOST[:PORT]")]
    peer: Option<String>,
    /// Seconds to wait for the peer and for each completion.
    #[arg(long, default_value = "30", value_parser = super::common::parse_timeout)]
    timeout: Duration,
    #[command(flatten)]
    path: PathArgs,
    #[command(flatten)]
    output: OutputArgs,
}

pub fn run(a: UcxPerfArgs) -> anyhow::Result<ExitCode> {
    // First thing: UCX's memory hooks in place before any buffer, as ucx_perftest has them.
    kvxfer::ucx::load()?;
    let iterations = a.pacing.count(a.iterations)?;
    let auto = matches!(iterations, Some(Count::Auto(_)));
    let cfg = UcxPerfConfig {
        test: match a.test {
            TestArg::TagLat => UcxTest::TagLat,
            TestArg::TagBw => UcxTest::TagBw,
        },
        sizes: a.sizes.clone(),
        iterations,
        warmup: a.warmup,
        outstanding: a.outstanding,
        memory: match a.memory {
            MemoryArg::Host => MemoryKind::Host,
            MemoryArg::Cuda => MemoryKind::Cuda,
        },
        device: a.device,
        verify: a.verify,
        prereg: a.prereg,
        timeout: a.timeout,
        rounds: a.rounds.unwrap_or(if auto { AUTO_ROUNDS } else { 1 }),
        cpus: a.cpus.clone().unwrap_or_default(),
    };
    a.output.check()?;
    cfg.validate()?;
    let outcome = run_pair(
        &cfg,
        a.listen.as_deref(),
        a.peer.as_deref(),
        "ucx-perf",
        cfg.sizes.len() * cfg.rounds as usize,
        cfg.test.name(),
    );
    let table = |d: &kvxfer::report::ResultDoc| {
        if a.listen.is_none() {
            table::ucx_perf(d)
        } else {
            String::new()
        }
    };
    let mut doc = match outcome {
        Ok(o) => o.doc,
        Err(e) => return a.output.fail(e, table),
    };
    // Only the initiator measures, as only ucx_perftest's client prints.
    let terminal = export::Table(table::ucx_perf);
    if a.listen.is_some() {
        eprintln!("kvxfer: ucx-perf target done; the initiator reports the figures");
    }
    let table = a
        .listen
        .is_none()
        .then_some(&terminal as &dyn export::Exporter);
    let judged = a.path.judge(&mut doc);
    a.output.publish(&mut doc, table)?;
    a.path.exit(judged, &a.output)
}

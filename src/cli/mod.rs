//! Command-line options and dispatch; no measurement logic lives here.

mod analyze;
mod common;
mod count;
mod crosscheck;
mod doctor;
mod etcd;
mod info;
mod kv;
mod memcpy;
mod parse;
mod pingpong;
mod plan;
mod record;
mod rma_pingpong;
mod run_plan;
mod task;
mod ucx_perf;
mod xfer;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// kvxfer: measure the network under disaggregated LLM inference.
///
/// With no subcommand, kvxfer runs `xfer`: `kvxfer --provider efa --size 672M --concurrency 16`.
#[derive(Debug, Parser)]
#[command(name = "kvxfer", version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("KVXFER_GIT_SHA"), ")"))]
#[command(about, long_about = None, propagate_version = true, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    xfer: xfer::XferArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// KV-sized transfers by RMA (L1); the default when no subcommand is given.
    Xfer(Box<xfer::XferArgs>),
    /// Providers, fabrics, domains and endpoint attributes libfabric offers here.
    Info(info::InfoArgs),
    /// fi_pingpong's latency measurement (L0): half round trips of messages, per size.
    Pingpong(pingpong::PingPongArgs),
    /// fi_rma_pingpong's latency measurement (L0): RMA write, writedata or read, per size.
    RmaPingpong(rma_pingpong::RmaPingPongArgs),
    /// A single-thread memcpy of --size bytes: the one-core limit transfers are compared with.
    Memcpy(memcpy::MemcpyArgs),
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
    /// The KV cache of real models (L2): size, KVBench's plan, and a profile of its transfer.
    Kv(kv::KvArgs),
    /// ucx_perftest's tag_lat and tag_bw over UCX (L3), configured by UCX_TLS and friends.
    UcxPerf(ucx_perf::UcxPerfArgs),
    /// E2E results against low-level ones: the four claims judged, plots and a report.
    Analyze(analyze::AnalyzeArgs),
    /// A plan's patterns on this node, L0 to L3, each result recorded, then the cross-check.
    Run(run_plan::RunArgs),
    /// etcd upkeep for `xfer --etcd`: remove what a crashed run left.
    Etcd(etcd::EtcdArgs),
    /// The node checked before measuring: each check ok, warn, fail or skip, with what to do.
    Doctor(doctor::DoctorArgs),
}

impl Cli {
    /// Whether the chosen command stops on SIGINT and SIGTERM, keeping what it finished (it
    /// measures, or runs commands that do); the others end at once, as signals do by default.
    pub fn stops_on_signal(&self) -> bool {
        matches!(
            self.command,
            None | Some(
                Command::Xfer(_)
                    | Command::Pingpong(_)
                    | Command::RmaPingpong(_)
                    | Command::Memcpy(_)
                    | Command::UcxPerf(_)
                    | Command::Kv(_)
                    | Command::Task(_)
                    | Command::Run(_)
            )
        )
    }
}

/// Runs the chosen subcommand.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => xfer::run(cli.xfer),
        Some(Command::Xfer(a)) => xfer::run(*a),
        Some(Command::Info(a)) => info::run(a),
        Some(Command::Pingpong(a)) => pingpong::run(a),
        Some(Command::RmaPingpong(a)) => rma_pingpong::run(a),
        Some(Command::Memcpy(a)) => memcpy::run(a),
        Some(Command::Record(a)) => record::run(a),
        Some(Command::Parse(a)) => parse::run(a),
        Some(Command::Plan(a)) => plan::run(a),
        Some(Command::Task(a)) => task::run(a),
        Some(Command::Crosscheck(a)) => crosscheck::run(a),
        Some(Command::UcxPerf(a)) => ucx_perf::run(a),
        Some(Command::Kv(a)) => kv::run(a),
        Some(Command::Analyze(a)) => analyze::run(a),
        Some(Command::Run(a)) => run_plan::run(a),
        Some(Command::Etcd(a)) => etcd::run(a),
        Some(Command::Doctor(a)) => doctor::run(a),
    }
}

/// Makes a panic in any thread end the process with status 101 and one line: a thread that
/// waits for the one that panicked (a progress bar, a scope) would otherwise hang.
pub fn end_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let what = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("a panic");
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("kvxfer: internal error (please report it): {what}{at}");
        std::process::exit(101);
    }));
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    /// Run again as a child process: a panic beside a thread that waits for a flag (as the
    /// progress bar of `xfer` waits) ends the process with status 101 and one line.
    #[test]
    fn a_panic_ends_the_process_with_101_instead_of_hanging() {
        if std::env::var_os("KVXFER_PANIC_CHILD").is_some() {
            super::end_on_panic();
            let done = AtomicBool::new(false);
            std::thread::scope(|s| {
                s.spawn(|| {
                    while !done.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                });
                let n = std::hint::black_box(usize::MAX);
                let v: Vec<u64> = Vec::with_capacity(n);
                done.store(v.is_empty(), Ordering::Relaxed);
            });
            return;
        }
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "cli::tests::a_panic_ends_the_process_with_101_instead_of_hanging",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("KVXFER_PANIC_CHILD", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("the panicking child hangs");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert_eq!(status.code(), Some(101), "{err}");
        let line = err
            .lines()
            .find(|l| l.starts_with("kvxfer: "))
            .unwrap_or_default();
        assert!(
            line.starts_with("kvxfer: internal error (please report it): capacity overflow"),
            "{err}"
        );
    }
}

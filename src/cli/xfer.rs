//! `kvxfer xfer` (the default subcommand): KV-sized transfers by RMA (L1).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use kvxfer::bench::arrivals::{parse_arrival, parse_rate, ArrivalKind};
use kvxfer::bootstrap::group::GroupSpec;
use kvxfer::bootstrap::{OobListener, DEFAULT_PORT};
use kvxfer::peer::Side;
use kvxfer::report::{export, table, ResultDoc};
use kvxfer::run::sched::CpuPlan;
use kvxfer::run::segments::{MemKinds, SegKind};
use kvxfer::run::xfer::{
    self, ConcurrencyMode, LocalThreads, OpenLoop, RailSpec, Scheme, Sides, XferBackend,
    XferConfig, XferProgress, DEFAULT_MAX_OUTSTANDING,
};
use kvxfer::stats::{Count, AUTO_ROUNDS};
use kvxfer::units::human_size;
use kvxfer::xfer::XferOp;

use super::common::{parse_cpus, parse_listen, progress_bar, EndpointArg, OutputArgs, PathArgs};

/// `--op`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum XferOpArg {
    /// RMA write with remote CQ data; the target counts chunks and confirms.
    Write,
    /// RMA read from the target's memory.
    Read,
    /// Tagged sends into receives the target posts at each chunk's place.
    Send,
}

/// `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    /// libfabric: --provider, --endpoint and --domain choose the fabric (EFA on AWS).
    Libfabric,
    /// UCX: UCX_TLS and UCX_NET_DEVICES choose the transports (tcp, posix, cma, ...).
    Ucx,
}

/// The libfabric options `xfer` and `kv profile` share, and the library choice they go with.
#[derive(Debug, Args)]
pub struct FabricArgs {
    /// Library that moves the bytes (nixlbench's --backend): libfabric or UCX.
    #[arg(short = 'B', long, value_enum, default_value = "libfabric")]
    pub backend: BackendArg,
    /// libfabric provider (tcp, shm, efa, ...) [default: tcp].
    #[arg(short, long)]
    pub provider: Option<String>,
    /// libfabric endpoint type [default: rdm].
    #[arg(short, long, value_enum)]
    pub endpoint: Option<EndpointArg>,
    /// libfabric domain (interface) to use, e.g. lo; by default the one holding the control
    /// connection's address.
    #[arg(short, long)]
    pub domain: Option<String>,
}

impl FabricArgs {
    /// Refuses a libfabric option given with `--backend ucx`, naming what chooses UCX's
    /// transports instead; loads the library of the run's backend first thing (UCX before any
    /// buffer is allocated, libfabric before any set-up is timed).
    pub fn check(&self) -> anyhow::Result<()> {
        if self.backend != BackendArg::Ucx {
            kvxfer::fabric::load()?;
            return Ok(());
        }
        kvxfer::ucx::load()?;
        let given = [
            self.provider.as_ref().map(|_| "--provider"),
            self.endpoint.map(|_| "--endpoint"),
            self.domain.as_ref().map(|_| "--domain"),
        ];
        if let Some(opt) = given.into_iter().flatten().next() {
            anyhow::bail!(
                "{opt} chooses a libfabric fabric; with --backend ucx, UCX_TLS and \
                 UCX_NET_DEVICES choose the transports (e.g. UCX_TLS=tcp UCX_NET_DEVICES=lo)"
            );
        }
        Ok(())
    }

    /// The provider, tcp unless given.
    pub fn provider(&self) -> String {
        self.provider.clone().unwrap_or_else(|| "tcp".into())
    }

    /// The endpoint type, RDM unless given.
    pub fn endpoint_type(&self) -> kvxfer::fabric::EndpointType {
        self.endpoint.unwrap_or(EndpointArg::Rdm).into()
    }
}

/// `--concurrency-mode`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    /// One worker per transfer, each with its own endpoint and completion queues.
    Endpoints,
    /// N transfers outstanding on one endpoint.
    Outstanding,
}

/// `--local-threads`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LocalThreadsArg {
    /// One thread per worker drives both ends of its connection (UCX).
    Pair,
    /// The initiator's and the target's workers run in threads of their own.
    Side,
}

impl From<LocalThreadsArg> for LocalThreads {
    fn from(a: LocalThreadsArg) -> Self {
        match a {
            LocalThreadsArg::Pair => Self::Pair,
            LocalThreadsArg::Side => Self::Side,
        }
    }
}

/// `--scheme`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SchemeArg {
    /// Initiator worker i with target worker i.
    Pairwise,
    /// N initiators into one target (incast).
    ManyToOne,
    /// One initiator into N targets.
    OneToMany,
}

impl From<XferOpArg> for XferOp {
    fn from(a: XferOpArg) -> Self {
        match a {
            XferOpArg::Write => Self::Write,
            XferOpArg::Read => Self::Read,
            XferOpArg::Send => Self::Send,
        }
    }
}

impl From<BackendArg> for XferBackend {
    fn from(a: BackendArg) -> Self {
        match a {
            BackendArg::Libfabric => Self::Libfabric,
            BackendArg::Ucx => Self::Ucx,
        }
    }
}

impl From<ModeArg> for ConcurrencyMode {
    fn from(a: ModeArg) -> Self {
        match a {
            ModeArg::Endpoints => Self::Endpoints,
            ModeArg::Outstanding => Self::Outstanding,
        }
    }
}

impl From<SchemeArg> for Scheme {
    fn from(a: SchemeArg) -> Self {
        match a {
            SchemeArg::Pairwise => Self::Pairwise,
            SchemeArg::ManyToOne => Self::ManyToOne,
            SchemeArg::OneToMany => Self::OneToMany,
        }
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    kvxfer::units::parse_size(s).map_err(|e| e.to_string())
}

/// `--staging`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StagingArg {
    /// A bounce through pinned host memory.
    Host,
}

/// `--initiator-seg` / `--target-seg` (nixlbench's segment types, any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SegArg {
    /// Host memory.
    Dram,
    /// GPU memory (CUDA).
    Vram,
}

impl From<SegArg> for SegKind {
    fn from(a: SegArg) -> Self {
        match a {
            SegArg::Dram => Self::Dram,
            SegArg::Vram => Self::Vram,
        }
    }
}

/// Options of `kvxfer xfer`.
#[derive(Debug, Args)]
pub struct XferArgs {
    #[command(flatten)]
    fabric: FabricArgs,
    /// Bytes per transfer (binary suffixes: 55M, 224M, 672M).
    #[arg(short = 's', long, default_value = "55M", value_parser = parse_size)]
    size: u64,
    /// Largest chunk (nixlbench's block size); default 4M or the size if smaller. Chunks are
    /// also capped at the provider's max_msg_size.
    #[arg(short = 'b', long, value_parser = parse_size)]
    block: Option<u64>,
    /// Chunks in flight per worker (1 to 65536).
    #[arg(short = 'W', long, default_value_t = 16, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=xfer::MAX_WINDOW as u64))]
    window: usize,
    /// RMA write (the target confirms by counting remote CQ data), RMA read, or send.
    #[arg(short = 'o', long, value_enum, default_value = "write")]
    op: XferOpArg,
    /// Transfers at once: this process's workers (or outstanding transfers), 1 to 2^24.
    #[arg(short = 'c', long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=xfer::MAX_CONCURRENCY as u64))]
    concurrency: usize,
    /// A worker (endpoint + CQs) per transfer, or all transfers outstanding on one endpoint.
    #[arg(long, value_enum, default_value = "endpoints")]
    concurrency_mode: ModeArg,
    /// Who sends to whom.
    #[arg(long, value_enum, default_value = "pairwise")]
    scheme: SchemeArg,
    /// Timed iterations, 1 to 10^12, or auto: in batches until the median is known to
    /// --precision [default: 10].
    #[arg(short = 'I', long, value_parser = super::count::parse_iterations)]
    iterations: Option<super::count::IterationsArg>,
    #[command(flatten)]
    pacing: super::count::PacingArgs,
    /// Rounds, 1 to 1000: the whole session again on fresh connections, endpoints and
    /// buffers (an etcd group's ranks meet before each); the median's interval then spans the
    /// rounds' medians [default: 6 with --iterations auto, which share its limits; else 1;
    /// always 1 with --arrival]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1000))]
    rounds: Option<u64>,
    /// Pin each worker thread to one of these CPUs (e.g. 0-3,8), in turn: initiator workers
    /// first, then a one-process run's target workers; each side of two processes uses its
    /// own list
    #[arg(long, value_name = "LIST", value_parser = parse_cpus)]
    cpus: Option<CpuPlan>,
    /// Untimed iterations first, 0 to 10^12 (the first one is reported as the cold transfer).
    #[arg(short, long, default_value_t = 2, value_parser = super::common::parse_warmup)]
    warmup: u64,
    /// Check every byte at the destination after every iteration.
    #[arg(long)]
    verify: bool,
    /// The target's regions are disjoint parts of one allocation.
    #[arg(long)]
    reuse: bool,
    /// Evict each side's host buffers from the CPU caches before every iteration (outside
    /// the timed span), so back-to-back transfers are not served from the last-level cache
    #[arg(long)]
    cold_cache: bool,
    /// Be the target: listen for initiator workers on [ADDR][:PORT] (default 0.0.0.0:47590).
    #[arg(long, value_name = "[ADDR][:PORT]", num_args = 0..=1, default_missing_value = "", conflicts_with = "peer")]
    listen: Option<String>,
    /// Be an initiator: connect to the target at HOST[:PORT]; repeat for several targets
    /// (workers are spread round robin).
    #[arg(long, value_name = "HOST[:PORT]")]
    peer: Vec<String>,
    /// In one process: pair (one thread per worker drives both ends of its connection; UCX's
    /// default: loopback TCP reorders a connection whose ends run on two CPUs) or side (the
    /// target's workers in threads of their own; libfabric's only layout).
    #[arg(long, value_enum, conflicts_with_all = ["listen", "peer", "etcd"])]
    local_threads: Option<LocalThreadsArg>,
    /// Stripe over several libfabric rails: auto (every domain the provider offers), a count
    /// (on the loopback: 127.0.0.1, 127.0.0.2, ...), or domains (efa0,efa1); at most 256.
    #[arg(long, value_name = "auto|N|DEV,DEV,...", value_parser = RailSpec::parse)]
    rails: Option<RailSpec>,
    /// Transfers of at least this size are split evenly across the rails; smaller ones go
    /// round robin, chunk by chunk.
    #[arg(long, default_value = "128K", value_parser = parse_size)]
    stripe_threshold: u64,
    /// The initiator's memory: DRAM (host) or VRAM (GPU), as nixlbench's --initiator_seg_type.
    #[arg(long, value_enum, ignore_case = true, default_value = "dram")]
    initiator_seg: SegArg,
    /// The target's memory: DRAM (host) or VRAM (GPU), as nixlbench's --target_seg_type.
    #[arg(long, value_enum, ignore_case = true, default_value = "dram")]
    target_seg: SegArg,
    /// CUDA device that holds VRAM segments (default: the launcher's local rank, LOCAL_RANK,
    /// SLURM_LOCALID or OMPI_COMM_WORLD_LOCAL_RANK, modulo the GPU count; else 0).
    #[arg(long, allow_negative_numbers = true)]
    gpu: Option<i32>,
    /// VRAM through the CUDA virtual memory API (cuMemCreate + cuMemMap, GPUDirect RDMA
    /// capable) instead of cuMemAlloc, as nixlbench's --enable_vmm.
    #[arg(long)]
    vmm: bool,
    /// Move VRAM sides' data through pinned host memory: copied device to host before sending
    /// and host to device after receiving, each copy timed apart (results[0].extra.staging);
    /// for providers without FI_HMEM or a UCX without CUDA.
    #[arg(long, value_enum, value_name = "host")]
    staging: Option<StagingArg>,
    /// Open loop: transfers arrive at this rate per initiator worker (poisson:RATE or
    /// fixed:RATE, per second) whether or not earlier ones finished; --iterations counts the
    /// arrivals (or --duration times them). Latency counts from each scheduled arrival.
    #[arg(long, value_name = "poisson:RATE|fixed:RATE", value_parser = parse_arrival)]
    arrival: Option<(ArrivalKind, Option<f64>)>,
    /// Open loop: transfers outstanding per worker at most (each its own region); an arrival
    /// that finds them all busy is counted as dropped [default: 8].
    #[arg(long, value_name = "N", requires = "arrival")]
    max_outstanding: Option<usize>,
    /// Open loop: one session per rate, in this order (transfers per second per worker), and
    /// the knee among them; --arrival gives the kind (poisson or fixed).
    #[arg(long, value_name = "R1,R2,...", value_delimiter = ',', value_parser = parse_rate, requires = "arrival")]
    sweep_rate: Vec<f64>,
    /// Seconds to wait for peers, barriers and each transfer (in an etcd group, a wait for
    /// other ranks lasts while any rank is still at work on its part).
    #[arg(long, default_value = "120", value_parser = super::common::parse_timeout)]
    timeout: Duration,
    #[command(flatten)]
    group: super::etcd::GroupArgs,
    #[command(flatten)]
    path: PathArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// Both sides' memory as the options give it; `--gpu` by default the launcher's local rank
/// modulo the GPU count (looked up only when VRAM is asked for), else 0.
pub fn mem_kinds(
    initiator: SegArg,
    target: SegArg,
    gpu: Option<i32>,
    vmm: bool,
    staging: bool,
) -> MemKinds {
    let vram = [initiator, target].contains(&SegArg::Vram);
    MemKinds {
        initiator: initiator.into(),
        target: target.into(),
        gpu: gpu.unwrap_or_else(|| {
            if vram {
                kvxfer::topo::GpuListing::host().default_gpu()
            } else {
                0
            }
        }),
        vmm,
        staging,
    }
}

/// Runs `kvxfer xfer`: the configuration, a line on what runs, the run, then the table, the
/// JSON file and MLflow.
pub fn run(a: XferArgs) -> anyhow::Result<ExitCode> {
    a.fabric.check()?;
    let group = a.group.spec(a.timeout)?;
    let cfg = config(&a)?;
    let sides = sides(&a);
    a.output.check()?;
    let plan = cfg.validate(sides)?;
    announce(&cfg, &plan);
    let mut doc = match measure(&a, &cfg, &plan, sides, group.as_ref()) {
        Ok(d) => d,
        Err(e) => return a.output.fail(e, table::xfer),
    };
    let judged = a.path.judge(&mut doc);
    a.output
        .publish(&mut doc, Some(&export::Table(table::xfer)))?;
    a.path.exit(judged, &a.output)
}

/// The run's configuration from the options.
fn config(a: &XferArgs) -> anyhow::Result<XferConfig> {
    let iterations = a.pacing.count(a.iterations)?.unwrap_or(Count::Fixed(10));
    let rounds = match (a.rounds, iterations) {
        (Some(r), _) => r,
        (None, Count::Auto(_)) if a.arrival.is_none() => AUTO_ROUNDS,
        (None, _) => 1,
    };
    Ok(XferConfig {
        backend: a.fabric.backend.into(),
        provider: a.fabric.provider(),
        endpoint: a.fabric.endpoint_type(),
        domain: a.fabric.domain.clone(),
        op: a.op.into(),
        size: a.size,
        block: a.block,
        window: a.window,
        concurrency: a.concurrency,
        mode: a.concurrency_mode.into(),
        scheme: a.scheme.into(),
        iterations,
        warmup: a.warmup,
        verify: a.verify,
        reuse: a.reuse,
        cold_cache: a.cold_cache,
        timeout: a.timeout,
        idle_before_timed: Duration::ZERO,
        rails: a.rails.clone(),
        stripe_threshold: a.stripe_threshold,
        mem: mem_kinds(
            a.initiator_seg,
            a.target_seg,
            a.gpu,
            a.vmm,
            a.staging.is_some(),
        ),
        open: open_loop(a)?,
        rounds,
        cpus: a.cpus.clone().unwrap_or_default(),
    })
}

/// The open-loop arrivals the options ask for.
fn open_loop(a: &XferArgs) -> anyhow::Result<Option<OpenLoop>> {
    let Some((kind, rate)) = a.arrival else {
        return Ok(None);
    };
    let rates = match (rate, a.sweep_rate.is_empty()) {
        (_, false) => a.sweep_rate.clone(),
        (Some(r), true) => vec![r],
        (None, true) => anyhow::bail!(
            "--arrival {}: give its rate ({}:RATE) or --sweep-rate R1,R2,...",
            kind.name(),
            kind.name()
        ),
    };
    Ok(Some(OpenLoop {
        kind,
        rates,
        max_outstanding: a.max_outstanding.unwrap_or(DEFAULT_MAX_OUTSTANDING),
    }))
}

/// Which sides this process runs: the target (--listen), initiators (--peer), or both.
fn sides(a: &XferArgs) -> Sides {
    if a.listen.is_some() {
        Sides::One(Side::Target)
    } else if !a.peer.is_empty() {
        Sides::One(Side::Initiator)
    } else {
        Sides::Both
    }
}

/// One line on stderr: what runs, over what, and the host memory it takes.
fn announce(cfg: &XferConfig, plan: &xfer::XferPlan) {
    eprintln!(
        "kvxfer: xfer {} x {} over {} ({} chunks of {}, window {}); host memory: {} of {} available",
        cfg.concurrency,
        human_size(cfg.size),
        match cfg.backend {
            XferBackend::Libfabric => cfg.provider.clone(),
            XferBackend::Ucx => format!(
                "UCX (UCX_TLS={})",
                std::env::var("UCX_TLS").unwrap_or_else(|_| "all".into())
            ),
        },
        plan.chunks,
        human_size(plan.block),
        cfg.window,
        kvxfer::run::memory::approx(plan.bytes),
        plan.available
            .map(kvxfer::run::memory::approx)
            .unwrap_or_else(|| "an unknown amount".into())
    );
}

/// Runs this process's sides: the target waits for its initiators; initiators (or both
/// sides in one process) move a progress bar that a watcher thread updates.
fn measure(
    a: &XferArgs,
    cfg: &XferConfig,
    plan: &xfer::XferPlan,
    sides: Sides,
    group: Option<&GroupSpec>,
) -> anyhow::Result<ResultDoc> {
    if sides == Sides::One(Side::Target) {
        let listen = a.listen.as_deref().unwrap_or_default();
        let addr: SocketAddr = parse_listen(listen, DEFAULT_PORT)?;
        let listener = OobListener::bind(addr)?;
        eprintln!(
            "kvxfer: xfer target waiting for {} worker(s) on {}",
            plan.workers,
            listener.local_addr()
        );
        return Ok(xfer::run_target(cfg, &listener)?);
    }
    // Iterations of every worker, warm-up included (the most an auto run may take).
    let most = cfg
        .iterations
        .at_most()
        .min(kvxfer::stats::DEFAULT_MAX_ITERATIONS);
    let total = (plan.workers as u64)
        .saturating_mul(cfg.warmup.saturating_add(most))
        .saturating_mul(cfg.rounds);
    let progress = XferProgress::default();
    let bar = progress_bar(total, "xfer");
    bar.enable_steady_tick(Duration::from_millis(250));
    let done = std::sync::atomic::AtomicBool::new(false);
    let doc = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                bar.set_position(progress.done());
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        // The bar stops however the run ends, an unwinding panic included (the scope waits
        // for it).
        let _stop_bar = StopOnDrop(&done);
        let r = if let Some(spec) = group {
            kvxfer::run::xfer::run_group(cfg, spec, &progress)
        } else if sides == Sides::One(Side::Initiator) {
            xfer::run_initiator(cfg, &a.peer, &progress)
        } else {
            // Open-loop targets progress on their own: a thread of their own.
            let default = match cfg.open {
                Some(_) => LocalThreads::Side,
                None => LocalThreads::default_for(cfg.backend),
            };
            let threads = a.local_threads.map(Into::into);
            xfer::run_local(cfg, threads.unwrap_or(default), &progress)
        };
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        bar.finish_and_clear();
        r
    });
    Ok(doc?)
}

/// Sets its flag when dropped.
struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

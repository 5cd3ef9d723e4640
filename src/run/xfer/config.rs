//! What an xfer run is asked to do and the limits found before it connects: the
//! configuration, its plan, its fingerprint, and the buffers it allocates. A leaf of `run`:
//! the workers, the report and the run itself read it; it reads none of them.

use std::sync::Arc;
use std::time::Duration;

use crate::bootstrap::{Fingerprint, Oob};
use crate::fabric::{caps, select_info, EndpointSpec, EndpointType};
use crate::mem::available_memory;
use crate::peer::Side;
use crate::run::memory::{libfabric_endpoint_bytes, MemoryNeed, UCX_ENDPOINT_BYTES};
use crate::run::sched::CpuPlan;
use crate::run::segments::{check_device, check_hmem, check_ucx_cuda, MemKinds, SegKind};
use crate::run::RunError;
use crate::stats::Count;
use crate::units::human_size;
use crate::xfer::XferOp;

pub use super::choices::{
    ConcurrencyMode, LocalThreads, OpenLoop, RailSpec, Scheme, XferBackend,
    DEFAULT_MAX_OUTSTANDING, MAX_RAILS,
};

/// Counts the iterations the initiator's workers have finished, for a progress display.
#[derive(Debug, Clone, Default)]
pub struct XferProgress(Arc<std::sync::atomic::AtomicU64>);

impl XferProgress {
    /// Worker iterations finished so far (warm-up included).
    pub fn done(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn tick(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Rail `r`'s local address: on an IPv4 loopback control address with no domain named,
/// 127.0.0.(1 + r) (the whole 127/8 answers locally); elsewhere the control address itself.
fn rail_address(ip: std::net::IpAddr, r: usize) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V4(v4) if v4.is_loopback() && r < 254 => {
            std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1 + r as u8))
        }
        other => other,
    }
}

/// `base` on domain `domain`, bound to that domain's own address where the provider addresses
/// its endpoints by IP (each rail then leaves through its own interface).
fn on_domain(base: &EndpointSpec, domain: &str) -> Result<EndpointSpec, RunError> {
    let mut spec = EndpointSpec {
        domain: Some(domain.to_string()),
        ..base.clone()
    };
    if let Some(addr) = crate::fabric::select_info(&spec)?.view().src_addr() {
        spec.local_ip = Some(addr.ip());
    }
    Ok(spec)
}

/// Default largest chunk: 4 MiB (or the size, when smaller).
pub const DEFAULT_BLOCK: u64 = 4 << 20;

/// Default size from which a transfer's chunks are spread evenly across rails: 128 KiB
/// (NIXL's LIBFABRIC striping threshold).
pub const DEFAULT_STRIPE_THRESHOLD: u64 = 128 << 10;

/// The most timed (or warm-up) iterations a run takes: past this the samples alone outgrow any
/// host's memory.
pub const MAX_ITERATIONS: u64 = 1_000_000_000;

/// The most transfers at once (the tag layout's limit, 2^24).
pub const MAX_CONCURRENCY: usize = 1 << 24;

/// The most chunks in flight per worker.
pub const MAX_WINDOW: usize = 1 << 16;

/// Everything an xfer run is asked to do.
#[derive(Debug, Clone)]
pub struct XferConfig {
    /// libfabric or UCX.
    pub backend: XferBackend,
    /// Provider name (libfabric).
    pub provider: String,
    /// RDM or MSG endpoints.
    pub endpoint: EndpointType,
    /// Domain to use, if not the one of the control connection's address.
    pub domain: Option<String>,
    /// RMA write (default) or read.
    pub op: XferOp,
    /// Bytes per transfer.
    pub size: u64,
    /// Largest chunk asked for (None: [`DEFAULT_BLOCK`] or the size).
    pub block: Option<u64>,
    /// Chunks in flight per worker.
    pub window: usize,
    /// Transfers at once (this process's workers, or outstanding transfers).
    pub concurrency: usize,
    /// How concurrent transfers are carried.
    pub mode: ConcurrencyMode,
    /// Scheme.
    pub scheme: Scheme,
    /// Timed iterations: a count, `auto` (until the median is known to a precision), or as
    /// many as fit in a duration; in open-loop runs, the arrivals (a count or a duration).
    pub iterations: Count,
    /// Untimed iterations before them (open loop: arrivals scheduled and served, not recorded).
    pub warmup: u64,
    /// Check every byte at the destination after every iteration.
    pub verify: bool,
    /// Target regions are disjoint parts of one allocation.
    pub reuse: bool,
    /// Each side evicts its host regions from the CPU caches before every iteration, so
    /// transfers back to back are not served from a cache a real request would find cold.
    pub cold_cache: bool,
    /// Connection, barrier and completion time-out.
    pub timeout: Duration,
    /// The initiator sleeps this long before each timed iteration (zero: back to back), so
    /// the connection goes idle as between requests (TCP slow start after idle).
    pub idle_before_timed: Duration,
    /// Rails to stripe over (libfabric); None: one endpoint, as without `--rails`.
    pub rails: Option<RailSpec>,
    /// Transfers of at least this many bytes are split evenly across the rails.
    pub stripe_threshold: u64,
    /// Host or GPU memory on each side, and the GPU.
    pub mem: MemKinds,
    /// Open-loop arrivals instead of iterations back to back.
    pub open: Option<OpenLoop>,
    /// Sessions run one after another on fresh connections, endpoints and buffers, merged
    /// into one result (1: one session).
    pub rounds: u64,
    /// The CPU each of this side's worker threads is pinned to (`--cpus`; empty: none).
    pub cpus: CpuPlan,
}

/// Limits found before any connection, and what the run will allocate.
#[derive(Debug, Clone, Copy)]
pub struct XferPlan {
    /// Chunk size in use: min(block, provider's max_msg_size).
    pub block: u64,
    /// Chunks per transfer.
    pub chunks: u64,
    /// Workers (threads with an endpoint each) on one side.
    pub workers: usize,
    /// Transfers per worker.
    pub transfers_per_worker: usize,
    /// Host bytes this process will hold: buffers and endpoints.
    pub bytes: u64,
    /// Host bytes available (MemAvailable), when known.
    pub available: Option<u64>,
}

/// Which sides run in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sides {
    /// One of them.
    One(Side),
    /// Both (a local run).
    Both,
}

impl XferConfig {
    /// The parameters every process of a run must share.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut f = Fingerprint::default()
            .with("bench", "xfer")
            .with("backend", self.backend.name())
            .with("provider", &self.provider)
            .with("endpoint", endpoint_name(self.endpoint))
            .with("op", self.op.name())
            .with("size", self.size)
            .with(
                "block",
                self.block.map(|b| b.to_string()).unwrap_or_default(),
            )
            .with("window", self.window)
            .with("concurrency_mode", self.mode_name())
            .with("scheme", self.scheme.name())
            .with("iterations", self.iterations.name())
            .with("warmup", self.warmup)
            .with("verify", self.verify)
            .with("reuse", self.reuse);
        if self.mode == ConcurrencyMode::Outstanding {
            f = f.with("outstanding", self.concurrency);
        }
        if self.rounds != 1 {
            f = f.with("rounds", self.rounds);
        }
        if self.cold_cache {
            f = f.with("cold_cache", true);
        }
        if !self.idle_before_timed.is_zero() {
            f = f.with("idle_ms", self.idle_before_timed.as_millis());
        }
        if let Some(r) = &self.rails {
            f = f
                .with("rails", r.name())
                .with("stripe_threshold", self.stripe_threshold);
        }
        if let Some(o) = &self.open {
            f = f
                .with("arrival", o.kind.name())
                .with("rates", o.rates_name())
                .with("max_outstanding", o.max_outstanding);
        }
        // Both sides are told both segment types; the GPU ordinal may differ per process.
        if self.mem.any_vram() {
            f = f
                .with("initiator_seg", self.mem.initiator.name())
                .with("target_seg", self.mem.target.name())
                .with("vmm", self.mem.vmm)
                .with("staging", if self.mem.staging { "host" } else { "none" });
        }
        f
    }

    /// `endpoints` or `outstanding`.
    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            ConcurrencyMode::Endpoints => "endpoints",
            ConcurrencyMode::Outstanding => "outstanding",
        }
    }

    pub(crate) fn caps(&self) -> u64 {
        let base = match self.op {
            XferOp::Send => caps::RMA | caps::MSG | caps::TAGGED,
            _ => caps::RMA | caps::MSG,
        };
        // Device memory is registered with FI_HMEM: the provider must offer it.
        if self.mem.network_vram() {
            base | caps::HMEM
        } else {
            base
        }
    }

    pub(crate) fn spec(&self, oob: &Oob) -> Result<EndpointSpec, RunError> {
        Ok(EndpointSpec {
            provider: self.provider.clone(),
            ep_type: self.endpoint,
            caps: self.caps(),
            local_ip: Some(oob.local_ip()?),
            domain: self.domain.clone(),
            timeout: self.timeout,
        })
    }

    /// Refuses rails where they cannot be honoured.
    fn check_rails(&self) -> Result<(), RunError> {
        let Some(r) = &self.rails else { return Ok(()) };
        if self.backend == XferBackend::Ucx && *r != RailSpec::Count(1) {
            return Err(RunError::Config(
                "--rails stripes libfabric endpoints; UCX stripes by itself (set \
                 UCX_MAX_RMA_RAILS and UCX_NET_DEVICES instead)"
                    .into(),
            ));
        }
        if self.op == XferOp::Send {
            return Err(RunError::Config(
                "--rails stripes RMA: use --op write or --op read".into(),
            ));
        }
        Ok(())
    }

    /// Refuses device memory with one line naming what is missing: the `cuda` feature, the
    /// driver, the device, the provider's FI_HMEM, or UCX's CUDA support.
    fn check_mem(&self, sides: Sides) -> Result<(), RunError> {
        if self.mem.gpu < 0 {
            return Err(RunError::Config("--gpu must be 0 or more".into()));
        }
        let (initiator, target) = match sides {
            Sides::Both => (true, true),
            Sides::One(Side::Initiator) => (true, false),
            Sides::One(Side::Target) => (false, true),
        };
        let Some(option) = self.mem.vram_option(initiator, target) else {
            if self.mem.staging && !self.mem.any_vram() {
                return Err(RunError::Config(
                    "--staging host bounces VRAM through host memory: give --initiator-seg VRAM \
                     or --target-seg VRAM"
                        .into(),
                ));
            }
            return Ok(());
        };
        check_device(option, self.mem.gpu)?;
        if self.mem.staging {
            // The network moves pinned host memory: no FI_HMEM or CUDA-aware UCX needed.
            return Ok(());
        }
        match self.backend {
            XferBackend::Libfabric => check_hmem(option, &self.probe_spec()),
            XferBackend::Ucx => check_ucx_cuda(option),
        }
    }

    /// The spec that finds the provider before any connection (no local address yet).
    fn probe_spec(&self) -> EndpointSpec {
        EndpointSpec {
            provider: self.provider.clone(),
            ep_type: self.endpoint,
            caps: self.caps(),
            local_ip: None,
            domain: self.domain.clone(),
            timeout: self.timeout,
        }
    }

    /// One endpoint spec per rail, or None without `--rails`.
    /// `vram`: this side's memory is on the GPU (`auto` then takes the NICs nearest it).
    pub(crate) fn rail_specs(
        &self,
        oob: &Oob,
        vram: bool,
    ) -> Result<Option<Vec<EndpointSpec>>, RunError> {
        let Some(rails) = &self.rails else {
            return Ok(None);
        };
        let base = self.spec(oob)?;
        let specs = match rails {
            RailSpec::Count(n) => (0..*n)
                .map(|r| EndpointSpec {
                    // A named domain keeps its own address: the rails are endpoints of their
                    // own on it.
                    local_ip: match base.domain {
                        Some(_) => base.local_ip,
                        None => base.local_ip.map(|ip| rail_address(ip, r)),
                    },
                    ..base.clone()
                })
                .collect(),
            RailSpec::Domains(d) => d
                .iter()
                .map(|d| on_domain(&base, d))
                .collect::<Result<_, _>>()?,
            RailSpec::Auto => {
                let offered = crate::fabric::domains_offered(&base)?;
                if vram {
                    let topo = crate::topo::Topology::scan_host();
                    let gpus = crate::topo::GpuListing::build(&topo, crate::topo::driver_gpus());
                    crate::run::segments::rails_near_gpu(&topo, &gpus, self.mem.gpu, offered)
                } else {
                    offered
                }
            }
            .iter()
            .map(|d| on_domain(&base, d))
            .collect::<Result<_, _>>()?,
        };
        Ok(Some(specs))
    }

    /// (workers, transfers per worker) on one side; an open-loop worker has a slot per
    /// outstanding transfer.
    pub fn layout(&self) -> (usize, usize) {
        match (self.mode, &self.open) {
            (_, Some(o)) => (self.concurrency, o.max_outstanding),
            (ConcurrencyMode::Endpoints, None) => (self.concurrency, 1),
            (ConcurrencyMode::Outstanding, None) => (1, self.concurrency),
        }
    }

    /// Refuses `--cold-cache` where there is nothing this build can evict.
    fn check_cold_cache(&self) -> Result<(), RunError> {
        if !self.cold_cache {
            return Ok(());
        }
        if !crate::mem::cache::CAN_EVICT {
            return Err(RunError::Config(format!(
                "--cold-cache evicts with x86_64's or aarch64's cache instructions; this build is for {}",
                std::env::consts::ARCH
            )));
        }
        if self.mem.initiator == SegKind::Vram && self.mem.target == SegKind::Vram {
            return Err(RunError::Config(
                "--cold-cache evicts host memory from the CPU caches, and both segments are VRAM"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Refuses open-loop arrivals with what they cannot honour.
    fn check_open(&self) -> Result<(), RunError> {
        let Some(o) = &self.open else { return Ok(()) };
        let refuse = |m: &str| Err(RunError::Config(m.to_string()));
        if o.rates.is_empty() {
            return refuse("--arrival needs a rate (poisson:RATE) or --sweep-rate R1,R2,...");
        }
        if o.max_outstanding == 0 {
            return refuse("--max-outstanding must be at least 1");
        }
        if matches!(self.iterations, Count::Auto(_)) {
            return refuse(
                "--arrival schedules a count of arrivals (--iterations N) or a time \
                 (--duration), not --iterations auto",
            );
        }
        if self.mode != ConcurrencyMode::Endpoints {
            return refuse(
                "--arrival keeps --max-outstanding transfers per worker: use \
                 --concurrency-mode endpoints (a worker per initiator)",
            );
        }
        if self.op == XferOp::Send {
            return refuse("--arrival moves data by RMA: use --op write or --op read");
        }
        if self.verify || self.mem.staging {
            return refuse("--arrival reuses its slots as soon as they are confirmed: no --verify or --staging");
        }
        if self.cold_cache {
            return refuse(
                "--arrival leaves the caches as the schedule's gaps leave them: no --cold-cache",
            );
        }
        Ok(())
    }

    /// Checks the parameters, the provider and the memory, before anything is allocated.
    pub fn validate(&self, sides: Sides) -> Result<XferPlan, RunError> {
        self.check_open()?;
        self.check_cold_cache()?;
        self.check_rounds()?;
        self.check_rails()?;
        self.check_mem(sides)?;
        self.check_counts()?;
        let block = self.block_size()?;
        let (workers, per) = self.layout();
        let rails = self.rail_count()?;
        // The provider first: the cheaper, more basic fact (no EFA here says more than the
        // memory an EFA run would take).
        let block = self.provider_block(block, per)?;
        let (bytes, available) = self.check_memory(sides, workers, per, rails)?;
        // Chunks and transfers are named by the tag layout both backends share.
        if per > crate::xfer::tag::MAX_TRANSFERS {
            return Err(RunError::Config(
                "--concurrency is above what one endpoint can tag (2^24 transfers)".into(),
            ));
        }
        if self.size.div_ceil(block) > u64::from(u32::MAX) {
            return Err(RunError::Config(
                "--block is too small: more than 2^32 chunks per transfer".into(),
            ));
        }
        Ok(XferPlan {
            block,
            chunks: self.size.div_ceil(block),
            workers,
            transfers_per_worker: per,
            bytes,
            available,
        })
    }

    /// Refuses a zero count or size, and counts past their limits.
    fn check_counts(&self) -> Result<(), RunError> {
        let bad = [
            (self.concurrency == 0, "--concurrency must be at least 1"),
            (self.window == 0, "--window must be at least 1"),
            (self.size == 0, "--size must be at least 1 byte"),
            (
                self.iterations.fixed().is_some_and(|n| n > MAX_ITERATIONS)
                    || matches!(self.iterations, Count::Auto(a) if a.max_iterations > MAX_ITERATIONS)
                    || self.warmup > MAX_ITERATIONS,
                "--iterations (--max-iterations) and --warmup are at most 1000000000 each",
            ),
            (
                self.concurrency > MAX_CONCURRENCY,
                "--concurrency is at most 16777216 (2^24)",
            ),
            (self.window > MAX_WINDOW, "--window is at most 65536"),
        ];
        if let Some((_, m)) = bad.into_iter().find(|(bad, _)| *bad) {
            return Err(RunError::Config(m.to_string()));
        }
        self.iterations.check().map_err(RunError::Config)
    }

    /// The chunk size asked for (--block, at most --size), or the default.
    fn block_size(&self) -> Result<u64, RunError> {
        match self.block {
            Some(0) => Err(RunError::Config("--block must be at least 1 byte".into())),
            Some(b) if b > self.size => Err(RunError::Config(format!(
                "--block {} is larger than --size {}: a transfer is never cut into chunks \
                 larger than itself",
                human_size(b),
                human_size(self.size)
            ))),
            Some(b) => Ok(b),
            None => Ok(DEFAULT_BLOCK.min(self.size)),
        }
    }

    /// Endpoints per worker and side: one per rail (every domain the provider offers for
    /// `auto`), one without `--rails`; the domains named are checked against those offered.
    fn rail_count(&self) -> Result<u64, RunError> {
        let offered = || crate::fabric::domains_offered(&self.probe_spec());
        Ok(match &self.rails {
            None => 1,
            Some(RailSpec::Count(n)) => *n as u64,
            Some(RailSpec::Auto) => offered()?.len().max(1) as u64,
            Some(RailSpec::Domains(d)) => {
                let offered = offered()?;
                if let Some(missing) = d.iter().find(|d| !offered.contains(d)) {
                    return Err(crate::fabric::FabricError::NoDomain {
                        provider: self.provider.clone(),
                        domain: missing.clone(),
                        offered: offered.join(", "),
                    }
                    .into());
                }
                d.len() as u64
            }
        })
    }

    /// The bytes this run takes (buffers, an endpoint per worker and rail, and the samples of
    /// `workers` workers, on the sides this process runs) and the host memory available,
    /// refusing a run that does not fit.
    fn check_memory(
        &self,
        sides: Sides,
        workers: usize,
        per: usize,
        rails: u64,
    ) -> Result<(u64, Option<u64>), RunError> {
        let transfers = (workers as u64).saturating_mul(per as u64);
        // An auto run's samples at most; a duration's are not known before it runs.
        let iterations = match self.iterations {
            Count::Fixed(n) => n,
            Count::Auto(a) => a.max_iterations,
            Count::Duration(_) => 0,
        };
        let samples = |side| {
            iterations
                .saturating_mul(workers as u64)
                .saturating_mul(sample_bytes(side, per))
        };
        let need = MemoryNeed {
            buffers: transfers.saturating_mul(self.size),
            endpoints: (workers as u64).saturating_mul(rails),
            per_endpoint: match self.backend {
                XferBackend::Libfabric => libfabric_endpoint_bytes(&self.provider),
                XferBackend::Ucx => UCX_ENDPOINT_BYTES,
            },
            samples: match sides {
                Sides::Both => samples(Side::Initiator).saturating_add(samples(Side::Target)),
                Sides::One(side) => samples(side),
            },
        };
        let need = match sides {
            Sides::Both => MemoryNeed {
                samples: need.samples,
                ..need.both_sides()
            },
            _ => need,
        };
        let available = available_memory();
        need.check(available)?;
        Ok((need.total().unwrap_or(u64::MAX), available))
    }

    /// libfabric: the provider's remote CQ data and receive queue checked, the block capped at
    /// its max_msg_size. UCX has no message size limit of its own (it fragments), and its
    /// transports are checked when the context opens them.
    fn provider_block(&self, block: u64, per: usize) -> Result<u64, RunError> {
        if self.backend == XferBackend::Ucx {
            return Ok(block);
        }
        let info = select_info(&self.probe_spec())?;
        let v = info.view();
        if self.op == XferOp::Write && v.cq_data_size() < 4 {
            return Err(RunError::Config(format!(
                "provider {} carries {} bytes of remote CQ data; the write protocol needs 4",
                self.provider,
                v.cq_data_size()
            )));
        }
        let rx_size = v.queue_sizes().1 as u64;
        if per as u64 > rx_size {
            return Err(RunError::Config(format!(
                "--concurrency {per} in outstanding mode keeps {per} control receives posted on \
                 one endpoint, but provider {}'s receive queue holds {rx_size}: lower \
                 --concurrency or use --concurrency-mode endpoints",
                self.provider
            )));
        }
        Ok(block.min(v.max_msg_size() as u64).max(1))
    }
}

/// Host bytes one worker's sample of one timed iteration holds on `side` until the document is
/// written, `per` transfers each: on the initiator the sample, its kept copy and its JSON on
/// the control connection; on the target the report it receives; on both the document's
/// streams. Measured: 654 B per iteration for both sides of a one-transfer worker (the peak
/// resident set of `xfer -s 4K -I 51000 -w 0` against `-I 1000`).
pub fn sample_bytes(side: Side, per: usize) -> u64 {
    let per = per as u64;
    match side {
        Side::Initiator => 512u64.saturating_add(per.saturating_mul(64)),
        Side::Target => 256u64.saturating_add(per.saturating_mul(32)),
    }
}

pub(crate) fn endpoint_name(e: EndpointType) -> &'static str {
    match e {
        EndpointType::Rdm => "rdm",
        EndpointType::Msg => "msg",
    }
}

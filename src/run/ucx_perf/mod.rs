//! `ucx-perf`: ucx_perftest's tag_lat and tag_bw over UCP, in one process over the loopback or
//! across two. Worker addresses travel over kvxfer's TCP control channel.

use std::time::Duration;

use super::path::{PairProbe, Payload};
use super::pingpong::Measured;
use super::two_sided::{PairRun, Progress, SideOutcome};
use super::{environment, RunError};
use crate::bench::pingpong::{self as pp, PingPongTransport, SizeParams};
use crate::bench::tag_bw::{self, BwParams, WindowTransport};
use crate::bench::BenchError;
use crate::bootstrap::{Fingerprint, Oob};
use crate::channel::{SlotSpec, TagChannel};
use crate::mem::HostStaged;
use crate::peer::Side;
use crate::report::ResultDoc;
use crate::stats::Count;
use crate::ucx::{Context, Endpoint, Features, MemoryType, Worker};
use crate::units::human_size;

/// Which ucx_perftest test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UcxTest {
    /// Ping-pong of tagged messages; latency is half the round trip.
    TagLat,
    /// A stream of tagged messages with a window outstanding, acknowledged at the end.
    TagBw,
}

impl UcxTest {
    /// ucx_perftest's name of the test.
    pub fn name(self) -> &'static str {
        match self {
            UcxTest::TagLat => "tag_lat",
            UcxTest::TagBw => "tag_bw",
        }
    }
}

/// Where the measured buffers live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryKind {
    /// Host memory.
    Host,
    /// CUDA device memory.
    Cuda,
}

impl MemoryKind {
    /// The option's spelling (ucx_perftest's -m).
    pub fn name(self) -> &'static str {
        match self {
            MemoryKind::Host => "host",
            MemoryKind::Cuda => "cuda",
        }
    }
}

/// Everything a ucx-perf run is asked to do.
#[derive(Debug, Clone)]
pub struct UcxPerfConfig {
    /// tag_lat or tag_bw.
    pub test: UcxTest,
    /// Message sizes in bytes.
    pub sizes: Vec<u64>,
    /// Timed iterations per size; by size when absent (see [`default_iterations`]).
    pub iterations: Option<Count>,
    /// Untimed iterations before them; a tenth of the iterations when absent.
    pub warmup: Option<u64>,
    /// tag_bw: most sends outstanding (ucx_perftest's -O).
    pub outstanding: usize,
    /// Where buffers live.
    pub memory: MemoryKind,
    /// The CUDA device of `--memory cuda` (each side picks its own).
    pub device: i32,
    /// Fill and check every payload.
    pub verify: bool,
    /// Pass the buffers' memory handles with every operation (ucx_perftest's -z).
    pub prereg: bool,
    /// Connection and completion time-out.
    pub timeout: Duration,
    /// tag_lat: passes over every size, each on a fresh worker, endpoint and buffers, merged
    /// per size (1: one pass).
    pub rounds: u64,
    /// The CPUs each side's thread is pinned to, the initiator's first in one process
    /// (ucx_perftest's -c; empty: none).
    pub cpus: crate::run::sched::CpuPlan,
}

/// Iterations when none are given: enough for a stable figure, few enough for big messages.
pub fn default_iterations(size: u64) -> u64 {
    match size {
        s if s < 64 << 10 => 10_000,
        s if s < 1 << 20 => 1_000,
        s if s < 64 << 20 => 100,
        _ => 10,
    }
}

/// Largest memory `--verify` may give tag_bw's slots (a window of messages on each side).
const VERIFY_SLOT_LIMIT: u64 = 1 << 30;

impl UcxPerfConfig {
    /// The parameters both sides must share.
    pub fn fingerprint(&self) -> Fingerprint {
        let opt = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_else(|| "auto".into());
        let count = self
            .iterations
            .map_or_else(|| "by size".to_string(), |c| c.name());
        Fingerprint::default()
            .with("bench", "ucx-perf")
            .with("test", self.test.name())
            .with(
                "sizes",
                self.sizes
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .with("iterations", count)
            .with("warmup", opt(self.warmup))
            .with("outstanding", self.outstanding)
            .with("memory", self.memory.name())
            .with("verify", self.verify)
            .with("prereg", self.prereg)
            .with("rounds", self.rounds)
    }

    /// Timed iterations of one size in one round: an auto run's limits are the size's, shared
    /// by its rounds.
    fn iterations_for(&self, size: u64) -> Count {
        match self.iterations {
            Some(c) => c.per_round(self.rounds),
            None => Count::Fixed(default_iterations(size)),
        }
    }

    /// A tenth of the timed iterations unless given (of the count by size when that is not
    /// fixed).
    fn warmup_for(&self, size: u64) -> u64 {
        let n = self
            .iterations_for(size)
            .fixed()
            .unwrap_or_else(|| default_iterations(size));
        self.warmup.unwrap_or_else(|| (n / 10).max(1))
    }

    /// Checks what can be checked before any connection.
    pub fn validate(&self) -> Result<(), RunError> {
        if self.sizes.is_empty() {
            return Err(RunError::Config("no message size given".into()));
        }
        if let Some(c) = &self.iterations {
            c.check().map_err(RunError::Config)?;
            if self.test == UcxTest::TagBw && c.fixed().is_none() {
                return Err(RunError::Config(
                    "tag_bw times one stream per size, not samples per iteration: give \
                     --iterations a count (auto and --duration pace tag_lat)"
                        .into(),
                ));
            }
        }
        for &size in &self.sizes {
            if let Count::Fixed(n) = self.iterations_for(size) {
                crate::bench::check_counts(size, n, self.warmup_for(size), 2)
                    .map_err(RunError::Config)?;
            }
        }
        crate::stats::check_rounds(self.rounds).map_err(RunError::Config)?;
        if self.rounds > 1 && self.test == UcxTest::TagBw {
            return Err(RunError::Config(
                "tag_bw times one stream per size, with no median to widen: --rounds applies \
                 to tag_lat"
                    .into(),
            ));
        }
        if self.outstanding == 0 {
            return Err(RunError::Config("--outstanding must be at least 1".into()));
        }
        if self.memory == MemoryKind::Cuda && !cfg!(feature = "cuda") {
            return Err(RunError::Config(
                "--memory cuda is not available: kvxfer was built without the `cuda` feature \
                 (cargo build --features cuda); use --memory host"
                    .into(),
            ));
        }
        if self.device < 0 {
            return Err(RunError::Config("--device must be 0 or more".into()));
        }
        if self.verify && self.test == UcxTest::TagBw {
            let max = *self.sizes.iter().max().expect("sizes not empty");
            if max.saturating_mul(self.outstanding as u64) > VERIFY_SLOT_LIMIT {
                return Err(RunError::Config(format!(
                    "--verify with tag_bw keeps --outstanding ({}) messages of {} per side; \
                     more than {} in all: lower --outstanding or the size",
                    self.outstanding,
                    human_size(max),
                    human_size(VERIFY_SLOT_LIMIT)
                )));
            }
        }
        Ok(())
    }

    fn slot_spec(&self, role: Side) -> SlotSpec {
        let max = *self.sizes.iter().max().expect("validated") as usize;
        let memory = match self.memory {
            MemoryKind::Host => MemoryType::Host,
            MemoryKind::Cuda => MemoryType::Cuda,
        };
        match self.test {
            UcxTest::TagLat => SlotSpec {
                send_slots: 1,
                send_bytes: max,
                recv_slots: 1,
                recv_bytes: max,
                memory,
                prereg: self.prereg,
                staging: self.verify,
            },
            UcxTest::TagBw => {
                // Unverified streams reuse one buffer, as ucx_perftest does.
                let slots = if self.verify { self.outstanding } else { 1 };
                let (s, r) = match role {
                    Side::Initiator => (max, 1),
                    Side::Target => (1, max),
                };
                SlotSpec {
                    send_slots: slots,
                    send_bytes: s,
                    recv_slots: slots,
                    recv_bytes: r,
                    memory,
                    prereg: self.prereg,
                    staging: self.verify,
                }
            }
        }
    }
}

/// The tag_lat loop over a UCX channel.
///
/// The receive is issued when the loop starts waiting for the message, after its own send, as
/// ucx_perftest does: UCX keeps a message that arrives first on its unexpected queue, so the
/// receive is never late, and posting it stays off the path between a message's arrival and
/// the reply.
struct Lat<'c, 'a, B: HostStaged> {
    ch: &'c mut TagChannel<'a, B>,
    len: usize,
    recv_due: bool,
}

impl<B: HostStaged> PingPongTransport for Lat<'_, '_, B> {
    #[inline]
    fn post_recv(&mut self) -> Result<(), BenchError> {
        self.recv_due = true;
        Ok(())
    }
    #[inline]
    fn send(&mut self, len: usize) -> Result<(), BenchError> {
        Ok(self.ch.send(len)?)
    }
    #[inline]
    fn wait_recv(&mut self) -> Result<usize, BenchError> {
        if !self.recv_due {
            // Not reached by the ping-pong loop, which posts before every wait.
            return Ok(self.ch.complete_recv()?);
        }
        self.recv_due = false;
        Ok(self.ch.recv(self.len)?)
    }
    fn send_buf(&mut self) -> &mut [u8] {
        self.ch.send_slot(0)
    }
    fn recv_buf(&self) -> &[u8] {
        self.ch.last_received()
    }
}

impl<B: HostStaged> WindowTransport for TagChannel<'_, B> {
    #[inline]
    fn post_send(&mut self, slot: usize, len: usize) -> Result<(), BenchError> {
        Ok(TagChannel::post_send(self, slot, len)?)
    }
    #[inline]
    fn complete_send(&mut self) -> Result<(), BenchError> {
        Ok(TagChannel::complete_send(self)?)
    }
    #[inline]
    fn post_recv(&mut self, slot: usize, len: usize) -> Result<(), BenchError> {
        Ok(TagChannel::post_recv(self, slot, len)?)
    }
    #[inline]
    fn complete_recv(&mut self) -> Result<usize, BenchError> {
        Ok(TagChannel::complete_recv(self)?)
    }
    fn post_ack_recv(&mut self) -> Result<(), BenchError> {
        Ok(TagChannel::post_ack_recv(self)?)
    }
    fn send_ack(&mut self) -> Result<(), BenchError> {
        Ok(TagChannel::send_ack(self)?)
    }
    fn wait_ack(&mut self) -> Result<(), BenchError> {
        Ok(TagChannel::wait_ack(self)?)
    }
    fn slots(&self) -> usize {
        TagChannel::slots(self)
    }
    fn send_slot(&mut self, slot: usize) -> &mut [u8] {
        TagChannel::send_slot(self, slot)
    }
    fn recv_slot(&self, slot: usize) -> &[u8] {
        TagChannel::recv_slot(self, slot)
    }
}

impl PairRun for UcxPerfConfig {
    fn check(&self) -> Result<(), RunError> {
        self.validate()
    }
    fn params(&self) -> Fingerprint {
        self.fingerprint()
    }
    fn timeout(&self) -> Duration {
        self.timeout
    }
    fn cpus(&self) -> &crate::run::sched::CpuPlan {
        &self.cpus
    }
    fn memory(&self) -> super::memory::MemoryNeed {
        // The larger side's slots in host memory (a CUDA run holds its buffers on the device;
        // its staging copies, with --verify, are counted as host buffers).
        let slots = |spec: &SlotSpec| {
            (spec.send_slots as u64).saturating_mul(spec.send_bytes as u64)
                + (spec.recv_slots as u64).saturating_mul(spec.recv_bytes as u64)
        };
        let side = |role| {
            let spec = self.slot_spec(role);
            match self.memory {
                MemoryKind::Host => slots(&spec),
                MemoryKind::Cuda if self.verify => slots(&spec),
                MemoryKind::Cuda => 0,
            }
        };
        super::memory::MemoryNeed {
            buffers: side(Side::Initiator).max(side(Side::Target)),
            endpoints: 1,
            per_endpoint: super::memory::UCX_ENDPOINT_BYTES,
            ..super::memory::MemoryNeed::default()
        }
    }
    fn measure(
        &self,
        role: Side,
        oob: &mut Oob,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<SideOutcome, RunError> {
        measure(self, role, oob, progress)
    }
}

fn measure(
    cfg: &UcxPerfConfig,
    role: Side,
    oob: &mut Oob,
    progress: &mut dyn FnMut(Progress),
) -> Result<SideOutcome, RunError> {
    // The device first: a machine without one fails before any UCX set-up.
    #[cfg(feature = "cuda")]
    let device = match cfg.memory {
        MemoryKind::Cuda => Some(
            crate::mem::cuda::CudaDevice::open(cfg.device)
                .map_err(|e| RunError::Config(format!("--memory cuda: {e}")))?,
        ),
        MemoryKind::Host => None,
    };
    #[cfg(not(feature = "cuda"))]
    let device: Option<Device> = None;
    // Tag matching only, as ucx_perftest asks for its tag tests: RMA would add lanes to poll.
    let ctx = Context::new(Features {
        tag: true,
        rma: false,
    })?;
    let mut doc = ResultDoc::new("kvxfer", cfg.test.name(), "L3");
    doc.config = config_map(cfg, role);
    doc.environment = environment::base();
    environment::set_ucx_runtime(&mut doc.environment);
    let mut m = Measured::new(&cfg.sizes, cfg.rounds);
    let mut probe = PairProbe::new(role.name());
    let mut off = probe.off();
    let (n, rounds) = (cfg.sizes.len(), cfg.rounds as usize);
    let mut outcome = Ok(());
    for round in 0..rounds {
        let mut side = SideSetup {
            cfg,
            role,
            round,
            probe: if round == 0 { &mut probe } else { &mut off },
            progress: &mut |i, size| {
                progress(Progress {
                    done: round * n + i + 1,
                    total: n * rounds,
                    size,
                })
            },
        };
        outcome = side.round(&ctx, device.as_ref(), oob, &mut doc, &mut m);
        if outcome.is_err() {
            break;
        }
    }
    if outcome.is_ok() {
        outcome = m.trade_sched(oob);
    }
    for (size, s, path) in m.into_sizes() {
        let mut r = lat_result(size, cfg.warmup_for(size), &s);
        super::pingpong::add_precision(&mut r, &s, &cfg.iterations_for(size), role);
        if let Some(p) = path {
            p.attach(&mut r);
        }
        doc.results.push(r);
    }
    Ok(SideOutcome {
        doc: super::conclude(doc, outcome)?,
    })
}

/// The device of a `--memory cuda` run (none in a build without CUDA).
#[cfg(feature = "cuda")]
type Device = crate::mem::cuda::CudaDevice;
/// The device of a `--memory cuda` run (none in a build without CUDA).
#[cfg(not(feature = "cuda"))]
type Device = std::convert::Infallible;

/// One side's round: which it is, the probe that reads it (the run's in the first round, one
/// that is off in the later ones), and where its sizes' progress goes.
struct SideSetup<'s> {
    cfg: &'s UcxPerfConfig,
    role: Side,
    round: usize,
    probe: &'s mut PairProbe,
    progress: &'s mut dyn FnMut(usize, u64),
}

impl SideSetup<'_> {
    /// One pass over every size on a fresh worker, endpoint and channel in `ctx`: tag_lat's
    /// samples and paths into `m`, tag_bw's results into `doc`; the first round names the
    /// transports UCX settled on.
    fn round(
        &mut self,
        ctx: &Context,
        device: Option<&Device>,
        oob: &mut Oob,
        doc: &mut ResultDoc,
        m: &mut Measured,
    ) -> Result<(), RunError> {
        let worker = Worker::new(ctx)?;
        let peer = oob.exchange(&worker.address()?)?;
        let ep = Endpoint::connect(&worker, &peer)?;
        let spec = self.cfg.slot_spec(self.role);
        let timeout = self.cfg.timeout;
        match (self.cfg.memory, device) {
            (MemoryKind::Host, _) => {
                let ch = TagChannel::new(ctx, &worker, &ep, spec, timeout)?;
                self.sizes(ch, oob, doc, m)?;
            }
            #[cfg(feature = "cuda")]
            (MemoryKind::Cuda, Some(device)) => {
                if self.round == 0 {
                    doc.environment.gpu.push(device.name().to_string());
                    doc.environment
                        .extra
                        .insert("cuda_device".into(), serde_json::json!(device.ordinal()));
                }
                let ch = TagChannel::on_device(ctx, &worker, &ep, spec, device, timeout)?;
                self.sizes(ch, oob, doc, m)?;
            }
            (MemoryKind::Cuda, _) => {
                // validate() refuses this first; kept as an error, never a panic.
                return Err(RunError::Config(
                    "--memory cuda needs a build with --features cuda".into(),
                ));
            }
        }
        if self.round == 0 {
            // After traffic, the endpoint's lanes are the transports UCX settled on.
            environment::add_ucx(&mut doc.environment, ctx, &ep);
        }
        Ok(())
    }

    /// Every size on `ch`; the channel closes once both sides are done.
    fn sizes<B: HostStaged>(
        &mut self,
        mut ch: TagChannel<'_, B>,
        oob: &mut Oob,
        doc: &mut ResultDoc,
        m: &mut Measured,
    ) -> Result<(), RunError> {
        let (cfg, role) = (self.cfg, self.role);
        let max = *cfg.sizes.iter().max().expect("validated") as usize;
        for (i, &size) in cfg.sizes.iter().enumerate() {
            oob.barrier()?;
            let at = || format!("size {}", human_size(size));
            let count = cfg.iterations_for(size);
            let warmup = cfg.warmup_for(size);
            let probe = &mut *self.probe;
            match cfg.test {
                UcxTest::TagLat => {
                    let mut t = Lat {
                        ch: &mut ch,
                        len: max,
                        recv_due: true,
                    };
                    let p = SizeParams {
                        size: size as usize,
                        warmup,
                        verify: cfg.verify,
                    };
                    let run = pp::warm_up(&mut t, role, &p).and_then(|()| {
                        probe.timed(oob, role, count, |pace| {
                            pp::run_timed(&mut t, role, &p, pace)
                        })
                    });
                    let s = run.map_err(|e| probe.failure(at(), e).control_first())?;
                    // Nothing is left posted (the last receive is only due); settle anything
                    // anyway.
                    ch.settle();
                    let path = probe.finish(oob, super::pingpong::both_ways(size, &s))?;
                    m.keep(i, self.round, Some(s), path, probe);
                }
                UcxTest::TagBw => {
                    let iterations = count.fixed().unwrap_or(0);
                    let p = BwParams {
                        size: size as usize,
                        iterations,
                        warmup,
                        window: cfg.outstanding,
                        verify: cfg.verify,
                    };
                    let run = tag_bw::run_size_with(&mut ch, role, &p, &mut probe.hook(oob));
                    let s = run.map_err(|e| probe.failure(at(), e))?;
                    let bytes = size * iterations;
                    let payload = Payload {
                        sent: if role == Side::Initiator { bytes } else { 0 },
                        received: if role == Side::Initiator { 0 } else { bytes },
                        timed_ns: s.as_ref().map(|s| s.elapsed_ns),
                    };
                    let path = probe.finish(oob, payload)?;
                    let mut r = bw_result(size, iterations, warmup, s.as_ref());
                    if let Some(p) = path {
                        p.attach(&mut r);
                    }
                    doc.results.push(r);
                }
            }
            (self.progress)(i, size);
        }
        oob.barrier()?;
        drop(ch);
        Ok(())
    }
}

mod report;
use report::{bw_result, config_map, lat_result};

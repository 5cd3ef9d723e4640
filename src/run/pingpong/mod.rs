//! `pingpong`: fi_pingpong's measurement, in one process over the loopback or across two.

pub mod rma;

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::bench::pingpong::{
    run_timed, warm_up, FabtestsFigures, PingPongTransport, SizeParams, SizeSamples,
};
use crate::bench::BenchError;
use crate::bootstrap::{Fingerprint, Oob};
use crate::channel::{MsgChannel, MsgMode};
use crate::fabric::{self, caps, select_info, EndpointSpec, EndpointType};
use crate::mem::HostStaged;
use crate::peer::Side;
use crate::report::{ResultDoc, SizeResult};
use crate::run::memory::{libfabric_endpoint_bytes, MemoryNeed};
use crate::run::pace::two_sided;
use crate::run::path::{PairProbe, PathReport, Payload};
use crate::run::segments::{check_device, check_hmem, MemKinds, SegKind};
use crate::run::two_sided::PairRun;
pub use crate::run::two_sided::{Progress, SideOutcome};
use crate::run::{environment, RunError};
use crate::stats::{encode_histogram, Count, LatencySummary, Precision};
use crate::units::human_size;

/// Everything a ping-pong run is asked to do.
#[derive(Debug, Clone)]
pub struct PingPongConfig {
    /// Provider name.
    pub provider: String,
    /// RDM or MSG endpoints.
    pub endpoint: EndpointType,
    /// Message or tagged mode.
    pub mode: MsgMode,
    /// Domain to use (`lo`, ...); by default the one bound to the control connection's address.
    pub domain: Option<String>,
    /// Message sizes in bytes.
    pub sizes: Vec<u64>,
    /// Timed iterations per size; None: by size, as fabtests chooses (see [`default_iterations`]).
    pub iterations: Option<Count>,
    /// Untimed iterations before them.
    pub warmup: u64,
    /// Check every payload.
    pub verify: bool,
    /// Use fi_inject for messages up to the inject size.
    pub inject: bool,
    /// Connection and completion time-out.
    pub timeout: Duration,
    /// Each side's memory (`--initiator-seg` / `--target-seg`) and the GPU for VRAM.
    pub mem: MemKinds,
    /// Passes over every size, each on fresh endpoints and buffers (1: one channel for
    /// every size).
    pub rounds: u64,
}

/// The most `--rounds`.
pub const MAX_ROUNDS: u64 = 1000;

/// `--rounds` of an `--iterations auto` run unless given: the fewest whose medians state a
/// 95 % interval (their range covers 96.9 %).
pub const AUTO_ROUNDS: u64 = 6;

impl PingPongConfig {
    /// The parameters both sides must share.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::default()
            .with("bench", "pingpong")
            .with("provider", &self.provider)
            .with("endpoint", self.endpoint_name())
            .with("mode", self.mode_name())
            .with(
                "sizes",
                self.sizes
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .with(
                "iterations",
                self.iterations
                    .map_or_else(|| "by size".to_string(), |n| n.name()),
            )
            .with("warmup", self.warmup)
            .with("verify", self.verify)
            .with("rounds", self.rounds)
            .with("initiator_seg", self.mem.initiator.name())
            .with("target_seg", self.mem.target.name())
    }

    /// The loop parameters of one size.
    pub(crate) fn size_params(&self, size: u64) -> SizeParams {
        SizeParams {
            size: size as usize,
            warmup: self.warmup,
            verify: self.verify,
        }
    }

    /// Timed iterations of one size in one round: an auto run's limits are the size's, shared
    /// by its rounds.
    pub fn iterations_for(&self, size: u64) -> Count {
        match self.iterations {
            Some(Count::Auto(a)) => Count::Auto(a.shared_by(self.rounds)),
            Some(c) => c,
            None => Count::Fixed(default_iterations(size)),
        }
    }

    fn endpoint_name(&self) -> &'static str {
        match self.endpoint {
            EndpointType::Rdm => "rdm",
            EndpointType::Msg => "msg",
        }
    }

    fn mode_name(&self) -> &'static str {
        match self.mode {
            MsgMode::Msg => "msg",
            MsgMode::Tagged => "tagged",
        }
    }

    /// The endpoints of this run with capabilities `caps`, bound to `local_ip` where given.
    pub(crate) fn endpoint_spec(
        &self,
        caps: u64,
        local_ip: Option<std::net::IpAddr>,
    ) -> EndpointSpec {
        EndpointSpec {
            provider: self.provider.clone(),
            ep_type: self.endpoint,
            caps,
            local_ip,
            domain: self.domain.clone(),
            timeout: self.timeout,
        }
    }

    /// The memory of the side `role` runs.
    pub(crate) fn seg_of(&self, role: Side) -> SegKind {
        match role {
            Side::Initiator => self.mem.initiator,
            Side::Target => self.mem.target,
        }
    }

    fn caps(&self) -> u64 {
        let base = match self.mode {
            MsgMode::Msg => caps::MSG,
            MsgMode::Tagged => caps::TAGGED,
        };
        if self.mem.any_vram() {
            base | caps::HMEM
        } else {
            base
        }
    }

    /// Checks the provider exists and every size fits its maximum message size, and that
    /// VRAM (on either side) has a device and a provider with FI_HMEM, before any connection
    /// is made.
    pub fn validate(&self) -> Result<ProviderFacts, RunError> {
        self.check_vram(self.caps())?;
        self.validate_with_caps(self.caps())
    }

    /// With VRAM on either side: a device to hold it and a provider offering FI_HMEM for
    /// endpoints with capabilities `caps`.
    pub(crate) fn check_vram(&self, caps: u64) -> Result<(), RunError> {
        if let Some(option) = self.mem.vram_option(true, true) {
            check_device(option, self.mem.gpu)?;
            check_hmem(option, &self.endpoint_spec(caps, None))?;
        }
        Ok(())
    }

    /// [`validate`](Self::validate) for endpoints with capabilities `caps`.
    pub(crate) fn validate_with_caps(&self, caps: u64) -> Result<ProviderFacts, RunError> {
        if self.sizes.is_empty() {
            return Err(RunError::Config("no message size given".into()));
        }
        if let Some(c) = &self.iterations {
            c.check().map_err(RunError::Config)?;
        }
        if !(1..=MAX_ROUNDS).contains(&self.rounds) {
            return Err(RunError::Config(format!(
                "--rounds {}: 1 to {MAX_ROUNDS}",
                self.rounds
            )));
        }
        let info = select_info(&self.endpoint_spec(caps, None))?;
        let v = info.view();
        let facts = ProviderFacts {
            max_msg_size: v.max_msg_size() as u64,
            inject_size: v.inject_size() as u64,
        };
        if let Some(&big) = self.sizes.iter().find(|&&s| s > facts.max_msg_size) {
            return Err(RunError::Config(format!(
                "size {} ({big} bytes) exceeds provider {}'s maximum message size of {} bytes",
                human_size(big),
                self.provider,
                facts.max_msg_size
            )));
        }
        for &size in &self.sizes {
            if let Count::Fixed(n) = self.iterations_for(size) {
                crate::bench::check_counts(size, n, self.warmup, 2).map_err(RunError::Config)?;
            }
        }
        Ok(facts)
    }
}

/// fabtests' iteration counts by size: 10000 below 64 KiB, 1000 below 1 MiB, 100 from 1 MiB.
pub fn default_iterations(size: u64) -> u64 {
    match size {
        s if s < 64 << 10 => 10_000,
        s if s < 1 << 20 => 1_000,
        _ => 100,
    }
}

/// Limits of the selected provider.
#[derive(Debug, Clone, Copy)]
pub struct ProviderFacts {
    /// Largest message.
    pub max_msg_size: u64,
    /// Largest injected message.
    pub inject_size: u64,
}

impl<B: HostStaged> PingPongTransport for MsgChannel<B> {
    #[inline]
    fn post_recv(&mut self) -> Result<(), BenchError> {
        Ok(MsgChannel::post_recv(self)?)
    }
    #[inline]
    fn send(&mut self, len: usize) -> Result<(), BenchError> {
        Ok(MsgChannel::send(self, len)?)
    }
    #[inline]
    fn wait_recv(&mut self) -> Result<usize, BenchError> {
        Ok(MsgChannel::wait_recv(self)?)
    }
    fn send_buf(&mut self) -> &mut [u8] {
        MsgChannel::send_buf(self)
    }
    fn recv_buf(&self) -> &[u8] {
        self.received()
    }
}

impl PairRun for PingPongConfig {
    fn check(&self) -> Result<(), RunError> {
        self.validate().map(|_| ())
    }
    fn params(&self) -> Fingerprint {
        self.fingerprint()
    }
    fn timeout(&self) -> Duration {
        self.timeout
    }
    fn memory(&self) -> MemoryNeed {
        // A send and a receive buffer of the largest size, for each round (a round's buffers
        // are held until the size's last round).
        let max = self.sizes.iter().copied().max().unwrap_or(0);
        MemoryNeed {
            buffers: max.saturating_mul(2).saturating_mul(self.rounds),
            endpoints: 1,
            per_endpoint: libfabric_endpoint_bytes(&self.provider),
            ..MemoryNeed::default()
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
    cfg: &PingPongConfig,
    role: Side,
    oob: &mut Oob,
    progress: &mut dyn FnMut(Progress),
) -> Result<SideOutcome, RunError> {
    let spec = cfg.endpoint_spec(cfg.caps(), Some(oob.local_ip()?));
    let connect = |oob: &mut Oob| {
        fabric::connect(&spec, role, &mut |ours: &[u8]| {
            oob.exchange(ours).map_err(|e| e.to_string())
        })
    };
    let conn = connect(oob)?;
    let mut doc = ResultDoc::new("kvxfer", "pingpong", "L0");
    doc.config = config_map(cfg, role);
    doc.environment = environment::with_fabric(&conn.info);
    let max = *cfg.sizes.iter().max().expect("validated: sizes not empty") as usize;
    let (mode, inject, timeout) = (cfg.mode, cfg.inject, cfg.timeout);
    let outcome = match cfg.seg_of(role) {
        SegKind::Dram => {
            let open = |conn| Ok(MsgChannel::new(conn, max, mode, inject, timeout)?);
            let mut again = |oob: &mut Oob| open(connect(oob)?);
            open(conn).and_then(|ch| sizes(cfg, role, oob, progress, &mut doc, ch, &mut again))
        }
        SegKind::Vram => {
            let open = |conn| {
                let (tx, rx) = vram_slots(cfg, max)?;
                Ok(MsgChannel::over(conn, tx, rx, mode, inject, timeout)?)
            };
            let mut again = |oob: &mut Oob| open(connect(oob)?);
            open(conn).and_then(|ch| sizes(cfg, role, oob, progress, &mut doc, ch, &mut again))
        }
    };
    Ok(SideOutcome {
        doc: crate::run::conclude(doc, outcome)?,
    })
}

/// A side's message buffer in device memory.
#[cfg(feature = "cuda")]
pub(crate) type VramSlot = crate::mem::cuda::DeviceSlot;

/// Without the `cuda` feature VRAM is refused before any buffer is made; a host buffer stands
/// in for the type.
#[cfg(not(feature = "cuda"))]
pub(crate) type VramSlot = crate::mem::HostBuffer;

/// A send and a receive buffer of `max` bytes in device memory on `cfg.mem.gpu`, with host
/// staging copies for `--verify`.
#[cfg(feature = "cuda")]
pub(crate) fn vram_slots(
    cfg: &PingPongConfig,
    max: usize,
) -> Result<(VramSlot, VramSlot), RunError> {
    use crate::mem::cuda::{CudaDevice, DeviceSlot};
    let dev = CudaDevice::open(cfg.mem.gpu)?;
    let tx = DeviceSlot::new(&dev, max, cfg.verify)?;
    let rx = DeviceSlot::new(&dev, max, cfg.verify)?;
    Ok((tx, rx))
}

/// Without the `cuda` feature VRAM was refused in validation; this names the feature again.
#[cfg(not(feature = "cuda"))]
pub(crate) fn vram_slots(
    cfg: &PingPongConfig,
    _max: usize,
) -> Result<(VramSlot, VramSlot), RunError> {
    check_device("VRAM", cfg.mem.gpu)?;
    unreachable!("check_device refuses VRAM without the cuda feature")
}

/// A fresh channel (new endpoints and buffers) for the next round.
type Reopen<'a, B> = dyn FnMut(&mut Oob) -> Result<MsgChannel<B>, RunError> + 'a;

/// Every size of the run on channel `ch`, each a result of `doc`. With rounds, each round
/// runs every size in turn, each round after the first on a fresh channel from `reopen`, so
/// that a size's rounds spread over the whole run: on a shared host the medians drift over
/// seconds (at 1 MiB over shm here, 45.4 to 52.0 us over twenty rounds of one process), and
/// rounds back to back would all sample one moment.
fn sizes<B: HostStaged>(
    cfg: &PingPongConfig,
    role: Side,
    oob: &mut Oob,
    progress: &mut dyn FnMut(Progress),
    doc: &mut ResultDoc,
    ch: MsgChannel<B>,
    reopen: &mut Reopen<'_, B>,
) -> Result<(), RunError> {
    let inject_size = ch.inject_size() as u64;
    let mut m = Measured {
        rounds: cfg.sizes.iter().map(|_| Vec::new()).collect(),
        paths: cfg.sizes.iter().map(|_| None).collect(),
    };
    let outcome = run_rounds(cfg, role, oob, progress, ch, reopen, &mut m);
    // What was measured is kept even when a later round failed.
    for ((&size, rounds), path) in cfg.sizes.iter().zip(m.rounds).zip(m.paths) {
        let Some(samples) = SizeSamples::merge(rounds) else {
            break;
        };
        let mut r = size_result(size, &samples, Some(size <= inject_size), 2);
        add_precision(&mut r, &samples, &cfg.iterations_for(size), role);
        r.path = path.map(|p| p.to_value());
        doc.results.push(r);
    }
    outcome?;
    Ok(oob.barrier()?)
}

/// What a run's rounds measured so far: per size, each round's samples, and the path read
/// over the first round's timed iterations.
struct Measured {
    rounds: Vec<Vec<SizeSamples>>,
    paths: Vec<Option<PathReport>>,
}

/// The rounds of a run, every size in each, into `m`.
fn run_rounds<B: HostStaged>(
    cfg: &PingPongConfig,
    role: Side,
    oob: &mut Oob,
    progress: &mut dyn FnMut(Progress),
    mut ch: MsgChannel<B>,
    reopen: &mut Reopen<'_, B>,
    m: &mut Measured,
) -> Result<(), RunError> {
    ch.post_recv()?;
    let mut probe = PairProbe::new(role.name());
    let total = cfg.sizes.len() * cfg.rounds as usize;
    // The earlier rounds' buffers stay allocated until the run ends: each round's memory is
    // its own, so the allocator cannot hand the next round the same pages (where a large
    // message's buffers lie moved its median by 8 % between rounds here).
    let mut held = Vec::new();
    for round in 0..cfg.rounds as usize {
        if round > 0 {
            // The old endpoints close before the new ones open.
            held.push(ch.into_buffers());
            ch = reopen(oob)?;
            ch.post_recv()?;
        }
        for (i, &size) in cfg.sizes.iter().enumerate() {
            // The path's counters span the first round's timed iterations.
            let first = round == 0;
            let s = match one_size(&mut ch, cfg, role, oob, first.then_some(&mut probe), size) {
                Ok(s) => s,
                Err(e) => {
                    abandon(ch);
                    return Err(e);
                }
            };
            if first {
                m.paths[i] = probe.finish(oob, both_ways(size, &s))?;
            }
            m.rounds[i].push(s);
            progress(Progress {
                done: round * cfg.sizes.len() + i + 1,
                total,
                size,
            });
        }
    }
    Ok(())
}

/// One size's warm-up and timed iterations on `ch`, read by `probe` when given.
fn one_size<B: HostStaged>(
    ch: &mut MsgChannel<B>,
    cfg: &PingPongConfig,
    role: Side,
    oob: &mut Oob,
    mut probe: Option<&mut PairProbe>,
    size: u64,
) -> Result<SizeSamples, RunError> {
    let p = cfg.size_params(size);
    let count = cfg.iterations_for(size);
    oob.barrier()?;
    let run = warm_up(ch, role, &p)
        .and_then(|()| match probe.as_deref_mut() {
            Some(probe) => probe.hook(oob)(),
            None => Ok(()),
        })
        .and_then(|()| run_timed(ch, role, &p, &mut *two_sided(role, count, oob)));
    run.map_err(|error| {
        let at = format!("size {}", human_size(size));
        match probe {
            Some(probe) => probe.failure(at, error),
            None => RunError::Bench { at, error },
        }
        .control_first()
    })
}

/// A ping-pong's payload on either side: a message of `size` each way per timed iteration.
pub(crate) fn both_ways(size: u64, s: &SizeSamples) -> Payload {
    let bytes = size * s.iterations;
    Payload {
        sent: bytes,
        received: bytes,
        timed_ns: Some(s.elapsed_ns),
    }
}

/// Leaves a channel whose loop failed open and allocated until the process ends: operations
/// may still be in flight on it (a peer stopped mid-message), libfabric 1.17's rxm can crash
/// closing such an endpoint (seen on tcp;ofi_rxm, about one run in six), and the buffers must
/// outlive what the provider still holds of them.
pub(crate) fn abandon<T>(channel: T) {
    std::mem::forget(channel);
}

/// One size's figures, fabtests' arithmetic with `xfers` transfers per iteration.
pub(crate) fn size_result(
    size: u64,
    s: &crate::bench::pingpong::SizeSamples,
    injected: Option<bool>,
    xfers: u64,
) -> SizeResult {
    let f = FabtestsFigures::with_xfers(size, s.iterations, s.elapsed_ns, xfers);
    let mut extra = Map::new();
    extra.insert("time_s".into(), json!(s.elapsed_ns as f64 / 1e9));
    extra.insert("usec_per_xfer".into(), json!(f.usec_per_xfer));
    extra.insert("mb_per_sec".into(), json!(f.mb_per_sec));
    extra.insert("mxfers_per_sec".into(), json!(f.mxfers_per_sec));
    extra.insert("bytes_counted".into(), json!(f.bytes));
    if let Some(injected) = injected {
        extra.insert("injected".into(), json!(injected));
    }
    SizeResult {
        message_size: size,
        iterations: s.iterations,
        latency_us: LatencySummary::from_histogram(&s.latency_ns),
        bandwidth_gbps: Some(f.mb_per_sec / 1000.0),
        bandwidth_mbps: Some(f.mb_per_sec),
        transfer_time_ms: Some(s.elapsed_ns as f64 / 1e6),
        histogram: encode_histogram(&s.latency_ns).ok(),
        path: None,
        extra,
    }
}

/// The result's `extra.precision` from the samples of the side that measured them.
pub(crate) fn add_precision(
    r: &mut SizeResult,
    s: &crate::bench::pingpong::SizeSamples,
    count: &Count,
    role: Side,
) {
    if role == Side::Target && s.latency_ns.is_empty() {
        return;
    }
    let p = Precision::of(
        &s.latency_ns,
        s.stopped_by,
        Precision::target_of(count),
        s.blocks.as_ref(),
        s.rounds.as_ref(),
    );
    if let Ok(v) = serde_json::to_value(p) {
        r.extra.insert("precision".into(), v);
    }
}

/// The configuration block of a ping-pong document.
pub(crate) fn config_map(cfg: &PingPongConfig, role: Side) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("provider".into(), json!(cfg.provider));
    m.insert("backend".into(), json!("libfabric"));
    m.insert("endpoint".into(), json!(cfg.endpoint_name()));
    m.insert("mode".into(), json!(cfg.mode_name()));
    m.insert("domain".into(), json!(cfg.domain));
    m.insert("sizes".into(), json!(cfg.sizes));
    m.insert(
        "iterations".into(),
        match cfg.iterations {
            Some(Count::Fixed(n)) => json!(n),
            Some(c) => json!(c.name()),
            None => json!("by size: 10000 below 64K, 1000 below 1M, 100 from 1M"),
        },
    );
    m.insert("warmup".into(), json!(cfg.warmup));
    m.insert("rounds".into(), json!(cfg.rounds));
    m.insert("verify".into(), json!(cfg.verify));
    m.insert("inject".into(), json!(cfg.inject));
    m.insert("timeout_s".into(), json!(cfg.timeout.as_secs_f64()));
    m.insert("role".into(), json!(role.name()));
    m.insert("latency".into(), json!("half round trip per iteration"));
    if cfg.mem.any_vram() {
        crate::run::segments::config_keys(&mut m, &cfg.mem, role, cfg.verify);
        m.remove("vram_alloc");
        if cfg.verify {
            m.insert(
                "verify_copies".into(),
                json!(
                    "pattern copied host to device before each send and device to host after \
                       each receive, inside the timed loop"
                ),
            );
        }
    }
    m
}

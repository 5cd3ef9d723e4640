//! `pingpong`: fi_pingpong's measurement, in one process over the loopback or across two.

mod result;
pub mod rma;
mod rounds;

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::bench::pingpong::{run_timed, warm_up, PingPongTransport, SizeParams, SizeSamples};
use crate::bench::BenchError;
use crate::bootstrap::{Fingerprint, Oob};
use crate::channel::{MsgChannel, MsgMode};
use crate::fabric::{self, caps, select_info, EndpointSpec, EndpointType};
use crate::mem::HostStaged;
use crate::peer::Side;
use crate::report::ResultDoc;
use crate::run::memory::{libfabric_endpoint_bytes, MemoryNeed};
use crate::run::path::PairProbe;
use crate::run::sched::CpuPlan;
use crate::run::segments::{check_device, check_hmem, MemKinds, SegKind};
use crate::run::two_sided::PairRun;
pub use crate::run::two_sided::{Progress, SideOutcome};
use crate::run::{environment, RunError};
use crate::stats::Count;
use crate::units::human_size;
pub(crate) use result::{add_precision, both_ways};
pub(crate) use rounds::Measured;
use rounds::{run_rounds, Figures, Reopen, RoundChannel};

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
    /// The CPUs each side's thread is pinned to, the initiator's first in one process
    /// (`--cpus`; empty: none).
    pub cpus: CpuPlan,
}

pub use crate::stats::{AUTO_ROUNDS, MAX_ROUNDS};

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
            Some(c) => c.per_round(self.rounds),
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
        crate::stats::check_rounds(self.rounds).map_err(RunError::Config)?;
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
    fn cpus(&self) -> &CpuPlan {
        &self.cpus
    }
    fn memory(&self) -> MemoryNeed {
        // A send and a receive buffer of the largest size, for each round (a round's buffers
        // are held until the run ends).
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
    let conn = connect(cfg, role, oob)?;
    let mut doc = ResultDoc::new("kvxfer", "pingpong", "L0");
    doc.config = config_map(cfg, role);
    doc.environment = environment::with_fabric(&conn.info);
    let max = *cfg.sizes.iter().max().expect("validated: sizes not empty") as usize;
    let (mode, inject, timeout) = (cfg.mode, cfg.inject, cfg.timeout);
    let outcome = match cfg.seg_of(role) {
        SegKind::Dram => in_rounds(cfg, role, oob, progress, &mut doc, conn, |conn| {
            Ok(MsgChannel::new(conn, max, mode, inject, timeout)?)
        }),
        SegKind::Vram => in_rounds(cfg, role, oob, progress, &mut doc, conn, |conn| {
            let (tx, rx) = vram_slots(cfg, max)?;
            Ok(MsgChannel::over(conn, tx, rx, mode, inject, timeout)?)
        }),
    };
    Ok(SideOutcome {
        doc: crate::run::conclude(doc, outcome)?,
    })
}

/// This side's endpoint connected to the peer's, their addresses traded over `oob`.
fn connect(
    cfg: &PingPongConfig,
    role: Side,
    oob: &mut Oob,
) -> Result<fabric::Connection, RunError> {
    let spec = cfg.endpoint_spec(cfg.caps(), Some(oob.local_ip()?));
    Ok(fabric::connect(&spec, role, &mut |ours: &[u8]| {
        oob.exchange(ours).map_err(|e| e.to_string())
    })?)
}

/// Every size of the run (see [`sizes`]) on channels `make` builds: the first over `conn`,
/// each later round's over a fresh connection.
fn in_rounds<B: HostStaged>(
    cfg: &PingPongConfig,
    role: Side,
    oob: &mut Oob,
    progress: &mut dyn FnMut(Progress),
    doc: &mut ResultDoc,
    conn: fabric::Connection,
    make: impl Fn(fabric::Connection) -> Result<MsgChannel<B>, RunError>,
) -> Result<(), RunError> {
    let mut again = |oob: &mut Oob| make(connect(cfg, role, oob)?);
    make(conn).and_then(|ch| sizes(cfg, role, oob, progress, doc, ch, &mut again))
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

impl<B: HostStaged> RoundChannel for MsgChannel<B> {
    type Held = (Option<B>, Option<B>);
    fn retire(self) -> Self::Held {
        self.into_buffers()
    }
}

/// Every size of the run on channel `ch`, each a result of `doc`, in rounds (see
/// [`rounds`]), each round after the first on a fresh channel from `reopen`.
fn sizes<B: HostStaged>(
    cfg: &PingPongConfig,
    role: Side,
    oob: &mut Oob,
    progress: &mut dyn FnMut(Progress),
    doc: &mut ResultDoc,
    ch: MsgChannel<B>,
    reopen: &mut Reopen<'_, MsgChannel<B>>,
) -> Result<(), RunError> {
    let inject_size = ch.inject_size() as u64;
    let mut probe = PairProbe::new(role.name());
    let mut one = |ch: &mut MsgChannel<B>, oob: &mut Oob, size: u64, probe: &mut PairProbe| {
        // A fresh channel's receive is posted here (posting again is a no-op).
        ch.post_recv()?;
        let s = one_size(ch, cfg, role, oob, probe, size)?;
        let path = probe.finish(oob, both_ways(size, &s))?;
        Ok((Some(s), path))
    };
    let mut m = Measured::new(&cfg.sizes, cfg.rounds);
    let outcome = run_rounds(oob, progress, ch, reopen, &mut one, &mut probe, &mut m);
    // What was measured is kept even when a later round failed.
    m.into_results(role, doc, |size| Figures {
        injected: Some(size <= inject_size),
        xfers: 2,
        count: cfg.iterations_for(size),
    });
    outcome
}

/// One size's warm-up and timed iterations on `ch`, read by `probe`.
fn one_size<B: HostStaged>(
    ch: &mut MsgChannel<B>,
    cfg: &PingPongConfig,
    role: Side,
    oob: &mut Oob,
    probe: &mut PairProbe,
    size: u64,
) -> Result<SizeSamples, RunError> {
    let p = cfg.size_params(size);
    let count = cfg.iterations_for(size);
    oob.barrier()?;
    let run = warm_up(ch, role, &p)
        .and_then(|()| probe.timed(oob, role, count, |pace| run_timed(ch, role, &p, pace)));
    run.map_err(|error| {
        probe
            .failure(format!("size {}", human_size(size)), error)
            .control_first()
    })
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
    if !cfg.cpus.list.is_empty() {
        m.insert("cpus".into(), json!(cfg.cpus.list));
    }
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

//! One worker of an xfer run on each side: connect, register, exchange regions, then per
//! iteration prepare (verify), meet at the barrier, transfer, check.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::tcp_stats::TcpCounters;
use super::xfer_config::{XferBackend, XferConfig, XferPlan, XferProgress};
use super::xfer_mem::SegKind;
use super::xfer_staging::Staging;
use super::RunError;
use crate::bench::xfer::{run_initiator_iteration, IterParams, IterSample};
use crate::bench::{pattern, BenchError};
use crate::bootstrap::Oob;
use crate::mem::SharedRegion;
use crate::report::Environment;
use crate::xfer::libfabric::{FabricInitiator, FabricTarget};
use crate::xfer::rails::{sum_rails, RailStats, RailedInitiator, RailedTarget};
use crate::xfer::ucx::{UcxInitiator, UcxTarget};
use crate::xfer::{
    InitiatorEnd, Library, RegionOffer, SetupTimes, TargetEnd, TargetEvent, XferError,
    XferInitiator, XferOp, XferTarget,
};

/// Empty polls before a worker yields its core (many workers share few cores).
const IDLE_POLLS_BEFORE_YIELD: u32 = 64;

/// Where a target worker's regions come from.
pub enum TargetMem {
    /// Allocate its own.
    Allocate,
    /// Parts of a shared allocation (`--reuse`).
    Regions(Vec<SharedRegion>),
}

/// What one worker measured, as the initiator reports it to the target and the result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerReport {
    /// Worker index: the initiator's numbering in its document, the target's in the target's.
    pub worker: usize,
    /// The worker's index at its target.
    pub target_worker: usize,
    /// Transfers this worker drove per iteration.
    pub transfers: usize,
    /// Fabric connection set-up, ns.
    pub connect_ns: u64,
    /// Registering the initiator's buffer the first time, ns.
    pub registration_first_ns: u64,
    /// Registering the same buffer again (a cache hit where the provider caches), ns.
    pub registration_cached_ns: u64,
    /// The target's first registration of its first region, ns.
    pub target_registration_first_ns: u64,
    /// The target's second registration of it, ns.
    pub target_registration_cached_ns: u64,
    /// The first iteration after the connection was made (warm-up or not).
    pub cold: Option<IterSample>,
    /// The timed iterations.
    pub timed: Vec<IterSample>,
    /// Bytes checked at the destination (--verify).
    pub verified_bytes: u64,
    /// The fabric the worker ran on.
    pub environment: Environment,
    /// `--staging host`: this side's copy time between device and bounce buffer per timed
    /// iteration, ns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub staging_ns: Vec<u64>,
    /// How this side registered its memory (libfabric: host, hmem or dmabuf).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<String>,
    /// Per rail, what the timed iterations carried (only with `--rails`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rails: Option<Vec<RailStats>>,
    /// The host's TCP counters over the timed iterations (the first initiator worker only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCounters>,
}

/// Per worker, what it measured so far (its report, updated after every iteration).
pub(super) type KeptReports = std::sync::Arc<Vec<Mutex<Option<WorkerReport>>>>;

/// One slot per worker of `plan` for what it measured so far.
pub(super) fn kept_reports(plan: &XferPlan) -> KeptReports {
    std::sync::Arc::new((0..plan.workers).map(|_| Mutex::new(None)).collect())
}

/// The target's offer: its worker index and its regions (in the backend's form), with its
/// registration costs.
#[derive(Serialize, Deserialize)]
pub(super) struct Offer {
    #[serde(flatten)]
    pub facts: TargetFacts,
    pub regions: RegionOffer,
}

/// What the target tells the initiator at the end.
#[derive(Serialize, Deserialize)]
pub(super) struct TargetSummary {
    pub verified_bytes: u64,
}

/// The pattern's seed of transfer `t` of worker `worker` in iteration `iteration`.
pub(super) fn seq(worker: usize, transfers: usize, t: usize, iteration: u64) -> u64 {
    (((worker * transfers + t) as u64) << 32) | iteration
}

/// A benchmark error located at `at`.
pub(super) fn bench_err<E: Into<BenchError>>(at: String) -> impl FnOnce(E) -> RunError {
    move |error| RunError::Bench {
        at,
        error: error.into(),
    }
}

/// The exchange of the ends' addresses over `oob`.
fn exchange(oob: &mut Oob) -> impl FnMut(&[u8]) -> Result<Vec<u8>, String> + '_ {
    |ours: &[u8]| oob.exchange(ours).map_err(|e| e.to_string())
}

/// Connects an initiator end of `cfg`'s backend and registers `local`.
fn connect_initiator(
    cfg: &XferConfig,
    oob: &mut Oob,
    local: SharedRegion,
    transfers: usize,
) -> Result<(Box<dyn InitiatorEnd>, SetupTimes), RunError> {
    let (size, op, timeout) = (cfg.size as usize, cfg.op, cfg.timeout);
    let vram = cfg.mem.initiator == SegKind::Vram;
    Ok(match cfg.backend {
        XferBackend::Libfabric => match cfg.rail_specs(oob, vram)? {
            Some(specs) => {
                let threshold = cfg.stripe_threshold as usize;
                let mut ex = exchange(oob);
                let (end, t) = RailedInitiator::connect(
                    &specs, &mut ex, local, transfers, size, op, timeout, threshold,
                )?;
                (Box::new(end), t)
            }
            None => {
                let spec = cfg.spec(oob)?;
                let mut ex = exchange(oob);
                let (end, t) =
                    FabricInitiator::connect(&spec, &mut ex, local, transfers, size, op, timeout)?;
                (Box::new(end), t)
            }
        },
        XferBackend::Ucx => {
            let mut ex = exchange(oob);
            let (end, t) = UcxInitiator::connect(&mut ex, local, transfers, size, op, timeout)?;
            (Box::new(end), t)
        }
    })
}

/// Connects a target end of `cfg`'s backend and registers `regions`.
pub(super) fn connect_target(
    cfg: &XferConfig,
    oob: &mut Oob,
    regions: Vec<SharedRegion>,
) -> Result<(Box<dyn TargetEnd>, SetupTimes), RunError> {
    let vram = cfg.mem.target == SegKind::Vram;
    Ok(match cfg.backend {
        XferBackend::Libfabric => match cfg.rail_specs(oob, vram)? {
            Some(specs) => {
                let mut ex = exchange(oob);
                let (end, t) = RailedTarget::connect(&specs, &mut ex, regions, cfg.timeout)?;
                (Box::new(end), t)
            }
            None => {
                let spec = cfg.spec(oob)?;
                let mut ex = exchange(oob);
                let (end, t) = FabricTarget::connect(&spec, &mut ex, regions, cfg.timeout)?;
                (Box::new(end), t)
            }
        },
        XferBackend::Ucx => {
            let mut ex = exchange(oob);
            let (end, t) = UcxTarget::connect(&mut ex, regions)?;
            (Box::new(end), t)
        }
    })
}

/// The environment of the library `end` runs on.
fn environment(end: &dyn InitiatorEnd) -> Environment {
    match end.library() {
        Library::Libfabric(info) => super::environment::with_fabric(info),
        Library::Ucx(ctx, ep) => {
            let mut env = super::environment::base();
            super::environment::add_ucx(&mut env, ctx, ep);
            env
        }
    }
}

/// Checks `buf` against the pattern of `seq`.
pub(super) fn check(buf: &[u8], seq: u64, iteration: u64) -> Result<(), BenchError> {
    match pattern::check(buf, seq) {
        None => Ok(()),
        Some((offset, expected, got)) => Err(BenchError::Verify {
            iteration,
            offset,
            expected,
            got,
        }),
    }
}

/// How an initiator worker reaches its target: over the control connection (the target in
/// another thread or process), or as the other end its own thread drives.
pub(super) trait TargetLink {
    /// Connects this worker's initiator end over `local` (`per` transfers) to the target and
    /// gives it the target's regions; the target's index and registration costs.
    fn connect(
        &mut self,
        cfg: &XferConfig,
        local: SharedRegion,
        per: usize,
    ) -> Result<(Box<dyn InitiatorEnd>, SetupTimes, TargetFacts), RunError>;

    /// Meets the target before iteration `i`, once its regions are ready.
    fn meet(&mut self, i: u64) -> Result<(), RunError>;

    /// Runs one iteration's transfers through `ep`.
    fn transfer(
        &mut self,
        ep: &mut dyn InitiatorEnd,
        p: &IterParams,
    ) -> Result<IterSample, BenchError>;

    /// After iteration `i`'s transfers: the target's own work on what arrived.
    fn after(&mut self, i: u64) -> Result<(), RunError>;

    /// Ends the run with this worker's `report`; the bytes the target verified.
    fn finish(&mut self, report: &WorkerReport) -> Result<u64, RunError>;
}

/// What the initiator learns of its target when it connects.
#[derive(Serialize, Deserialize)]
pub(super) struct TargetFacts {
    /// The target's worker index.
    pub worker: usize,
    /// The target's first registration of its first region, ns.
    pub registration_first_ns: u64,
    /// The target's second registration of it, ns.
    pub registration_cached_ns: u64,
}

impl TargetFacts {
    /// The facts of target worker `worker` whose set-up took `setup`.
    pub fn of(worker: usize, setup: &SetupTimes) -> TargetFacts {
        TargetFacts {
            worker,
            registration_first_ns: setup.registration_first_ns,
            registration_cached_ns: setup.registration_cached_ns,
        }
    }
}

/// The target at the other end of a control connection.
struct OobLink<'a>(&'a mut Oob);

impl TargetLink for OobLink<'_> {
    fn connect(
        &mut self,
        cfg: &XferConfig,
        local: SharedRegion,
        per: usize,
    ) -> Result<(Box<dyn InitiatorEnd>, SetupTimes, TargetFacts), RunError> {
        let (mut ep, setup) = connect_initiator(cfg, self.0, local, per)?;
        let offer: Offer = self.0.recv_json()?;
        ep.set_remote(offer.regions)?;
        Ok((ep, setup, offer.facts))
    }

    fn meet(&mut self, _i: u64) -> Result<(), RunError> {
        Ok(self.0.barrier()?)
    }

    fn transfer(
        &mut self,
        ep: &mut dyn InitiatorEnd,
        p: &IterParams,
    ) -> Result<IterSample, BenchError> {
        run_initiator_iteration(&mut Idle::new(ep), p)
    }

    fn after(&mut self, _i: u64) -> Result<(), RunError> {
        Ok(()) // the target checks in its own thread
    }

    fn finish(&mut self, report: &WorkerReport) -> Result<u64, RunError> {
        self.0.send_json(report)?;
        let summary: TargetSummary = self.0.recv_json()?;
        Ok(summary.verified_bytes)
    }
}

/// Runs one initiator worker against the target on `oob`; returns its report. From the
/// connection on, `kept` holds what it measured so far (updated after every iteration, so a
/// watcher can take it while the worker waits on the fabric).
pub fn initiator_worker(
    cfg: &XferConfig,
    plan: &XferPlan,
    local_index: usize,
    mut oob: Oob,
    progress: &XferProgress,
    kept: &Mutex<Option<WorkerReport>>,
) -> Result<WorkerReport, RunError> {
    let r = initiator_run(
        cfg,
        plan,
        local_index,
        &mut OobLink(&mut oob),
        progress,
        kept,
    );
    if let Err(e) = &r {
        oob.report_failure(&e.to_string());
    }
    r
}

/// Runs one initiator worker against the target `link` reaches; returns its report, keeping
/// what it measured so far in `kept`.
pub(super) fn initiator_run(
    cfg: &XferConfig,
    plan: &XferPlan,
    local_index: usize,
    link: &mut dyn TargetLink,
    progress: &XferProgress,
    kept: &Mutex<Option<WorkerReport>>,
) -> Result<WorkerReport, RunError> {
    let per = plan.transfers_per_worker;
    let size = cfg.size as usize;
    let staging = Staging::for_side(&cfg.mem, cfg.mem.initiator, 1, per * size)?;
    let net = cfg.mem.alloc_network(cfg.mem.initiator, per * size)?;
    let local = SharedRegion::split(net, 1, per * size)
        .and_then(|v| v.into_iter().next())
        .ok_or_else(|| RunError::Config("cannot allocate the initiator buffer".into()))?;
    let (mut ep, setup, target) = link.connect(cfg, local, per)?;
    let mut report = WorkerReport {
        worker: local_index,
        target_worker: target.worker,
        transfers: per,
        connect_ns: setup.connect_ns,
        registration_first_ns: setup.registration_first_ns,
        registration_cached_ns: setup.registration_cached_ns,
        target_registration_first_ns: target.registration_first_ns,
        target_registration_cached_ns: target.registration_cached_ns,
        cold: None,
        timed: Vec::with_capacity(cfg.iterations as usize),
        verified_bytes: 0,
        environment: environment(&*ep),
        registration: setup.registration.map(String::from),
        staging_ns: Vec::new(),
        rails: None,
        tcp: None,
    };
    *kept.lock().unwrap_or_else(|p| p.into_inner()) = Some(report.clone());
    let mut run = InitiatorRun {
        cfg,
        w: target.worker,
        per,
        params: IterParams {
            size,
            block: plan.block as usize,
            window: cfg.window,
            transfers: per,
            timeout: cfg.timeout,
        },
        staging,
        tcp_before: None,
        first: local_index == 0,
    };
    let result = (|| -> Result<(), RunError> {
        for i in 0..cfg.warmup + cfg.iterations {
            run.iteration(&mut *ep, link, &mut report, i)?;
            keep(kept, &report);
            progress.tick();
        }
        if let Some(before) = run.tcp_before {
            report.tcp = TcpCounters::read().map(|now| now.since(&before));
        }
        report.staging_ns = run.staging.take().map(Staging::take).unwrap_or_default();
        report.environment = environment(&*ep);
        report.verified_bytes += link.finish(&report)?;
        Ok(())
    })();
    match result {
        Ok(()) => Ok(report),
        Err(e) => {
            report.environment = environment(&*ep);
            *kept.lock().unwrap_or_else(|p| p.into_inner()) = Some(report);
            Err(e)
        }
    }
}

/// One initiator worker's iterations: what each prepares, runs and checks.
struct InitiatorRun<'a> {
    cfg: &'a XferConfig,
    /// The target's worker index (the pattern's seed).
    w: usize,
    per: usize,
    params: IterParams,
    staging: Option<Staging>,
    /// The host's TCP counters before the first timed iteration (the first worker only:
    /// they are host-wide).
    tcp_before: Option<TcpCounters>,
    first: bool,
}

impl InitiatorRun<'_> {
    /// Iteration `i`: fills and stages the buffer, meets the target, transfers, drains,
    /// stages back and checks; its sample goes into `report`.
    fn iteration(
        &mut self,
        ep: &mut dyn InitiatorEnd,
        link: &mut dyn TargetLink,
        report: &mut WorkerReport,
        i: u64,
    ) -> Result<(), RunError> {
        let (cfg, w, per, size) = (self.cfg, self.w, self.per, self.cfg.size as usize);
        let timed = i >= cfg.warmup;
        if cfg.verify {
            let local = match self.staging.as_mut() {
                Some(s) => s.device_mut(0),
                None => ep.local_mut(),
            };
            let local = local.expect("nothing in flight between iterations");
            local.fill_with(|local| {
                for (t, part) in local.chunks_mut(size).enumerate() {
                    match cfg.op {
                        XferOp::Write | XferOp::Send => pattern::fill(part, seq(w, per, t, i)),
                        XferOp::Read => part.fill(0),
                    }
                }
            })?;
        }
        if let Some(s) = self.staging.as_mut().filter(|_| cfg.op != XferOp::Read) {
            let ns = s.out(0, ep.local_mut().expect("nothing in flight"))?;
            if timed {
                s.record(ns);
            }
        }
        if timed && !cfg.idle_before_timed.is_zero() {
            std::thread::sleep(cfg.idle_before_timed);
        }
        if i == cfg.warmup && self.first {
            self.tcp_before = TcpCounters::read();
        }
        link.meet(i)?;
        let at = || format!("worker {w}, iteration {i}");
        let sample = link.transfer(ep, &self.params).map_err(bench_err(at()))?;
        ep.drain().map_err(bench_err(at()))?;
        link.after(i)?;
        if let Some(s) = self.staging.as_mut().filter(|_| cfg.op == XferOp::Read) {
            let ns = s.back(0, ep.local_mut().expect("drained"))?;
            if timed {
                s.record(ns);
            }
        }
        if cfg.verify && cfg.op == XferOp::Read {
            let local = match self.staging.as_mut() {
                Some(s) => s.device_mut(0),
                None => ep.local_mut(),
            };
            let local = local.expect("drained");
            local.read_with(|local| {
                local.chunks(size).enumerate().try_for_each(|(t, part)| {
                    check(part, seq(w, per, t, i), i)
                        .map_err(bench_err(format!("worker {w}, transfer {t}")))
                })
            })??;
            report.verified_bytes += (per * size) as u64;
        }
        if i == 0 {
            report.cold = Some(sample.clone());
        }
        let rails = ep.take_rail_stats();
        if timed {
            report.timed.push(sample);
            if let Some(now) = rails {
                sum_rails(&mut report.rails, &now);
            }
        }
        Ok(())
    }
}

/// Brings the copy in `kept` up to `report` (one new sample at most per iteration).
fn keep(kept: &Mutex<Option<WorkerReport>>, report: &WorkerReport) {
    let mut k = kept.lock().unwrap_or_else(|p| p.into_inner());
    let Some(k) = k.as_mut() else { return };
    k.cold.clone_from(&report.cold);
    k.rails.clone_from(&report.rails);
    k.verified_bytes = report.verified_bytes;
    if let Some(s) = report.timed.get(k.timed.len()) {
        k.timed.push(s.clone());
    }
}

/// Counts an empty poll (`got` false) and yields the core after enough of them in a row.
pub(super) fn idle_tick(idle: &mut u32, got: bool) {
    if got {
        *idle = 0;
    } else {
        *idle += 1;
        if *idle >= IDLE_POLLS_BEFORE_YIELD {
            *idle = 0;
            std::thread::yield_now();
        }
    }
}

/// An end with its idle count: many workers share few cores, so one that keeps finding
/// nothing yields now and then.
pub(super) struct Idle<'a, E: ?Sized> {
    pub end: &'a mut E,
    idle: u32,
}

impl<'a, E: ?Sized> Idle<'a, E> {
    /// `end`, not idle yet.
    pub fn new(end: &'a mut E) -> Self {
        Idle { end, idle: 0 }
    }
}

impl<E: InitiatorEnd + ?Sized> XferInitiator for Idle<'_, E> {
    #[inline]
    fn post(&mut self, tr: u32, c: u32, off: usize, len: usize) -> Result<bool, XferError> {
        self.end.post(tr, c, off, len)
    }
    #[inline]
    fn poll(&mut self, done: &mut Vec<(u32, u32)>) -> Result<(), XferError> {
        let before = done.len();
        self.end.poll(done)?;
        idle_tick(&mut self.idle, done.len() > before);
        Ok(())
    }
    fn notify(&mut self, tr: u32, chunks: u64) -> Result<(), XferError> {
        self.end.notify(tr, chunks)
    }
    #[inline]
    fn poll_confirmed(&mut self, out: &mut Vec<u32>) -> Result<(), XferError> {
        self.end.poll_confirmed(out)
    }
}

impl<E: TargetEnd + ?Sized> XferTarget for Idle<'_, E> {
    #[inline]
    fn poll(&mut self, out: &mut Vec<TargetEvent>) -> Result<(), XferError> {
        let before = out.len();
        self.end.poll(out)?;
        idle_tick(&mut self.idle, out.len() > before);
        Ok(())
    }
    fn confirm(&mut self, tr: u32) -> Result<(), XferError> {
        self.end.confirm(tr)
    }
}

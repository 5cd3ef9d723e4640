//! The initiator's side of an xfer worker: connect, register, take the target's regions,
//! then per iteration prepare (verify, stage), meet the target, transfer, check; and how an
//! initiator reaches its target (the control connection, or the end its own thread drives).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::config::{Sides, XferBackend, XferConfig, XferPlan, XferProgress};
use super::link::TargetLink;
use super::pace::SharedPace;
use super::staging::Staging;
use super::worker::{
    bench_err, check, exchange, join_each, kept_reports, seq, Collected, Idle, KeptReports, Offer,
    TargetFacts, TargetSummary, WorkerReport, CLOSE_SESSION, OPEN_SESSION,
};
use crate::bench::pattern;
use crate::bench::xfer::{run_initiator_iteration, IterParams, IterSample};
use crate::bench::BenchError;
use crate::bootstrap::Oob;
use crate::mem::{Backing, SharedRegion};
use crate::peer::Side;
use crate::report::{Environment, ResultDoc};
use crate::run::path::{Probe, SpanGate};
use crate::run::sched::SchedMark;
use crate::run::segments::SegKind;
use crate::run::RunError;
use crate::stats::StoppedBy;
use crate::xfer::libfabric::FabricInitiator;
use crate::xfer::rails::{sum_rails, RailedInitiator};
use crate::xfer::ucx::UcxInitiator;
use crate::xfer::{InitiatorEnd, Library, SetupTimes, XferOp};

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

/// The environment of the library `end` runs on.
fn environment(end: &dyn InitiatorEnd) -> Environment {
    match end.library() {
        Library::Libfabric(info) => crate::run::environment::with_fabric(info),
        Library::Ucx(ctx, ep) => {
            let mut env = crate::run::environment::base();
            crate::run::environment::add_ucx(&mut env, ctx, ep);
            env
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

    fn finish(&mut self, report: &mut WorkerReport) -> Result<(), RunError> {
        self.0.send_json(&*report)?;
        let summary: TargetSummary = self.0.recv_json()?;
        report.verified_bytes += summary.verified_bytes;
        report.target_path = summary.path;
        report.target_sched = summary.sched;
        Ok(())
    }

    fn open_session(&mut self) -> Result<(), RunError> {
        self.0.send_frame(OPEN_SESSION)?;
        self.0.recv_frame()?;
        Ok(())
    }

    fn close_session(&mut self) -> Result<(), RunError> {
        self.0.send_frame(CLOSE_SESSION)?;
        self.0.recv_frame()?;
        Ok(())
    }
}

/// What an initiator worker shares with the side's other workers: the progress count, the
/// gate of the counter readings around the timed span, its slot for what it measured, and the
/// pace of the iterations.
pub(super) struct Shared<'a> {
    /// Finished iterations.
    pub progress: &'a XferProgress,
    /// The side's counter readings.
    pub gate: &'a SpanGate,
    /// What it measured so far (updated after every iteration, so a watcher can take it while
    /// the worker waits on the fabric).
    pub kept: &'a Mutex<Option<WorkerReport>>,
    /// The iterations of all the process's workers, decided together.
    pub pace: &'a SharedPace,
}

/// Runs one initiator worker against the target on `oob`; returns its report.
pub(super) fn initiator_worker(
    cfg: &XferConfig,
    plan: &XferPlan,
    local_index: usize,
    mut oob: Oob,
    shared: &Shared<'_>,
) -> Result<WorkerReport, RunError> {
    let r = initiator_run(cfg, plan, local_index, &mut OobLink(&mut oob), shared);
    if let Err(e) = &r {
        oob.report_failure(&e.to_string());
    }
    r
}

/// Runs one initiator worker against the target `link` reaches; returns its report, keeping
/// what it measured so far in `shared.kept`. A failed worker abandons the side's gate.
pub(super) fn initiator_run(
    cfg: &XferConfig,
    plan: &XferPlan,
    local_index: usize,
    link: &mut dyn TargetLink,
    shared: &Shared<'_>,
) -> Result<WorkerReport, RunError> {
    let r = initiator_steps(cfg, plan, local_index, link, shared);
    if r.is_err() {
        shared.gate.abandon();
    }
    r
}

fn initiator_steps(
    cfg: &XferConfig,
    plan: &XferPlan,
    local_index: usize,
    link: &mut dyn TargetLink,
    shared: &Shared<'_>,
) -> Result<WorkerReport, RunError> {
    let (progress, kept) = (shared.progress, shared.kept);
    let per = plan.transfers_per_worker;
    let size = cfg.size as usize;
    let staging = Staging::for_side(&cfg.mem, cfg.mem.initiator, 1, per * size)?;
    let net = cfg.mem.alloc_network(cfg.mem.initiator, per * size)?;
    let local = SharedRegion::split(net, 1, per * size)
        .and_then(|v| v.into_iter().next())
        .ok_or_else(|| RunError::Config("cannot allocate the initiator buffer".into()))?;
    // Read once here, before any connection (a read of smaps walks every page the process maps).
    let pages = crate::mem::backing_of(&local);
    let (mut ep, setup, target) = link.connect(cfg, local, per)?;
    let env = environment(&*ep);
    let mut report = first_report(cfg, local_index, per, &setup, pages, &target, env);
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
        gate: shared.gate,
        sched_from: None,
    };
    let result = (|| -> Result<(), RunError> {
        if cfg.open.is_some() {
            // The side reads its counters once every worker is here, before any session.
            shared.gate.start_and_wait(cfg.timeout);
        }
        report.open = super::open_loop::sessions(cfg, plan, local_index, &mut *ep, link)?;
        let mut i = 0;
        while cfg.open.is_none() && shared.pace.begin(i) {
            crate::stop::check()?;
            run.iteration(&mut *ep, link, &mut report, i)?;
            let timed = report.timed.last().filter(|_| i >= cfg.warmup);
            let e2e: Vec<u64> = timed.map_or_else(Vec::new, |s| {
                (0..per).map(|t| super::worker::e2e(cfg.op, s, t)).collect()
            });
            shared.pace.end(i, &e2e);
            keep(kept, &report);
            progress.tick();
            i += 1;
        }
        report.stopped_by = Some(shared.pace.stopped_by()).filter(|s| *s != StoppedBy::Fixed);
        report.blocks = shared.pace.blocks();
        report.sched = run.sched_from.and_then(|m| m.since());
        shared.gate.end();
        report.staging_ns = run.staging.take().map(Staging::take).unwrap_or_default();
        report.environment = environment(&*ep);
        link.finish(&mut report)?;
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

/// Worker `local_index`'s report before its first iteration: its connection's set-up
/// figures and its buffer's backing, and the target's (`per` transfers each iteration), on a
/// host described by `env`.
fn first_report(
    cfg: &XferConfig,
    local_index: usize,
    per: usize,
    setup: &SetupTimes,
    pages: Option<Backing>,
    target: &TargetFacts,
    env: Environment,
) -> WorkerReport {
    WorkerReport {
        worker: local_index,
        target_worker: target.worker,
        transfers: per,
        connect_ns: setup.connect_ns,
        registration_first_ns: setup.registration_first_ns,
        registration_cached_ns: setup.registration_cached_ns,
        target_registration_first_ns: target.registration_first_ns,
        target_registration_cached_ns: target.registration_cached_ns,
        pages,
        target_pages: target.pages,
        cold: None,
        timed: Vec::with_capacity(cfg.iterations.fixed().unwrap_or(0).min(1 << 16) as usize),
        verified_bytes: 0,
        environment: env,
        registration: setup.registration.map(String::from),
        staging_ns: Vec::new(),
        rails: None,
        target_path: None,
        stopped_by: None,
        blocks: None,
        open: Vec::new(),
        rounds: Vec::new(),
        sched: None,
        target_sched: None,
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
    /// The side's counter readings around the timed span.
    gate: &'a SpanGate,
    /// This thread's scheduler counters at the start of its timed span.
    sched_from: Option<SchedMark>,
}

impl InitiatorRun<'_> {
    /// Iteration `i`: prepares the buffer, meets the target, transfers, drains, finishes;
    /// its sample goes into `report`.
    fn iteration(
        &mut self,
        ep: &mut dyn InitiatorEnd,
        link: &mut dyn TargetLink,
        report: &mut WorkerReport,
        i: u64,
    ) -> Result<(), RunError> {
        let cfg = self.cfg;
        let timed = i >= cfg.warmup;
        self.prepare(ep, i)?;
        if timed && !cfg.idle_before_timed.is_zero() {
            std::thread::sleep(cfg.idle_before_timed);
        }
        if i == cfg.warmup {
            // Before this worker's first timed iteration, nothing of it in flight.
            self.sched_from = SchedMark::now();
            self.gate.start();
        }
        link.meet(i)?;
        let w = self.w;
        let at = || format!("worker {w}, iteration {i}");
        let sample = link.transfer(ep, &self.params).map_err(bench_err(at()))?;
        ep.drain().map_err(bench_err(at()))?;
        link.after(i)?;
        self.finish(ep, report, i)?;
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

    /// Before iteration `i`: fills the buffer for --verify (zeroes it for reads), stages
    /// what a write sends, and evicts it from the CPU caches for --cold-cache.
    fn prepare(&mut self, ep: &mut dyn InitiatorEnd, i: u64) -> Result<(), RunError> {
        let (cfg, w, per, size) = (self.cfg, self.w, self.per, self.cfg.size as usize);
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
            if i >= cfg.warmup {
                s.record(ns);
            }
        }
        if cfg.cold_cache {
            // Last, after the pattern and the staging copy have touched it.
            let local = ep
                .local_mut()
                .expect("nothing in flight between iterations");
            local.evict_from_cpu_caches();
        }
        Ok(())
    }

    /// After iteration `i`: stages back what a read brought and checks it for --verify.
    fn finish(
        &mut self,
        ep: &mut dyn InitiatorEnd,
        report: &mut WorkerReport,
        i: u64,
    ) -> Result<(), RunError> {
        let (cfg, w, per, size) = (self.cfg, self.w, self.per, self.cfg.size as usize);
        if let Some(s) = self.staging.as_mut().filter(|_| cfg.op == XferOp::Read) {
            let ns = s.back(0, ep.local_mut().expect("drained"))?;
            if i >= cfg.warmup {
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

/// The initiator side's document from its workers' reports: complete, or partial over the
/// iterations every worker finished when the error stopped it (the error alone when a worker
/// measured nothing).
pub(super) fn doc(cfg: &XferConfig, got: Collected) -> Result<ResultDoc, RunError> {
    let plan = cfg.validate(Sides::One(Side::Initiator))?;
    let (reports, span) = (got.reports, got.span.as_ref());
    let Some(e) = got.error else {
        return Ok(super::report::build(
            cfg,
            &plan,
            Side::Initiator,
            &reports,
            span,
        ));
    };
    if reports.is_empty() || reports.iter().any(|r| r.timed.is_empty()) {
        return Err(e);
    }
    let doc = super::report::build(cfg, &plan, Side::Initiator, &reports, span);
    crate::run::conclude(doc, Err(e))
}

/// How often a watched run asks its watcher.
const WATCH: Duration = Duration::from_millis(250);

/// How often the workers are looked at while they run.
const POLL: Duration = Duration::from_millis(20);

/// How long workers have, after a signal asked the run to stop, to stop by themselves before
/// the run ends without the ones still waiting.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Runs the initiator side's workers against the targets at `peers`: the reports of the
/// workers that finished and what the failed ones measured, with the error that names the
/// cause when any failed. With `watch`, asks it every quarter second while the workers run:
/// when it names a cause, the run ends there with what every worker measured so far (a worker
/// still waiting on the fabric or its target is left behind).
pub(super) fn reports(
    cfg: &XferConfig,
    peers: &[String],
    progress: &XferProgress,
    watch: Option<&mut dyn FnMut() -> Option<RunError>>,
) -> Result<Collected, RunError> {
    if peers.is_empty() {
        return Err(RunError::Config("no target given".into()));
    }
    let plan = cfg.validate(Sides::One(Side::Initiator))?;
    let kept = kept_reports(&plan);
    let pace = Arc::new(SharedPace::new(cfg.iterations, cfg.warmup));
    let gate = Arc::new(SpanGate::new(Probe::host(), plan.workers));
    let mut handles = Vec::with_capacity(plan.workers);
    for w in 0..plan.workers {
        let peer = peers[w % peers.len()].clone();
        let cfg = cfg.clone();
        let progress = progress.clone();
        let (kept, gate, pace) = (kept.clone(), gate.clone(), pace.clone());
        let h = std::thread::Builder::new()
            .name(format!("kvxfer-initiator-{w}"))
            .spawn(move || {
                let shared = Shared {
                    progress: &progress,
                    gate: &gate,
                    kept: &kept[w],
                    pace: &pace,
                };
                let pinned = cfg.cpus.pin(w).map_err(RunError::Config);
                pinned.inspect_err(|_| gate.abandon())?;
                let oob = Oob::connect(&peer, &cfg.fingerprint(), cfg.timeout);
                let oob = oob.inspect_err(|_| gate.abandon())?;
                initiator_worker(&cfg, &plan, w, oob, &shared)
            })
            .map_err(|source| RunError::Spawn {
                what: "an initiator worker",
                source,
            })?;
        handles.push(h);
    }
    Ok(collect(handles, &kept, &gate, watch))
}

/// Waits for the initiator workers, asking `watch` every quarter second while they run: the
/// reports of those that finished, what the others measured, and the error that names the
/// cause when any failed (or when `watch` named one, or a signal asked the run to stop and
/// some worker did not within [`STOP_GRACE`]: the run ends there and a worker still waiting on
/// the fabric or its target is left behind).
pub(super) fn collect(
    handles: Vec<std::thread::JoinHandle<Result<WorkerReport, RunError>>>,
    kept: &KeptReports,
    gate: &SpanGate,
    mut watch: Option<&mut dyn FnMut() -> Option<RunError>>,
) -> Collected {
    let take = |w: usize| kept[w].lock().unwrap_or_else(|p| p.into_inner()).take();
    let (mut watched, mut stopped_at) = (std::time::Instant::now(), None);
    while !handles.iter().all(|h| h.is_finished()) {
        let mut cause = None;
        if let Some(w) = watch.as_mut().filter(|_| watched.elapsed() >= WATCH) {
            watched = std::time::Instant::now();
            cause = w();
        }
        if let (None, Some(s)) = (&cause, crate::stop::requested()) {
            let at = *stopped_at.get_or_insert_with(std::time::Instant::now);
            cause =
                (at.elapsed() > STOP_GRACE).then_some(RunError::Stopped(crate::stop::Stopped(s)));
        }
        if let Some(e) = cause {
            let mut reports = Vec::new();
            for (w, h) in handles.into_iter().enumerate() {
                match h.is_finished().then(|| h.join()) {
                    Some(Ok(Ok(r))) => reports.push(r),
                    _ => reports.extend(take(w)),
                }
            }
            return Collected {
                reports,
                error: Some(e),
                span: gate.readings(),
            };
        }
        std::thread::sleep(POLL);
    }
    let workers = handles.len();
    let (mut reports, error) = join_each(handles);
    if error.is_some() {
        // What the failed workers measured, beside the finished workers' reports.
        let done: Vec<usize> = reports.iter().map(|r| r.worker).collect();
        for w in (0..workers).filter(|w| !done.contains(w)) {
            reports.extend(take(w));
        }
    }
    Collected {
        reports,
        error,
        span: gate.readings(),
    }
}

//! The target's side of an xfer worker: its regions, their preparation before each iteration
//! (zeroed or filled for --verify, staged, receives armed) and their check after it, and the
//! target worker that meets its initiator over the control connection.

use super::config::XferBackend;
use super::config::{Sides, XferConfig, XferPlan};
use super::staging::Staging;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Map};

use super::sync::TimedBarrier;
use super::worker::{
    bench_err, check, exchange, join_all, seq, Collected, Idle, Offer, TargetFacts, TargetSummary,
    WorkerReport, CLOSE_SESSION, OPEN_SESSION,
};
use crate::bench::pattern;
use crate::bench::xfer::{plan_chunks, run_target_iteration, run_target_open};
use crate::bench::BenchError;
use crate::bootstrap::{BootstrapError, Oob, OobListener};
use crate::mem::{Backing, SharedRegion};
use crate::peer::Side;
use crate::report::{ResultDoc, SizeResult};
use crate::run::path::{Payload, Probe, SpanGate, SpanReadings};
use crate::run::sched::SchedMark;
use crate::run::segments::SegKind;
use crate::run::RunError;
use crate::xfer::libfabric::FabricTarget;
use crate::xfer::rails::RailedTarget;
use crate::xfer::ucx::UcxTarget;
use crate::xfer::SetupTimes;
use crate::xfer::{TargetEnd, XferOp};

/// The regions of one target worker (its own, or its part of a shared allocation), and how the
/// first one's host memory is backed (read once here, before any connection: a read of smaps
/// walks every page the process maps).
pub(super) fn target_regions(
    cfg: &XferConfig,
    per: usize,
    mem: TargetMem,
) -> Result<(Vec<SharedRegion>, Option<Backing>), RunError> {
    let regions = match mem {
        TargetMem::Regions(r) => r,
        TargetMem::Allocate => {
            let size = cfg.size as usize;
            let net = cfg.mem.alloc_network(cfg.mem.target, per * size)?;
            SharedRegion::split(net, per, size)
                .ok_or_else(|| RunError::Config("cannot split the target buffer".into()))?
        }
    };
    if let Some(r) = regions.first() {
        // Device memory's context current on this worker's thread, as UCX's CUDA transports
        // expect.
        r.bind_thread()?;
    }
    let pages = regions.first().and_then(crate::mem::backing_of);
    Ok((regions, pages))
}

/// One target worker's regions between iterations: what it prepares and checks.
pub(super) struct TargetSide {
    /// The worker's index (the pattern's seed).
    pub w: usize,
    /// Transfers per iteration.
    pub per: usize,
    /// Device memory's host bounce buffers (`--staging host`).
    pub staging: Option<Staging>,
    /// Bytes checked so far.
    pub verified: u64,
}

impl TargetSide {
    /// The side of worker `w` with `per` transfers.
    pub fn new(cfg: &XferConfig, w: usize, per: usize) -> Result<TargetSide, RunError> {
        let staging = Staging::for_side(&cfg.mem, cfg.mem.target, per, cfg.size as usize)?;
        Ok(TargetSide {
            w,
            per,
            staging,
            verified: 0,
        })
    }

    /// Before iteration `i`: zeroes (or, for reads, fills) the regions for --verify, stages
    /// what a read takes, evicts them from the CPU caches for --cold-cache, and arms the
    /// receives of tagged sends.
    pub fn prepare(
        &mut self,
        cfg: &XferConfig,
        plan: &XferPlan,
        end: &mut dyn TargetEnd,
        i: u64,
    ) -> Result<(), RunError> {
        let (w, per) = (self.w, self.per);
        let timed = i >= cfg.warmup;
        if cfg.verify {
            for t in 0..per {
                let r = match self.staging.as_mut() {
                    Some(s) => s.device_mut(t),
                    None => end.region_mut(t),
                };
                let r = r.expect("one region per transfer");
                r.fill_with(|r| match cfg.op {
                    XferOp::Write | XferOp::Send => r.fill(0),
                    XferOp::Read => pattern::fill(r, seq(w, per, t, i)),
                })?;
            }
        }
        if let Some(s) = self.staging.as_mut().filter(|_| cfg.op == XferOp::Read) {
            let mut ns = 0;
            for t in 0..per {
                ns += s.out(t, end.region_mut(t).expect("one region per transfer"))?;
            }
            if timed {
                s.record(ns);
            }
        }
        if cfg.cold_cache {
            // After the pattern and the staging copy have touched them, before receives are
            // armed over them.
            for t in 0..per {
                end.region_mut(t)
                    .expect("one region per transfer")
                    .evict_from_cpu_caches();
            }
        }
        if cfg.op == XferOp::Send {
            end.arm_receives(&plan_chunks(cfg.size as usize, plan.block as usize))?;
        }
        Ok(())
    }

    /// After iteration `i`: stages back what arrived and checks it for --verify.
    pub fn finish(
        &mut self,
        cfg: &XferConfig,
        end: &mut dyn TargetEnd,
        i: u64,
    ) -> Result<(), RunError> {
        let (w, per) = (self.w, self.per);
        if let Some(s) = self.staging.as_mut().filter(|_| cfg.op != XferOp::Read) {
            let mut ns = 0;
            for t in 0..per {
                ns += s.back(t, end.region_mut(t).expect("one region per transfer"))?;
            }
            if i >= cfg.warmup {
                s.record(ns);
            }
        }
        if cfg.verify && cfg.op != XferOp::Read {
            for t in 0..per {
                let r = match self.staging.as_mut() {
                    Some(s) => s.device_mut(t),
                    None => end.region_mut(t),
                };
                let r = r.expect("one region per transfer");
                r.read_with(|r| check(r, seq(w, per, t, i), i))?
                    .map_err(bench_err(format!("target worker {w}, transfer {t}")))?;
                self.verified += cfg.size;
            }
        }
        Ok(())
    }
}

/// What the target side's workers share: the barrier each iteration starts at, the gate of the
/// counter readings around the timed span, and the iterations each worker served.
pub(super) struct TargetShared {
    pub barrier: TimedBarrier,
    pub gate: SpanGate,
    /// Iterations each worker finished, warm-up included.
    pub served: ServedCounts,
}

impl TargetShared {
    /// Stops every worker at its next iteration's start; nobody waits for the counters.
    pub fn stop_all(&self) {
        self.barrier.break_all();
        self.gate.abandon();
    }
}

/// Iterations each target worker finished, warm-up included: what the target side can tell of
/// a run that stops early (the timings come with the initiators' reports, at the end).
pub(super) type ServedCounts = Vec<AtomicU64>;

/// The target side's document of a run that stopped early, from the counts of every round it
/// started (`rounds`, each with its own warm-up): per worker the timed iterations it served,
/// and as the result the iterations every worker finished, without timings (none when no
/// timed iteration was served).
pub(super) fn served_doc(cfg: &XferConfig, plan: &XferPlan, rounds: &[&[AtomicU64]]) -> ResultDoc {
    let mut timed = vec![0u64; plan.workers];
    for counts in rounds {
        for (t, c) in timed.iter_mut().zip(counts.iter()) {
            *t = t.saturating_add(c.load(Ordering::SeqCst).saturating_sub(cfg.warmup));
        }
    }
    let iterations = timed.iter().copied().min().unwrap_or(0);
    let mut doc = super::report::build(cfg, plan, Side::Target, &[], None);
    doc.results.clear();
    if iterations > 0 {
        let transfers = (plan.workers * plan.transfers_per_worker) as u64;
        let mut extra = Map::new();
        extra.insert("served_iterations".into(), json!(timed));
        extra.insert(
            "bytes_counted".into(),
            json!(transfers
                .saturating_mul(cfg.size)
                .saturating_mul(iterations)),
        );
        extra.insert(
            "latency".into(),
            json!("none: the initiators' timings reach the target with their reports at the end"),
        );
        doc.results.push(SizeResult {
            message_size: cfg.size,
            iterations,
            extra,
            ..Default::default()
        });
    }
    doc
}

/// Runs target worker `w` for the initiator on `oob`; returns the initiator's report with
/// this side's figures, counting the iterations it finished in `shared.served`.
pub(super) fn target_worker(
    cfg: &XferConfig,
    plan: &XferPlan,
    w: usize,
    mut oob: Oob,
    mem: TargetMem,
    shared: &TargetShared,
) -> Result<WorkerReport, RunError> {
    let r = cfg
        .cpus
        .pin(w)
        .map_err(RunError::Config)
        .and_then(|()| target_inner(cfg, plan, w, &mut oob, mem, shared));
    if let Err(e) = &r {
        shared.stop_all();
        oob.report_failure(&e.to_string());
    }
    r
}

/// The payload of the whole target side of `plan` over `timed` iterations of each worker.
fn side_payload(cfg: &XferConfig, plan: &XferPlan, timed: u64) -> Payload {
    let bytes = (plan.workers * plan.transfers_per_worker) as u64 * cfg.size * timed;
    let (sent, received) = match cfg.op {
        XferOp::Read => (bytes, 0),
        XferOp::Write | XferOp::Send => (0, bytes),
    };
    Payload {
        sent,
        received,
        timed_ns: None,
    }
}

fn target_inner(
    cfg: &XferConfig,
    plan: &XferPlan,
    w: usize,
    oob: &mut Oob,
    mem: TargetMem,
    shared: &TargetShared,
) -> Result<WorkerReport, RunError> {
    let (barrier, gate) = (&shared.barrier, &shared.gate);
    let per = plan.transfers_per_worker;
    let (regions, pages) = target_regions(cfg, per, mem)?;
    let mut side = TargetSide::new(cfg, w, per)?;
    let (mut end, setup) = connect_target(cfg, oob, regions)?;
    oob.send_json(&Offer {
        facts: TargetFacts::of(w, &setup, pages),
        regions: end.offer()?,
    })?;
    let mut adapter = Idle::new(&mut *end);
    // The initiator decides how many iterations run: an empty frame starts the next one, its
    // report ends the run (and this worker leaves the barrier, so the workers of initiators
    // that go on wait for it no longer).
    let mut i = 0u64;
    let mut sched_from = None;
    let mut report: WorkerReport = loop {
        crate::stop::check()?;
        let got = oob.recv_frame()?;
        if got == OPEN_SESSION {
            open_session(cfg, w, oob, &mut adapter, barrier)?;
            continue;
        }
        if !got.is_empty() {
            barrier.leave();
            break serde_json::from_slice(&got)
                .map_err(|e| BootstrapError::Protocol(format!("the initiator's report: {e}")))?;
        }
        side.prepare(cfg, plan, adapter.end, i)?;
        if i == cfg.warmup {
            // The initiator finished its warm-up; nothing of this side is in flight.
            sched_from = SchedMark::now();
            gate.start();
        }
        barrier.wait(cfg.timeout)?;
        oob.send_frame(b"")?;
        run_target_iteration(&mut adapter, per, cfg.timeout)
            .map_err(bench_err(format!("target worker {w}, iteration {i}")))?;
        side.finish(cfg, adapter.end, i)?;
        shared.served[w].fetch_add(1, Ordering::SeqCst);
        i += 1;
    };
    let sched = sched_from.and_then(|m| m.since());
    // The initiator sends its report once its last timed iteration is over: the side reads
    // after the last of its workers has it. Open-loop sessions are not spanned.
    let path = match cfg.open {
        Some(_) => {
            gate.abandon();
            None
        }
        None => {
            gate.end();
            let timed = i.saturating_sub(cfg.warmup);
            gate.wait_end(cfg.timeout)
                .then(|| gate.readings())
                .flatten()
                .map(|s| s.view("target", side_payload(cfg, plan, timed)))
        }
    };
    oob.send_json(&TargetSummary {
        verified_bytes: side.verified,
        path,
        sched,
    })?;
    report.target_sched = sched;
    // `worker` stays the initiator's numbering, so both sides label workers (and tiers) alike.
    report.target_worker = w;
    report.verified_bytes += side.verified;
    report.registration = setup.registration.map(String::from);
    report.staging_ns = side.staging.map(Staging::take).unwrap_or_default();
    Ok(report)
}

/// Serves one open-loop session of target worker `w`: starts with every other worker (so every
/// initiator's session starts together), then counts and confirms transfers until the
/// initiator closes the session.
fn open_session(
    cfg: &XferConfig,
    w: usize,
    oob: &mut Oob,
    end: &mut Idle<'_, dyn TargetEnd>,
    barrier: &TimedBarrier,
) -> Result<(), RunError> {
    barrier.wait(cfg.timeout)?;
    oob.send_frame(b"")?;
    let (_, per) = cfg.layout();
    let mut ended = || match oob.try_recv_frame() {
        Ok(None) => Ok(false),
        Ok(Some(f)) if f == CLOSE_SESSION => Ok(true),
        Ok(Some(f)) => Err(BenchError::Invalid(format!(
            "a control frame of {} bytes inside an open-loop session",
            f.len()
        ))),
        Err(e) => Err(BenchError::Control(e)),
    };
    run_target_open(end, per, cfg.timeout, &mut ended)
        .map_err(|e| RunError::bench(format!("target worker {w}, open-loop session"), e))?;
    oob.send_frame(b"")?;
    Ok(())
}

/// Where a target worker's regions come from.
pub enum TargetMem {
    /// Allocate its own.
    Allocate,
    /// Parts of a shared allocation (`--reuse`).
    Regions(Vec<SharedRegion>),
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

/// Serves `cfg`'s rounds on `listener` (see [`super::run_target`]), one session after another,
/// and returns the document of every round's reports merged (the path read over the first
/// round). Each round first hands what its workers share to `started`
/// ([`TargetShared::stop_all`] stops every worker at its next iteration: a group run does when
/// a rank is gone), and every round after the first waits for `between(round)` (a group run's
/// ranks meet there). A round that fails ends the run with what the earlier rounds measured.
pub(super) fn serve(
    cfg: &XferConfig,
    listener: &OobListener,
    mut started: impl FnMut(Arc<TargetShared>),
    between: impl FnMut(u64) -> Result<(), RunError>,
) -> Result<ResultDoc, RunError> {
    let plan = cfg.validate(Sides::One(Side::Target))?;
    let got = super::rounds::each(cfg, between, |round_cfg| {
        let (reports, span) = serve_round(round_cfg, &plan, listener, &mut started)?;
        Ok(Collected {
            reports,
            error: None,
            span,
        })
    })?;
    let doc = super::report::build(cfg, &plan, Side::Target, &got.reports, got.span.as_ref());
    match got.error {
        None => Ok(doc),
        Some(e) => crate::run::conclude(doc, Err(e)),
    }
}

/// Serves one session: accepts the workers, serves them, and returns their reports and the
/// counter readings around the timed span; a failure carries what the workers served.
fn serve_round(
    cfg: &XferConfig,
    plan: &XferPlan,
    listener: &OobListener,
    started: &mut impl FnMut(Arc<TargetShared>),
) -> Result<(Vec<WorkerReport>, Option<SpanReadings>), RunError> {
    let plan = *plan;
    let (workers, per) = (plan.workers, plan.transfers_per_worker);
    let mems = target_mems(cfg, workers, per)?;
    let shared = Arc::new(TargetShared {
        barrier: TimedBarrier::new(workers),
        gate: SpanGate::new(Probe::host(), workers),
        served: (0..workers).map(|_| AtomicU64::new(0)).collect(),
    });
    started(shared.clone());
    let mut handles = Vec::with_capacity(workers);
    let partial = |e: RunError| {
        let doc = served_doc(cfg, &plan, &[&shared.served]);
        match doc.results.is_empty() {
            true => e,
            false => match crate::run::conclude(doc, Err(e)) {
                Err(p) => p,
                Ok(_) => unreachable!("conclude of an error is an error"),
            },
        }
    };
    for (w, mem) in mems.into_iter().enumerate() {
        let oob = match listener.accept(&cfg.fingerprint(), cfg.timeout) {
            Ok(o) => o,
            Err(e) => {
                shared.stop_all();
                let _ = join_all(handles);
                return Err(partial(e.into()));
            }
        };
        let (cfg, shared) = (cfg.clone(), shared.clone());
        let h = std::thread::Builder::new()
            .name(format!("kvxfer-target-{w}"))
            .spawn(move || target_worker(&cfg, &plan, w, oob, mem, &shared))
            .map_err(|source| RunError::Spawn {
                what: "a target worker",
                source,
            })?;
        handles.push(h);
    }
    let mut reports = join_all(handles).map_err(partial)?;
    initiator_numbering_or_own(&mut reports);
    Ok((reports, shared.gate.readings()))
}

/// Keeps the initiator's worker numbers where they name every worker once (one initiator
/// process); several initiator processes number theirs alike, so then the target's own order.
fn initiator_numbering_or_own(reports: &mut [WorkerReport]) {
    let mut seen = std::collections::BTreeSet::new();
    if !reports.iter().all(|r| seen.insert(r.worker)) {
        for r in reports.iter_mut() {
            r.worker = r.target_worker;
        }
    }
}

/// Where each of `workers` target workers' `per` regions come from: with `--reuse`, disjoint
/// parts of one allocation; otherwise each worker allocates its own.
pub(super) fn target_mems(
    cfg: &XferConfig,
    workers: usize,
    per: usize,
) -> Result<Vec<TargetMem>, RunError> {
    if !cfg.reuse {
        return Ok((0..workers).map(|_| TargetMem::Allocate).collect());
    }
    let (all, size) = (workers * per, cfg.size as usize);
    let buf = cfg.mem.alloc_network(cfg.mem.target, all * size)?;
    let mut parts = SharedRegion::split(buf, all, size)
        .ok_or_else(|| RunError::Config("cannot split the target buffer".into()))?
        .into_iter();
    Ok((0..workers)
        .map(|_| TargetMem::Regions(parts.by_ref().take(per).collect()))
        .collect())
}

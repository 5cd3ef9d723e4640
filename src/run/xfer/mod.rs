//! `xfer`: KV-sized transfers by RMA, N workers at once, in one process or across several.
//!
//! Topology: a target process accepts one control connection per initiator worker (its
//! `concurrency`); an initiator process opens `concurrency` workers against one or more
//! targets (`peers`, round robin). Many-to-one in separate processes is one target with
//! `--concurrency N` and initiator processes whose concurrencies add up to N.

mod config;
mod group;
mod initiator;
mod report;
mod same_thread;
mod scheme;
pub mod staging;
mod sync;
mod target;
mod tcp_stats;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use self::config::{
    ConcurrencyMode, LocalThreads, RailSpec, Scheme, Sides, XferBackend, XferConfig, XferPlan,
    XferProgress, DEFAULT_BLOCK, DEFAULT_STRIPE_THRESHOLD,
};
pub use self::group::run_group;
use self::initiator::initiator_worker;
use self::same_thread::spawn_pairs;
use self::sync::TimedBarrier;
use self::target::target_worker;
use self::target::TargetMem;
use self::worker::{kept_reports, KeptReports, WorkerReport};
use super::RunError;
use crate::bootstrap::{Oob, OobListener};
use crate::mem::SharedRegion;
use crate::report::ResultDoc;

/// Runs the target side: accepts `concurrency` workers (one in outstanding mode) on the
/// listener, serves them, and returns the document of all their reports.
pub fn run_target(cfg: &XferConfig, listener: &OobListener) -> Result<ResultDoc, RunError> {
    run_target_with(cfg, listener, |_| {})
}

/// [`run_target`], handing the workers' barrier to `started` first: breaking it stops every
/// worker at its next iteration (a group run does when a rank is gone).
pub(crate) fn run_target_with(
    cfg: &XferConfig,
    listener: &OobListener,
    started: impl FnOnce(Arc<TimedBarrier>),
) -> Result<ResultDoc, RunError> {
    let plan = cfg.validate(Sides::Target)?;
    let (workers, per) = (plan.workers, plan.transfers_per_worker);
    let mems = target_mems(cfg, workers, per)?;
    let barrier = Arc::new(TimedBarrier::new(workers));
    started(barrier.clone());
    let mut handles = Vec::with_capacity(workers);
    for (w, mem) in mems.into_iter().enumerate() {
        let oob = match listener.accept(&cfg.fingerprint(), cfg.timeout) {
            Ok(o) => o,
            Err(e) => {
                barrier.break_all();
                let _ = join_all(handles);
                return Err(e.into());
            }
        };
        let (cfg, barrier) = (cfg.clone(), barrier.clone());
        let h = std::thread::Builder::new()
            .name(format!("kvxfer-target-{w}"))
            .spawn(move || target_worker(&cfg, &plan, w, oob, mem, &barrier))
            .map_err(|source| RunError::Spawn {
                what: "a target worker",
                source,
            })?;
        handles.push(h);
    }
    let reports = join_all(handles)?;
    Ok(self::report::build(cfg, &plan, "target", &reports))
}

/// Where each of `workers` target workers' `per` regions come from: with `--reuse`, disjoint
/// parts of one allocation; otherwise each worker allocates its own.
fn target_mems(cfg: &XferConfig, workers: usize, per: usize) -> Result<Vec<TargetMem>, RunError> {
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

/// Runs the initiator side: `concurrency` workers (one in outstanding mode) against the
/// targets at `peers`, round robin; returns the document of its workers.
pub fn run_initiator(cfg: &XferConfig, peers: &[String]) -> Result<ResultDoc, RunError> {
    run_initiator_with(cfg, peers, &XferProgress::default())
}

/// [`run_initiator`], counting finished iterations in `progress`.
pub fn run_initiator_with(
    cfg: &XferConfig,
    peers: &[String],
    progress: &XferProgress,
) -> Result<ResultDoc, RunError> {
    let (reports, error) = initiator_reports(cfg, peers, progress)?;
    initiator_doc(cfg, reports, error)
}

/// The initiator side's document from its workers' reports: complete, or partial over the
/// iterations every worker finished when `error` stopped it (the error alone when a worker
/// measured nothing).
pub(crate) fn initiator_doc(
    cfg: &XferConfig,
    reports: Vec<WorkerReport>,
    error: Option<RunError>,
) -> Result<ResultDoc, RunError> {
    let plan = cfg.validate(Sides::Initiator)?;
    let Some(e) = error else {
        return Ok(self::report::build(cfg, &plan, "initiator", &reports));
    };
    if reports.is_empty() || reports.iter().any(|r| r.timed.is_empty()) {
        return Err(e);
    }
    let doc = self::report::build(cfg, &plan, "initiator", &reports);
    super::conclude(doc, Err(e))
}

/// Runs the initiator side's workers against the targets at `peers`: the reports of the
/// workers that finished and what the failed ones measured, with the error that names the
/// cause when any failed.
pub(crate) fn initiator_reports(
    cfg: &XferConfig,
    peers: &[String],
    progress: &XferProgress,
) -> Result<(Vec<WorkerReport>, Option<RunError>), RunError> {
    initiator_reports_watched(cfg, peers, progress, None)
}

/// How often a watched run asks its watcher.
const WATCH: Duration = Duration::from_millis(250);

/// [`initiator_reports`], asking `watch` every quarter second while the workers run: when it
/// names a cause, the run ends there with what every worker measured so far (a worker still
/// waiting on the fabric or its target is left behind).
pub(crate) fn initiator_reports_watched(
    cfg: &XferConfig,
    peers: &[String],
    progress: &XferProgress,
    watch: Option<&mut dyn FnMut() -> Option<RunError>>,
) -> Result<(Vec<WorkerReport>, Option<RunError>), RunError> {
    if peers.is_empty() {
        return Err(RunError::Config("no target given".into()));
    }
    let plan = cfg.validate(Sides::Initiator)?;
    let kept = kept_reports(&plan);
    let mut handles = Vec::with_capacity(plan.workers);
    for w in 0..plan.workers {
        let peer = peers[w % peers.len()].clone();
        let cfg = cfg.clone();
        let progress = progress.clone();
        let kept = kept.clone();
        let h = std::thread::Builder::new()
            .name(format!("kvxfer-initiator-{w}"))
            .spawn(move || {
                let oob = Oob::connect(&peer, &cfg.fingerprint(), cfg.timeout)?;
                initiator_worker(&cfg, &plan, w, oob, &progress, &kept[w])
            })
            .map_err(|source| RunError::Spawn {
                what: "an initiator worker",
                source,
            })?;
        handles.push(h);
    }
    Ok(collect_reports(handles, &kept, watch))
}

/// Waits for the initiator workers, asking `watch` every quarter second while they run: the
/// reports of those that finished, what the others measured, and the error that names the
/// cause when any failed (or when `watch` named one: the run ends there and a worker still
/// waiting on the fabric or its target is left behind).
fn collect_reports(
    handles: Vec<std::thread::JoinHandle<Result<WorkerReport, RunError>>>,
    kept: &KeptReports,
    watch: Option<&mut dyn FnMut() -> Option<RunError>>,
) -> (Vec<WorkerReport>, Option<RunError>) {
    let take = |w: usize| kept[w].lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(watch) = watch {
        while !handles.iter().all(|h| h.is_finished()) {
            if let Some(e) = watch() {
                let mut reports = Vec::new();
                for (w, h) in handles.into_iter().enumerate() {
                    match h.is_finished().then(|| h.join()) {
                        Some(Ok(Ok(r))) => reports.push(r),
                        _ => reports.extend(take(w)),
                    }
                }
                return (reports, Some(e));
            }
            std::thread::sleep(WATCH);
        }
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
    (reports, error)
}

/// Runs both sides in this process over the loopback; returns the initiator's document.
pub fn run_local(cfg: &XferConfig) -> Result<ResultDoc, RunError> {
    run_local_with(cfg, &XferProgress::default())
}

/// [`run_local`], counting the initiator's finished iterations in `progress`.
pub fn run_local_with(cfg: &XferConfig, progress: &XferProgress) -> Result<ResultDoc, RunError> {
    run_local_in(cfg, LocalThreads::default_for(cfg.backend), progress)
}

/// [`run_local_with`] in the thread layout `threads`, which the document's config records.
pub fn run_local_in(
    cfg: &XferConfig,
    threads: LocalThreads,
    progress: &XferProgress,
) -> Result<ResultDoc, RunError> {
    let tag = |mut doc: ResultDoc| {
        doc.config
            .insert("local_threads".into(), threads.name().into());
        doc
    };
    let run = match threads {
        LocalThreads::Side => run_local_sides(cfg, progress),
        LocalThreads::Pair => run_local_pairs(cfg, progress),
    };
    match run {
        Ok(doc) => Ok(tag(doc)),
        Err(RunError::Partial { doc, error }) => Err(RunError::Partial {
            doc: Box::new(tag(*doc)),
            error,
        }),
        Err(e) => Err(e),
    }
}

/// Both sides in threads of their own: the target's behind a loopback control listener.
fn run_local_sides(cfg: &XferConfig, progress: &XferProgress) -> Result<ResultDoc, RunError> {
    cfg.validate(Sides::Both)?;
    let listener = OobListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let addr = listener.local_addr().to_string();
    let tcfg = cfg.clone();
    let target = std::thread::Builder::new()
        .name("kvxfer-target".into())
        .spawn(move || run_target(&tcfg, &listener))
        .map_err(|source| RunError::Spawn {
            what: "the target thread",
            source,
        })?;
    let ours = run_initiator_with(cfg, &[addr], progress);
    super::join_local(ours, target)
}

/// One thread per worker, driving both ends of its connection.
fn run_local_pairs(cfg: &XferConfig, progress: &XferProgress) -> Result<ResultDoc, RunError> {
    let plan = cfg.validate(Sides::Both)?;
    if cfg.backend != XferBackend::Ucx {
        return Err(RunError::Config(
            "--local-threads pair drives both ends of a connection from one thread, which \
             libfabric's connection set-up does not allow: use --local-threads side"
                .into(),
        ));
    }
    let mems = target_mems(cfg, plan.workers, plan.transfers_per_worker)?;
    let kept = kept_reports(&plan);
    let handles = spawn_pairs(cfg, &plan, mems, progress, &kept)?;
    let (reports, error) = collect_reports(handles, &kept, None);
    initiator_doc(cfg, reports, error)
}

fn join_all(
    handles: Vec<std::thread::JoinHandle<Result<WorkerReport, RunError>>>,
) -> Result<Vec<WorkerReport>, RunError> {
    let (reports, error) = join_each(handles);
    match error {
        Some(e) => Err(e),
        None => Ok(reports),
    }
}

/// Joins every worker: the reports of those that finished, and the error that names the
/// cause when any failed.
fn join_each(
    handles: Vec<std::thread::JoinHandle<Result<WorkerReport, RunError>>>,
) -> (Vec<WorkerReport>, Option<RunError>) {
    let mut reports = Vec::with_capacity(handles.len());
    let mut errors = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(r)) => reports.push(r),
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push(RunError::Crashed("worker")),
        }
    }
    // A worker's own failure names the cause; "another worker failed" and a peer that went
    // away are its echoes.
    let echo = |e: &RunError| matches!(e.cause(), RunError::Bootstrap(_) | RunError::Aborted);
    let error = match errors.iter().position(|e| !echo(e)) {
        Some(i) => Some(errors.swap_remove(i)),
        None => errors.into_iter().next(),
    };
    (reports, error)
}

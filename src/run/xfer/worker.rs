//! What both sides of an xfer worker share: the report an initiator worker makes, the
//! target's offer and facts as the control connection carries them, the pattern's seeds and
//! checks, and the idle count that lets many workers share few cores.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::config::XferPlan;
use crate::bench::open_loop::OpenOutcome;
use crate::bench::xfer::IterSample;
use crate::bench::{pattern, BenchError};
use crate::bootstrap::Oob;
use crate::mem::Backing;
use crate::report::Environment;
use crate::run::path::{SideView, SpanReadings};
use crate::run::sched::ThreadSched;
use crate::run::RunError;
use crate::stats::{BlockInterval, StoppedBy};
use crate::xfer::rails::RailStats;
use crate::xfer::{
    InitiatorEnd, RegionOffer, SetupTimes, TargetEnd, TargetEvent, XferError, XferInitiator,
    XferOp, XferTarget,
};

/// End-to-end time of transfer `t` in a sample: the target's confirmation for writes and
/// sends, the local completion for reads (the initiator holds the data then).
pub(super) fn e2e(op: XferOp, s: &IterSample, t: usize) -> u64 {
    match op {
        XferOp::Write | XferOp::Send => s.confirmed_ns[t],
        XferOp::Read => s.local_ns[t],
    }
}

/// What one side's workers gave: their reports, the error that stopped them, and the counter
/// readings around the timed span (when every worker got through it).
pub(super) struct Collected {
    pub reports: Vec<WorkerReport>,
    pub error: Option<RunError>,
    pub span: Option<SpanReadings>,
}

/// Empty polls before a worker yields its core (many workers share few cores).
const IDLE_POLLS_BEFORE_YIELD: u32 = 64;

/// What one worker measured, as the initiator reports it to the target and the result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerReport {
    /// Worker index: the initiator's numbering on both sides (the target's own order where
    /// several initiator processes number theirs alike).
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
    /// How the initiator's buffer is backed (None: device memory).
    #[serde(default)]
    pub pages: Option<Backing>,
    /// How the target's first region is backed (None: device memory, or an older target).
    #[serde(default)]
    pub target_pages: Option<Backing>,
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
    /// The target side's view of the devices that carried the payload, as its summary
    /// carried it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_path: Option<SideView>,
    /// What ended the timed iterations (absent: a fixed count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<StoppedBy>,
    /// The median's interval over the timed iterations' blocks (batched counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<BlockInterval>,
    /// Open-loop runs: each session (rate) this worker drove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub open: Vec<OpenSession>,
    /// `--rounds`: how many of `timed` each round gave, in order (empty: one session).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<usize>,
    /// What the scheduler did to this worker's thread over its timed span (every round's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sched: Option<ThreadSched>,
    /// The same of the target worker's thread, as its summary carried it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_sched: Option<ThreadSched>,
}

/// One open-loop session of a worker: its schedule and what it saw.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenSession {
    /// `poisson` or `fixed`.
    pub arrival: String,
    /// Transfers per second offered.
    pub rate_per_s: f64,
    /// The schedule's seed (Poisson gaps).
    pub seed: u64,
    /// The transfers' times and counts.
    pub outcome: OpenOutcome,
}

/// The control frame that opens an open-loop session (an empty frame starts an iteration; the
/// initiator's report ends the run).
pub(super) const OPEN_SESSION: &[u8] = b"open";
/// The control frame that closes an open-loop session.
pub(super) const CLOSE_SESSION: &[u8] = b"close";

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
    /// The target side's view of the devices that carried the payload (None when its counters
    /// were not read through).
    #[serde(default)]
    pub path: Option<SideView>,
    /// What the scheduler did to the target worker's thread over its timed span (None: not
    /// read, or an older target).
    #[serde(default)]
    pub sched: Option<ThreadSched>,
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
pub(super) fn exchange(oob: &mut Oob) -> impl FnMut(&[u8]) -> Result<Vec<u8>, String> + '_ {
    |ours: &[u8]| oob.exchange(ours).map_err(|e| e.to_string())
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

/// What the initiator learns of its target when it connects.
#[derive(Serialize, Deserialize)]
pub(super) struct TargetFacts {
    /// The target's worker index.
    pub worker: usize,
    /// The target's first registration of its first region, ns.
    pub registration_first_ns: u64,
    /// The target's second registration of it, ns.
    pub registration_cached_ns: u64,
    /// How the target's first region is backed (None: device memory).
    #[serde(default)]
    pub pages: Option<Backing>,
}

impl TargetFacts {
    /// The facts of target worker `worker` whose set-up took `setup` and whose first region
    /// is backed by `pages`.
    pub fn of(worker: usize, setup: &SetupTimes, pages: Option<Backing>) -> TargetFacts {
        TargetFacts {
            worker,
            registration_first_ns: setup.registration_first_ns,
            registration_cached_ns: setup.registration_cached_ns,
            pages,
        }
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

/// Joins every worker: their reports, or the error that names the cause when any failed.
pub(super) fn join_all(
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
pub(super) fn join_each(
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

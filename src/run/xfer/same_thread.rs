//! One-process xfer runs where each worker's thread drives both ends of its connection (the
//! layout `--local-threads pair`), as NIXL's engine is driven from one thread in one process:
//! the initiator's posts and the target's progress alternate on one CPU. A loopback TCP
//! connection whose two ends run on two CPUs has its segments reordered (see the result's
//! `host_tcp`) and loses half its bandwidth for minutes at a time; one thread per connection
//! does not meet that. UCX only: its endpoints connect without a handshake to wait for.

use std::sync::Arc;

use super::config::{XferConfig, XferPlan, XferProgress};
use super::initiator::{initiator_run, Shared};
use super::link::TargetLink;
use super::pace::SharedPace;
use super::sync::TimedBarrier;
use super::target::TargetMem;
use super::target::{target_regions, TargetSide};
use super::worker::{idle_tick, KeptReports, TargetFacts, WorkerReport};
use crate::bench::xfer::{run_initiator_iteration, IterParams, IterSample, TargetCount};
use crate::bench::BenchError;
use crate::mem::SharedRegion;
use crate::run::path::SpanGate;
use crate::run::RunError;
use crate::xfer::ucx::{connect_pair, UcxTarget};
use crate::xfer::{
    InitiatorEnd, SetupTimes, TargetEnd, TargetEvent, XferError, XferInitiator, XferTarget,
};

/// The target end this thread drives beside its initiator.
struct PairLink<'a> {
    cfg: &'a XferConfig,
    plan: &'a XferPlan,
    barrier: &'a TimedBarrier,
    mem: Option<TargetMem>,
    side: TargetSide,
    target: Option<UcxTarget>,
}

/// The error of a link used before it connected (a bug, never bad input).
fn no_target() -> RunError {
    RunError::Config("the paired target is not connected".into())
}

impl TargetLink for PairLink<'_> {
    fn connect(
        &mut self,
        cfg: &XferConfig,
        local: SharedRegion,
        per: usize,
    ) -> Result<(Box<dyn InitiatorEnd>, SetupTimes, TargetFacts), RunError> {
        let mem = self.mem.take().ok_or_else(|| {
            RunError::Config("the paired target's regions were already connected".into())
        })?;
        let (regions, pages) = target_regions(cfg, per, mem)?;
        let ((mut ini, setup), (target, theirs)) =
            connect_pair(local, regions, cfg.size as usize, cfg.op, cfg.timeout)?;
        ini.set_remote(target.offer()?)?;
        self.target = Some(target);
        Ok((
            Box::new(ini),
            setup,
            TargetFacts::of(self.side.w, &theirs, pages),
        ))
    }

    fn meet(&mut self, i: u64) -> Result<(), RunError> {
        let (cfg, plan) = (self.cfg, self.plan);
        let target = self.target.as_mut().ok_or_else(no_target)?;
        self.side.prepare(cfg, plan, target, i)?;
        // Every pair starts the iteration together, as the target's workers do.
        self.barrier.wait(cfg.timeout)
    }

    fn transfer(
        &mut self,
        ep: &mut dyn InitiatorEnd,
        p: &IterParams,
    ) -> Result<IterSample, BenchError> {
        let Some(target) = self.target.as_mut() else {
            return Err(BenchError::Invalid(no_target().to_string()));
        };
        let mut both = Both {
            ini: ep,
            target,
            count: TargetCount::new(p.transfers),
            events: Vec::with_capacity(64),
            failed: None,
            idle: 0,
        };
        let sample = run_initiator_iteration(&mut both, p);
        if let Some(e) = both.failed.take() {
            return Err(e);
        }
        let sample = sample?;
        if !both.count.done() {
            return Err(BenchError::Invalid(
                "every transfer was confirmed before the target counted it".into(),
            ));
        }
        Ok(sample)
    }

    fn after(&mut self, i: u64) -> Result<(), RunError> {
        let target = self.target.as_mut().ok_or_else(no_target)?;
        self.side.finish(self.cfg, target, i)
    }

    fn finish(&mut self, report: &mut WorkerReport) -> Result<(), RunError> {
        report.verified_bytes += self.side.verified;
        Ok(())
    }

    fn open_session(&mut self) -> Result<(), RunError> {
        Err(open_loop_refused())
    }

    fn close_session(&mut self) -> Result<(), RunError> {
        Err(open_loop_refused())
    }
}

/// Open-loop runs need the target to progress on its own while the initiator waits for
/// arrivals: not one thread driving both ends.
pub(super) fn open_loop_refused() -> RunError {
    RunError::Config(
        "--arrival needs the target's workers in threads of their own: --local-threads side".into(),
    )
}

/// The most progress calls the target gets per poll: it stops earlier once it finds nothing
/// to do (the initiator, in the same thread, sends nothing meanwhile).
const TARGET_PROGRESS_LIMIT: u32 = 1024;

/// An initiator end and the target end of its connection, polled together: the loop sees the
/// initiator; every poll also moves the target along and confirms what it has counted.
struct Both<'a> {
    ini: &'a mut dyn InitiatorEnd,
    target: &'a mut UcxTarget,
    count: TargetCount,
    events: Vec<TargetEvent>,
    /// The target's error, reported in place of the initiator's.
    failed: Option<BenchError>,
    idle: u32,
}

impl XferInitiator for Both<'_> {
    #[inline]
    fn post(&mut self, tr: u32, c: u32, off: usize, len: usize) -> Result<bool, XferError> {
        self.ini.post(tr, c, off, len)
    }

    #[inline]
    fn poll(&mut self, done: &mut Vec<(u32, u32)>) -> Result<(), XferError> {
        let before = done.len();
        self.ini.poll(done)?;
        // The target takes everything that has arrived before the initiator sends more: a
        // loopback socket kept full between the two ends holds megabytes that leave the cache
        // before they are read (one progress of each: 2.4-2.8 GB/s at 672M over tcp; until
        // idle: 4.2-4.8, NIXL's one-process figure).
        self.target.progress_until_idle(TARGET_PROGRESS_LIMIT);
        self.target.poll(&mut self.events)?;
        let got = done.len() > before || !self.events.is_empty();
        if let Err(e) = self.count.take(self.target, &mut self.events) {
            self.failed = Some(e);
            return Err(XferError::PairedTarget);
        }
        idle_tick(&mut self.idle, got);
        Ok(())
    }

    fn notify(&mut self, tr: u32, chunks: u64) -> Result<(), XferError> {
        self.ini.notify(tr, chunks)
    }

    #[inline]
    fn poll_confirmed(&mut self, out: &mut Vec<u32>) -> Result<(), XferError> {
        self.ini.poll_confirmed(out)
    }
}

/// Starts one thread per worker of `plan`, each driving both ends of its connection (worker
/// `w`'s target regions from `mems[w]`); their handles, each giving the worker's report, with
/// what it measured so far in `kept`, their counter readings through `gate`.
pub(super) fn spawn_pairs(
    cfg: &XferConfig,
    plan: &XferPlan,
    mems: Vec<TargetMem>,
    progress: &XferProgress,
    kept: &KeptReports,
    gate: &Arc<SpanGate>,
) -> Result<Vec<std::thread::JoinHandle<Result<WorkerReport, RunError>>>, RunError> {
    let barrier = Arc::new(TimedBarrier::new(plan.workers));
    let pace = Arc::new(SharedPace::new(cfg.iterations, cfg.warmup));
    let mut handles = Vec::with_capacity(plan.workers);
    for (w, mem) in mems.into_iter().enumerate() {
        let (cfg, plan, progress, kept) = (cfg.clone(), *plan, progress.clone(), kept.clone());
        let (barrier, gate, pace) = (barrier.clone(), gate.clone(), pace.clone());
        let h = std::thread::Builder::new()
            .name(format!("kvxfer-pair-{w}"))
            .spawn(move || {
                let pinned = cfg.cpus.pin(w).map_err(RunError::Config);
                let pinned = pinned.inspect_err(|_| gate.abandon());
                let r = pinned.and_then(|()| TargetSide::new(&cfg, w, plan.transfers_per_worker));
                let r = r.and_then(|side| {
                    let mut link = PairLink {
                        cfg: &cfg,
                        plan: &plan,
                        barrier: &barrier,
                        mem: Some(mem),
                        side,
                        target: None,
                    };
                    let shared = Shared {
                        progress: &progress,
                        gate: &gate,
                        kept: &kept[w],
                        pace: &pace,
                    };
                    initiator_run(&cfg, &plan, w, &mut link, &shared)
                });
                if r.is_err() {
                    // The other pairs stop at the next iteration's start instead of waiting.
                    barrier.break_all();
                }
                r
            })
            .map_err(|source| RunError::Spawn {
                what: "a worker",
                source,
            })?;
        handles.push(h);
    }
    Ok(handles)
}

//! `xfer --rounds`: the whole session again, on fresh control connections, endpoints and
//! buffers, each round's worker reports merged per worker into one, whose median's interval
//! then spans the rounds' medians.
//!
//! One xfer session samples one placement of its buffers and one stretch of the host's state;
//! on this project's shared hosts both moved medians between runs by more than any one run's
//! interval (see `run/pingpong/rounds.rs`). Rounds in one run sample several.

use super::config::XferConfig;
use super::worker::{e2e, Collected, WorkerReport};
use crate::run::sched::ThreadSched;
use crate::run::RunError;
use crate::stats::{RoundsInterval, StoppedBy};
use crate::xfer::rails::sum_rails;
use crate::xfer::XferOp;

impl XferConfig {
    /// One round's configuration: an auto run's limits shared by its rounds (a fixed count or
    /// a duration stays each round's).
    pub(super) fn for_round(&self) -> XferConfig {
        XferConfig {
            iterations: self.iterations.per_round(self.rounds),
            ..self.clone()
        }
    }

    /// Refuses a round count out of range, and rounds of open-loop sessions (each is a
    /// schedule of its own already).
    pub(super) fn check_rounds(&self) -> Result<(), RunError> {
        crate::stats::check_rounds(self.rounds).map_err(RunError::Config)?;
        if self.rounds > 1 && self.open.is_some() {
            return Err(RunError::Config(
                "--rounds repeats closed-loop sessions; an open-loop run's arrivals are its \
                 own schedule: leave --rounds out with --arrival"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Runs `one` once per round of `cfg` with the round's configuration, each round after the
/// first once `between(round)` lets it (an etcd group's ranks meet there; rounds count from
/// 0), and merges what the rounds collected; the counter readings are the first round's (the
/// path is read over it). A round that fails, or a `between` that refuses, ends the run with
/// every earlier round's reports (and a failed round's own).
pub(super) fn each(
    cfg: &XferConfig,
    mut between: impl FnMut(u64) -> Result<(), RunError>,
    mut one: impl FnMut(&XferConfig) -> Result<Collected, RunError>,
) -> Result<Collected, RunError> {
    if cfg.rounds <= 1 {
        return one(cfg);
    }
    let round_cfg = cfg.for_round();
    let mut rounds = Vec::new();
    let mut span = None;
    let mut error = None;
    for r in 0..cfg.rounds {
        let ready = crate::stop::check().map_err(RunError::from);
        if let Err(e) = ready.and_then(|()| if r > 0 { between(r) } else { Ok(()) }) {
            error = Some(e);
            break;
        }
        let got = match one(&round_cfg) {
            Ok(got) => got,
            Err(e) if r == 0 => return Err(e),
            Err(e) => {
                // A later round's own partial document gives way to the merged one.
                error = Some(match e {
                    RunError::Partial { error, .. } => *error,
                    e => e,
                });
                break;
            }
        };
        if r == 0 {
            span = got.span;
        }
        rounds.push(got.reports);
        if got.error.is_some() {
            error = got.error;
            break;
        }
    }
    Ok(Collected {
        reports: merge(rounds),
        error,
        span,
    })
}

/// The reports of several rounds as one per worker (matched by worker index): every timed
/// sample in round order with each round's count in `rounds`, the bytes checked and staging
/// copies of all, the rails summed, the first round's set-up figures, cold transfer and
/// target view, a limit that stopped any round (else the last round's reason), and no blocks
/// (the rounds' interval replaces any one round's). One round is returned as it is.
pub(super) fn merge(rounds: Vec<Vec<WorkerReport>>) -> Vec<WorkerReport> {
    let several = rounds.len() > 1;
    let mut it = rounds.into_iter();
    let Some(mut all) = it.next() else {
        return Vec::new();
    };
    if !several {
        return all;
    }
    for r in &mut all {
        r.rounds = vec![r.timed.len()];
        r.blocks = None;
    }
    for (k, round) in it.enumerate() {
        let seen = k + 1;
        for later in round {
            match all.iter_mut().find(|r| r.worker == later.worker) {
                Some(r) => absorb(r, later),
                None => {
                    let mut r = later;
                    r.rounds = vec![0; seen];
                    r.rounds.push(r.timed.len());
                    r.blocks = None;
                    all.push(r);
                }
            }
        }
        for r in all.iter_mut().filter(|r| r.rounds.len() == seen) {
            r.rounds.push(0);
        }
    }
    all
}

/// Adds a later round's report of the same worker to `r`.
fn absorb(r: &mut WorkerReport, later: WorkerReport) {
    r.rounds.push(later.timed.len());
    r.timed.extend(later.timed);
    r.verified_bytes = r.verified_bytes.saturating_add(later.verified_bytes);
    r.staging_ns.extend(later.staging_ns);
    if let Some(now) = &later.rails {
        sum_rails(&mut r.rails, now);
    }
    r.sched = ThreadSched::sum(r.sched, later.sched);
    r.target_sched = ThreadSched::sum(r.target_sched, later.target_sched);
    let limit =
        |s: &Option<StoppedBy>| matches!(s, Some(StoppedBy::MaxTime | StoppedBy::MaxIterations));
    if !limit(&r.stopped_by) {
        r.stopped_by = later.stopped_by;
    }
}

/// The median's interval over the rounds' medians of the per-transfer latencies (every
/// worker's transfers in a round), None unless the reports ran in 2 rounds or more.
pub(super) fn interval(op: XferOp, reports: &[&WorkerReport]) -> Option<RoundsInterval> {
    let n = reports.iter().map(|r| r.rounds.len()).max()?;
    let mut medians = Vec::with_capacity(n);
    for k in 0..n {
        let mut ns: Vec<u64> = Vec::new();
        for r in reports {
            let start: usize = r.rounds.iter().take(k).sum();
            let len = r.rounds.get(k).copied().unwrap_or(0);
            let samples = r.timed.iter().skip(start).take(len);
            ns.extend(samples.flat_map(|s| (0..r.transfers).map(move |t| e2e(op, s, t))));
        }
        if let Some(m) = median_us(&mut ns) {
            medians.push(m);
        }
    }
    RoundsInterval::of(&medians)
}

/// The median of `ns` in microseconds: the lower middle value, as a histogram's 0.5
/// quantile reads it; None when empty.
fn median_us(ns: &mut [u64]) -> Option<f64> {
    if ns.is_empty() {
        return None;
    }
    let mid = (ns.len() - 1) / 2;
    let (_, m, _) = ns.select_nth_unstable(mid);
    Some(*m as f64 / 1000.0)
}

/// Timed iterations of the first round every report finished (None: one session).
pub(super) fn first_round(reports: &[&WorkerReport]) -> Option<usize> {
    reports
        .iter()
        .filter_map(|r| r.rounds.first().copied())
        .min()
}

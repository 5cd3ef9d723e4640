//! The initiator's open-loop sessions: per rate, the target told a session opens (every target
//! worker starts it together), arrivals on the schedule until the limit, the session closed.

use std::time::Duration;

use super::config::{XferConfig, XferPlan};
use super::link::TargetLink;
use super::worker::{bench_err, Idle, OpenSession};
use crate::bench::arrivals::Schedule;
use crate::bench::open_loop::{run_open_loop, ArrivalLimit, OpenParams, RealClock};
use crate::run::RunError;
use crate::stats::Count;
use crate::xfer::InitiatorEnd;

/// A seed for worker `w`'s schedule of session `k`: the time and the process make runs and
/// ranks differ; the result records it, so a run can be repeated arrival for arrival.
fn seed(w: usize, k: usize) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    now ^ (u64::from(std::process::id()) << 32) ^ ((w as u64) << 16) ^ k as u64
}

/// When a session's schedule ends: after the arrivals `--iterations` counts, or `--duration`.
fn limit(cfg: &XferConfig) -> ArrivalLimit {
    match cfg.iterations {
        Count::Duration(d) => ArrivalLimit::Time(d),
        c => ArrivalLimit::Count(c.fixed().unwrap_or(10)),
    }
}

/// Runs worker `w`'s sessions through `ep`, one per rate; what each saw.
pub(super) fn sessions(
    cfg: &XferConfig,
    plan: &XferPlan,
    w: usize,
    ep: &mut dyn InitiatorEnd,
    link: &mut dyn TargetLink,
) -> Result<Vec<OpenSession>, RunError> {
    let Some(open) = &cfg.open else {
        return Ok(Vec::new());
    };
    let p = OpenParams {
        size: cfg.size as usize,
        block: plan.block as usize,
        window: cfg.window,
        slots: plan.transfers_per_worker,
        warmup: cfg.warmup,
        limit: limit(cfg),
        timeout: cfg.timeout,
    };
    let mut out = Vec::with_capacity(open.rates.len());
    for (k, &rate) in open.rates.iter().enumerate() {
        let seed = seed(w, k);
        let mut schedule = Schedule::new(open.kind, rate, seed);
        link.open_session()?;
        let at = || format!("worker {w}, {} arrivals at {rate}/s", open.kind.name());
        let outcome = run_open_loop(&mut Idle::new(ep), &p, &mut schedule, &RealClock::start())
            .map_err(bench_err(at()))?;
        ep.drain().map_err(bench_err(at()))?;
        link.close_session()?;
        out.push(OpenSession {
            arrival: open.kind.name().to_string(),
            rate_per_s: rate,
            seed,
            outcome,
        });
        // A breath between rates, so one session's tail does not load the next.
        if k + 1 < open.rates.len() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(out)
}

//! Two-sided measurements (a target and an initiator meeting over the control connection):
//! the parameters check, the meeting, one side or both in this process, and the failure one
//! side tells the other.

use std::net::SocketAddr;
use std::time::Duration;

use super::memory::MemoryNeed;
use super::sched::CpuPlan;
use super::RunError;
use crate::bootstrap::{Fingerprint, Oob, OobListener};
use crate::peer::Side;
use crate::report::ResultDoc;

/// Progress of a run, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Sizes finished.
    pub done: usize,
    /// Sizes in all.
    pub total: usize,
    /// The size just finished.
    pub size: u64,
}

/// What a side measured, with the facts of the fabric it ran on.
pub struct SideOutcome {
    /// The result document (status complete, or partial with errors).
    pub doc: ResultDoc,
}

/// A two-sided run (message or RMA ping-pong, UCX tag_lat/tag_bw): what the shared
/// orchestration needs.
pub trait PairRun: Clone + Send + 'static {
    /// Checks the configuration and the provider before any connection.
    fn check(&self) -> Result<(), RunError>;
    /// The parameters both sides must share.
    fn params(&self) -> Fingerprint;
    /// Connection time-out.
    fn timeout(&self) -> Duration;
    /// The CPUs the sides' measuring threads are pinned to (`--cpus`; empty: none).
    fn cpus(&self) -> &CpuPlan;
    /// Measures one side over an established control connection.
    fn measure(
        &self,
        role: Side,
        oob: &mut Oob,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<SideOutcome, RunError>;
    /// Host memory one side holds (buffers, endpoints); nothing unless the run says.
    fn memory(&self) -> MemoryNeed {
        MemoryNeed::default()
    }
}

/// Runs a pair's target side on a bound control port.
pub fn run_target<C: PairRun>(
    cfg: &C,
    listener: &OobListener,
    progress: &mut dyn FnMut(Progress),
) -> Result<SideOutcome, RunError> {
    serve(cfg, listener, progress, 0)
}

/// The target side, its thread pinned to the `--cpus` entry `slot` (a one-process run's
/// target takes the one after the initiator's).
fn serve<C: PairRun>(
    cfg: &C,
    listener: &OobListener,
    progress: &mut dyn FnMut(Progress),
    slot: usize,
) -> Result<SideOutcome, RunError> {
    cfg.check()?;
    cfg.memory().check_available()?;
    let mut oob = listener.accept(&cfg.params(), cfg.timeout())?;
    side(cfg, Side::Target, &mut oob, progress, slot)
}

/// Runs a pair's initiator side against a target at `HOST[:PORT]`.
pub fn run_initiator<C: PairRun>(
    cfg: &C,
    peer: &str,
    progress: &mut dyn FnMut(Progress),
) -> Result<SideOutcome, RunError> {
    cfg.check()?;
    cfg.memory().check_available()?;
    let mut oob = Oob::connect(peer, &cfg.params(), cfg.timeout())?;
    side(cfg, Side::Initiator, &mut oob, progress, 0)
}

/// Runs both sides of a pair in this process over the loopback; the initiator's outcome.
pub fn run_local<C: PairRun>(
    cfg: &C,
    progress: &mut dyn FnMut(Progress),
) -> Result<SideOutcome, RunError> {
    cfg.check()?;
    cfg.memory().both_sides().check_available()?;
    let listener = OobListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let addr = listener.local_addr().to_string();
    let tcfg = cfg.clone();
    let target = std::thread::Builder::new()
        .name("kvxfer-target".into())
        .spawn(move || serve(&tcfg, &listener, &mut |_| {}, 1))
        .map_err(|source| RunError::Spawn {
            what: "the target thread",
            source,
        })?;
    let ours = run_initiator(cfg, &addr, progress);
    super::join_local(ours, target)
}

/// Measures one side on this thread, pinned first to the `--cpus` entry `slot` (before any
/// buffer is touched, so that its pages come from that CPU's node).
fn side<C: PairRun>(
    cfg: &C,
    role: Side,
    oob: &mut Oob,
    progress: &mut dyn FnMut(Progress),
    slot: usize,
) -> Result<SideOutcome, RunError> {
    let result = cfg
        .cpus()
        .pin(slot)
        .map_err(RunError::Config)
        .and_then(|()| cfg.measure(role, oob, progress));
    if let Err(e) = &result {
        oob.report_failure(&e.to_string());
    }
    result
}

//! `xfer`: KV-sized transfers by RMA, N workers at once, in one process or across several.
//!
//! Topology: a target process accepts one control connection per initiator worker (its
//! `concurrency`); an initiator process opens `concurrency` workers against one or more
//! targets (`peers`, round robin). Many-to-one in separate processes is one target with
//! `--concurrency N` and initiator processes whose concurrencies add up to N.

mod choices;
mod config;
mod config_block;
mod group;
mod initiator;
mod link;
mod open_loop;
mod open_report;
mod pace;
mod report;
mod rounds;
mod same_thread;
mod scheme;
pub mod staging;
mod sync;
mod target;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;

pub use self::config::{
    sample_bytes, ConcurrencyMode, LocalThreads, OpenLoop, RailSpec, Scheme, Sides, XferBackend,
    XferConfig, XferPlan, XferProgress, DEFAULT_BLOCK, DEFAULT_MAX_OUTSTANDING,
    DEFAULT_STRIPE_THRESHOLD, MAX_CONCURRENCY, MAX_ITERATIONS, MAX_RAILS, MAX_WINDOW,
};
pub use self::group::run_group;
use self::same_thread::spawn_pairs;
use self::worker::kept_reports;
use super::RunError;
use crate::bootstrap::OobListener;
use crate::report::ResultDoc;
use crate::run::path::{Probe, SpanGate};

/// Runs the target side: accepts `concurrency` workers (one in outstanding mode) on the
/// listener, serves them (once per round), and returns the document of all their reports.
pub fn run_target(cfg: &XferConfig, listener: &OobListener) -> Result<ResultDoc, RunError> {
    target::serve(cfg, listener, |_| {}, |_| Ok(()))
}

/// Runs the initiator side: `concurrency` workers (one in outstanding mode) against the
/// targets at `peers`, round robin, counting finished iterations in `progress`; returns the
/// document of its workers.
pub fn run_initiator(
    cfg: &XferConfig,
    peers: &[String],
    progress: &XferProgress,
) -> Result<ResultDoc, RunError> {
    let got = rounds::each(
        cfg,
        |_| Ok(()),
        |c| initiator::reports(c, peers, progress, None),
    )?;
    initiator::doc(cfg, got)
}

/// Runs both sides in this process over the loopback in the thread layout `threads` (which the
/// document's config records), counting the initiator's finished iterations in `progress`;
/// returns the initiator's document.
pub fn run_local(
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
    let plan = cfg.validate(Sides::Both)?;
    let listener = OobListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let addr = listener.local_addr().to_string();
    // The target's workers take the CPUs after the initiator's.
    let tcfg = XferConfig {
        cpus: cfg.cpus.after(plan.workers),
        ..cfg.clone()
    };
    let target = std::thread::Builder::new()
        .name("kvxfer-target".into())
        .spawn(move || run_target(&tcfg, &listener))
        .map_err(|source| RunError::Spawn {
            what: "the target thread",
            source,
        })?;
    let ours = run_initiator(cfg, &[addr], progress);
    super::join_local(ours, target)
}

/// One thread per worker, driving both ends of its connection.
fn run_local_pairs(cfg: &XferConfig, progress: &XferProgress) -> Result<ResultDoc, RunError> {
    let plan = cfg.validate(Sides::Both)?;
    if cfg.open.is_some() {
        return Err(same_thread::open_loop_refused());
    }
    if cfg.backend != XferBackend::Ucx {
        return Err(RunError::Config(
            "--local-threads pair drives both ends of a connection from one thread, which \
             libfabric's connection set-up does not allow: use --local-threads side"
                .into(),
        ));
    }
    let got = rounds::each(
        cfg,
        |_| Ok(()),
        |cfg| {
            let mems = target::target_mems(cfg, plan.workers, plan.transfers_per_worker)?;
            let kept = kept_reports(&plan);
            let gate = Arc::new(SpanGate::new(Probe::host(), plan.workers));
            let handles = spawn_pairs(cfg, &plan, mems, progress, &kept, &gate)?;
            Ok(initiator::collect(handles, &kept, &gate, None))
        },
    )?;
    initiator::doc(cfg, got)
}

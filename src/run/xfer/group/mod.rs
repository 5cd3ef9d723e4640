//! `xfer --etcd`: N processes meet through etcd and run a scheme across ranks (many-to-one,
//! pairwise, one-to-many: see `xfer_scheme`). Every target rank publishes its control
//! address; every rank publishes what it measured or served; rank 0 merges them into one
//! document (the same figures and tiers as one process with all the workers), keeping each
//! rank's own figures beside them. A rank that dies is named through its expired lease.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::config::{ConcurrencyMode, Sides, XferConfig, XferProgress};
use super::scheme::Roles;
use super::target::TargetShared;
use super::{initiator, target};
use crate::bootstrap::group::{gone_rank, Group, GroupError, GroupSpec, MAX_WORLD};
use crate::bootstrap::{Fingerprint, OobListener};
use crate::peer::Side;
use crate::report::ResultDoc;
use crate::run::path::{PathReport, SideView};
use crate::run::RunError;

mod merge;

use merge::{merge, other_failure, RankResult, Served};

/// How often rank 0 looks for ranks that are gone while the transfers run.
const WATCH: Duration = Duration::from_millis(250);

/// The parameters every rank must share: the run's fingerprint and the workers per rank.
fn fingerprint(cfg: &XferConfig) -> Fingerprint {
    cfg.fingerprint().with("concurrency", cfg.concurrency)
}

/// The roles of the ranks, refusing what a group run does not do.
fn check(cfg: &XferConfig, spec: &GroupSpec) -> Result<Roles, RunError> {
    if spec.world == 0 || spec.world > MAX_WORLD {
        return Err(RunError::Config(format!(
            "a group run takes 1 to {MAX_WORLD} processes, not {}",
            spec.world
        )));
    }
    let roles = Roles::new(cfg.scheme, spec.world, cfg.concurrency).map_err(RunError::Config)?;
    if cfg.mode != ConcurrencyMode::Endpoints {
        return Err(RunError::Config(
            "--etcd runs --concurrency-mode endpoints (one worker per transfer)".into(),
        ));
    }
    Ok(roles)
}

/// Runs this process's part of a group run; rank 0 returns the merged document, the others
/// their own.
pub fn run_group(
    cfg: &XferConfig,
    spec: &GroupSpec,
    progress: &XferProgress,
) -> Result<ResultDoc, RunError> {
    let roles = check(cfg, spec)?;
    cfg.validate(Sides::One(Side::Initiator))?;
    let group = Group::join(spec)?;
    eprintln!(
        "kvxfer: rank {} of {} in group {:?} (run {}, rank from {})",
        group.rank(),
        group.world(),
        group.name(),
        group.run_id(),
        group.source().name()
    );
    let settle = spec.ttl + Duration::from_secs(2);
    let r = stamped(run_rank(cfg, &roles, &group, progress, settle), cfg, &group);
    if r.as_ref().is_err_and(|e| cut_off(e.cause())) {
        // Nothing more reaches etcd: the others see this rank's lease expire.
        group.abandon();
        return r;
    }
    // A rank that fails on its own says why, so the others do not take it for dead.
    if let Err(e) = &r {
        if !matches!(e.cause(), RunError::Group(g) if gone_rank(g).is_some()) {
            group.leave(&e.cause().to_string());
        }
    }
    let clean = r.is_ok() || matches!(&r, Err(RunError::Partial { .. }));
    if let Err(e) = group.finish(clean) {
        eprintln!("kvxfer: warning: leaving the group: {e}");
    }
    r
}

/// A rank's document (its own, or rank 0's merged one) with the group's keys in its config, so
/// that a file says which run, group and rank wrote it.
fn stamped(
    outcome: Result<ResultDoc, RunError>,
    cfg: &XferConfig,
    group: &Group,
) -> Result<ResultDoc, RunError> {
    let stamp = |doc: &mut ResultDoc| {
        let c = &mut doc.config;
        c.insert("etcd".into(), json!(group.url()));
        c.insert("group".into(), json!(group.name()));
        c.insert("run_id".into(), json!(group.run_id()));
        c.insert("world".into(), json!(group.world()));
        c.insert("rank".into(), json!(group.rank()));
        c.insert("rank_source".into(), json!(group.source().name()));
        c.insert("concurrency_per_rank".into(), json!(cfg.concurrency));
    };
    match outcome {
        Ok(mut doc) => {
            stamp(&mut doc);
            Ok(doc)
        }
        Err(RunError::Partial { mut doc, error }) => {
            stamp(&mut doc);
            Err(RunError::Partial { doc, error })
        }
        Err(e) => Err(e),
    }
}

/// Whether `e` says this rank lost etcd.
fn cut_off(e: &RunError) -> bool {
    matches!(e, RunError::Group(GroupError::CutOff { .. }))
}

/// The error that names the cause of `e`: a rank that died or left within `settle` (a killed
/// rank's lease expires only after its time-to-live), else `e` itself.
fn blame(group: &Group, e: RunError, settle: Duration) -> RunError {
    if matches!(e.cause(), RunError::Group(_)) {
        return e;
    }
    match group.wait_gone(settle) {
        Some(g) => {
            eprintln!("kvxfer: rank {}: {}", group.rank(), e.cause());
            RunError::Group(g)
        }
        None => e,
    }
}

/// This rank's part (target or initiator), then: rank 0 gathers every rank's result and
/// writes the merged document; the others publish theirs and return their own document.
fn run_rank(
    cfg: &XferConfig,
    roles: &Roles,
    group: &Group,
    progress: &XferProgress,
    settle: Duration,
) -> Result<ResultDoc, RunError> {
    group.check_fingerprints(&fingerprint(cfg))?;
    let me = group.rank();
    let (own, outcome) = group.working(|| {
        if roles.is_target(me) {
            target_part(cfg, roles, group, settle)
        } else {
            initiator_part(cfg, roles, group, progress, settle)
        }
    })?;
    // Cut off from etcd: nothing to publish to or gather from.
    if outcome.as_ref().is_err_and(|e| cut_off(e.cause())) {
        return outcome;
    }
    if me != 0 {
        // This rank's own document stays whatever becomes of its copy for rank 0.
        let sent = serde_json::to_vec(&own)
            .map_err(|e| RunError::Config(e.to_string()))
            .and_then(|bytes| publish(group, &bytes));
        if let Err(e) = sent {
            eprintln!("kvxfer: rank {me}: warning: cannot publish the result for rank 0: {e}");
        }
        // Rank 0 reads the results while this rank's lease keeps them; it going away ends this.
        if let Err(e) = group.wait_key("collected", 0) {
            eprintln!("kvxfer: rank {me}: {e}");
        }
        return outcome;
    }
    let (own_doc, cause) = match outcome {
        Ok(d) => (Some(d), None),
        Err(RunError::Partial { doc, error }) => (Some(*doc), Some(*error)),
        Err(e) => (None, Some(e)),
    };
    match gather(cfg, roles, group, own, settle) {
        Ok((doc, failed)) => crate::run::conclude(doc, cause.or(failed).map_or(Ok(()), Err)),
        // etcd gone while rank 0 gathers (its initiators may have stopped first, so its own
        // part ended without seeing etcd go): its own document is what is left.
        Err(e) => match own_doc {
            Some(doc) => crate::run::conclude(doc, Err(e)),
            None => Err(cause.unwrap_or(e)),
        },
    }
}

/// Rank 0's gathering: every rank's result read (its own `own`), merged, and the other ranks
/// waited for; with the merged document, what went wrong on another rank (see
/// [`other_failure`]).
fn gather(
    cfg: &XferConfig,
    roles: &Roles,
    group: &Group,
    own: RankResult,
    settle: Duration,
) -> Result<(ResultDoc, Option<RunError>), RunError> {
    // Rank 0's own entry is kept here, not published.
    group.put("result", b"0")?;
    let parts = group.gather("result", true)?;
    let mut results = parts
        .iter()
        .enumerate()
        .map(|(r, n)| collect(group, r, n.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    results[0] = Some(own);
    group.put("collected", b"")?;
    let doc = merge(cfg, roles, group, &results)?;
    let failed = other_failure(roles, group, &results);
    // The other ranks revoke their leases once they see the results collected.
    group.wait_others_gone(settle)?;
    Ok((doc, failed))
}

/// What one rank's part gives: what it publishes, and its own document (partial, or the error
/// alone, when something stopped it early).
type Part = (RankResult, Result<ResultDoc, RunError>);

/// A target rank: serves the workers the scheme sends it, listening on its address toward
/// one of its initiators (its address toward etcd when etcd runs elsewhere; its address on
/// the initiators' network when etcd runs here and is reached on 127.0.0.1).
fn target_part(
    cfg: &XferConfig,
    roles: &Roles,
    group: &Group,
    settle: Duration,
) -> Result<Part, RunError> {
    let me = group.rank();
    let mut tcfg = cfg.clone();
    tcfg.concurrency = roles.workers_at(me);
    let toward = group.address_toward_rank(roles.initiator_of(me));
    let listener = OobListener::bind(SocketAddr::new(toward, 0))?;
    let addr = listener.local_addr();
    group.put("target", addr.to_string().as_bytes())?;
    eprintln!(
        "kvxfer: rank {me} is the target of {} worker(s) on {addr}",
        tcfg.concurrency
    );
    let (doc, cause) = serve(&tcfg, group, listener, settle)?;
    let served = doc.as_ref().and_then(Served::of);
    let error = cause.as_ref().map(|e| e.to_string());
    let outcome = match (doc, cause) {
        (Some(d), c) => crate::run::conclude(d, c.map_or(Ok(()), Err)),
        (None, Some(c)) => Err(c),
        (None, None) => Err(RunError::Crashed("target")),
    };
    let own = RankResult {
        reports: Vec::new(),
        served,
        error,
        path: own_view(&outcome),
    };
    Ok((own, outcome))
}

/// Runs the target in a thread while watching the group: a rank that dies or gives up (or
/// etcd going away) stops every worker at its next iteration (a worker whose initiator died
/// may wait on the fabric until the time-out; it is left behind). Before each round after the
/// first, the target waits while this thread meets the other ranks (see [`round_barrier`]).
/// Returns the target's document (when the run stops early, what its rounds served so far)
/// and what stopped it early.
fn serve(
    tcfg: &XferConfig,
    group: &Group,
    listener: OobListener,
    settle: Duration,
) -> Result<(Option<ResultDoc>, Option<RunError>), RunError> {
    // What every round started so far shares, in round order.
    let slot: Arc<Mutex<Vec<Arc<TargetShared>>>> = Arc::default();
    let (cfg, put) = (tcfg.clone(), slot.clone());
    let (ready, ready_rx) = mpsc::channel::<u64>();
    let (go_tx, go) = mpsc::channel::<bool>();
    let target = std::thread::Builder::new()
        .name("kvxfer-target".into())
        .spawn(move || {
            let started = |shared| put.lock().unwrap_or_else(|p| p.into_inner()).push(shared);
            let between = |round: u64| {
                let _ = ready.send(round);
                match go.recv() {
                    Ok(true) => Ok(()),
                    _ => Err(RunError::Config(format!(
                        "the group's ranks did not meet before round {}",
                        round + 1
                    ))),
                }
            };
            target::serve(&cfg, &listener, started, between)
        })
        .map_err(|source| RunError::Spawn {
            what: "the target thread",
            source,
        })?;
    // Why the ranks did not meet, which is what stopped the target then.
    let mut unmet = None;
    loop {
        if target.is_finished() {
            let outcome = target.join().map_err(|_| RunError::Crashed("target"))?;
            let mut cause = |e| match unmet.take() {
                Some(g) => RunError::Group(g),
                None => blame(group, e, settle),
            };
            return Ok(match outcome {
                Ok(doc) => (Some(doc), None),
                Err(RunError::Partial { doc, error }) => {
                    // Its error is concluded again below, blamed on a rank if one is gone.
                    let mut doc = *doc;
                    doc.errors.clear();
                    (Some(doc), Some(cause(*error)))
                }
                Err(e) => (None, Some(cause(e))),
            });
        }
        if let Ok(round) = ready_rx.try_recv() {
            let met = round_barrier(group, round);
            let _ = go_tx.send(met.is_ok());
            unmet = met.err();
            continue;
        }
        if let Some(gone) = group.watch() {
            eprintln!("kvxfer: rank {}: {gone}: stopping the run", group.rank());
            let rounds = slot.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let Some(now) = rounds.last() else {
                return Ok((None, Some(RunError::Group(gone))));
            };
            now.stop_all();
            let plan = tcfg.validate(Sides::One(Side::Target))?;
            let counts: Vec<&[AtomicU64]> = rounds.iter().map(|r| &r.served[..]).collect();
            let doc = target::served_doc(tcfg, &plan, &counts);
            let doc = Some(doc).filter(|d| !d.results.is_empty());
            return Ok((doc, Some(RunError::Group(gone))));
        }
        std::thread::sleep(WATCH);
    }
}

/// Every rank meets here before `round` (counted from 0; the first needs no meeting), so that
/// each round's transfers start together as the first round's do.
fn round_barrier(group: &Group, round: u64) -> Result<(), GroupError> {
    group.barrier(&format!("round-{round}"))
}

/// An initiator rank: its workers into the target ranks the scheme names (round robin).
fn initiator_part(
    cfg: &XferConfig,
    roles: &Roles,
    group: &Group,
    progress: &XferProgress,
    settle: Duration,
) -> Result<Part, RunError> {
    let targets = roles
        .targets_of(group.rank())
        .into_iter()
        .map(|t| Ok(String::from_utf8_lossy(&group.wait_key("target", t)?).into_owned()))
        .collect::<Result<Vec<_>, RunError>>()?;
    let mut watch = || {
        let gone = group.watch()?;
        eprintln!("kvxfer: rank {}: {gone}: stopping the run", group.rank());
        Some(RunError::Group(gone))
    };
    let meet = |round| Ok(round_barrier(group, round)?);
    let mut got = super::rounds::each(cfg, meet, |round_cfg| {
        initiator::reports(round_cfg, &targets, progress, Some(&mut watch))
    })?;
    got.error = got.error.map(|e| blame(group, e, settle));
    let reports = got.reports.clone();
    let error = got.error.as_ref().map(|e| e.to_string());
    let doc = initiator::doc(cfg, got);
    let own = RankResult {
        reports,
        served: None,
        error,
        path: own_view(&doc),
    };
    Ok((own, doc))
}

/// A rank's own view of its path: its document's first result's first side.
fn own_view(doc: &Result<ResultDoc, RunError>) -> Option<SideView> {
    let doc = match doc {
        Ok(d) => d,
        Err(RunError::Partial { doc, .. }) => doc,
        Err(_) => return None,
    };
    let path = doc.results.first()?.path.as_ref()?;
    PathReport::from_value(path)?.sides.into_iter().next()
}

/// The largest value put at once (etcd refuses requests over 1.5 MiB by default).
const PART: usize = 1 << 20;

/// Publishes this rank's result in parts under `result-K`, then their count under `result`.
fn publish(group: &Group, bytes: &[u8]) -> Result<(), RunError> {
    let parts: Vec<&[u8]> = bytes.chunks(PART).collect();
    for (k, p) in parts.iter().enumerate() {
        group.put(&format!("result-{k}"), p)?;
    }
    group.put("result", parts.len().to_string().as_bytes())?;
    Ok(())
}

/// Rank `r`'s result from its parts (`count` as published), None when it published none.
fn collect(group: &Group, r: usize, count: Option<&[u8]>) -> Result<Option<RankResult>, RunError> {
    let Some(count) = count else { return Ok(None) };
    let bad = |message: String| {
        RunError::Group(GroupError::Value {
            key: format!("result/{r}"),
            message,
        })
    };
    let n: usize = String::from_utf8_lossy(count)
        .parse()
        .map_err(|_| bad("not a count of parts".into()))?;
    if n == 0 {
        return Ok(None);
    }
    let mut out = Vec::new();
    for k in 0..n {
        let part = group.get(&format!("result-{k}"), r)?;
        out.extend(part.ok_or_else(|| bad(format!("part {k} of {n} is missing")))?);
    }
    serde_json::from_slice(&out)
        .map(Some)
        .map_err(|e| bad(e.to_string()))
}

//! `xfer --etcd`: N processes meet through etcd and run many-to-one: rank 0 is the target,
//! ranks 1..N-1 are initiators with `concurrency` workers each. Rank 0 publishes its control
//! address; every initiator publishes what its workers measured; rank 0 merges them into one
//! document (the same figures and tiers as one process with all the workers), keeping each
//! rank's own figures beside them. A rank that dies is named through its expired lease.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::sync::TimedBarrier;
use super::xfer::{initiator_doc, initiator_reports, run_target_with};
use super::xfer_config::{ConcurrencyMode, Scheme, Sides, XferConfig, XferProgress};
use super::xfer_worker::WorkerReport;
use super::RunError;
use crate::bootstrap::group::{gone_rank, Group, GroupError, GroupSpec};
use crate::bootstrap::{Fingerprint, OobListener};
use crate::report::ResultDoc;

/// How often rank 0 looks for ranks that are gone while the transfers run.
const WATCH: Duration = Duration::from_millis(250);

/// What an initiator rank publishes at the end: its workers' reports and why it stopped early.
#[derive(Serialize, Deserialize)]
struct RankResult {
    reports: Vec<WorkerReport>,
    error: Option<String>,
}

/// The parameters every rank must share: the run's fingerprint and the workers per rank.
fn fingerprint(cfg: &XferConfig) -> Fingerprint {
    cfg.fingerprint().with("concurrency", cfg.concurrency)
}

/// Refuses what a group run does not do.
fn check(cfg: &XferConfig, spec: &GroupSpec) -> Result<(), RunError> {
    let bad = |m: String| Err(RunError::Config(m));
    if spec.world < 2 {
        return bad(format!(
            "--world {} leaves no initiator: a group run needs a target (rank 0) and at least one initiator",
            spec.world
        ));
    }
    if cfg.scheme != Scheme::ManyToOne {
        return bad(format!(
            "--etcd runs --scheme many-to-one (ranks 1..N-1 into rank 0); {} across ranks is not built yet",
            cfg.scheme.name().replace('_', "-")
        ));
    }
    if cfg.mode != ConcurrencyMode::Endpoints {
        return bad("--etcd runs --concurrency-mode endpoints (one worker per transfer)".into());
    }
    Ok(())
}

/// Runs this process's part of a group run; rank 0 returns the merged document, the others
/// their own.
pub fn run_group(
    cfg: &XferConfig,
    spec: &GroupSpec,
    progress: &XferProgress,
) -> Result<ResultDoc, RunError> {
    check(cfg, spec)?;
    cfg.validate(Sides::Initiator)?;
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
    let r = if group.rank() == 0 {
        lead(cfg, &group, settle)
    } else {
        follow(cfg, &group, progress, settle)
    };
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

/// The error that names the cause of `e`: a rank that died or left within `settle` (a killed
/// rank's lease expires only after its time-to-live), else `e` itself.
fn blame(group: &Group, e: RunError, settle: Duration) -> RunError {
    match group.wait_gone(settle) {
        Some(g) => {
            eprintln!("kvxfer: rank {}: {}", group.rank(), e.cause());
            RunError::Group(g)
        }
        None => e,
    }
}

/// Rank 0: the target of every initiator's workers, then the merged document. It listens on
/// its address toward rank 1 (its address toward etcd when etcd runs elsewhere; its address
/// on the initiators' network when etcd runs here and is reached on 127.0.0.1).
fn lead(cfg: &XferConfig, group: &Group, settle: Duration) -> Result<ResultDoc, RunError> {
    group.check_fingerprints(&fingerprint(cfg))?;
    let mut tcfg = cfg.clone();
    tcfg.concurrency = cfg.concurrency * (group.world() - 1);
    let listener = OobListener::bind(SocketAddr::new(group.address_toward_rank(1), 0))?;
    let addr = listener.local_addr();
    group.put("target", addr.to_string().as_bytes())?;
    eprintln!(
        "kvxfer: rank 0 is the target of {} worker(s) on {addr}",
        tcfg.concurrency
    );
    let cause = serve(&tcfg, group, listener, settle)?;
    // Rank 0's own entry (none: the target's figures are the initiators').
    group.put("result", b"0")?;
    let parts = group.gather("result", true)?;
    let results = parts
        .iter()
        .enumerate()
        .map(|(r, n)| collect(group, r, n.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    group.put("collected", b"")?;
    let doc = merge(cfg, &tcfg, group, &results)?;
    // The initiators revoke their leases once they see the results collected.
    group.wait_others_gone(settle)?;
    super::conclude(doc, cause.map_or(Ok(()), Err))
}

/// Runs the target in a thread while watching the group: a rank that dies or gives up stops
/// every worker at its next iteration (a worker whose initiator died may wait on the fabric
/// until the time-out; it is left behind). Returns what stopped the run early.
fn serve(
    tcfg: &XferConfig,
    group: &Group,
    listener: OobListener,
    settle: Duration,
) -> Result<Option<RunError>, RunError> {
    let slot: Arc<Mutex<Option<Arc<TimedBarrier>>>> = Arc::default();
    let (cfg, put) = (tcfg.clone(), slot.clone());
    let target = std::thread::Builder::new()
        .name("kvxfer-target".into())
        .spawn(move || {
            run_target_with(&cfg, &listener, |b| {
                *put.lock().unwrap_or_else(|p| p.into_inner()) = Some(b);
            })
        })
        .map_err(|source| RunError::Spawn {
            what: "the target thread",
            source,
        })?;
    loop {
        if target.is_finished() {
            let outcome = target.join().map_err(|_| RunError::Crashed("target"))?;
            return Ok(outcome.err().map(|e| blame(group, e, settle)));
        }
        if let Some(gone) = group.first_gone()? {
            eprintln!("kvxfer: rank 0: {gone}: stopping the run");
            if let Some(b) = slot.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                b.break_all();
            }
            return Ok(Some(RunError::Group(gone)));
        }
        std::thread::sleep(WATCH);
    }
}

/// Ranks 1..N-1: initiators into rank 0; publish what they measured.
fn follow(
    cfg: &XferConfig,
    group: &Group,
    progress: &XferProgress,
    settle: Duration,
) -> Result<ResultDoc, RunError> {
    group.check_fingerprints(&fingerprint(cfg))?;
    let target = String::from_utf8_lossy(&group.wait_key("target", 0)?).into_owned();
    let (reports, error) = initiator_reports(cfg, &[target], progress)?;
    let error = error.map(|e| blame(group, e, settle));
    let published = RankResult {
        reports,
        error: error.as_ref().map(|e| e.to_string()),
    };
    let bytes = serde_json::to_vec(&published).map_err(|e| RunError::Config(e.to_string()))?;
    publish(group, &bytes)?;
    // Rank 0 reads the results while this rank's lease keeps them; it going away ends this.
    if let Err(e) = group.wait_key("collected", 0) {
        eprintln!("kvxfer: rank {}: {e}", group.rank());
    }
    initiator_doc(cfg, published.reports, error)
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
fn collect(group: &Group, r: usize, count: Option<&[u8]>) -> Result<Option<Vec<u8>>, RunError> {
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
    Ok(Some(out))
}

/// The merged document: every initiator rank's workers as one many-to-one run of `tcfg`
/// (workers numbered rank by rank), with each rank's own figures in `extra.ranks`.
fn merge(
    cfg: &XferConfig,
    tcfg: &XferConfig,
    group: &Group,
    results: &[Option<Vec<u8>>],
) -> Result<ResultDoc, RunError> {
    let rank_plan = cfg.validate(Sides::Initiator)?;
    let mut all = Vec::new();
    let mut ranks = Vec::new();
    for (r, bytes) in results.iter().enumerate().skip(1) {
        let host = group.members().get(r).cloned().unwrap_or_default();
        let offset = (r - 1) * cfg.concurrency;
        let Some(bytes) = bytes else {
            ranks.push(json!({"rank": r, "host": host, "status": "lost"}));
            continue;
        };
        let got: RankResult = serde_json::from_slice(bytes).map_err(|e| {
            RunError::Group(GroupError::Value {
                key: format!("result/{r}"),
                message: e.to_string(),
            })
        })?;
        let own = super::xfer_report::build(cfg, &rank_plan, "initiator", &got.reports);
        ranks.push(rank_entry(r, &host, offset, &own, got.error));
        all.extend(got.reports.into_iter().map(|mut w| {
            w.worker += offset;
            w
        }));
    }
    let plan = tcfg.validate(Sides::Target)?;
    let mut doc = super::xfer_report::build(tcfg, &plan, "target", &all);
    if let Some(res) = doc.results.first_mut() {
        res.extra.insert("ranks".into(), Value::Array(ranks));
    }
    let c = &mut doc.config;
    c.insert("etcd".into(), json!(group.url()));
    c.insert("group".into(), json!(group.name()));
    c.insert("run_id".into(), json!(group.run_id()));
    c.insert("world".into(), json!(group.world()));
    c.insert("rank_source".into(), json!(group.source().name()));
    c.insert("concurrency_per_rank".into(), json!(cfg.concurrency));
    Ok(doc)
}

/// One initiator rank's own figures, from the document of its workers alone.
fn rank_entry(
    r: usize,
    host: &str,
    offset: usize,
    own: &ResultDoc,
    error: Option<String>,
) -> Value {
    let res = own.results.first();
    let workers: Vec<usize> = res
        .and_then(|x| x.extra.get("workers"))
        .and_then(Value::as_array)
        .map(|ws| {
            ws.iter()
                .filter_map(|w| w.get("worker").and_then(Value::as_u64))
                .map(|w| w as usize + offset)
                .collect()
        })
        .unwrap_or_default();
    json!({
        "rank": r,
        "host": host,
        "status": if error.is_some() { "partial" } else { "complete" },
        "error": error,
        "workers": workers,
        "iterations": res.map(|x| x.iterations),
        "latency_us": res.and_then(|x| x.latency_us),
        "bandwidth_gbps": res.and_then(|x| x.bandwidth_gbps),
        "transfer_time_ms": res.and_then(|x| x.transfer_time_ms),
        "histogram": res.and_then(|x| x.histogram.clone()),
    })
}

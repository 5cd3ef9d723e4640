//! Rank 0's side of a group run's end: what each rank publishes, the merged document (every
//! rank's workers as one run, each rank's own figures beside them), and what went wrong on
//! the other ranks.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::super::config::{Sides, XferConfig};
use super::super::scheme::Roles;
use super::super::worker::WorkerReport;
use crate::bootstrap::group::{gone_rank, Group, GroupError};
use crate::peer::Side;
use crate::report::ResultDoc;
use crate::run::path::{PathReport, SideView};
use crate::run::RunError;

/// What a rank publishes at the end: an initiator rank its workers' reports, a target rank
/// what it served; and why it stopped early.
#[derive(Default, Serialize, Deserialize)]
pub(super) struct RankResult {
    pub(super) reports: Vec<WorkerReport>,
    #[serde(default)]
    pub(super) served: Option<Served>,
    pub(super) error: Option<String>,
    /// This rank's view of the devices that carried its payload.
    #[serde(default)]
    pub(super) path: Option<SideView>,
}

/// What a target rank served, from its own document.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub(super) struct Served {
    workers: usize,
    iterations: u64,
    bytes_counted: u64,
    verified_bytes: u64,
}

impl Served {
    /// What the target rank of `doc` served, from its own document.
    pub(super) fn of(doc: &ResultDoc) -> Option<Served> {
        let r = doc.results.first()?;
        let n = |k: &str| r.extra.get(k).and_then(Value::as_u64).unwrap_or(0);
        Some(Served {
            // A complete document lists its workers; one that stopped early, what each served.
            workers: ["workers", "served_iterations"]
                .iter()
                .find_map(|k| r.extra.get(*k).and_then(Value::as_array))
                .map_or(0, Vec::len),
            iterations: r.iterations,
            bytes_counted: n("bytes_counted"),
            verified_bytes: n("verified_bytes"),
        })
    }
}

/// Rank `r`'s `host addr pid N`, as the group's members name it (empty for a rank it lacks).
fn member(group: &Group, r: usize) -> String {
    group.members().get(r).cloned().unwrap_or_default()
}

/// What makes the merged result partial though rank 0's own part went well: the first
/// initiator rank that failed, else the first rank whose result never came (dead or left),
/// else the first target rank that failed (its error often only echoes its initiator's).
pub(super) fn other_failure(
    roles: &Roles,
    group: &Group,
    results: &[Option<RankResult>],
) -> Option<RunError> {
    let host = |r: usize| member(group, r);
    let failed = |r: usize| {
        let reason = results[r].as_ref()?.error.clone()?;
        Some(GroupError::Left {
            rank: r,
            host: host(r),
            reason,
        })
    };
    let lost = |r: usize| {
        results[r].is_none().then(|| {
            let gone = group.gone().unwrap_or_default();
            let dead = GroupError::Dead {
                rank: r,
                host: host(r),
            };
            gone.into_iter()
                .find(|g| gone_rank(g) == Some(r))
                .unwrap_or(dead)
        })
    };
    let others = |ranks: Vec<usize>| ranks.into_iter().filter(|&r| r != 0).collect::<Vec<_>>();
    let (initiators, targets) = (others(roles.initiators()), others(roles.targets()));
    let all = || initiators.iter().chain(&targets);
    initiators
        .iter()
        .find_map(|&r| failed(r))
        .or_else(|| all().find_map(|&r| lost(r)))
        .or_else(|| targets.iter().find_map(|&r| failed(r)))
        .map(RunError::Group)
}

/// Every rank's view (rank 0's first), each named for its rank, as the merged result's path.
fn merged_path(roles: &Roles, results: &[Option<RankResult>]) -> Option<PathReport> {
    let mut views = results.iter().enumerate().filter_map(|(r, got)| {
        let mut v = got.as_ref()?.path.clone()?;
        let role = if roles.is_target(r) {
            "target"
        } else {
            "initiator"
        };
        v.role = format!("rank {r} ({role})");
        Some(v)
    });
    let own = views.next()?;
    Some(PathReport::of(own, views.collect()))
}

/// The merged document: every initiator rank's workers as one run of the scheme with all of
/// them (workers numbered rank by rank), each initiator rank's own figures in `extra.ranks`
/// and what each target rank served in `extra.targets`.
pub(super) fn merge(
    cfg: &XferConfig,
    roles: &Roles,
    group: &Group,
    results: &[Option<RankResult>],
) -> Result<ResultDoc, RunError> {
    let rank_plan = cfg.validate(Sides::One(Side::Initiator))?;
    let host = |r: usize| member(group, r);
    let mut all = Vec::new();
    let mut ranks = Vec::new();
    for r in roles.initiators() {
        let offset = roles.offset(r);
        let peers = roles.worker_targets(r);
        let Some(got) = &results[r] else {
            ranks
                .push(json!({"rank": r, "host": host(r), "status": "lost", "target_ranks": peers}));
            continue;
        };
        let own = super::super::report::build(cfg, &rank_plan, Side::Initiator, &got.reports, None);
        ranks.push(rank_entry(
            r,
            &host(r),
            offset,
            &own,
            got.error.clone(),
            &peers,
        ));
        all.extend(got.reports.iter().cloned().map(|mut w| {
            w.worker += offset;
            w
        }));
    }
    let targets: Vec<Value> = roles
        .targets()
        .into_iter()
        .map(|t| target_entry(t, &host(t), results[t].as_ref()))
        .collect();
    // Rank 0's own plan (what its host held), with every initiator rank's workers.
    let mut mcfg = cfg.clone();
    mcfg.concurrency = roles.total_workers();
    let (side, plan) = if roles.is_target(0) {
        (Side::Target, mcfg.validate(Sides::One(Side::Target))?)
    } else {
        (Side::Initiator, rank_plan)
    };
    let mut doc = super::super::report::build(&mcfg, &plan, side, &all, None);
    if let Some(res) = doc.results.first_mut() {
        res.extra.insert("ranks".into(), Value::Array(ranks));
        res.extra.insert("targets".into(), Value::Array(targets));
        res.path = merged_path(roles, results).map(|p| p.to_value());
    }
    Ok(doc)
}

/// One initiator rank's own figures, from the document of its workers alone, with the target
/// rank of each of its workers.
fn rank_entry(
    r: usize,
    host: &str,
    offset: usize,
    own: &ResultDoc,
    error: Option<String>,
    peers: &[usize],
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
        "target_ranks": peers,
        "iterations": res.map(|x| x.iterations),
        "latency_us": res.and_then(|x| x.latency_us),
        "bandwidth_gbps": res.and_then(|x| x.bandwidth_gbps),
        "transfer_time_ms": res.and_then(|x| x.transfer_time_ms),
        "histogram": res.and_then(|x| x.histogram.clone()),
    })
}

/// What target rank `t` served, as it published it (`lost` when it published nothing).
fn target_entry(t: usize, host: &str, got: Option<&RankResult>) -> Value {
    let Some(got) = got else {
        return json!({"rank": t, "host": host, "status": "lost"});
    };
    let s = got.served;
    json!({
        "rank": t,
        "host": host,
        "status": if got.error.is_some() { "partial" } else { "complete" },
        "error": got.error,
        "workers": s.map(|s| s.workers),
        "iterations": s.map(|s| s.iterations),
        "bytes_counted": s.map(|s| s.bytes_counted),
        "verified_bytes": s.map(|s| s.verified_bytes),
    })
}

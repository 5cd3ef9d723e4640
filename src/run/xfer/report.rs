//! The xfer result document: aggregate bandwidth, end-to-end and initiator-side latency,
//! each worker's completion times, the tiers among them, nixlbench's columns, and the costs
//! of registration and of the first transfer.

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Map, Value};

use self::cache::{cache_state, CacheState};
use super::config::{XferConfig, XferPlan};
use super::config_block::config_map;
use super::staging::{Direction, StagingFigures};
use super::worker::{e2e, WorkerReport};
use crate::mem::Backing;
use crate::peer::Side;
use crate::report::{ResultDoc, SizeResult, Status};
use crate::run::environment;
use crate::run::path::counters::TcpCounters;
use crate::run::path::{PathReport, Payload, SideView, SpanReadings};
use crate::run::sched::Scheduling;
use crate::stats::{
    detect_tiers, encode_histogram, new_histogram, LatencySummary, Precision, StoppedBy,
};
use crate::xfer::rails::{sum_rails, RailStats};
use crate::xfer::XferOp;

const GIB: f64 = (1u64 << 30) as f64;

fn hist_of(values: impl Iterator<Item = u64>) -> Histogram<u64> {
    let mut h = new_histogram();
    for v in values {
        h.saturating_record(v.max(1));
    }
    h
}

fn us(ns: f64) -> f64 {
    ns / 1000.0
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Average and p99 of a histogram, microseconds.
#[derive(Serialize)]
struct AvgP99 {
    avg: f64,
    p99: f64,
}

fn avg_p99(h: &Histogram<u64>) -> Option<AvgP99> {
    (!h.is_empty()).then(|| AvgP99 {
        avg: us(h.mean()),
        p99: us(h.value_at_quantile(0.99) as f64),
    })
}

/// One (worker, transfer) stream's times, one per timed iteration, ns.
struct Stream {
    worker: usize,
    transfer: usize,
    e2e_ns: Vec<u64>,
    local_ns: Vec<u64>,
}

/// A stream as the document lists it.
#[derive(Serialize)]
struct StreamOut {
    worker: usize,
    target_worker: Option<usize>,
    transfer: usize,
    completion_ms: Vec<f64>,
    initiator_side_ms: Vec<f64>,
    latency_us: Option<LatencySummary>,
}

/// A tier of the staircase, as the document lists it.
#[derive(Serialize)]
struct TierOut {
    centre_ms: f64,
    min_ms: f64,
    max_ms: f64,
    members: Vec<usize>,
}

/// nixlbench's columns.
#[derive(Serialize)]
struct Nixlbench {
    block_size: u64,
    batch_size: u64,
    bw_gbps: Option<f64>,
    avg_lat_us: Option<f64>,
    prep_us: Option<AvgP99>,
    post_us: Option<AvgP99>,
    tx_us: Option<AvgP99>,
}

/// What set-up and the first transfer cost, microseconds.
#[derive(Serialize)]
struct Costs {
    registration_first_us: Option<f64>,
    registration_cached_us: Option<f64>,
    target_registration_first_us: Option<f64>,
    target_registration_cached_us: Option<f64>,
    /// The share of the initiator's buffer mappings in transparent huge pages, %.
    registration_huge_page_pct: Option<f64>,
    /// The same of the target's first region.
    target_registration_huge_page_pct: Option<f64>,
    connect_us: Option<f64>,
    first_transfer_us: Option<f64>,
    steady_state_p50_us: Option<f64>,
    first_over_steady: Option<f64>,
}

/// The xfer-specific figures of a result (its `extra`).
#[derive(Serialize)]
struct XferExtra {
    #[serde(skip_serializing_if = "Option::is_none")]
    bandwidth_gibps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    per_transfer_gbps: Option<f64>,
    transfers_per_iteration: u64,
    bytes_counted: u64,
    latency: &'static str,
    initiator_side_us: Option<LatencySummary>,
    /// Absent for reads (the target sees none); null when nothing was measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    target_confirmed_us: Option<Option<LatencySummary>>,
    iteration_span_ms: Vec<f64>,
    workers: Vec<StreamOut>,
    tier_count: usize,
    tiers: Vec<TierOut>,
    tiers_per_iteration: Vec<usize>,
    nixlbench: Nixlbench,
    costs: Costs,
    verified_bytes: u64,
    busy_retries: u64,
    /// `--staging host`: this side's copies between device and bounce buffer.
    #[serde(skip_serializing_if = "Option::is_none")]
    staging: Option<StagingFigures>,
    /// Per rail, summed over workers and timed iterations (only with `--rails`).
    #[serde(skip_serializing_if = "Option::is_none")]
    rails: Option<Vec<RailStats>>,
    /// The host's TCP counters over the timed iterations, as the first initiator worker that
    /// read them saw them (host-wide: every TCP connection of that host counts).
    #[serde(skip_serializing_if = "Option::is_none")]
    host_tcp: Option<HostTcp>,
    /// What the scheduler did to each side's worker threads over the timed span.
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduling: Option<Scheduling>,
    /// The host payload against this host's last-level cache, and whether it was evicted.
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: Option<CacheState>,
}

/// TCP counters of one host over the timed iterations.
#[derive(Serialize)]
struct HostTcp {
    /// The host whose counters these are.
    host: String,
    #[serde(flatten)]
    counters: TcpCounters,
}

/// An open-loop run's document, with the devices that carried every session's bytes as
/// `span`'s readings show them (this side's view alone).
fn open_doc(
    cfg: &XferConfig,
    plan: &XferPlan,
    side: Side,
    reports: &[WorkerReport],
    span: Option<&SpanReadings>,
) -> ResultDoc {
    let refs: Vec<&WorkerReport> = reports.iter().collect();
    let moved = super::open_report::moved(cfg, reports);
    let path = path(cfg, side, &refs, span, moved, 0).map(|p| p.to_value());
    super::open_report::build(cfg, plan, side, reports, path)
}

/// Builds the document of one side from its workers' reports, with the devices that carried
/// the payload as `span`'s readings and the targets' views in the reports show them (open-loop
/// runs have a document of their own, with this side's view alone).
pub fn build(
    cfg: &XferConfig,
    plan: &XferPlan,
    side: Side,
    reports: &[WorkerReport],
    span: Option<&SpanReadings>,
) -> ResultDoc {
    if cfg.open.is_some() {
        return open_doc(cfg, plan, side, reports, span);
    }
    let mut reports: Vec<&WorkerReport> = reports.iter().collect();
    reports.sort_by_key(|r| r.worker);
    let mut doc = ResultDoc::new("kvxfer", "xfer", "L1");
    doc.config = config_map(cfg, plan, side, &reports);
    doc.environment = reports
        .first()
        .map_or_else(environment::base, |r| r.environment.clone());
    let iterations = finished_by_all(cfg, &reports);
    let streams = streams(cfg.op, &reports, iterations);
    let e2e_hist = hist_of(streams.iter().flat_map(|s| s.e2e_ns.iter().copied()));
    let local_hist = hist_of(streams.iter().flat_map(|s| s.local_ns.iter().copied()));
    let spans = iteration_spans(&streams, iterations);
    let span_total: u64 = spans.iter().sum();
    let bytes = streams.len() as u64 * cfg.size * iterations as u64;
    let bps = (span_total > 0).then(|| bytes as f64 / (span_total as f64 / 1e9));
    let tiers = tiers(plan, &streams);
    let path = read_path(cfg, side, &reports, span, streams.len(), &spans);
    let extra = XferExtra {
        bandwidth_gibps: bps.map(|b| b / GIB),
        per_transfer_gbps: (!e2e_hist.is_empty()).then(|| cfg.size as f64 / e2e_hist.mean()),
        transfers_per_iteration: streams.len() as u64,
        bytes_counted: bytes,
        latency: match cfg.op {
            XferOp::Write | XferOp::Send => "first post to the target's confirmation, per transfer",
            XferOp::Read => "first post to the last local read completion, per transfer",
        },
        initiator_side_us: LatencySummary::from_histogram(&local_hist),
        target_confirmed_us: (cfg.op != XferOp::Read)
            .then(|| LatencySummary::from_histogram(&e2e_hist)),
        iteration_span_ms: spans.iter().map(|&s| s as f64 / 1e6).collect(),
        workers: streams.iter().map(|s| stream_out(&reports, s)).collect(),
        tier_count: tiers.len(),
        tiers,
        tiers_per_iteration: tiers_per_iteration(&streams, iterations),
        nixlbench: nixlbench(plan, &reports, &spans, iterations, bps),
        costs: costs(cfg.op, &reports, &e2e_hist),
        verified_bytes: reports.iter().map(|r| r.verified_bytes).sum(),
        busy_retries: busy_retries(&reports),
        rails: rails(&reports),
        staging: staging(cfg, side, &reports),
        host_tcp: host_tcp(path.as_ref()),
        scheduling: scheduling(&reports),
        // The document's own environment says how large the cache is: read once, not again.
        cache: cache_state(
            cfg,
            streams.len() as u64,
            doc.environment
                .extra
                .get("llc_bytes")
                .and_then(Value::as_u64),
        ),
    };
    let mut extra = match serde_json::to_value(&extra) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    if let Some(v) = precision(cfg, &reports, &e2e_hist) {
        extra.insert("precision".into(), v);
    }
    let mut r = size_result(cfg.size, iterations as u64, &e2e_hist, bps, extra);
    r.path = path.map(|p| p.to_value());
    doc.results.push(r);
    doc.status = if streams.is_empty() {
        Status::Failed
    } else {
        Status::Complete
    };
    doc.finished_at = crate::report::schema::now_rfc3339();
    doc
}

/// The result of `iterations` transfers of `size` bytes whose end-to-end times are `e2e`, at
/// `bps` bytes per second over the iterations' spans, with `extra`.
fn size_result(
    size: u64,
    iterations: u64,
    e2e: &Histogram<u64>,
    bps: Option<f64>,
    extra: Map<String, Value>,
) -> SizeResult {
    SizeResult {
        message_size: size,
        iterations,
        latency_us: LatencySummary::from_histogram(e2e),
        bandwidth_gbps: bps.map(|b| b / 1e9),
        bandwidth_mbps: bps.map(|b| b / 1e6),
        transfer_time_ms: (!e2e.is_empty()).then(|| e2e.mean() / 1e6),
        histogram: (!e2e.is_empty())
            .then(|| encode_histogram(e2e).ok())
            .flatten(),
        path: None,
        extra,
    }
}

/// What the scheduler did to both sides' worker threads over the timed span.
fn scheduling(reports: &[&WorkerReport]) -> Option<Scheduling> {
    Scheduling::of(
        reports.iter().filter_map(|r| r.sched.as_ref()),
        reports.iter().filter_map(|r| r.target_sched.as_ref()),
    )
}

/// This host's TCP counters over the span, from this side's own path view.
fn host_tcp(path: Option<&PathReport>) -> Option<HostTcp> {
    let v = path?.own()?;
    v.tcp.map(|counters| HostTcp {
        host: v.host.clone(),
        counters,
    })
}

/// Posts the provider refused for want of room, over every timed iteration.
fn busy_retries(reports: &[&WorkerReport]) -> u64 {
    reports
        .iter()
        .flat_map(|r| r.timed.iter().map(|s| s.busy_retries))
        .sum()
}

/// Iterations every worker finished: all of them, unless the run stopped early.
fn finished_by_all(cfg: &XferConfig, reports: &[&WorkerReport]) -> usize {
    reports
        .iter()
        .map(|r| r.timed.len())
        .min()
        .unwrap_or(0)
        .min(
            usize::try_from(cfg.iterations.at_most().saturating_mul(cfg.rounds))
                .unwrap_or(usize::MAX),
        )
}

/// Each iteration's span: until its slowest transfer is confirmed (all start at one barrier).
fn iteration_spans(streams: &[Stream], iterations: usize) -> Vec<u64> {
    (0..iterations)
        .map(|i| {
            let ends = streams.iter().filter_map(|s| s.e2e_ns.get(i));
            ends.copied().max().unwrap_or(0)
        })
        .collect()
}

/// The precision block of the per-transfer latencies (none when nothing was timed).
fn precision(cfg: &XferConfig, reports: &[&WorkerReport], e2e: &Histogram<u64>) -> Option<Value> {
    if e2e.is_empty() {
        return None;
    }
    let stopped_by = reports
        .iter()
        .find_map(|r| r.stopped_by)
        .unwrap_or(StoppedBy::Fixed);
    // The workers of one process share one pace and so one blocks' interval; a result merged
    // from processes whose intervals differ states its samples' interval alone.
    let mut blocks = reports.iter().filter_map(|r| r.blocks);
    let first = blocks.next();
    let blocks = first.filter(|b| blocks.all(|o| o == *b));
    let target = Precision::target_of(&cfg.iterations);
    let rounds = super::rounds::interval(cfg.op, reports);
    let blocks = blocks.filter(|_| rounds.is_none());
    let p = Precision::of(e2e, stopped_by, target, blocks.as_ref(), rounds.as_ref());
    serde_json::to_value(p).ok()
}

/// The devices that carried the payload of `transfers` streams over the iterations the
/// counters spanned (`spans`: every iteration's): the first round's where there were rounds,
/// else all of them.
fn read_path(
    cfg: &XferConfig,
    side: Side,
    reports: &[&WorkerReport],
    span: Option<&SpanReadings>,
    transfers: usize,
    spans: &[u64],
) -> Option<PathReport> {
    let all = spans.len();
    let read = super::rounds::first_round(reports).map_or(all, |n| n.min(all));
    let bytes = transfers as u64 * cfg.size * read as u64;
    path(cfg, side, reports, span, bytes, spans[..read].iter().sum())
}

/// The devices that carried this side's `bytes` over its timed iterations (`span_ns` of
/// them), with the targets' own views after this side's.
fn path(
    cfg: &XferConfig,
    side: Side,
    reports: &[&WorkerReport],
    span: Option<&SpanReadings>,
    bytes: u64,
    span_ns: u64,
) -> Option<PathReport> {
    let sends = (side == Side::Target) == (cfg.op == XferOp::Read);
    let payload = Payload {
        sent: if sends { bytes } else { 0 },
        received: if sends { 0 } else { bytes },
        timed_ns: (span_ns > 0).then_some(span_ns),
    };
    let own = span?.view(side.name(), payload);
    let mut peers: Vec<SideView> = Vec::new();
    for v in reports.iter().filter_map(|r| r.target_path.as_ref()) {
        if !peers.contains(v) {
            peers.push(v.clone());
        }
    }
    Some(PathReport::of(own, peers))
}

/// The staging figures of this side (None unless staged).
fn staging(cfg: &XferConfig, side: Side, reports: &[&WorkerReport]) -> Option<StagingFigures> {
    let ns: Vec<u64> = reports
        .iter()
        .flat_map(|r| r.staging_ns.iter().copied())
        .collect();
    let sends = (side == Side::Target) == (cfg.op == crate::xfer::XferOp::Read);
    let direction = if sends {
        Direction::DeviceToHost
    } else {
        Direction::HostToDevice
    };
    let per = cfg.layout().1;
    StagingFigures::of(direction, per as u64 * cfg.size, &ns)
}

/// Every worker's per-rail counts, summed rail by rail (None without `--rails`).
fn rails(reports: &[&WorkerReport]) -> Option<Vec<RailStats>> {
    let mut total = None;
    for r in reports.iter().filter_map(|r| r.rails.as_ref()) {
        sum_rails(&mut total, r);
    }
    total
}

/// Every (worker, transfer) stream's end-to-end and initiator-side times.
fn streams(op: XferOp, reports: &[&WorkerReport], iterations: usize) -> Vec<Stream> {
    let mut out = Vec::new();
    for r in reports {
        let timed = &r.timed[..iterations];
        for t in 0..r.transfers {
            out.push(Stream {
                worker: r.worker,
                transfer: t,
                e2e_ns: timed.iter().map(|s| e2e(op, s, t)).collect(),
                local_ns: timed.iter().map(|s| s.local_ns[t]).collect(),
            });
        }
    }
    out
}

fn stream_out(reports: &[&WorkerReport], s: &Stream) -> StreamOut {
    let ms = |v: &[u64]| v.iter().map(|&x| x as f64 / 1e6).collect();
    StreamOut {
        worker: s.worker,
        target_worker: reports
            .iter()
            .find(|r| r.worker == s.worker)
            .map(|r| r.target_worker),
        transfer: s.transfer,
        completion_ms: ms(&s.e2e_ns),
        initiator_side_ms: ms(&s.local_ns),
        latency_us: LatencySummary::from_histogram(&hist_of(s.e2e_ns.iter().copied())),
    }
}

/// The staircase: tiers among the streams' median completion times.
fn tiers(plan: &XferPlan, streams: &[Stream]) -> Vec<TierOut> {
    let per_stream: Vec<(usize, f64)> = streams
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.e2e_ns.is_empty())
        .map(|(k, s)| {
            let mut v = s.e2e_ns.clone();
            v.sort_unstable();
            (k, v[v.len() / 2] as f64 / 1e6)
        })
        .collect();
    let label = |k: usize| streams[k].worker * plan.transfers_per_worker + streams[k].transfer;
    detect_tiers(&per_stream)
        .into_iter()
        .map(|t| TierOut {
            centre_ms: t.centre,
            min_ms: t.min,
            max_ms: t.max,
            members: t.members.iter().map(|&k| label(k)).collect(),
        })
        .collect()
}

/// The number of tiers within each iteration.
fn tiers_per_iteration(streams: &[Stream], iterations: usize) -> Vec<usize> {
    (0..iterations)
        .map(|i| {
            let v: Vec<(usize, f64)> = streams
                .iter()
                .enumerate()
                .filter_map(|(k, s)| s.e2e_ns.get(i).map(|&x| (k, x as f64)))
                .collect();
            detect_tiers(&v).len()
        })
        .collect()
}

/// nixlbench's columns: block and batch size, bandwidth, average latency per block, and the
/// prep/post/tx averages and p99 over the timed iterations.
fn nixlbench(
    plan: &XferPlan,
    reports: &[&WorkerReport],
    spans: &[u64],
    iterations: usize,
    bps: Option<f64>,
) -> Nixlbench {
    let samples = || reports.iter().flat_map(|r| r.timed.iter());
    let prep = hist_of(samples().map(|s| s.prep_ns));
    let post = hist_of(samples().map(|s| s.post_ns));
    let tx = hist_of(samples().map(|s| s.local_ns.iter().copied().max().unwrap_or(0)));
    let blocks = iterations as f64 * plan.chunks as f64;
    Nixlbench {
        block_size: plan.block,
        batch_size: plan.chunks,
        bw_gbps: bps.map(|b| b / 1e9),
        avg_lat_us: (blocks > 0.0).then(|| us(spans.iter().sum::<u64>() as f64) / blocks),
        prep_us: avg_p99(&prep),
        post_us: avg_p99(&post),
        tx_us: avg_p99(&tx),
    }
}

/// Registration (first vs again) on both sides, connection set-up, and the cold first
/// transfer against the steady state.
fn costs(op: XferOp, reports: &[&WorkerReport], e2e_hist: &Histogram<u64>) -> Costs {
    let m = |f: &dyn Fn(&WorkerReport) -> u64| {
        mean(&reports.iter().map(|r| us(f(r) as f64)).collect::<Vec<_>>())
    };
    let cold: Vec<f64> = reports
        .iter()
        .filter_map(|r| r.cold.as_ref())
        .map(|s| {
            us((0..s.local_ns.len())
                .map(|t| e2e(op, s, t))
                .max()
                .unwrap_or(0) as f64)
        })
        .collect();
    let first = mean(&cold);
    let pct = |f: &dyn Fn(&WorkerReport) -> Option<Backing>| {
        mean(
            &reports
                .iter()
                .filter_map(|r| f(r)?.huge_pct())
                .collect::<Vec<_>>(),
        )
    };
    let steady = (!e2e_hist.is_empty()).then(|| us(e2e_hist.value_at_quantile(0.5) as f64));
    Costs {
        registration_first_us: m(&|r| r.registration_first_ns),
        registration_cached_us: m(&|r| r.registration_cached_ns),
        target_registration_first_us: m(&|r| r.target_registration_first_ns),
        target_registration_cached_us: m(&|r| r.target_registration_cached_ns),
        registration_huge_page_pct: pct(&|r| r.pages),
        target_registration_huge_page_pct: pct(&|r| r.target_pages),
        connect_us: m(&|r| r.connect_ns),
        first_transfer_us: first,
        steady_state_p50_us: steady,
        first_over_steady: first.zip(steady).map(|(f, s)| f / s),
    }
}

mod cache;
#[cfg(test)]
mod tests;

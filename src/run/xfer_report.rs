//! The xfer result document: aggregate bandwidth, end-to-end and initiator-side latency,
//! each worker's completion times, the tiers among them, nixlbench's columns, and the costs
//! of registration and of the first transfer.

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use super::environment;
use super::xfer_config::{endpoint_name, XferBackend, XferConfig, XferPlan};
use super::xfer_worker::WorkerReport;
use crate::bench::xfer::IterSample;
use crate::report::{ResultDoc, SizeResult, Status};
use crate::stats::{detect_tiers, encode_histogram, new_histogram, LatencySummary};
use crate::xfer::XferOp;

const GIB: f64 = (1u64 << 30) as f64;

/// End-to-end time of transfer `t` in a sample: the target's confirmation for writes and
/// sends, the
/// local completion for reads (the initiator holds the data then).
fn e2e(op: XferOp, s: &IterSample, t: usize) -> u64 {
    match op {
        XferOp::Write | XferOp::Send => s.confirmed_ns[t],
        XferOp::Read => s.local_ns[t],
    }
}

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

fn avg_p99(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    json!({"avg": us(h.mean()), "p99": us(h.value_at_quantile(0.99) as f64)})
}

/// Builds the document of one side from its workers' reports.
pub fn build(cfg: &XferConfig, plan: &XferPlan, side: &str, reports: &[WorkerReport]) -> ResultDoc {
    let mut reports: Vec<&WorkerReport> = reports.iter().collect();
    reports.sort_by_key(|r| r.worker);
    let mut doc = ResultDoc::new("kvxfer", "xfer", "L1");
    doc.config = config_map(cfg, plan, side, reports.len());
    doc.environment = reports
        .first()
        .map(|r| r.environment.clone())
        .unwrap_or_else(environment::base);
    let op = cfg.op;
    // Iterations every worker finished: all of them, unless the run stopped early.
    let iterations = reports
        .iter()
        .map(|r| r.timed.len())
        .min()
        .unwrap_or(0)
        .min(cfg.iterations as usize);
    let size = cfg.size;

    // Every (worker, transfer) stream's end-to-end times, one per timed iteration.
    let mut streams: Vec<(usize, usize, Vec<u64>, Vec<u64>)> = Vec::new();
    let at_target: Vec<usize> = reports.iter().map(|r| r.target_worker).collect();
    for r in &reports {
        for t in 0..r.transfers {
            let timed = &r.timed[..iterations];
            let e: Vec<u64> = timed.iter().map(|s| e2e(op, s, t)).collect();
            let l: Vec<u64> = timed.iter().map(|s| s.local_ns[t]).collect();
            streams.push((r.worker, t, e, l));
        }
    }
    let transfers = streams.len() as u64;
    let e2e_hist = hist_of(streams.iter().flat_map(|s| s.2.iter().copied()));
    let local_hist = hist_of(streams.iter().flat_map(|s| s.3.iter().copied()));
    // An iteration lasts until its slowest transfer is confirmed (all start at one barrier).
    let spans: Vec<u64> = (0..iterations)
        .map(|i| {
            streams
                .iter()
                .filter_map(|s| s.2.get(i))
                .copied()
                .max()
                .unwrap_or(0)
        })
        .collect();
    let span_total: u64 = spans.iter().sum();
    let bytes = transfers * size * iterations as u64;
    let bps = (span_total > 0).then(|| bytes as f64 / (span_total as f64 / 1e9));

    let mut extra = Map::new();
    if let Some(bps) = bps {
        extra.insert("bandwidth_gibps".into(), json!(bps / GIB));
    }
    if let Some(m) = (!e2e_hist.is_empty()).then(|| e2e_hist.mean()) {
        extra.insert("per_transfer_gbps".into(), json!(size as f64 / m));
    }
    extra.insert("transfers_per_iteration".into(), json!(transfers));
    extra.insert("bytes_counted".into(), json!(bytes));
    extra.insert(
        "latency".into(),
        json!(match op {
            XferOp::Write | XferOp::Send => {
                "first post to the target's confirmation, per transfer"
            }
            XferOp::Read => "first post to the last local read completion, per transfer",
        }),
    );
    extra.insert(
        "initiator_side_us".into(),
        json!(LatencySummary::from_histogram(&local_hist)),
    );
    if op != XferOp::Read {
        extra.insert(
            "target_confirmed_us".into(),
            json!(LatencySummary::from_histogram(&e2e_hist)),
        );
    }
    extra.insert(
        "iteration_span_ms".into(),
        json!(spans.iter().map(|&s| s as f64 / 1e6).collect::<Vec<_>>()),
    );
    extra.insert(
        "workers".into(),
        Value::Array(
            streams
                .iter()
                .map(|(w, t, e, l)| {
                    let tw = reports
                        .iter()
                        .position(|r| r.worker == *w)
                        .map(|k| at_target[k]);
                    json!({
                        "worker": w,
                        "target_worker": tw,
                        "transfer": t,
                        "completion_ms": e.iter().map(|&v| v as f64 / 1e6).collect::<Vec<_>>(),
                        "initiator_side_ms": l.iter().map(|&v| v as f64 / 1e6).collect::<Vec<_>>(),
                        "latency_us": LatencySummary::from_histogram(&hist_of(e.iter().copied())),
                    })
                })
                .collect(),
        ),
    );
    // The staircase: tiers among the streams' median completion times, and per iteration.
    let per_stream: Vec<(usize, f64)> = streams
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.2.is_empty())
        .map(|(k, s)| {
            let mut v = s.2.clone();
            v.sort_unstable();
            (k, v[v.len() / 2] as f64 / 1e6)
        })
        .collect();
    let label = |k: usize| streams[k].0 * plan.transfers_per_worker + streams[k].1;
    let tiers: Vec<Value> = detect_tiers(&per_stream)
        .into_iter()
        .map(|t| {
            json!({
                "centre_ms": t.centre, "min_ms": t.min, "max_ms": t.max,
                "members": t.members.iter().map(|&k| label(k)).collect::<Vec<_>>(),
            })
        })
        .collect();
    extra.insert("tier_count".into(), json!(tiers.len()));
    extra.insert("tiers".into(), Value::Array(tiers));
    extra.insert(
        "tiers_per_iteration".into(),
        json!((0..iterations)
            .map(|i| {
                let v: Vec<(usize, f64)> = streams
                    .iter()
                    .enumerate()
                    .filter_map(|(k, s)| s.2.get(i).map(|&x| (k, x as f64)))
                    .collect();
                detect_tiers(&v).len()
            })
            .collect::<Vec<_>>()),
    );
    extra.insert(
        "nixlbench".into(),
        nixlbench(plan, &reports, &spans, iterations, bps),
    );
    extra.insert("costs".into(), costs(op, &reports, &e2e_hist));
    extra.insert(
        "verified_bytes".into(),
        json!(reports.iter().map(|r| r.verified_bytes).sum::<u64>()),
    );
    extra.insert(
        "busy_retries".into(),
        json!(reports
            .iter()
            .flat_map(|r| r.timed.iter().map(|s| s.busy_retries))
            .sum::<u64>()),
    );

    doc.results.push(SizeResult {
        message_size: size,
        iterations: iterations as u64,
        latency_us: LatencySummary::from_histogram(&e2e_hist),
        bandwidth_gbps: bps.map(|b| b / 1e9),
        bandwidth_mbps: bps.map(|b| b / 1e6),
        transfer_time_ms: (!e2e_hist.is_empty()).then(|| e2e_hist.mean() / 1e6),
        histogram: (!e2e_hist.is_empty())
            .then(|| encode_histogram(&e2e_hist).ok())
            .flatten(),
        extra,
    });
    doc.status = if streams.is_empty() {
        Status::Failed
    } else {
        Status::Complete
    };
    doc.finished_at = crate::report::schema::now_rfc3339();
    doc
}

/// nixlbench's columns: block and batch size, bandwidth, average latency per block, and the
/// prep/post/tx averages and p99 over the timed iterations.
fn nixlbench(
    plan: &XferPlan,
    reports: &[&WorkerReport],
    spans: &[u64],
    iterations: usize,
    bps: Option<f64>,
) -> Value {
    let samples = || reports.iter().flat_map(|r| r.timed.iter());
    let prep = hist_of(samples().map(|s| s.prep_ns));
    let post = hist_of(samples().map(|s| s.post_ns));
    let tx = hist_of(samples().map(|s| s.local_ns.iter().copied().max().unwrap_or(0)));
    let blocks = iterations as f64 * plan.chunks as f64;
    json!({
        "block_size": plan.block,
        "batch_size": plan.chunks,
        "bw_gbps": bps.map(|b| b / 1e9),
        "avg_lat_us": (blocks > 0.0).then(|| us(spans.iter().sum::<u64>() as f64) / blocks),
        "prep_us": avg_p99(&prep),
        "post_us": avg_p99(&post),
        "tx_us": avg_p99(&tx),
    })
}

/// Registration (first vs again) on both sides, connection set-up, and the cold first
/// transfer against the steady state.
fn costs(op: XferOp, reports: &[&WorkerReport], e2e_hist: &Histogram<u64>) -> Value {
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
    let steady = (!e2e_hist.is_empty()).then(|| us(e2e_hist.value_at_quantile(0.5) as f64));
    json!({
        "registration_first_us": m(&|r| r.registration_first_ns),
        "registration_cached_us": m(&|r| r.registration_cached_ns),
        "target_registration_first_us": m(&|r| r.target_registration_first_ns),
        "target_registration_cached_us": m(&|r| r.target_registration_cached_ns),
        "connect_us": m(&|r| r.connect_ns),
        "first_transfer_us": first,
        "steady_state_p50_us": steady,
        "first_over_steady": first.zip(steady).map(|(f, s)| f / s),
    })
}

fn config_map(cfg: &XferConfig, plan: &XferPlan, side: &str, workers: usize) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("backend".into(), json!(cfg.backend.name()));
    match cfg.backend {
        XferBackend::Libfabric => {
            m.insert("provider".into(), json!(cfg.provider));
            m.insert("endpoint".into(), json!(endpoint_name(cfg.endpoint)));
            m.insert("domain".into(), json!(cfg.domain));
        }
        XferBackend::Ucx => {
            // What UCX was asked for; what it chose is in environment.ucx_transports.
            for var in ["UCX_TLS", "UCX_NET_DEVICES"] {
                let v = std::env::var(var).ok();
                m.insert(var.to_ascii_lowercase(), json!(v));
            }
        }
    }
    m.insert("op".into(), json!(cfg.op.name()));
    m.insert("mem".into(), json!("dram"));
    m.insert("scheme".into(), json!(cfg.scheme.name()));
    m.insert("concurrency".into(), json!(cfg.concurrency));
    m.insert("concurrency_mode".into(), json!(cfg.mode_name()));
    m.insert("workers".into(), json!(workers));
    m.insert("size".into(), json!(cfg.size));
    m.insert("block".into(), json!(plan.block));
    m.insert("block_asked".into(), json!(cfg.block));
    m.insert("chunks".into(), json!(plan.chunks));
    m.insert("window".into(), json!(cfg.window));
    m.insert("iterations".into(), json!(cfg.iterations));
    m.insert("warmup".into(), json!(cfg.warmup));
    m.insert("verify".into(), json!(cfg.verify));
    m.insert("reuse".into(), json!(cfg.reuse));
    m.insert("timeout_s".into(), json!(cfg.timeout.as_secs_f64()));
    m.insert("role".into(), json!(side));
    m.insert("host_bytes".into(), json!(plan.bytes));
    m
}

#[cfg(test)]
#[path = "xfer_report_tests.rs"]
mod tests;

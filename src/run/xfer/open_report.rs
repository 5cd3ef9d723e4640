//! The document of an open-loop run: per rate, the latency from each transfer's scheduled
//! arrival (corrected for coordinated omission) beside the service time (post to completion,
//! what a closed loop records) and the queueing delay (arrival to post), the offered, arrived
//! and achieved rates of every initiator, drops, and with several rates the knee.

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::config::{XferConfig, XferPlan};
use super::worker::{OpenSession, WorkerReport};
use crate::bench::open_loop::Arrived;
use crate::peer::Side;
use crate::report::{ResultDoc, SizeResult, Status};
use crate::run::environment;
use crate::stats::{encode_histogram, new_histogram, Count, LatencySummary, Precision, StoppedBy};
use crate::xfer::XferOp;

/// Achieved below this share of the arrivals' rate (or any drop) is `overloaded`.
const KEEPS_UP: f64 = 0.9;
/// The knee's bound: a rate's corrected p99 within this many times the unloaded service time.
const KNEE_FACTOR: f64 = 2.0;

/// When a transfer ended: the target's confirmation, or the last local completion for reads.
fn end(op: XferOp, a: &Arrived) -> u64 {
    match op {
        XferOp::Read => a.local(),
        _ => a.confirmed(),
    }
}

/// The three histograms of a set of transfers, ns.
struct Times {
    corrected: Histogram<u64>,
    service: Histogram<u64>,
    queueing: Histogram<u64>,
}

impl Times {
    fn of<'a>(op: XferOp, transfers: impl Iterator<Item = &'a Arrived>) -> Times {
        let mut t = Times {
            corrected: new_histogram(),
            service: new_histogram(),
            queueing: new_histogram(),
        };
        for a in transfers {
            let e = end(op, a);
            t.corrected
                .saturating_record(e.saturating_sub(a.scheduled()).max(1));
            t.service
                .saturating_record(e.saturating_sub(a.posted()).max(1));
            t.queueing
                .saturating_record(a.posted().saturating_sub(a.scheduled()).max(1));
        }
        t
    }
}

/// One initiator's rates in a session.
#[derive(Serialize)]
struct Initiator {
    worker: usize,
    target_worker: usize,
    arrival: String,
    seed: u64,
    offered_per_s: f64,
    /// The rate the schedule's arrivals came at (Poisson gaps vary around the offered rate).
    arrived_per_s: Option<f64>,
    achieved_per_s: Option<f64>,
    arrivals: u64,
    completed: u64,
    dropped: u64,
    overloaded: bool,
    corrected_p99_us: Option<f64>,
}

fn per_s(count: f64, span_ns: u64) -> Option<f64> {
    (span_ns > 0 && count > 0.0).then(|| count / (span_ns as f64 / 1e9))
}

/// Completions per second over the run's window: from the first arrival to the last
/// completion, plus the mean gap between arrivals (each arrival owns the gap after it, so N
/// completions at a low rate read the rate, not N/(N-1) of it; a burst of completions after
/// drops reads what the window held, not the burst's own pace).
fn completion_rate(
    completed: u64,
    first_arrival: u64,
    last_end: u64,
    mean_gap: f64,
) -> Option<f64> {
    let window_ns = last_end.saturating_sub(first_arrival) as f64 + mean_gap;
    (completed > 0 && window_ns > 0.0).then(|| completed as f64 / (window_ns / 1e9))
}

fn initiator(op: XferOp, r: &WorkerReport, s: &OpenSession) -> Initiator {
    let o = &s.outcome;
    let arrived = (o.arrivals >= 2)
        .then(|| {
            per_s(
                (o.arrivals - 1) as f64,
                o.last_arrival_ns - o.first_arrival_ns,
            )
        })
        .flatten();
    let completed = o.transfers.len() as u64;
    // The mean gap between arrivals, ns: the arrival rate's inverse.
    let mean_gap = arrived.map_or(0.0, |r| 1e9 / r);
    let last_end = o.transfers.iter().map(|a| end(op, a)).max().unwrap_or(0);
    let achieved = completion_rate(completed, o.first_arrival_ns, last_end, mean_gap);
    let keeps_up = match (arrived.or(Some(s.rate_per_s)), achieved) {
        (Some(a), Some(b)) => b >= KEEPS_UP * a,
        _ => true,
    };
    let t = Times::of(op, o.transfers.iter());
    Initiator {
        worker: r.worker,
        target_worker: r.target_worker,
        arrival: s.arrival.clone(),
        seed: s.seed,
        offered_per_s: s.rate_per_s,
        arrived_per_s: arrived,
        achieved_per_s: achieved,
        arrivals: o.arrivals,
        completed,
        dropped: o.dropped,
        overloaded: o.dropped > 0 || !keeps_up,
        corrected_p99_us: (!t.corrected.is_empty())
            .then(|| t.corrected.value_at_quantile(0.99) as f64 / 1e3),
    }
}

/// The queueing delay's median and mean (us) among the transfers due in each quarter of the
/// schedule: how the queue grew through the run.
fn by_quarter(all: &[&Arrived]) -> Vec<Value> {
    let (Some(first), Some(last)) = (
        all.iter().map(|a| a.scheduled()).min(),
        all.iter().map(|a| a.scheduled()).max(),
    ) else {
        return Vec::new();
    };
    let span = (last - first).max(1);
    (0..4u64)
        .map(|q| {
            let mut d: Vec<u64> = all
                .iter()
                .filter(|a| ((a.scheduled() - first) * 4 / span).min(3) == q)
                .map(|a| a.posted().saturating_sub(a.scheduled()))
                .collect();
            d.sort_unstable();
            let us = |ns: u64| ns as f64 / 1e3;
            json!({
                "transfers": d.len(),
                "p50_us": d.get(d.len() / 2).map(|&x| us(x)),
                "mean_us": (!d.is_empty())
                    .then(|| d.iter().sum::<u64>() as f64 / d.len() as f64 / 1e3),
            })
        })
        .collect()
}

/// One rate's result over every worker's session `k`.
fn session_result(
    cfg: &XferConfig,
    rate: f64,
    sessions: &[(&WorkerReport, &OpenSession)],
) -> SizeResult {
    let op = cfg.op;
    let all: Vec<&Arrived> = sessions
        .iter()
        .flat_map(|(_, s)| s.outcome.transfers.iter())
        .collect();
    let t = Times::of(op, all.iter().copied());
    let initiators: Vec<Initiator> = sessions.iter().map(|(r, s)| initiator(op, r, s)).collect();
    let sum = |f: &dyn Fn(&Initiator) -> Option<f64>| -> Option<f64> {
        initiators.iter().map(f).sum::<Option<f64>>()
    };
    let achieved = sum(&|i| i.achieved_per_s);
    let stopped_by = match cfg.iterations {
        Count::Duration(_) => StoppedBy::Duration,
        _ => StoppedBy::Fixed,
    };
    let mut extra = Map::new();
    let mut put = |k: &str, v: Value| {
        extra.insert(k.into(), v);
    };
    put(
        "arrival",
        json!(sessions.first().map(|(_, s)| s.arrival.clone())),
    );
    put(
        "latency",
        json!("from each transfer's scheduled arrival to its end (corrected for coordinated omission)"),
    );
    put("offered_per_s", json!(rate * sessions.len() as f64));
    put("arrived_per_s", json!(sum(&|i| i.arrived_per_s)));
    put("achieved_per_s", json!(achieved));
    put("overloaded", json!(initiators.iter().any(|i| i.overloaded)));
    put(
        "arrivals",
        json!(initiators.iter().map(|i| i.arrivals).sum::<u64>()),
    );
    put(
        "dropped",
        json!(initiators.iter().map(|i| i.dropped).sum::<u64>()),
    );
    put(
        "max_outstanding",
        json!(cfg.open.as_ref().map(|o| o.max_outstanding)),
    );
    times_extra(&mut put, &t);
    put("queueing_by_quarter", json!(by_quarter(&all)));
    put("initiators", json!(initiators));
    if !t.corrected.is_empty() {
        let p = Precision::of(&t.corrected, stopped_by, None, None, None);
        put("precision", json!(p));
    }
    let bps = achieved.map(|a| a * cfg.size as f64);
    SizeResult {
        message_size: cfg.size,
        iterations: all.len() as u64,
        latency_us: LatencySummary::from_histogram(&t.corrected),
        bandwidth_gbps: bps.map(|b| b / 1e9),
        bandwidth_mbps: bps.map(|b| b / 1e6),
        transfer_time_ms: (!t.corrected.is_empty()).then(|| t.corrected.mean() / 1e6),
        path: None,
        histogram: (!t.corrected.is_empty())
            .then(|| encode_histogram(&t.corrected).ok())
            .flatten(),
        extra,
    }
}

/// The figures of a session's times: the corrected and uncorrected p99, and the service and
/// queueing times as summaries and histograms.
fn times_extra(put: &mut dyn FnMut(&str, Value), t: &Times) {
    let p99 = |h: &Histogram<u64>| (!h.is_empty()).then(|| h.value_at_quantile(0.99) as f64 / 1e3);
    put("corrected_p99_us", json!(p99(&t.corrected)));
    put("uncorrected_p99_us", json!(p99(&t.service)));
    put(
        "service_us",
        json!(LatencySummary::from_histogram(&t.service)),
    );
    put(
        "queueing_us",
        json!(LatencySummary::from_histogram(&t.queueing)),
    );
    put(
        "service_histogram",
        json!(encode_histogram(&t.service).ok()),
    );
    put(
        "queueing_histogram",
        json!(encode_histogram(&t.queueing).ok()),
    );
}

/// The knee of a sweep: the unloaded service time (the median service time at the lowest
/// rate) and the highest rate up to which every rate's corrected p99 stays within
/// [`KNEE_FACTOR`] of it.
fn knee(results: &[SizeResult]) -> Value {
    let f = |r: &SizeResult, k: &str| r.extra.get(k).and_then(Value::as_f64);
    let mut by_rate: Vec<&SizeResult> = results.iter().collect();
    by_rate.sort_by(|a, b| {
        f(a, "offered_per_s")
            .unwrap_or(0.0)
            .total_cmp(&f(b, "offered_per_s").unwrap_or(0.0))
    });
    let unloaded = by_rate
        .first()
        .and_then(|r| r.extra.get("service_us")?.get("p50")?.as_f64());
    let mut knee = None;
    if let Some(u) = unloaded {
        for r in &by_rate {
            match f(r, "corrected_p99_us") {
                Some(p99) if p99 <= KNEE_FACTOR * u => knee = f(r, "offered_per_s"),
                _ => break,
            }
        }
    }
    json!({
        "knee_per_s": knee,
        "unloaded_service_p50_us": unloaded,
        "rule": "the highest offered rate up to which every rate's corrected p99 stays within 2x the unloaded service time (the median service time at the lowest rate)",
    })
}

/// The payload bytes every session of `reports` moved, warm-up transfers included: what the
/// one reading around the run's sessions spans.
pub(super) fn moved(cfg: &XferConfig, reports: &[WorkerReport]) -> u64 {
    reports
        .iter()
        .flat_map(|r| r.open.iter())
        .map(|s| s.outcome.completed * cfg.size)
        .sum()
}

/// Builds the document of one side of an open-loop run from its workers' reports; `path` (the
/// devices that carried what [`moved`] counts) goes on each result.
pub(super) fn build(
    cfg: &XferConfig,
    plan: &XferPlan,
    side: Side,
    reports: &[WorkerReport],
    path: Option<Value>,
) -> ResultDoc {
    let mut reports: Vec<&WorkerReport> = reports.iter().collect();
    reports.sort_by_key(|r| r.worker);
    let mut doc = ResultDoc::new("kvxfer", "xfer", "L1");
    doc.config = super::config_block::config_map(cfg, plan, side, &reports);
    if let Some(o) = &cfg.open {
        doc.config.insert("arrival".into(), json!(o.kind.name()));
        doc.config.insert("rates_per_s".into(), json!(o.rates));
        doc.config
            .insert("max_outstanding".into(), json!(o.max_outstanding));
        doc.config.insert("open_loop".into(), json!(true));
    }
    doc.environment = reports
        .first()
        .map(|r| r.environment.clone())
        .unwrap_or_else(environment::base);
    let rates = cfg.open.as_ref().map_or(&[][..], |o| &o.rates[..]);
    for (k, &rate) in rates.iter().enumerate() {
        let sessions: Vec<(&WorkerReport, &OpenSession)> = reports
            .iter()
            .filter_map(|r| r.open.get(k).map(|s| (*r, s)))
            .collect();
        if !sessions.is_empty() {
            doc.results.push(session_result(cfg, rate, &sessions));
        }
    }
    // One reading spans every session (and rate) of the run: each result carries its view.
    for r in &mut doc.results {
        r.path.clone_from(&path);
    }
    if rates.len() > 1 {
        let k = knee(&doc.results);
        for r in &mut doc.results {
            r.extra.insert("sweep".into(), k.clone());
        }
    }
    doc.status = if doc.results.is_empty() {
        Status::Failed
    } else {
        Status::Complete
    };
    doc.finished_at = crate::report::schema::now_rfc3339();
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(rate: f64, service_p50: f64, corrected_p99: f64) -> SizeResult {
        let mut r = SizeResult::default();
        r.extra.insert("offered_per_s".into(), json!(rate));
        r.extra
            .insert("service_us".into(), json!({"p50": service_p50}));
        r.extra
            .insert("corrected_p99_us".into(), json!(corrected_p99));
        r
    }

    #[test]
    fn the_knee_is_the_last_rate_within_twice_the_unloaded_service_time() {
        // Unloaded service 100 us (the lowest rate's); p99 190, 199, 250, 180 in rate order:
        // 30/s breaks the bound, so 20/s is the knee though 40/s is within again.
        let rs = [
            result(20.0, 110.0, 199.0),
            result(10.0, 100.0, 190.0),
            result(40.0, 100.0, 180.0),
            result(30.0, 100.0, 250.0),
        ];
        let k = knee(&rs);
        assert_eq!(k["knee_per_s"], 20.0);
        assert_eq!(k["unloaded_service_p50_us"], 100.0);
        let none = knee(&[result(10.0, 100.0, 201.0)]);
        assert!(none["knee_per_s"].is_null());
    }

    #[test]
    fn the_completion_rate_gives_each_arrival_its_gap() {
        // Five arrivals 200 ms apart from t = 1 s, each served in 1 ms: 5 in 1.001 s, not 5 in
        // the 0.801 s from the first arrival to the last completion.
        let r = completion_rate(5, 1_000_000_000, 1_801_000_000, 200e6).unwrap();
        assert!((r - 5.0 / 1.001).abs() < 1e-9, "{r}");
        // Six completions of 200 arrivals at 20000/s, the last 10 ms after the first arrival.
        let r = completion_rate(6, 0, 10_000_000, 50e3).unwrap();
        assert!((r - 6.0 / 0.01005).abs() < 1e-6, "{r}");
        assert_eq!(completion_rate(0, 0, 10, 5.0), None);
        assert_eq!(completion_rate(1, 10, 10, 0.0), None);
    }

    #[test]
    fn quarters_show_the_queue_growing() {
        // Eight transfers due every 1 ms; the k-th waits k ms before its post.
        let a: Vec<Arrived> = (0..8u64)
            .map(|k| Arrived(k * 1_000_000, 2 * k * 1_000_000, 0, 0))
            .collect();
        let refs: Vec<&Arrived> = a.iter().collect();
        let q = by_quarter(&refs);
        let means: Vec<f64> = q.iter().map(|x| x["mean_us"].as_f64().unwrap()).collect();
        // Quarters of the 7 ms span: {0,1}, {2,3}, {4,5}, {6,7} by due time.
        assert_eq!(means, [500.0, 2_500.0, 4_500.0, 6_500.0]);
        assert!(q.iter().all(|x| x["transfers"] == 2));
    }
}

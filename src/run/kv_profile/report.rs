//! The `kv_profile` document: per prompt length, the transfer time, cold against warm,
//! registration, the per-descriptor cost, slow start after idle gaps, and the decomposition
//! of the measured time against the theoretical one.

use serde::Serialize;
use serde_json::{json, Value};

use super::config::{KvProfileConfig, ProfileRun, Shape};
use super::difference::Difference;
use super::RunError;
use crate::report::{ResultDoc, SizeResult, Status};
use crate::run::path::PathReport;
use crate::stats::Precision;

/// The figures of one xfer run that the profile uses, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RunFigures {
    /// Descriptors (chunks) per transfer.
    pub chunks: u64,
    /// Median end-to-end transfer time.
    pub p50_us: f64,
    /// The median's 95 % interval, when the run reported one.
    pub p50_interval_us: Option<[f64; 2]>,
    /// 99th percentile.
    pub p99_us: f64,
    /// The first transfer on the new connection.
    pub first_us: Option<f64>,
    /// Initiator: first registration of the request's buffer.
    pub registration_first_us: Option<f64>,
    /// Initiator: the same buffer registered again.
    pub registration_cached_us: Option<f64>,
    /// Target: first registration.
    pub target_registration_first_us: Option<f64>,
    /// Target: again.
    pub target_registration_cached_us: Option<f64>,
    /// Initiator: the share of its buffer's mappings in transparent huge pages, %.
    pub huge_page_pct: Option<f64>,
    /// Target: the same of its first region.
    pub target_huge_page_pct: Option<f64>,
}

fn figures(doc: &ResultDoc) -> Result<RunFigures, RunError> {
    let r = doc
        .results
        .first()
        .ok_or_else(|| RunError::Config("an xfer run of the profile has no result".into()))?;
    let lat = r.latency_us.as_ref().ok_or_else(|| {
        RunError::Config("an xfer run of the profile measured no transfer".into())
    })?;
    let cost = |k: &str| {
        r.extra
            .get("costs")
            .and_then(|c| c.get(k))
            .and_then(Value::as_f64)
    };
    Ok(RunFigures {
        chunks: doc
            .config
            .get("chunks")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        p50_us: lat.p50,
        p50_interval_us: Precision::from_extra(&r.extra).and_then(|p| p.p50_interval_us),
        p99_us: lat.p99,
        first_us: cost("first_transfer_us"),
        registration_first_us: cost("registration_first_us"),
        registration_cached_us: cost("registration_cached_us"),
        target_registration_first_us: cost("target_registration_first_us"),
        target_registration_cached_us: cost("target_registration_cached_us"),
        huge_page_pct: cost("registration_huge_page_pct"),
        target_huge_page_pct: cost("target_registration_huge_page_pct"),
    })
}

/// The measured time of a request against bytes / link rate, split into parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decomposition {
    /// Link rate, 10^9 bytes/s.
    pub link_gbps: f64,
    /// bytes / link rate.
    pub theoretical_ms: f64,
    /// Registration per request + the descriptor list's median after the longest idle gap.
    pub measured_ms: f64,
    /// What measured_ms is, in words.
    pub measured_is: String,
    /// Both ends registering the request's memory afresh.
    pub registration_ms: f64,
    /// The descriptor list after the longest idle gap minus back to back, when its interval
    /// lies above 0 (else 0: none measured; 0 without gaps).
    pub slow_start_ms: f64,
    /// What the slow start's interval says (absent without gaps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_start_is: Option<String>,
    /// The descriptor list minus the same bytes as one contiguous transfer, when its interval
    /// lies above 0 (else 0).
    pub per_descriptor_ms: f64,
    /// What the per-descriptor difference's interval says.
    pub per_descriptor_is: String,
    /// The contiguous transfer minus the theoretical time: protocol, copies, the path's own
    /// rate; what the named parts leave.
    pub remainder_ms: f64,
    /// measured / theoretical.
    pub measured_over_theoretical: f64,
    /// The first transfer on a new connection minus a warm one, when its interval lies above
    /// 0 (beside the sum, not in it).
    pub cold_connection_extra_ms: Option<f64>,
}

/// The inputs of one prompt length's decomposition.
#[derive(Debug, Clone)]
pub struct DecompositionInput {
    /// Bytes of the cache.
    pub bytes: u64,
    /// Link rate, 10^9 bytes/s.
    pub link_gbps: f64,
    /// Both ends' registration of the request's memory, us.
    pub registration_us: f64,
    /// Descriptor list, back to back, median us, and its interval.
    pub descriptors_p50_us: f64,
    /// The interval of `descriptors_p50_us`.
    pub descriptors_interval_us: Option<[f64; 2]>,
    /// Contiguous, median us.
    pub contiguous_p50_us: f64,
    /// The interval of `contiguous_p50_us`.
    pub contiguous_interval_us: Option<[f64; 2]>,
    /// (gap ms, median us, its interval) of the longest idle gap, if any.
    pub longest_idle: Option<(u64, f64, Option<[f64; 2]>)>,
    /// The cold transfer's extra over warm.
    pub cold_extra: Option<Difference>,
}

/// theoretical + registration + slow start + per descriptor + remainder = measured; slow start
/// and per descriptor count only where their intervals lie above 0.
pub fn decompose(i: &DecompositionInput) -> Decomposition {
    let ms = |us: f64| us / 1e3;
    let theoretical_ms = crate::model::size::theoretical_ms(i.bytes, i.link_gbps);
    let d0 = (i.descriptors_p50_us, i.descriptors_interval_us);
    let slow = i
        .longest_idle
        .map(|(g, us, iv)| (g, Difference::of_medians(us, iv, d0.0, d0.1)));
    let per_descriptor =
        Difference::of_medians(d0.0, d0.1, i.contiguous_p50_us, i.contiguous_interval_us);
    let slow_us = slow.as_ref().map_or(0.0, |(_, d)| d.cost_us);
    let measured_is = match &slow {
        Some((g, d)) if d.cost_us > 0.0 => {
            format!("registration per request + the descriptor list's p50 after {g} ms idle")
        }
        Some((g, _)) => format!(
            "registration per request + the descriptor list's p50 back to back (no slow start \
             measured after {g} ms idle)"
        ),
        None => "registration per request + the descriptor list's p50 back to back".to_string(),
    };
    let measured_ms = ms(i.registration_us + d0.0 + slow_us);
    let registration_ms = ms(i.registration_us);
    let slow_start_ms = ms(slow_us);
    let per_descriptor_ms = ms(per_descriptor.cost_us);
    Decomposition {
        link_gbps: i.link_gbps,
        theoretical_ms,
        measured_ms,
        measured_is,
        registration_ms,
        slow_start_ms,
        slow_start_is: slow.map(|(_, d)| d.verdict),
        per_descriptor_ms,
        per_descriptor_is: per_descriptor.verdict,
        remainder_ms: measured_ms
            - theoretical_ms
            - registration_ms
            - slow_start_ms
            - per_descriptor_ms,
        measured_over_theoretical: measured_ms / theoretical_ms,
        cold_connection_extra_ms: i.cold_extra.as_ref().map(|d| ms(d.cost_us)),
    }
}

fn sysctl(name: &str) -> Value {
    let path = format!("/proc/sys/net/ipv4/{name}");
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| json!(s))
        }
        Err(_) => Value::Null,
    }
}

/// Builds the document from the runs, in the order [`KvProfileConfig::runs`] made them.
pub fn build(
    cfg: &KvProfileConfig,
    runs: &[(ProfileRun, ResultDoc)],
) -> Result<ResultDoc, RunError> {
    let mut doc = ResultDoc::new("kvxfer", "kv_profile", "L2");
    let first = runs
        .first()
        .ok_or_else(|| RunError::Config("the profile ran nothing".into()))?;
    doc.started_at = first.1.started_at.clone();
    doc.environment = first.1.environment.clone();
    for k in ["tcp_slow_start_after_idle", "tcp_congestion_control"] {
        doc.environment.extra.insert(k.into(), sysctl(k));
    }
    let io = cfg.io_size()?;
    let mut c = first.1.config.clone();
    for k in [
        "size",
        "block",
        "block_asked",
        "chunks",
        "host_bytes",
        "concurrency",
    ] {
        c.remove(k);
    }
    c.insert("model".into(), json!(cfg.model.name));
    c.insert("model_geometry".into(), json!(cfg.model));
    c.insert("kv_dtype".into(), json!(cfg.model.dtype.name()));
    c.insert(
        "kv_bytes_per_token".into(),
        json!(cfg.model.bytes_per_token()),
    );
    c.insert("tp".into(), json!(cfg.layout.tp));
    c.insert("pp".into(), json!(cfg.layout.pp));
    c.insert("page_size".into(), json!(cfg.layout.page_size));
    c.insert("access_pattern".into(), json!(cfg.layout.access.name()));
    c.insert("io_size".into(), json!(io));
    c.insert("kv_split".into(), json!(cfg.split_kv));
    c.insert("tokens".into(), json!(cfg.tokens));
    let joined: Vec<String> = cfg.tokens.iter().map(u64::to_string).collect();
    c.insert("prompt_tokens".into(), json!(joined.join(",")));
    let sizes: Vec<String> = cfg
        .tokens
        .iter()
        .filter_map(|&t| cfg.model.bytes(t).map(|b| b.to_string()))
        .collect();
    c.insert("kv_cache_size_bytes".into(), json!(sizes.join(",")));
    c.insert("idle_ms".into(), json!(cfg.idle_ms));
    c.insert("link_gbps".into(), json!(cfg.link_gbps));
    doc.config = c;
    // Prompt lengths whose runs are all done (a checkpoint holds those finished so far).
    let expected = cfg.runs()?;
    let finished: Vec<u64> = cfg
        .tokens
        .iter()
        .copied()
        .filter(|&t| {
            let want = expected.iter().filter(|r| r.tokens == t).count();
            runs.iter().filter(|(r, _)| r.tokens == t).count() == want
        })
        .collect();
    for &t in &finished {
        let of = |want: Shape| runs.iter().find(|(r, _)| r.tokens == t && r.shape == want);
        let (_, d0) = of(Shape::Descriptors { idle_ms: 0 })
            .ok_or_else(|| RunError::Config(format!("{t} tokens: no back-to-back run")))?;
        let (_, dc) = of(Shape::Contiguous)
            .ok_or_else(|| RunError::Config(format!("{t} tokens: no contiguous run")))?;
        doc.results.push(token_result(cfg, t, runs, d0, dc)?);
    }
    doc.status = if finished.len() == cfg.tokens.len() {
        Status::Complete
    } else {
        Status::Partial
    };
    doc.finished_at = crate::report::schema::now_rfc3339();
    Ok(doc)
}

/// One prompt length's runs, read.
struct Length {
    tokens: u64,
    /// Bytes of the cache.
    bytes: u64,
    /// Bytes each transfer moved: whole descriptors.
    moved: u64,
    /// The descriptor list back to back.
    f0: RunFigures,
    /// The contiguous transfer.
    fc: RunFigures,
    /// The descriptor list after each idle gap (ms), shortest first.
    idle: Vec<(u64, RunFigures)>,
    /// Both ends' first registration, median over the runs.
    per_request_us: Option<f64>,
    /// First registration minus the same memory again (the initiator's), over the runs.
    registration_cold_extra: Option<Difference>,
    /// Bytes checked at the destination over all runs.
    verified: u64,
}

fn gather(
    cfg: &KvProfileConfig,
    tokens: u64,
    runs: &[(ProfileRun, ResultDoc)],
    d0: &ResultDoc,
    dc: &ResultDoc,
) -> Result<Length, RunError> {
    let mine = || runs.iter().filter(move |(r, _)| r.tokens == tokens);
    let mut idle = Vec::new();
    for (r, d) in mine() {
        if let Shape::Descriptors { idle_ms } = r.shape {
            if idle_ms > 0 {
                idle.push((idle_ms, figures(d)?));
            }
        }
    }
    idle.sort_by_key(|x| x.0);
    // Every run registered fresh memory of this request's size on both ends.
    let per_request: Vec<f64> = mine()
        .filter_map(|(_, d)| figures(d).ok())
        .filter_map(|f| Some(f.registration_first_us? + f.target_registration_first_us?))
        .collect();
    Ok(Length {
        tokens,
        bytes: cfg.model.bytes(tokens).unwrap_or(0),
        moved: d0.results.first().map_or(0, |r| r.message_size),
        f0: figures(d0)?,
        fc: figures(dc)?,
        idle,
        per_request_us: crate::stats::median(&per_request),
        registration_cold_extra: Difference::of_runs(
            &mine()
                .filter_map(|(_, d)| figures(d).ok())
                .filter_map(|f| Some(f.registration_first_us? - f.registration_cached_us?))
                .collect::<Vec<f64>>(),
        ),
        verified: mine()
            .filter_map(|(_, d)| d.results.first()?.extra.get("verified_bytes")?.as_u64())
            .sum(),
    })
}

/// cold_warm, registration, per_descriptor and slow_start of one length, each difference with
/// its interval.
fn parts(l: &Length) -> Vec<(&'static str, Value)> {
    let (f0, fc) = (&l.f0, &l.fc);
    let extra_descs = f0.chunks.saturating_sub(fc.chunks);
    let difference =
        Difference::of_medians(f0.p50_us, f0.p50_interval_us, fc.p50_us, fc.p50_interval_us);
    let per_descriptor_us = (extra_descs > 0).then(|| difference.cost_us / extra_descs as f64);
    let cold_extra = f0
        .first_us
        .map(|c| Difference::of_sample(c, f0.p50_us, f0.p50_interval_us));
    vec![
        (
            "transfer_us",
            json!({"p50": f0.p50_us, "p99": f0.p99_us, "p50_interval_us": f0.p50_interval_us}),
        ),
        (
            "cold_warm",
            json!({
                "cold_us": f0.first_us, "warm_p50_us": f0.p50_us,
                "cold_extra": cold_extra,
                "cold_over_warm": f0.first_us.map(|c| c / f0.p50_us),
            }),
        ),
        (
            "registration",
            json!({
                "cold_us": f0.registration_first_us,
                "cached_us": f0.registration_cached_us,
                "target_cold_us": f0.target_registration_first_us,
                "target_cached_us": f0.target_registration_cached_us,
                "huge_page_pct": f0.huge_page_pct,
                "target_huge_page_pct": f0.target_huge_page_pct,
                "cold_extra": l.registration_cold_extra,
                "cold_extra_is": "first registration minus the same memory again, median over \
                    this prompt length's runs with its order-statistic interval",
                "per_request_us": l.per_request_us,
                "per_request_is": "median over this prompt length's runs of both ends' first \
                    registration of fresh memory of the request's size",
            }),
        ),
        (
            "per_descriptor",
            json!({
                "descriptor_list_p50_us": f0.p50_us, "descriptors": f0.chunks,
                "contiguous_p50_us": fc.p50_us, "contiguous_p99_us": fc.p99_us,
                "contiguous_chunks": fc.chunks,
                "difference": difference,
                "per_descriptor_us": per_descriptor_us,
            }),
        ),
        (
            "slow_start",
            l.idle
                .iter()
                .map(|(g, f)| {
                    json!({
                        "idle_ms": g, "p50_us": f.p50_us, "p99_us": f.p99_us,
                        "p50_interval_us": f.p50_interval_us,
                        "over_back_to_back": Difference::of_medians(
                            f.p50_us, f.p50_interval_us, f0.p50_us, f0.p50_interval_us),
                        "ratio_to_back_to_back": f.p50_us / f0.p50_us,
                    })
                })
                .collect(),
        ),
    ]
}

fn token_result(
    cfg: &KvProfileConfig,
    tokens: u64,
    runs: &[(ProfileRun, ResultDoc)],
    d0: &ResultDoc,
    dc: &ResultDoc,
) -> Result<SizeResult, RunError> {
    let l = gather(cfg, tokens, runs, d0, dc)?;
    let decomposition = l.per_request_us.map(|reg| {
        decompose(&DecompositionInput {
            bytes: l.moved,
            link_gbps: cfg.link_gbps,
            registration_us: reg,
            descriptors_p50_us: l.f0.p50_us,
            descriptors_interval_us: l.f0.p50_interval_us,
            contiguous_p50_us: l.fc.p50_us,
            contiguous_interval_us: l.fc.p50_interval_us,
            longest_idle: l
                .idle
                .last()
                .map(|(g, f)| (*g, f.p50_us, f.p50_interval_us)),
            cold_extra: l
                .f0
                .first_us
                .map(|c| Difference::of_sample(c, l.f0.p50_us, l.f0.p50_interval_us)),
        })
    });
    let base = d0.results.first().cloned().ok_or_else(|| {
        RunError::Config(format!(
            "{tokens} tokens: the back-to-back run has no result"
        ))
    })?;
    let mut extra = serde_json::Map::new();
    extra.insert("tokens".into(), json!(l.tokens));
    extra.insert("kv_cache_size_bytes".into(), json!(l.bytes));
    extra.insert("descriptors".into(), json!(l.f0.chunks));
    extra.insert("io_size".into(), json!(cfg.io_size()?.min(l.moved)));
    for (k, v) in parts(&l) {
        extra.insert(k.into(), v);
    }
    // The result's median is the back-to-back descriptor list's: its precision block with it,
    // how long its threads waited for a CPU, and where its payload stood against the CPU
    // caches (a payload the cache holds back to back, and loses over an idle gap, puts the
    // cache's cooling into the slow start); the contiguous transfer's precision beside the
    // per-descriptor difference it enters.
    for key in ["precision", "scheduling", "cache"] {
        if let Some(v) = base.extra.get(key) {
            extra.insert(key.into(), v.clone());
        }
    }
    let contiguous = dc.results.first().and_then(|r| r.extra.get("precision"));
    if let (Some(p), Some(Value::Object(pd))) = (contiguous, extra.get_mut("per_descriptor")) {
        pd.insert("contiguous_precision".into(), p.clone());
    }
    extra.insert("verified_bytes".into(), json!(l.verified));
    extra.insert("decomposition".into(), json!(decomposition));
    extra.insert(
        "xfer".into(),
        json!({"descriptor_list": base.extra.get("costs"), "nixlbench": base.extra.get("nixlbench")}),
    );
    Ok(SizeResult {
        message_size: l.moved,
        iterations: base.iterations,
        latency_us: base.latency_us,
        bandwidth_gbps: base.bandwidth_gbps,
        bandwidth_mbps: base.bandwidth_mbps,
        transfer_time_ms: base.transfer_time_ms,
        histogram: base.histogram,
        path: length_path(tokens, runs, base.path),
        extra,
    })
}

/// A prompt length's path: the back-to-back run's (`back_to_back`), its verdict naming every
/// other run of the length whose payload took another path.
fn length_path(
    tokens: u64,
    runs: &[(ProfileRun, ResultDoc)],
    back_to_back: Option<Value>,
) -> Option<Value> {
    let mut p = PathReport::from_value(back_to_back.as_ref()?)?;
    for (r, d) in runs.iter().filter(|(r, _)| r.tokens == tokens) {
        let other = d.results.first().and_then(|x| x.path.as_ref());
        let Some(o) = other.and_then(PathReport::from_value) else {
            continue;
        };
        let names = |a: &PathReport| a.devices.iter().map(|d| d.name.clone()).collect::<Vec<_>>();
        if o.kind != p.kind || names(&o) != names(&p) {
            let run = match r.shape {
                Shape::Contiguous => "contiguous".to_string(),
                Shape::Descriptors { idle_ms } => format!("descriptors after {idle_ms} ms idle"),
            };
            p.verdict
                .push_str(&format!("; the {run} run: {}", o.verdict));
        }
    }
    Some(p.to_value())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_add_up_to_the_measured_time() {
        let i = DecompositionInput {
            bytes: 57_344_000,
            link_gbps: 2.9,
            registration_us: 1_500.0,
            descriptors_p50_us: 30_000.0,
            descriptors_interval_us: Some([29_500.0, 30_400.0]),
            contiguous_p50_us: 25_000.0,
            contiguous_interval_us: Some([24_800.0, 25_300.0]),
            longest_idle: Some((1000, 42_000.0, Some([41_000.0, 43_000.0]))),
            cold_extra: Some(Difference::new(8_000.0, Some([7_000.0, 9_000.0]), None)),
        };
        let d = decompose(&i);
        // 57,344,000 B / 2.9e9 B/s = 19.774 ms
        assert!((d.theoretical_ms - 19.773793).abs() < 1e-5);
        assert_eq!(d.measured_ms, 43.5);
        assert_eq!(d.registration_ms, 1.5);
        assert_eq!(d.slow_start_ms, 12.0);
        assert_eq!(d.per_descriptor_ms, 5.0);
        assert!((d.remainder_ms - (25.0 - d.theoretical_ms)).abs() < 1e-9);
        let sum = d.theoretical_ms
            + d.registration_ms
            + d.slow_start_ms
            + d.per_descriptor_ms
            + d.remainder_ms;
        assert!((sum - d.measured_ms).abs() < 1e-9);
        assert!((d.measured_over_theoretical - 43.5 / d.theoretical_ms).abs() < 1e-12);
        assert_eq!(d.cold_connection_extra_ms, Some(8.0));
        assert!(d.measured_is.contains("after 1000 ms idle"));
        assert_eq!(d.slow_start_is.as_deref(), Some("12.00 ms (+-1.45 ms)"));
    }

    #[test]
    fn a_slow_start_within_the_noise_is_none_measured_and_adds_nothing() {
        // After the idle gap the median was 23 ms lower, with intervals that overlap: no cost,
        // and the measured time is the back-to-back one.
        let d = decompose(&DecompositionInput {
            bytes: 57_344_000,
            link_gbps: 2.9,
            registration_us: 1_000.0,
            descriptors_p50_us: 53_000.0,
            descriptors_interval_us: Some([28_000.0, 60_000.0]),
            contiguous_p50_us: 54_000.0,
            contiguous_interval_us: Some([50_000.0, 58_000.0]),
            longest_idle: Some((1000, 30_000.0, Some([20_000.0, 41_000.0]))),
            cold_extra: Some(Difference::new(-3_000.0, Some([-9_000.0, 2_000.0]), None)),
        });
        assert_eq!(d.slow_start_ms, 0.0);
        assert_eq!(
            d.slow_start_is.as_deref(),
            Some("none measured (+-26.50 ms)")
        );
        assert_eq!(d.per_descriptor_ms, 0.0);
        assert!(
            d.per_descriptor_is.starts_with("none measured"),
            "{}",
            d.per_descriptor_is
        );
        assert_eq!(d.measured_ms, 54.0);
        assert!(d
            .measured_is
            .contains("no slow start measured after 1000 ms idle"));
        assert_eq!(d.cold_connection_extra_ms, Some(0.0));
        let sum = d.theoretical_ms + d.registration_ms + d.remainder_ms;
        assert!((sum - d.measured_ms).abs() < 1e-9);
    }

    #[test]
    fn without_gaps_slow_start_is_zero() {
        let d = decompose(&DecompositionInput {
            bytes: 1_000,
            link_gbps: 1.0,
            registration_us: 0.0,
            descriptors_p50_us: 3.0,
            descriptors_interval_us: None,
            contiguous_p50_us: 2.0,
            contiguous_interval_us: None,
            longest_idle: None,
            cold_extra: None,
        });
        assert_eq!(d.slow_start_ms, 0.0);
        assert_eq!(d.measured_ms, 0.003);
        assert!(d.measured_is.contains("back to back"));
    }
}

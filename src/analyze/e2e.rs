//! The team's end-to-end (vLLM) results: one typed record per pattern, read from the nested
//! layout their benchmark writes, from the flat layout, or from MLflow params and metrics.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use super::files::{json_files, Skipped};
use super::AnalyzeError;

/// How the pattern was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Prefill and decode on one node (backend `none`).
    Unified,
    /// Prefill node ships the KV-cache to a decode node.
    Disaggregated,
}

/// Percentiles and mean of one latency, in milliseconds; each may be missing.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Dist {
    /// Mean.
    pub mean: Option<f64>,
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Every sample, when the file kept them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub raw: Vec<f64>,
}

impl Dist {
    /// The mean, else the median: the figure the analyses compare, with its name.
    pub fn central(&self) -> Option<(f64, &'static str)> {
        self.mean
            .map(|v| (v, "mean"))
            .or(self.p50.map(|v| (v, "p50")))
    }
}

/// One E2E pattern's result.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct E2eRecord {
    /// File name or MLflow run name it came from.
    pub source: String,
    /// Pattern id (MLflow run name without its timestamp), when known.
    pub pattern_id: Option<String>,
    /// Phase of the team's campaign.
    pub phase: Option<String>,
    /// Unified or disaggregated; derived from the backend when the mode is missing.
    pub mode: Option<Mode>,
    /// `none`, `tcp` or `efa` (lower case).
    pub backend: Option<String>,
    /// Prompt length in tokens.
    pub prompt_tokens: Option<u64>,
    /// Concurrent requests.
    pub concurrency: Option<u64>,
    /// Time to first token (ms).
    pub ttft: Dist,
    /// Time per output token (ms).
    pub tpot: Dist,
    /// Whole-request latency (ms).
    pub e2e: Dist,
    /// Requests per second.
    pub throughput_rps: Option<f64>,
    /// The proxy's prefill time (ms), when recorded.
    pub proxy_prefill_ms: Option<f64>,
    /// The proxy's KV extraction time (ms), when recorded.
    pub proxy_kv_extract_ms: Option<f64>,
}

/// The longest latency a run can report, ms (a day): past it, a figure is corrupt.
pub const MAX_LATENCY_MS: f64 = 86_400_000.0;

impl E2eRecord {
    /// Why no run could have produced this record (a negative time, a time past a day, a
    /// negative rate), or None.
    pub fn implausible(&self) -> Option<String> {
        let dists = [
            ("ttft", &self.ttft),
            ("tpot", &self.tpot),
            ("e2e", &self.e2e),
        ];
        for (what, d) in dists {
            let figures = [
                ("mean", d.mean),
                ("p50", d.p50),
                ("p95", d.p95),
                ("p99", d.p99),
            ];
            let named = figures.into_iter().filter_map(|(n, v)| v.map(|v| (n, v)));
            let raw = d.raw.iter().map(|&v| ("raw sample", v));
            for (n, v) in named.chain(raw) {
                if !(0.0..=MAX_LATENCY_MS).contains(&v) {
                    return Some(format!(
                        "{what} {n} of {v} ms: no run gives a time below 0 or above a day"
                    ));
                }
            }
        }
        let times = [
            ("proxy_prefill_time", self.proxy_prefill_ms),
            ("proxy_kv_extract_time", self.proxy_kv_extract_ms),
        ];
        for (what, v) in times {
            if let Some(v) = v.filter(|v| !(0.0..=MAX_LATENCY_MS).contains(v)) {
                return Some(format!(
                    "{what} of {v} ms: no run gives a time below 0 or above a day"
                ));
            }
        }
        match self.throughput_rps {
            Some(r) if r < 0.0 => Some(format!("throughput_rps of {r}: a rate is not negative")),
            _ => None,
        }
    }

    /// True for a disaggregated run over `backend`.
    pub fn is_disagg(&self, backend: &str) -> bool {
        self.mode == Some(Mode::Disaggregated) && self.backend.as_deref() == Some(backend)
    }
    /// True for a unified run.
    pub fn is_unified(&self) -> bool {
        self.mode == Some(Mode::Unified)
    }
}

/// A number, or a string holding one (MLflow params are strings).
pub(crate) fn num(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64().filter(|x| x.is_finite()),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
        _ => None,
    }
}

/// A non-negative whole number (a float like 16.0 from a metric is accepted).
fn count(v: Option<&Value>) -> Option<u64> {
    num(v)
        .filter(|x| *x >= 0.0 && x.fract() == 0.0)
        .map(|x| x as u64)
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A distribution from the nested layout's `{"p50", "p95", "p99", "mean", "raw"}`.
fn nested_dist(v: Option<&Value>) -> Dist {
    let Some(o) = v.and_then(Value::as_object) else {
        return Dist::default();
    };
    Dist {
        mean: num(o.get("mean")),
        p50: num(o.get("p50")),
        p95: num(o.get("p95")),
        p99: num(o.get("p99")),
        raw: o
            .get("raw")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| num(Some(x))).collect())
            .unwrap_or_default(),
    }
}

/// A distribution from flat keys `<prefix>_mean`, `<prefix>_p50`, ... (first prefix found).
fn flat_dist(o: &Map<String, Value>, prefixes: &[&str]) -> Dist {
    for p in prefixes {
        let get = |s: &str| num(o.get(&format!("{p}_{s}")));
        let d = Dist {
            mean: get("mean"),
            p50: get("p50"),
            p95: get("p95"),
            p99: get("p99"),
            raw: Vec::new(),
        };
        if d != Dist::default() {
            return d;
        }
    }
    Dist::default()
}

/// A time that is either a number or a distribution object (its mean, else its median).
fn time_ms(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Object(_) => nested_dist(v).central().map(|c| c.0),
        other => num(Some(other)),
    }
}

/// Fills mode from backend (`none` is unified) or backend from mode, as the team's files imply.
fn settle_mode(r: &mut E2eRecord, mode: Option<String>) {
    r.backend = r.backend.take().map(|b| b.to_ascii_lowercase());
    r.mode = match mode.map(|m| m.to_ascii_lowercase()).as_deref() {
        Some("unified") => Some(Mode::Unified),
        Some("disaggregated" | "disagg") => Some(Mode::Disaggregated),
        _ => match r.backend.as_deref() {
            Some("none") => Some(Mode::Unified),
            Some(_) => Some(Mode::Disaggregated),
            None => None,
        },
    };
    if r.mode == Some(Mode::Unified) && r.backend.is_none() {
        r.backend = Some("none".into());
    }
}

/// One record from the nested layout (`metadata` + `results`).
fn from_nested(source: &str, o: &Map<String, Value>) -> E2eRecord {
    let empty = Map::new();
    let md = o
        .get("metadata")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let rs = o
        .get("results")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut r = E2eRecord {
        source: source.to_string(),
        pattern_id: text(md.get("pattern_id")),
        phase: text(md.get("phase")),
        backend: text(md.get("backend")),
        prompt_tokens: count(md.get("prompt_tokens")),
        concurrency: count(md.get("concurrency")),
        ttft: nested_dist(rs.get("ttft")),
        tpot: nested_dist(rs.get("tpot")),
        e2e: nested_dist(rs.get("e2e_latency")),
        throughput_rps: num(rs.get("throughput_rps")),
        proxy_prefill_ms: time_ms(rs.get("proxy_prefill_time")),
        proxy_kv_extract_ms: time_ms(rs.get("proxy_kv_extract_time")),
        mode: None,
    };
    settle_mode(&mut r, text(md.get("mode")));
    r
}

/// One record from flat keys (`backend`, `prompt_tokens`, `ttft_mean`, ...): the flat file
/// layout and MLflow's params and metrics alike.
pub fn from_flat(source: &str, o: &Map<String, Value>) -> E2eRecord {
    let mut r = E2eRecord {
        source: source.to_string(),
        pattern_id: text(o.get("pattern_id")),
        phase: text(o.get("phase")),
        backend: text(o.get("backend")),
        prompt_tokens: count(o.get("prompt_tokens")),
        concurrency: count(o.get("concurrency")),
        ttft: flat_dist(o, &["ttft"]),
        tpot: flat_dist(o, &["tpot"]),
        e2e: flat_dist(o, &["e2e", "e2e_latency"]),
        throughput_rps: num(o.get("throughput_rps")),
        proxy_prefill_ms: num(o.get("proxy_prefill_time")),
        proxy_kv_extract_ms: num(o.get("proxy_kv_extract_time")),
        mode: None,
    };
    settle_mode(&mut r, text(o.get("mode")));
    r
}

/// True when the object looks like an E2E result in either layout.
fn looks_e2e(o: &Map<String, Value>) -> bool {
    o.contains_key("metadata")
        || o.get("results").is_some_and(Value::is_object)
        || [
            "ttft_mean",
            "ttft_p50",
            "tpot_mean",
            "tpot_p50",
            "prompt_tokens",
        ]
        .iter()
        .any(|k| o.contains_key(*k))
}

/// The records in one parsed file: an object in either layout, or an array of them.
pub fn parse_value(source: &str, v: &Value) -> Result<Vec<E2eRecord>, String> {
    let one = |i: Option<usize>, o: &Map<String, Value>| -> Option<E2eRecord> {
        let src = match i {
            Some(i) => format!("{source}[{i}]"),
            None => source.to_string(),
        };
        if !looks_e2e(o) {
            return None;
        }
        Some(
            if o.contains_key("metadata") || o.get("results").is_some_and(Value::is_object) {
                from_nested(&src, o)
            } else {
                from_flat(&src, o)
            },
        )
    };
    match v {
        Value::Object(o) => one(None, o)
            .map(|r| vec![r])
            .ok_or_else(|| "neither the nested (metadata/results) nor the flat E2E layout".into()),
        Value::Array(a) => {
            let recs: Vec<E2eRecord> = a
                .iter()
                .enumerate()
                .filter_map(|(i, x)| x.as_object().and_then(|o| one(Some(i), o)))
                .collect();
            if recs.is_empty() {
                Err("an array with no E2E record".into())
            } else {
                Ok(recs)
            }
        }
        _ => Err("not a JSON object or array".into()),
    }
}

/// Every E2E record under `dir` (recursively), with the files that held none.
pub fn load_dir(dir: &Path) -> Result<(Vec<E2eRecord>, Vec<Skipped>), AnalyzeError> {
    let mut recs = Vec::new();
    let mut skipped = Vec::new();
    let mut files = json_files(dir)?;
    for (name, bytes) in &mut files {
        let parsed = serde_json::from_slice::<Value>(&bytes)
            .map_err(|e| format!("not JSON: {e}"))
            .and_then(|v| parse_value(&name, &v));
        match parsed {
            Ok(r) => {
                for rec in r {
                    match rec.implausible() {
                        None => recs.push(rec),
                        Some(why) => skipped.push(Skipped {
                            file: rec.source,
                            reason: why,
                        }),
                    }
                }
            }
            Err(why) => skipped.push(Skipped {
                file: name,
                reason: why,
            }),
        }
    }
    skipped.append(&mut files.skipped);
    Ok((recs, skipped))
}

/// A record from an MLflow run: params and metrics as flat keys, the run name's pattern id.
pub fn from_mlflow(
    run_name: &str,
    params: &BTreeMap<String, String>,
    metrics: &BTreeMap<String, f64>,
) -> E2eRecord {
    let mut o = Map::new();
    for (k, v) in params {
        o.insert(k.clone(), Value::String(v.clone()));
    }
    for (k, v) in metrics {
        if let Some(n) = serde_json::Number::from_f64(*v) {
            o.insert(k.clone(), Value::Number(n));
        }
    }
    let mut r = from_flat(run_name, &o);
    if r.pattern_id.is_none() {
        r.pattern_id = Some(strip_timestamp(run_name).to_string());
    }
    r
}

/// `<pattern_id>-<YYYYmmdd-HHMMSS>` without its timestamp; other names unchanged.
pub fn strip_timestamp(name: &str) -> &str {
    let b = name.as_bytes();
    if b.len() > 16 {
        let tail = &name[name.len() - 16..];
        let t = tail.as_bytes();
        let digits = |r: std::ops::Range<usize>| t[r].iter().all(u8::is_ascii_digit);
        if t[0] == b'-' && digits(1..9) && t[9] == b'-' && digits(10..16) {
            return &name[..name.len() - 16];
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_layout_is_read_with_missing_fields_absent() {
        let v = json!({"metadata": {"phase": 15, "mode": "disaggregated", "backend": "TCP",
            "prompt_tokens": 12288, "concurrency": 16},
            "results": {"ttft": {"mean": 900.5, "p50": 880.0, "raw": [1.0, 2.0]},
                        "tpot": {"p50": 11.0}, "throughput_rps": 3.5,
                        "proxy_prefill_time": {"mean": 120.0}}});
        let r = &parse_value("a.json", &v).unwrap()[0];
        assert_eq!(r.mode, Some(Mode::Disaggregated));
        assert_eq!(r.backend.as_deref(), Some("tcp"));
        assert_eq!(r.phase.as_deref(), Some("15"));
        assert_eq!((r.prompt_tokens, r.concurrency), (Some(12288), Some(16)));
        assert_eq!(r.ttft.central(), Some((900.5, "mean")));
        assert_eq!(r.tpot.central(), Some((11.0, "p50")));
        assert_eq!(r.ttft.raw, vec![1.0, 2.0]);
        assert_eq!(r.e2e, Dist::default());
        assert_eq!(r.proxy_prefill_ms, Some(120.0));
        assert_eq!(r.proxy_kv_extract_ms, None);
    }

    #[test]
    fn flat_layout_and_unified_mode_from_backend_none() {
        let v = json!([{"backend": "none", "prompt_tokens": "4096", "concurrency": 1,
                        "ttft_mean": 50.0, "tpot_mean": 9.0, "e2e_latency_p99": 3.0},
                       {"something": "else"}]);
        let recs = parse_value("flat.json", &v).unwrap();
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        assert_eq!(r.source, "flat.json[0]");
        assert!(r.is_unified());
        assert_eq!(r.prompt_tokens, Some(4096));
        assert_eq!(r.e2e.p99, Some(3.0));
        assert!(parse_value("x", &json!({"schema": "kvxfer.result/v1"})).is_err());
    }

    #[test]
    fn mlflow_run_name_gives_the_pattern_id() {
        assert_eq!(
            strip_timestamp("p15-tcp-12k-c16-20250101-120000"),
            "p15-tcp-12k-c16"
        );
        assert_eq!(strip_timestamp("plain"), "plain");
        let mut p = BTreeMap::new();
        p.insert("mode".to_string(), "unified".to_string());
        let mut m = BTreeMap::new();
        m.insert("ttft_mean".to_string(), 42.0);
        let r = from_mlflow("u-1k-20250101-120000", &p, &m);
        assert_eq!(r.pattern_id.as_deref(), Some("u-1k"));
        assert_eq!(r.backend.as_deref(), Some("none"));
        assert_eq!(r.ttft.mean, Some(42.0));
    }
}

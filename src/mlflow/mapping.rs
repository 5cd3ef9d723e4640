//! What one result document becomes in MLflow: tags, params, metrics and artifacts.
//!
//! A pure function of the document, its file bytes and the options; no I/O. The names follow
//! the spec's recording format:
//!
//! - pingpong / rma_pingpong (kvxfer, fi_pingpong, fi_rma_pingpong): param `provider`; metrics
//!   `latency_us_{size}` (the mean, as fi_pingpong's usec/xfer is), `latency_p50_us_{size}`,
//!   `latency_p99_us_{size}`, `bandwidth_mbps_{size}`, sizes in bytes.
//! - xfer (kvxfer, nixlbench): params `backend`, `message_size`, `num_threads`, `scheme`; metrics
//!   `latency_p50_us`, `latency_p95_us`, `latency_p99_us`, `bandwidth_gbps`, `transfer_time_ms`.
//! - kv_profile (kvxfer, kvbench): params `backend`, `model_config`, `prompt_tokens`,
//!   `kv_cache_size_bytes`; metrics `kv_transfer_time_ms`, `bandwidth_gbps`, and where kvxfer
//!   measured them the decomposition (`kv_theoretical_ms`, `kv_measured_ms`,
//!   `kv_registration_ms`, `kv_slow_start_ms`, `kv_per_descriptor_ms`, `kv_remainder_ms`,
//!   `kv_cold_connection_extra_ms`), `kv_per_descriptor_us` and `kv_registration_cached_us`;
//!   `kv_cache_equivalent_tokens` is then the profile's own prompt lengths.
//! - tag_lat / tag_bw (kvxfer, ucx_perftest): params `test_type`, `message_size`, `memory_type`,
//!   `transport`; metrics `latency_us` (the mean), `latency_p50_us`, `latency_p99_us`,
//!   `bandwidth_gbps`.
//!
//! Every family also gets, where the result says which devices carried its payload, the
//! metrics `path_bytes_ratio` and `line_rate_fraction` and the tags `path` (the verdict; the
//! distinct verdicts of several results joined by ` | `) and `path_kind`; where it says how
//! long each side's measuring threads waited for a CPU, `initiator_cpu_wait_pct` and
//! `target_cpu_wait_pct`.
//!
//! Outside pingpong, a document with several results gets its metric names suffixed `_{size}`.
//! Every other `config` entry is logged as a param under its own (sanitised) name. A figure
//! absent from the document is absent from MLflow; a non-finite one is not sent as a metric but
//! named in the tag `kvxfer_nonfinite_metrics`.

use std::collections::HashSet;

use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::client::{KeyValue, Metric};
use crate::report::{ResultDoc, SizeResult};

/// KV-cache bytes per token of Qwen2.5-7B-Instruct (2 x 28 layers x 4 KV heads x 128 x bf16).
pub const DEFAULT_BYTES_PER_TOKEN: u64 = 57_344;
/// The tag holding the sha256 of the recorded file's bytes.
pub const CONTENT_HASH_TAG: &str = "kvxfer_content_hash";
/// The tag naming metrics left out because their value was NaN or infinite.
pub const NONFINITE_TAG: &str = "kvxfer_nonfinite_metrics";
/// Longest key MLflow accepts.
const MAX_KEY: usize = 250;
/// Longest param value MLflow accepts.
const MAX_PARAM_VALUE: usize = 6000;
/// Longest tag value MLflow accepts.
const MAX_TAG_VALUE: usize = 8000;

/// Choices that are not in the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapOptions {
    /// Instance type tag (e.g. p5.48xlarge); else the document's `environment.instance_type`.
    pub instance_type: Option<String>,
    /// KV-cache bytes per token for `kv_cache_equivalent_tokens`.
    pub bytes_per_token: u64,
}

impl Default for MapOptions {
    fn default() -> Self {
        MapOptions {
            instance_type: None,
            bytes_per_token: DEFAULT_BYTES_PER_TOKEN,
        }
    }
}

/// A file to upload beside the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Path under the run's artifact root.
    pub path: String,
    /// Content.
    pub bytes: Vec<u8>,
}

/// Everything one MLflow run will hold.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPlan {
    /// `<pattern_id>-<start time, UTC, %Y%m%dT%H%M%SZ>`.
    pub run_name: String,
    /// Run start, milliseconds since the epoch.
    pub start_time_ms: i64,
    /// Run end, milliseconds since the epoch (also the metrics' timestamp).
    pub end_time_ms: i64,
    /// Tags, the content hash among them.
    pub tags: Vec<KeyValue>,
    /// Params.
    pub params: Vec<KeyValue>,
    /// Metrics, all finite.
    pub metrics: Vec<Metric>,
    /// The result file and the decoded histograms.
    pub artifacts: Vec<Artifact>,
    /// What was left out or renamed, for the person recording.
    pub notes: Vec<String>,
    /// sha256 of the source bytes, hex.
    pub content_hash: String,
}

/// The hex sha256 of `bytes`: what [`CONTENT_HASH_TAG`] holds.
pub fn content_hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `raw` made into a valid MLflow key: other characters than alphanumerics, `_ - . space /`
/// become `_`, path segments are normalised (no empty, `.` or `..` segment), at most 250 chars.
pub fn sanitize_key(raw: &str) -> String {
    let mapped: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | '/') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let segments: Vec<String> = mapped
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .map(|s| {
            if s == ".." {
                "__".to_string()
            } else {
                s.to_string()
            }
        })
        .collect();
    let mut key = segments.join("/");
    if key.is_empty() {
        key.push('_');
    }
    truncate(&key, MAX_KEY)
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Pingpong,
    Xfer,
    Kv,
    Ucx,
    Other,
}

fn family(doc: &ResultDoc) -> Family {
    match (doc.bench.as_str(), doc.tool.as_str()) {
        ("pingpong" | "rma_pingpong", _) | (_, "fi_pingpong" | "fi_rma_pingpong") => {
            Family::Pingpong
        }
        ("xfer", _) | (_, "nixlbench") => Family::Xfer,
        ("kv_profile" | "kv", _) | (_, "kvbench") => Family::Kv,
        ("tag_lat" | "tag_bw" | "ucx-perf" | "ucx_perf", _) | (_, "ucx_perftest") => Family::Ucx,
        _ => Family::Other,
    }
}

/// The file's stem: the pattern id when the document names none.
fn stem(file_name: &str) -> &str {
    file_name.strip_suffix(".json").unwrap_or(file_name)
}

fn parse_time(rfc3339: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Builds the run for `doc`, read from `bytes` in a file named `file_name`.
pub fn plan_run(
    doc: &ResultDoc,
    bytes: &[u8],
    file_name: &str,
    opts: &MapOptions,
    now: DateTime<Utc>,
) -> RunPlan {
    let mut notes = Vec::new();
    let start = parse_time(&doc.started_at).unwrap_or(now);
    let end = parse_time(&doc.finished_at).unwrap_or(now).max(start);
    let pattern_id = doc
        .pattern_id
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| stem(file_name).to_string());
    let hash = content_hash(bytes);
    let fam = family(doc);

    let (metrics, nonfinite) = metrics(doc, fam, end.timestamp_millis(), &mut notes);

    let mut tags = Vec::new();
    let mut tag = |k: &str, v: &str| {
        tags.push(KeyValue {
            key: k.to_string(),
            value: truncate(v, MAX_TAG_VALUE),
        })
    };
    tag("tool", &doc.tool);
    tag("bench", &doc.bench);
    tag("layer", &doc.layer);
    tag("pattern_id", &pattern_id);
    tag("phase", "low-level");
    tag("status", status_name(doc));
    let instance = opts.instance_type.clone().or_else(|| {
        doc.environment
            .extra
            .get("instance_type")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    if let Some(i) = instance.filter(|i| !i.is_empty()) {
        tag("instance_type", &i);
    }
    match kv_tokens(doc, fam, opts) {
        Ok(Some(t)) => tag("kv_cache_equivalent_tokens", &t),
        Ok(None) => {}
        Err(note) => notes.push(note),
    }
    for (k, v) in [
        ("host", &doc.environment.host),
        ("kvxfer_version", &doc.environment.kvxfer_version),
        ("git_sha", &doc.environment.git_sha),
    ] {
        if !v.is_empty() {
            tag(k, v);
        }
    }
    for (k, v) in path_tags(doc) {
        tag(k, &v);
    }
    tag(CONTENT_HASH_TAG, &hash);
    tag("kvxfer_source_file", file_name);
    if !nonfinite.is_empty() {
        tag(NONFINITE_TAG, &nonfinite.join(","));
    }

    let params = params(doc, fam, &mut notes);
    let artifacts = artifacts(doc, bytes, file_name, &mut notes);
    RunPlan {
        run_name: format!("{pattern_id}-{}", start.format("%Y%m%dT%H%M%SZ")),
        start_time_ms: start.timestamp_millis(),
        end_time_ms: end.timestamp_millis(),
        tags,
        params,
        metrics,
        artifacts,
        notes,
        content_hash: hash,
    }
}

/// The `kv_cache_equivalent_tokens` tag of an L1/L2 document: a profile's own token counts,
/// else each distinct size over the bytes per token; None for other layers, Err (a note)
/// when the bytes per token are 0.
fn kv_tokens(doc: &ResultDoc, fam: Family, opts: &MapOptions) -> Result<Option<String>, String> {
    if !matches!(doc.layer.as_str(), "L1" | "L2") || doc.results.is_empty() {
        return Ok(None);
    }
    let own: Option<Vec<String>> = doc
        .results
        .iter()
        .map(|r| {
            r.extra
                .get("tokens")
                .and_then(Value::as_u64)
                .map(|t| t.to_string())
        })
        .collect();
    if let Some(t) = own.filter(|_| fam == Family::Kv) {
        return Ok(Some(t.join(",")));
    }
    if opts.bytes_per_token == 0 {
        return Err("bytes per token is 0: kv_cache_equivalent_tokens left out".into());
    }
    let tokens: Vec<String> = distinct_sizes(&doc.results)
        .iter()
        .map(|s| {
            ((*s as f64) / opts.bytes_per_token as f64)
                .round()
                .to_string()
        })
        .collect();
    Ok(Some(tokens.join(",")))
}

/// `path` and `path_kind`: the results' distinct verdicts and kinds, in order.
fn path_tags(doc: &ResultDoc) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (tag, key) in [("path", "verdict"), ("path_kind", "kind")] {
        let mut seen: Vec<&str> = Vec::new();
        for v in doc
            .results
            .iter()
            .filter_map(|r| r.path.as_ref()?.get(key)?.as_str())
        {
            if !seen.contains(&v) {
                seen.push(v);
            }
        }
        if !seen.is_empty() {
            out.push((tag, seen.join(" | ")));
        }
    }
    out
}

/// A number of a result's `path`.
fn path_num(r: &SizeResult, key: &str) -> Option<f64> {
    r.path.as_ref()?.get(key)?.as_f64()
}

/// The share of the timed span that side `side`'s measuring threads waited for a CPU, %.
fn cpu_wait_pct(r: &SizeResult, side: &str) -> Option<f64> {
    r.extra
        .get("scheduling")?
        .get(side)?
        .get("waiting_pct")?
        .as_f64()
}

fn status_name(doc: &ResultDoc) -> &'static str {
    match doc.status {
        crate::report::Status::Complete => "complete",
        crate::report::Status::Partial => "partial",
        crate::report::Status::Failed => "failed",
        crate::report::Status::WrongPath => "wrong-path",
    }
}

fn distinct_sizes(results: &[SizeResult]) -> Vec<u64> {
    let mut seen = HashSet::new();
    results
        .iter()
        .map(|r| r.message_size)
        .filter(|s| seen.insert(*s))
        .collect()
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The first of `keys` present (and not null) in the document's config, as text.
fn cfg(doc: &ResultDoc, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| doc.config.get(*k).and_then(value_text))
}

fn params(doc: &ResultDoc, fam: Family, notes: &mut Vec<String>) -> Vec<KeyValue> {
    let sizes = || {
        let s = distinct_sizes(&doc.results);
        (!s.is_empty()).then(|| s.iter().map(u64::to_string).collect::<Vec<_>>().join(","))
    };
    let named: Vec<(&str, Option<String>)> = match fam {
        Family::Pingpong => vec![(
            "provider",
            cfg(doc, &["provider"]).or_else(|| doc.environment.provider.clone()),
        )],
        Family::Xfer => vec![
            ("backend", cfg(doc, &["backend"])),
            (
                "message_size",
                cfg(doc, &["message_size", "block_size"]).or_else(sizes),
            ),
            (
                "num_threads",
                cfg(doc, &["num_threads", "concurrency", "threads"]),
            ),
            ("scheme", cfg(doc, &["scheme"])),
        ],
        Family::Kv => vec![
            ("backend", cfg(doc, &["backend"])),
            ("model_config", cfg(doc, &["model_config", "model"])),
            ("prompt_tokens", cfg(doc, &["prompt_tokens", "tokens"])),
            (
                "kv_cache_size_bytes",
                cfg(doc, &["kv_cache_size_bytes"]).or_else(sizes),
            ),
        ],
        Family::Ucx => vec![
            (
                "test_type",
                cfg(doc, &["test_type"]).or_else(|| {
                    matches!(doc.bench.as_str(), "tag_lat" | "tag_bw").then(|| doc.bench.clone())
                }),
            ),
            ("message_size", cfg(doc, &["message_size"]).or_else(sizes)),
            ("memory_type", cfg(doc, &["memory_type", "mem"])),
            (
                "transport",
                cfg(doc, &["transport", "tls"])
                    .or_else(|| doc.environment.env.get("UCX_TLS").cloned()),
            ),
        ],
        Family::Other => Vec::new(),
    };
    let mut out: Vec<KeyValue> = Vec::new();
    let mut seen = HashSet::new();
    let rest = doc
        .config
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), value_text(v)?)));
    let all = named
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .chain(rest);
    for (raw, value) in all {
        let key = sanitize_key(raw);
        if !seen.insert(key.clone()) {
            continue;
        }
        if key != raw {
            notes.push(format!("config key {raw:?} recorded as param {key:?}"));
        }
        if value.chars().count() > MAX_PARAM_VALUE {
            notes.push(format!(
                "param {key:?} left out: value longer than {MAX_PARAM_VALUE} characters (it stays in the JSON artifact)"
            ));
            continue;
        }
        out.push(KeyValue { key, value });
    }
    out
}

fn artifacts(
    doc: &ResultDoc,
    bytes: &[u8],
    file_name: &str,
    notes: &mut Vec<String>,
) -> Vec<Artifact> {
    let mut out = vec![Artifact {
        path: file_name.to_string(),
        bytes: bytes.to_vec(),
    }];
    let sizes: Vec<u64> = doc.results.iter().map(|r| r.message_size).collect();
    for (i, r) in doc.results.iter().enumerate() {
        let Some(b64) = &r.histogram else { continue };
        let repeated = sizes.iter().filter(|s| **s == r.message_size).count() > 1;
        let path = if repeated {
            format!("histogram-{}-{i}.hdr", r.message_size)
        } else {
            format!("histogram-{}.hdr", r.message_size)
        };
        match base64::engine::general_purpose::STANDARD.decode(b64.trim()) {
            Ok(hdr) => out.push(Artifact { path, bytes: hdr }),
            Err(e) => notes.push(format!(
                "results[{i}].histogram is not base64 ({e}): {path} not uploaded"
            )),
        }
    }
    out
}

mod metrics;
use metrics::metrics;

#[cfg(test)]
mod tests;

//! The `kvxfer.result/v1` document: one per run, for kvxfer's measurements and parsed
//! reference-tool output alike.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::stats::LatencySummary;

/// The schema identifier every document carries.
pub const SCHEMA: &str = "kvxfer.result/v1";

/// How far a run got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every planned measurement was taken.
    Complete,
    /// Some measurements were taken; `errors` says why the rest are missing.
    Partial,
    /// Nothing usable was measured.
    Failed,
    /// Every measurement was taken, but the payload did not take the path `--expect-path`
    /// asked for: the figures are kept, and are not evidence for that path.
    #[serde(rename = "wrong-path")]
    WrongPath,
}

/// Where and with what a result was measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    /// Host name.
    #[serde(default)]
    pub host: String,
    /// kvxfer's version.
    #[serde(default)]
    pub kvxfer_version: String,
    /// Git commit kvxfer was built from.
    #[serde(default)]
    pub git_sha: String,
    /// Cargo features kvxfer was built with.
    #[serde(default)]
    pub features: Vec<String>,
    /// libfabric version loaded at run time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub libfabric_version: Option<String>,
    /// Provider as libfabric names it (`tcp;ofi_rxm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Fabric name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fabric: Option<String>,
    /// Domain name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// UCX version, for UCX runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ucx_version: Option<String>,
    /// The UCP library file loaded at run time, for UCX runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ucx_library: Option<String>,
    /// GPUs used.
    #[serde(default)]
    pub gpu: Vec<String>,
    /// FI_* and UCX_* variables set for the run.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Anything else worth keeping (kernel, CPU, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The figures for one message size.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SizeResult {
    /// Bytes per message or transfer.
    pub message_size: u64,
    /// Timed iterations (warm-up excluded); 0 when the tool does not say, and then absent.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub iterations: u64,
    /// Latency summary in microseconds; absent when not measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<LatencySummary>,
    /// Bandwidth in 10^9 bytes/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_gbps: Option<f64>,
    /// Bandwidth in 10^6 bytes/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_mbps: Option<f64>,
    /// Time of one transfer (or of the timed phase, as the bench says) in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_time_ms: Option<f64>,
    /// Base64 HDR V2 (deflate) histogram of nanosecond samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<String>,
    /// Which devices carried the payload, as the kernel's counters saw it over the timed
    /// iterations (`verdict`, `kind`, `devices`, `bytes_ratio`, `line_rate_fraction`, each
    /// side's view); absent where nothing read them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<Value>,
    /// Bench-specific figures (the reference tool's own numbers, compatibility figures, ...).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

/// Something that went wrong during a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEntry {
    /// Where (a size, a phase, a worker).
    pub at: String,
    /// What.
    pub message: String,
}

/// One result document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultDoc {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// `kvxfer` or the reference tool's name.
    pub tool: String,
    /// Which measurement (`pingpong`, `xfer`, ...).
    pub bench: String,
    /// L0..L3.
    pub layer: String,
    /// Plan pattern, when run from a plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern_id: Option<String>,
    /// How far the run got.
    pub status: Status,
    /// RFC 3339 start time.
    pub started_at: String,
    /// RFC 3339 end time.
    pub finished_at: String,
    /// Every parameter of the run.
    pub config: Map<String, Value>,
    /// Where it ran.
    pub environment: Environment,
    /// One entry per message size.
    pub results: Vec<SizeResult>,
    /// What went wrong.
    #[serde(default)]
    pub errors: Vec<ErrorEntry>,
    /// Reference tools only: what the tool printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_output: Option<String>,
}

impl ResultDoc {
    /// A new document for `tool`/`bench`/`layer`, started now, with no results yet.
    pub fn new(tool: &str, bench: &str, layer: &str) -> ResultDoc {
        let now = now_rfc3339();
        ResultDoc {
            schema: SCHEMA.to_string(),
            tool: tool.to_string(),
            bench: bench.to_string(),
            layer: layer.to_string(),
            pattern_id: None,
            status: Status::Partial,
            started_at: now.clone(),
            finished_at: now,
            config: Map::new(),
            environment: Environment::default(),
            results: Vec::new(),
            errors: Vec::new(),
            raw_output: None,
        }
    }

    /// Pretty JSON bytes with a trailing newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("result documents always serialise");
        v.push(b'\n');
        v
    }

    /// Parses a document, checking its schema identifier.
    pub fn from_json(bytes: &[u8]) -> Result<ResultDoc, String> {
        let doc: ResultDoc = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if doc.schema != SCHEMA {
            return Err(format!("schema is {:?}, expected {SCHEMA:?}", doc.schema));
        }
        Ok(doc)
    }
}

/// True for an iteration count the tool did not give.
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The current UTC time in RFC 3339 with microseconds.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_omits_missing_figures() {
        let mut d = ResultDoc::new("kvxfer", "pingpong", "L0");
        d.results.push(SizeResult {
            message_size: 64,
            iterations: 10,
            ..Default::default()
        });
        d.environment.extra.insert("kernel".into(), "6.1".into());
        let bytes = d.to_json();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            !text.contains("bandwidth_gbps"),
            "absent figure serialised: {text}"
        );
        assert!(text.contains("\"kernel\": \"6.1\""));
        assert_eq!(ResultDoc::from_json(&bytes).unwrap(), d);
    }

    #[test]
    fn wrong_schema_is_refused() {
        let mut d = ResultDoc::new("kvxfer", "pingpong", "L0");
        d.schema = "other/v9".into();
        assert!(ResultDoc::from_json(&d.to_json())
            .unwrap_err()
            .contains("other/v9"));
    }
}

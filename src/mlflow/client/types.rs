//! What MLflow's tracking API answers with: runs, their data, metrics, tags and artifact
//! files, as kvxfer reads and writes them.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// A run's identity and state, as MLflow returns it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RunInfo {
    /// Run id.
    pub run_id: String,
    /// Experiment the run belongs to.
    pub experiment_id: String,
    /// Display name.
    #[serde(default)]
    pub run_name: String,
    /// RUNNING, FINISHED, FAILED, KILLED or SCHEDULED.
    #[serde(default)]
    pub status: String,
    /// Where its artifacts live (`mlflow-artifacts:/...` when proxied).
    #[serde(default)]
    pub artifact_uri: String,
    /// Start time in milliseconds since the epoch.
    #[serde(default)]
    pub start_time: Option<i64>,
    /// End time in milliseconds since the epoch.
    #[serde(default)]
    pub end_time: Option<i64>,
}

/// A key/value pair: a tag or a param.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// Key.
    pub key: String,
    /// Value.
    #[serde(default)]
    pub value: String,
}

/// One metric value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// Key.
    pub key: String,
    /// Value (MLflow sends non-finite values as the strings "NaN", "Infinity").
    #[serde(deserialize_with = "number_or_string")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[serde(default)]
    pub timestamp: i64,
    /// Step.
    #[serde(default)]
    pub step: i64,
}

fn number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| serde::de::Error::custom("metric value out of range")),
        Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other.parse().map_err(serde::de::Error::custom),
        },
        other => Err(serde::de::Error::custom(format!("metric value is {other}"))),
    }
}

/// A run's logged data (latest metric values only).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RunData {
    /// Latest value of each metric.
    #[serde(default)]
    pub metrics: Vec<Metric>,
    /// Params.
    #[serde(default)]
    pub params: Vec<KeyValue>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

impl RunData {
    /// The value of tag `key`.
    pub fn tag(&self, key: &str) -> Option<&str> {
        find(&self.tags, key)
    }
    /// The value of param `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        find(&self.params, key)
    }
    /// The latest value of metric `key`.
    pub fn metric(&self, key: &str) -> Option<f64> {
        self.metrics.iter().find(|m| m.key == key).map(|m| m.value)
    }
}

fn find<'a>(kv: &'a [KeyValue], key: &str) -> Option<&'a str> {
    kv.iter().find(|t| t.key == key).map(|t| t.value.as_str())
}

/// A run as runs/search returns it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Run {
    /// Identity and state.
    pub info: RunInfo,
    /// Logged values.
    #[serde(default)]
    pub data: RunData,
}

/// One entry of an artifact listing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FileInfo {
    /// Path relative to the run's artifact root.
    pub path: String,
    /// Whether it is a directory.
    #[serde(default)]
    pub is_dir: bool,
    /// Size in bytes (files only).
    #[serde(default)]
    pub file_size: Option<u64>,
}

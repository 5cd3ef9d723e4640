//! HDR histograms of nanosecond samples and their microsecond summaries.

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Errors of histogram handling.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatsError {
    /// The histogram could not be created or a value not recorded.
    #[error("histogram: {0}")]
    Histogram(String),
    /// A stored histogram could not be decoded.
    #[error("cannot decode histogram: {0}")]
    Decode(String),
}

/// A histogram for nanosecond latencies: 1 ns to 1 hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("static bounds are valid")
}

/// Latency figures in microseconds, from a histogram of nanoseconds.
///
/// A figure that was not measured (a reference tool that prints only a mean) is NaN in memory
/// and absent from the JSON: never a zero. [`LatencySummary::mean_only`] builds such a summary.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct LatencySummary {
    /// Smallest sample.
    #[serde(default = "absent", skip_serializing_if = "is_absent")]
    pub min: f64,
    /// Median.
    #[serde(default = "absent", skip_serializing_if = "is_absent")]
    pub p50: f64,
    /// 95th percentile.
    #[serde(default = "absent", skip_serializing_if = "is_absent")]
    pub p95: f64,
    /// 99th percentile.
    #[serde(default = "absent", skip_serializing_if = "is_absent")]
    pub p99: f64,
    /// 99.9th percentile.
    #[serde(default = "absent", skip_serializing_if = "is_absent")]
    pub p999: f64,
    /// Largest sample.
    #[serde(default = "absent", skip_serializing_if = "is_absent")]
    pub max: f64,
    /// Mean.
    #[serde(default = "absent", skip_serializing_if = "is_absent")]
    pub mean: f64,
    /// Standard deviation.
    #[serde(default = "absent", skip_serializing_if = "is_absent")]
    pub stdev: f64,
}

/// The in-memory value of a figure that was not measured.
fn absent() -> f64 {
    f64::NAN
}

/// True for a figure that was not measured.
fn is_absent(v: &f64) -> bool {
    v.is_nan()
}

impl LatencySummary {
    /// A summary holding only a mean (what most reference tools print); the rest is absent.
    pub fn mean_only(mean_us: f64) -> LatencySummary {
        LatencySummary {
            min: f64::NAN,
            p50: f64::NAN,
            p95: f64::NAN,
            p99: f64::NAN,
            p999: f64::NAN,
            max: f64::NAN,
            mean: mean_us,
            stdev: f64::NAN,
        }
    }

    /// Summarises a histogram of nanoseconds; None when it holds no sample.
    pub fn from_histogram(h: &Histogram<u64>) -> Option<LatencySummary> {
        if h.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Some(LatencySummary {
            min: us(h.min()),
            p50: us(h.value_at_quantile(0.50)),
            p95: us(h.value_at_quantile(0.95)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1000.0,
            stdev: h.stdev() / 1000.0,
        })
    }
}

/// Base64 of the HDR V2 deflate encoding, as the result schema stores histograms.
pub fn encode_histogram(h: &Histogram<u64>) -> Result<String, StatsError> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .map_err(|e| StatsError::Histogram(format!("{e:?}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Decodes a histogram stored by [`encode_histogram`].
pub fn decode_histogram(b64: &str) -> Result<Histogram<u64>, StatsError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| StatsError::Decode(e.to_string()))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| StatsError::Decode(format!("{e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_known_samples() {
        let mut h = new_histogram();
        for ns in 1..=1000u64 {
            h.record(ns * 1000).unwrap(); // 1..1000 us
        }
        let s = LatencySummary::from_histogram(&h).unwrap();
        assert!((s.min - 1.0).abs() < 0.01);
        assert!((s.p50 - 500.0).abs() / 500.0 < 0.002, "p50 {}", s.p50);
        assert!((s.p99 - 990.0).abs() / 990.0 < 0.002, "p99 {}", s.p99);
        assert!((s.max - 1000.0).abs() / 1000.0 < 0.002);
        assert!((s.mean - 500.5).abs() < 0.5);
        assert!(s.min <= s.p50 && s.p50 <= s.p95 && s.p95 <= s.p99 && s.p99 <= s.max);
    }

    #[test]
    fn unmeasured_figures_are_absent_not_zero() {
        let s = LatencySummary::mean_only(4.5);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"{"mean":4.5}"#);
        let back: LatencySummary = serde_json::from_str(&json).unwrap();
        assert_eq!(back.mean, 4.5);
        assert!(back.p50.is_nan() && back.max.is_nan());
    }

    #[test]
    fn empty_histogram_has_no_summary() {
        assert!(LatencySummary::from_histogram(&new_histogram()).is_none());
    }

    #[test]
    fn encoding_round_trips() {
        let mut h = new_histogram();
        for v in [5u64, 50, 500, 5_000_000] {
            h.record(v).unwrap();
        }
        let back = decode_histogram(&encode_histogram(&h).unwrap()).unwrap();
        assert_eq!(back.len(), 4);
        assert_eq!(back.max(), h.max());
        assert_eq!(back.value_at_quantile(0.5), h.value_at_quantile(0.5));
    }

    #[test]
    fn garbage_does_not_decode() {
        assert!(decode_histogram("not base64 !!").is_err());
        assert!(decode_histogram("aGVsbG8=").is_err());
    }
}

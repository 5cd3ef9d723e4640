//! The metrics a result document records: each family's names, picked from every result,
//! suffixed by message size where needed, non-finite values named instead of sent.

use std::collections::HashSet;

use super::{cpu_wait_pct, path_num, Family, NONFINITE_TAG};
use crate::mlflow::client::Metric;
use crate::report::{ResultDoc, SizeResult};

/// A figure of one result, or None when the document lacks it.
type Pick = fn(&SizeResult) -> Option<f64>;

fn mbps(r: &SizeResult) -> Option<f64> {
    r.bandwidth_mbps.or(r.bandwidth_gbps.map(|g| g * 1000.0))
}
fn gbps(r: &SizeResult) -> Option<f64> {
    r.bandwidth_gbps.or(r.bandwidth_mbps.map(|m| m / 1000.0))
}

/// A figure of a kv_profile result: `extra[group][key]`.
fn kv_part(r: &SizeResult, group: &str, key: &str) -> Option<f64> {
    r.extra.get(group)?.get(key)?.as_f64()
}

/// The metrics a family records, each named and picked from a result, and whether every
/// name carries the message size even where the document holds one result.
fn family_metrics(fam: Family) -> (Vec<(&'static str, Pick)>, bool) {
    let p50: Pick = |r| r.latency_us.map(|l| l.p50);
    let p95: Pick = |r| r.latency_us.map(|l| l.p95);
    let p99: Pick = |r| r.latency_us.map(|l| l.p99);
    let mean: Pick = |r| r.latency_us.map(|l| l.mean);
    let xfer_ms: Pick = |r| r.transfer_time_ms;
    match fam {
        Family::Pingpong => (
            vec![
                ("latency_us", mean),
                ("latency_p50_us", p50),
                ("latency_p99_us", p99),
                ("bandwidth_mbps", mbps),
            ],
            true,
        ),
        Family::Xfer => (
            vec![
                ("latency_p50_us", p50),
                ("latency_p95_us", p95),
                ("latency_p99_us", p99),
                ("bandwidth_gbps", gbps),
                ("transfer_time_ms", xfer_ms),
            ],
            false,
        ),
        Family::Kv => (
            vec![
                ("kv_transfer_time_ms", xfer_ms),
                ("bandwidth_gbps", gbps),
                ("kv_theoretical_ms", |r| {
                    kv_part(r, "decomposition", "theoretical_ms")
                }),
                ("kv_measured_ms", |r| {
                    kv_part(r, "decomposition", "measured_ms")
                }),
                ("kv_registration_ms", |r| {
                    kv_part(r, "decomposition", "registration_ms")
                }),
                ("kv_slow_start_ms", |r| {
                    kv_part(r, "decomposition", "slow_start_ms")
                }),
                ("kv_per_descriptor_ms", |r| {
                    kv_part(r, "decomposition", "per_descriptor_ms")
                }),
                ("kv_remainder_ms", |r| {
                    kv_part(r, "decomposition", "remainder_ms")
                }),
                ("kv_cold_connection_extra_ms", |r| {
                    kv_part(r, "decomposition", "cold_connection_extra_ms")
                }),
                ("kv_per_descriptor_us", |r| {
                    kv_part(r, "per_descriptor", "per_descriptor_us")
                }),
                ("kv_registration_cached_us", |r| {
                    kv_part(r, "registration", "cached_us")
                }),
            ],
            false,
        ),
        Family::Ucx => (
            vec![
                ("latency_us", mean),
                ("latency_p50_us", p50),
                ("latency_p99_us", p99),
                ("bandwidth_gbps", gbps),
            ],
            false,
        ),
        Family::Other => (
            vec![
                ("latency_p50_us", p50),
                ("latency_p99_us", p99),
                ("bandwidth_gbps", gbps),
                ("transfer_time_ms", xfer_ms),
            ],
            true,
        ),
    }
}

pub(super) fn metrics(
    doc: &ResultDoc,
    fam: Family,
    ts: i64,
    notes: &mut Vec<String>,
) -> (Vec<Metric>, Vec<String>) {
    let (mut names, always_suffix) = family_metrics(fam);
    names.push(("path_bytes_ratio", |r| path_num(r, "bytes_ratio")));
    names.push(("line_rate_fraction", |r| path_num(r, "line_rate_fraction")));
    names.push(("initiator_cpu_wait_pct", |r| cpu_wait_pct(r, "initiator")));
    names.push(("target_cpu_wait_pct", |r| cpu_wait_pct(r, "target")));
    let suffix = always_suffix || doc.results.len() > 1;
    let mut out = Vec::new();
    let mut nonfinite = Vec::new();
    let mut seen = HashSet::new();
    for (i, r) in doc.results.iter().enumerate() {
        for (name, pick) in &names {
            let Some(value) = pick(r) else { continue };
            let mut key = if suffix {
                format!("{name}_{}", r.message_size)
            } else {
                name.to_string()
            };
            if !seen.insert(key.clone()) {
                let renamed = format!("{key}_r{i}");
                notes.push(format!(
                    "results[{i}] repeats size {}: metric {key:?} recorded as {renamed:?}",
                    r.message_size
                ));
                key = renamed;
                seen.insert(key.clone());
            }
            if !value.is_finite() {
                notes.push(format!(
                    "metric {key:?} is {value}: not sent (named in tag {NONFINITE_TAG})"
                ));
                nonfinite.push(key);
                continue;
            }
            out.push(Metric {
                key,
                value,
                timestamp: ts,
                step: 0,
            });
        }
    }
    (out, nonfinite)
}

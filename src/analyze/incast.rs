//! tcp-incast: E2E TTFT at c=16 over c=1 per backend at one prompt length, against the
//! network's many-to-one degradation at c=16 over c=1.

use std::collections::BTreeMap;

use super::assess::{e2e_run, Assessment, Confidence, EvidenceType, Verdict};
use super::lowlevel::{LowPoint, Transport};
use super::select::{self, median, BACKENDS};
use super::{Inputs, Settings};

/// The concurrency of the claim.
pub const HIGH: u64 = 16;

/// Aggregate bandwidth at c=16 below this share of c=1's is a collapse (incast).
const COLLAPSE: f64 = 0.8;

/// E2E TTFT(c=16) / TTFT(c=1) of `backend` at the longest prompt length that has both.
pub fn e2e_ratio(inputs: &Inputs, backend: &str) -> Option<(u64, f64)> {
    select::prompt_lengths(&inputs.e2e, backend)
        .into_iter()
        .rev()
        .find_map(|t| {
            let lo = select::ttft(&inputs.e2e, backend, t, 1)?;
            let hi = select::ttft(&inputs.e2e, backend, t, HIGH)?;
            (lo > 0.0).then_some((t, hi / lo))
        })
}

/// The network's degradation at one size: per-transfer time ratio and aggregate bandwidth
/// ratio, c=`c` over c=1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Degradation {
    /// Transfer size (bytes).
    pub size: u64,
    /// Transfer time at c over c=1.
    pub time_ratio: Option<f64>,
    /// Aggregate bandwidth at c over c=1.
    pub bandwidth_ratio: Option<f64>,
}

fn med(points: &[&LowPoint], f: impl Fn(&LowPoint) -> Option<f64>) -> Option<f64> {
    median(&points.iter().filter_map(|p| f(p)).collect::<Vec<_>>())
}

/// Degradation at c over c=1 over `t`, at the largest size measured at both.
pub fn degradation(low: &[LowPoint], t: Transport, c: u64) -> Option<Degradation> {
    let mut sizes: Vec<u64> = select::transfers(low, t, true).map(|p| p.size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes.into_iter().rev().find_map(|size| {
        let one: Vec<&LowPoint> = select::incast_at(low, t, size, 1).collect();
        let many: Vec<&LowPoint> = select::incast_at(low, t, size, c).collect();
        if one.is_empty() || many.is_empty() {
            return None;
        }
        let ratio = |f: &dyn Fn(&LowPoint) -> Option<f64>| {
            med(&many, f)
                .zip(med(&one, f))
                .filter(|(_, b)| *b > 0.0)
                .map(|(a, b)| a / b)
        };
        let d = Degradation {
            size,
            time_ratio: ratio(&|p| p.transfer_time_ms),
            bandwidth_ratio: ratio(&|p| p.bandwidth_gbps),
        };
        (d.time_ratio.is_some() || d.bandwidth_ratio.is_some()).then_some(d)
    })
}

/// Judges "TCP at c=16 degrades 2.72x (incast)".
pub fn assess(inputs: &Inputs, s: &Settings) -> Assessment {
    let mut m = BTreeMap::new();
    let mut needed = Vec::new();
    let mut text = Vec::new();
    let size = s.gap_tokens * s.bytes_per_token;
    for b in BACKENDS {
        if let Some((t, r)) = e2e_ratio(inputs, b) {
            m.insert(format!("e2e_ttft_c16_over_c1_{b}_{t}tok"), r);
            text.push(format!(
                "E2E TTFT over {b} at {t} tokens grows {r:.2}x from c=1 to c=16"
            ));
        } else if b == "tcp" {
            needed.push(e2e_run(
                "disaggregated, backend tcp, TTFT at c=1 and c=16, one prompt length",
                Some(HIGH),
                "the E2E degradation at one prompt length (lengths are never mixed)",
            ));
        }
        match degradation(&inputs.low, select::transport(b), HIGH) {
            Some(d) => {
                if let Some(r) = d.time_ratio {
                    m.insert(format!("net_time_c16_over_c1_{b}_{}B", d.size), r);
                }
                if let Some(r) = d.bandwidth_ratio {
                    m.insert(format!("net_bandwidth_c16_over_c1_{b}_{}B", d.size), r);
                    text.push(format!(
                        "many-to-one over {b} at {} B keeps {:.0} % of the c=1 aggregate \
                         bandwidth at c=16",
                        d.size,
                        r * 100.0
                    ));
                }
            }
            None => {
                for c in [1, HIGH] {
                    needed.push(s.catalogue.incast_run(
                        b,
                        size,
                        c,
                        &format!("the network's many-to-one degradation over {b}"),
                    ));
                }
            }
        }
    }
    let e2e_tcp = m
        .iter()
        .find(|(k, _)| k.starts_with("e2e_ttft_c16_over_c1_tcp"))
        .map(|(_, v)| *v);
    let net_tcp = degradation(&inputs.low, Transport::Tcp, HIGH);
    let collapse = net_tcp
        .and_then(|d| d.bandwidth_ratio)
        .map(|r| r < COLLAPSE);
    let (verdict, after, evidence) = match (e2e_tcp, collapse) {
        (Some(r), Some(true)) if r > 1.0 => {
            (Verdict::Supported, Confidence::High, EvidenceType::Measured)
        }
        (_, Some(false)) => (
            Verdict::Contradicted,
            Confidence::Low,
            EvidenceType::Measured,
        ),
        (Some(_), Some(true)) => (
            Verdict::Inconclusive,
            Confidence::Medium,
            EvidenceType::Measured,
        ),
        (Some(_), None) => (
            Verdict::Inconclusive,
            Confidence::Low,
            EvidenceType::Inferred,
        ),
        (None, Some(true)) => (
            Verdict::Inconclusive,
            Confidence::Medium,
            EvidenceType::Measured,
        ),
        (None, None) => (
            Verdict::InsufficientData,
            Confidence::Low,
            EvidenceType::Literature,
        ),
    };
    let explanation = if text.is_empty() {
        "neither the E2E degradation nor the network's many-to-one degradation is in the data"
            .to_string()
    } else {
        let mut e = text.join("; ");
        e.push_str(&format!(" (the team observed {:.2}x)", s.observed_incast));
        match collapse {
            Some(true) => e.push_str(": the network collapses under 16 senders, as incast does"),
            Some(false) => e.push_str(
                ": the network keeps its aggregate bandwidth under 16 senders, so the E2E \
                 degradation is not incast",
            ),
            None => e.push_str(": the network side is not measured"),
        }
        e
    };
    let recommendation = match verdict {
        Verdict::Supported => {
            "prefer EFA at high concurrency, or cap concurrent KV senders per \
                               decode node over TCP"
        }
        Verdict::Contradicted => {
            "look for the degradation above the network (scheduler \
                                  queueing, prefill contention)"
        }
        _ => "run the listed many-to-one transfers at c=1 and c=16",
    };
    Assessment {
        analysis: "tcp-incast".into(),
        claim: format!(
            "TCP at c=16 degrades {:.2}x against c=1 because of incast",
            s.observed_incast
        ),
        confidence_before: Confidence::Low,
        confidence_after: after,
        evidence_before: EvidenceType::Literature,
        evidence_type: evidence,
        verdict,
        key_metrics: m,
        explanation,
        recommendation: recommendation.into(),
        needed,
    }
}

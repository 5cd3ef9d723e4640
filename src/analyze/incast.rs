//! tcp-incast: E2E TTFT at c=16 over c=1 per backend at one prompt length, against the
//! network's many-to-one degradation at c=16 over c=1.

use std::collections::BTreeMap;

use super::assess::{e2e_run, Assessment, Confidence, EvidenceType, NeededRun, Verdict};
use super::e2e::E2eRecord;
use super::evidence::ClaimEvidence;
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

/// The E2E and network degradation of each backend: metrics, one phrase per figure, and the
/// runs that would supply the missing ones.
fn figures(
    inputs: &Inputs,
    s: &Settings,
    m: &mut BTreeMap<String, f64>,
    needed: &mut Vec<NeededRun>,
) -> Vec<String> {
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
        let Some(d) = degradation(&inputs.low, select::transport(b), HIGH) else {
            for c in [1, HIGH] {
                needed.push(s.catalogue.incast_run(
                    b,
                    size,
                    c,
                    &format!("the network's many-to-one degradation over {b}"),
                ));
            }
            continue;
        };
        if let Some(r) = d.time_ratio {
            m.insert(format!("net_time_c16_over_c1_{b}_{}B", d.size), r);
        }
        if let Some(r) = d.bandwidth_ratio {
            m.insert(format!("net_bandwidth_c16_over_c1_{b}_{}B", d.size), r);
            text.push(format!(
                "many-to-one over {b} at {} B keeps {:.0} % of the c=1 aggregate bandwidth at \
                 c=16",
                d.size,
                r * 100.0
            ));
        }
    }
    text
}

/// Verdict, confidence and evidence from the E2E tcp ratio and whether the network collapses.
fn judge(e2e_tcp: Option<f64>, collapse: Option<bool>) -> (Verdict, Confidence, EvidenceType) {
    use {Confidence::*, EvidenceType::*, Verdict::*};
    match (e2e_tcp, collapse) {
        (Some(r), Some(true)) if r > 1.0 => (Supported, High, Measured),
        (_, Some(false)) => (Contradicted, Low, Measured),
        (Some(_), Some(true)) => (Inconclusive, Medium, Measured),
        (Some(_), None) => (Inconclusive, Low, Inferred),
        (None, Some(true)) => (Inconclusive, Medium, Measured),
        (None, None) => (InsufficientData, Low, Literature),
    }
}

fn explain(text: &[String], collapse: Option<bool>, s: &Settings) -> String {
    if text.is_empty() {
        return "neither the E2E degradation nor the network's many-to-one degradation is in \
                the data"
            .to_string();
    }
    let mut e = text.join("; ");
    e.push_str(&format!(" (the team observed {:.2}x)", s.observed_incast));
    e.push_str(match collapse {
        Some(true) => ": the network collapses under 16 senders, as incast does",
        Some(false) => {
            ": the network keeps its aggregate bandwidth under 16 senders, so the E2E \
             degradation is not incast"
        }
        None => ": the network side is not measured",
    });
    e
}

/// Judges "TCP at c=16 degrades 2.72x (incast)".
pub fn assess(inputs: &Inputs, s: &Settings) -> Assessment {
    let mut m = BTreeMap::new();
    let mut needed = Vec::new();
    let text = figures(inputs, s, &mut m, &mut needed);
    let e2e_tcp = m
        .iter()
        .find(|(k, _)| k.starts_with("e2e_ttft_c16_over_c1_tcp"))
        .map(|(_, v)| *v);
    let collapse = degradation(&inputs.low, Transport::Tcp, HIGH)
        .and_then(|d| d.bandwidth_ratio)
        .map(|r| r < COLLAPSE);
    let (verdict, after, evidence) = judge(e2e_tcp, collapse);
    let recommendation = match verdict {
        Verdict::Supported => {
            "prefer EFA at high concurrency, or cap concurrent KV senders per decode node over TCP"
        }
        Verdict::Contradicted => {
            "look for the degradation above the network (scheduler queueing, prefill contention)"
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
        explanation: explain(&text, collapse, s),
        recommendation: recommendation.into(),
        needed,
    }
}

/// What the claim rests on: E2E TTFT over tcp at c=1 and c=16 at one prompt length, and the
/// many-to-one transfers over tcp at c=1 and c=16 at one size (medians: p50).
pub fn evidence<'a>(inputs: &'a Inputs, s: &Settings) -> ClaimEvidence<'a> {
    let mut ev = ClaimEvidence::at(0.5);
    let recs: Vec<&E2eRecord> = match e2e_ratio(inputs, "tcp") {
        Some((t, _)) => select::matching(&inputs.e2e, "tcp", Some(t), None)
            .filter(|r| matches!(r.concurrency, Some(1) | Some(HIGH)))
            .collect(),
        None => Vec::new(),
    };
    ev.e2e("E2E TTFT over tcp at c=1 and c=16, one prompt length", recs);
    let size = s.gap_tokens * s.bytes_per_token;
    let at = degradation(&inputs.low, Transport::Tcp, HIGH).map(|d| d.size);
    for c in [1, HIGH] {
        let pts: Vec<&LowPoint> = match at {
            Some(size) => select::incast_at(&inputs.low, Transport::Tcp, size, c).collect(),
            None => Vec::new(),
        };
        let ids = s.catalogue.ids("nixlbench", "tcp", Some(size), Some(c));
        ev.low(format!("many-to-one transfers over tcp at c={c}"), pts, ids);
    }
    ev
}

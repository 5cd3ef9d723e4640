//! staircase: E2E TTFT against concurrency beside the tiers many-to-one transfers show at
//! c = 1, 4, 8, 16.

use std::collections::BTreeMap;

use super::assess::{e2e_run, Assessment, Confidence, EvidenceType, NeededRun, Verdict};
use super::e2e::E2eRecord;
use super::evidence::ClaimEvidence;
use super::lowlevel::{LowPoint, Transport};
use super::select::{self, median};
use super::{Inputs, Settings};
use crate::stats::detect_tiers;

/// The concurrencies of the spec's staircase runs.
pub const LEVELS: [u64; 4] = [1, 4, 8, 16];

/// Tier counts of many-to-one runs over `t` per concurrency, at the largest size measured
/// at the highest concurrency (median over runs, rounded down).
pub fn network_tiers(low: &[LowPoint], t: Transport) -> (Option<u64>, BTreeMap<u64, usize>) {
    let size = select::transfers(low, t, true)
        .filter(|p| !p.tier_centres_ms.is_empty())
        .max_by_key(|p| (p.concurrency.unwrap_or(1), p.size))
        .map(|p| p.size);
    let mut out = BTreeMap::new();
    let Some(size) = size else {
        return (None, out);
    };
    for c in LEVELS {
        let counts: Vec<f64> = select::incast_at(low, t, size, c)
            .filter(|p| !p.tier_centres_ms.is_empty())
            .map(|p| p.tier_centres_ms.len() as f64)
            .collect();
        if let Some(n) = median(&counts) {
            out.insert(c, n as usize);
        }
    }
    (Some(size), out)
}

/// E2E TTFT (ms) per concurrency of disaggregated `backend` at the prompt length with the
/// most concurrencies (longest on ties).
pub fn e2e_curve(inputs: &Inputs, backend: &str) -> Option<(u64, BTreeMap<u64, f64>)> {
    select::prompt_lengths(&inputs.e2e, backend)
        .into_iter()
        .map(|t| {
            let curve: BTreeMap<u64, f64> = select::matching(&inputs.e2e, backend, Some(t), None)
                .filter_map(|r| r.concurrency)
                .filter_map(|c| select::ttft(&inputs.e2e, backend, t, c).map(|v| (c, v)))
                .collect();
            (t, curve)
        })
        .filter(|(_, c)| !c.is_empty())
        .max_by_key(|(t, c)| (c.len(), *t))
}

/// Tiers among the raw TTFT samples of `backend` at its highest concurrency at `tokens`.
fn e2e_tiers(inputs: &Inputs, backend: &str, tokens: u64) -> Option<(u64, usize)> {
    let r = select::matching(&inputs.e2e, backend, Some(tokens), None)
        .filter(|r| r.ttft.raw.len() >= 2)
        .max_by_key(|r| r.concurrency.unwrap_or(0))?;
    let samples: Vec<(usize, f64)> = r.ttft.raw.iter().copied().enumerate().collect();
    Some((r.concurrency.unwrap_or(0), detect_tiers(&samples).len()))
}

/// The E2E side: the TTFT curve over efa and the tiers of its raw samples. Returns the tiers
/// to expect (the samples' own, else the team's observation).
fn e2e_side(
    inputs: &Inputs,
    s: &Settings,
    m: &mut BTreeMap<String, f64>,
    text: &mut Vec<String>,
    needed: &mut Vec<NeededRun>,
) -> usize {
    let Some((t, curve)) = e2e_curve(inputs, "efa") else {
        needed.push(e2e_run(
            "disaggregated, backend efa, TTFT at c = 1, 4, 8, 16, one prompt length",
            None,
            "the E2E staircase",
        ));
        return s.observed_tiers;
    };
    for (c, v) in &curve {
        m.insert(format!("e2e_ttft_ms_efa_{t}tok_c{c}"), *v);
    }
    text.push(format!(
        "E2E TTFT over efa at {t} tokens measured at c = {:?}",
        curve.keys().collect::<Vec<_>>()
    ));
    let Some((c, n)) = e2e_tiers(inputs, "efa", t) else {
        return s.observed_tiers;
    };
    m.insert(format!("e2e_ttft_tiers_efa_c{c}"), n as f64);
    text.push(format!("its raw TTFT samples at c={c} fall into {n} tiers"));
    n
}

/// The network side: many-to-one tiers per transport and concurrency, and the efa runs that
/// are missing. Returns the efa tier count at c=16.
fn network_side(
    inputs: &Inputs,
    s: &Settings,
    m: &mut BTreeMap<String, f64>,
    text: &mut Vec<String>,
    needed: &mut Vec<NeededRun>,
) -> Option<usize> {
    for t in [Transport::Efa, Transport::Tcp, Transport::Shm] {
        let (size, tiers) = network_tiers(&inputs.low, t);
        for (c, n) in &tiers {
            m.insert(format!("net_tiers_{}_c{c}", t.name()), *n as f64);
        }
        if let Some(size) = size.filter(|_| !tiers.is_empty()) {
            let per_c: Vec<String> = tiers.iter().map(|(c, n)| format!("c={c}: {n}")).collect();
            text.push(format!(
                "many-to-one over {} at {size} B: tiers {}",
                t.name(),
                per_c.join(", ")
            ));
        }
    }
    let (_, efa) = network_tiers(&inputs.low, Transport::Efa);
    for c in LEVELS.iter().filter(|c| !efa.contains_key(c)) {
        needed.push(s.catalogue.incast_run(
            "efa",
            s.gap_tokens * s.bytes_per_token,
            *c,
            "the staircase at the network level (tiers of many-to-one completion times)",
        ));
    }
    efa.get(&16).copied()
}

/// Judges "EFA shows a 4-tier staircase as concurrency grows".
pub fn assess(inputs: &Inputs, s: &Settings) -> Assessment {
    let mut m = BTreeMap::new();
    let mut needed = Vec::new();
    let mut text = Vec::new();
    let expected = e2e_side(inputs, s, &mut m, &mut text, &mut needed);
    let top = network_side(inputs, s, &mut m, &mut text, &mut needed);
    let (verdict, after, evidence) = match top {
        Some(n) if n == expected && n >= 2 => {
            (Verdict::Supported, Confidence::High, EvidenceType::Measured)
        }
        Some(_) => (
            Verdict::Contradicted,
            Confidence::Low,
            EvidenceType::Measured,
        ),
        None if m.keys().any(|k| k.starts_with("e2e_")) => (
            Verdict::Inconclusive,
            Confidence::Medium,
            EvidenceType::Inferred,
        ),
        None => (
            Verdict::InsufficientData,
            Confidence::Medium,
            EvidenceType::Inferred,
        ),
    };
    let mut explanation = if text.is_empty() {
        "neither an E2E TTFT curve over efa nor many-to-one tiers are in the data".to_string()
    } else {
        text.join("; ")
    };
    match top {
        Some(n) => explanation.push_str(&format!(
            "; at c=16 the network shows {n} tiers against {expected} expected"
        )),
        None => explanation.push_str("; no many-to-one run over efa at c=16"),
    }
    let recommendation = match verdict {
        Verdict::Supported => {
            "the staircase is the network's: spread KV senders over rails or stagger them"
        }
        Verdict::Contradicted => {
            "the staircase is not the network's at this size: look at the scheduler's batching"
        }
        _ => "run the listed many-to-one transfers over efa at c = 1, 4, 8, 16",
    };
    Assessment {
        analysis: "staircase".into(),
        claim: format!(
            "EFA shows a {}-tier staircase as concurrency grows",
            s.observed_tiers
        ),
        confidence_before: Confidence::Medium,
        confidence_after: after,
        evidence_before: EvidenceType::Inferred,
        evidence_type: evidence,
        verdict,
        key_metrics: m,
        explanation,
        recommendation: recommendation.into(),
        needed,
    }
}

/// What the claim rests on: the E2E TTFT curve over efa, and many-to-one transfers over efa
/// at c = 1, 4, 8, 16 with their tiers. Telling n tiers apart states the top 1/n of the
/// samples: the percentile 1 - 1/n.
pub fn evidence<'a>(inputs: &'a Inputs, s: &Settings) -> ClaimEvidence<'a> {
    let tiers = s.observed_tiers.max(2) as f64;
    let mut ev = ClaimEvidence::at(1.0 - 1.0 / tiers);
    let recs: Vec<&E2eRecord> = match e2e_curve(inputs, "efa") {
        Some((t, _)) => select::matching(&inputs.e2e, "efa", Some(t), None).collect(),
        None => Vec::new(),
    };
    ev.e2e(
        "E2E TTFT over efa at c = 1, 4, 8, 16, one prompt length",
        recs,
    );
    let (size, _) = network_tiers(&inputs.low, Transport::Efa);
    let want = s.gap_tokens * s.bytes_per_token;
    for c in LEVELS {
        let pts: Vec<&LowPoint> = match size {
            Some(size) => select::incast_at(&inputs.low, Transport::Efa, size, c)
                .filter(|p| !p.tier_centres_ms.is_empty())
                .collect(),
            None => Vec::new(),
        };
        let ids = s.catalogue.ids("nixlbench", "efa", Some(want), Some(c));
        ev.low(
            format!("many-to-one transfers over efa at c={c}, with tiers"),
            pts,
            ids,
        );
    }
    ev
}

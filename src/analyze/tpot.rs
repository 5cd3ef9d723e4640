//! tpot-independence: TPOT per backend at matched prompt lengths and concurrencies, beside the
//! KV transfer times measured at the network level.

use std::collections::BTreeMap;

use super::assess::{e2e_run, Assessment, Confidence, EvidenceType, NeededRun, Verdict};
use super::e2e::E2eRecord;
use super::evidence::ClaimEvidence;
use super::lowlevel::LowPoint;
use super::select::{self, BACKENDS};
use super::{ms, Inputs, Settings};

/// TPOT per backend averaged over the (prompt, concurrency) points both backends ran.
#[derive(Debug, Clone, PartialEq)]
pub struct TpotMatch {
    /// Matched points.
    pub points: usize,
    /// Mean TPOT over the matched points (ms), per backend in [`BACKENDS`] order.
    pub tpot_ms: [f64; 2],
}

impl TpotMatch {
    /// |a - b| / min(a, b).
    pub fn relative_difference(&self) -> f64 {
        let [a, b] = self.tpot_ms;
        (a - b).abs() / a.min(b)
    }
}

/// TPOT of both backends where both were run with the same prompt length and concurrency.
pub fn matched(inputs: &Inputs) -> Option<TpotMatch> {
    let mut keys: BTreeMap<(u64, u64), ()> = BTreeMap::new();
    for r in &inputs.e2e {
        if let (Some(t), Some(c)) = (r.prompt_tokens, r.concurrency) {
            keys.insert((t, c), ());
        }
    }
    let mut sums = [0.0; 2];
    let mut n = 0;
    for (t, c) in keys.keys() {
        let a = select::tpot(&inputs.e2e, BACKENDS[0], *t, *c);
        let b = select::tpot(&inputs.e2e, BACKENDS[1], *t, *c);
        if let (Some(a), Some(b)) = (a, b) {
            sums[0] += a;
            sums[1] += b;
            n += 1;
        }
    }
    (n > 0 && sums.iter().all(|s| *s > 0.0)).then(|| TpotMatch {
        points: n,
        tpot_ms: [sums[0] / n as f64, sums[1] / n as f64],
    })
}

/// The KV transfer measured over each backend: metrics, one phrase per backend, how many
/// backends are measured, and the runs that would measure the others.
fn transfers(
    inputs: &Inputs,
    s: &Settings,
    m: &mut BTreeMap<String, f64>,
    needed: &mut Vec<NeededRun>,
) -> (Vec<String>, usize) {
    let mut text = Vec::new();
    for b in BACKENDS {
        match select::largest_transfer(&inputs.low, select::transport(b)) {
            Some((size, t)) => {
                m.insert(format!("kv_transfer_ms_{b}_{size}B"), t);
                text.push(format!("{b}: {} for {size} B", ms(t)));
            }
            None => needed.push(s.catalogue.incast_run(
                b,
                s.gap_tokens * s.bytes_per_token,
                1,
                &format!("the KV transfer time over {b}, measured directly"),
            )),
        }
    }
    let measured = text.len();
    (text, measured)
}

/// Verdict, confidence after, evidence type, explanation and recommendation.
type Judgement = (Verdict, Confidence, EvidenceType, String, String);

/// The judgement when both backends' TPOT is there: backend-independent within the tolerance,
/// mechanism measured when both transfers are.
fn judge_matched(
    t: &TpotMatch,
    s: &Settings,
    transfer_text: &[String],
    measured: usize,
) -> Judgement {
    let rel = t.relative_difference();
    let base = format!(
        "over {} matched points TPOT is {} on tcp and {} on efa, {:.1} % apart (tolerance \
         {:.1} %)",
        t.points,
        ms(t.tpot_ms[0]),
        ms(t.tpot_ms[1]),
        rel * 100.0,
        s.tpot_tolerance * 100.0
    );
    let transfers = if transfer_text.is_empty() {
        "no KV transfer time measured yet".to_string()
    } else {
        format!("measured KV transfer times: {}", transfer_text.join(", "))
    };
    if rel > s.tpot_tolerance {
        let evidence = if measured > 0 {
            EvidenceType::Measured
        } else {
            EvidenceType::Inferred
        };
        return (
            Verdict::Contradicted,
            Confidence::Low,
            evidence,
            format!("{base}: TPOT depends on the backend; {transfers}"),
            "look for KV transfers that overlap decode (chunked or layer-wise transfer) on the \
             slower backend"
                .into(),
        );
    }
    if measured == BACKENDS.len() {
        return (
            Verdict::Supported,
            Confidence::High,
            EvidenceType::Measured,
            format!(
                "{base}; {transfers}: the transfer is paid once, inside TTFT, and decode steps \
                 do not wait on the network"
            ),
            "treat backend choice as a TTFT question only".into(),
        );
    }
    (
        Verdict::Supported,
        Confidence::Medium,
        EvidenceType::Inferred,
        format!(
            "{base}; {transfers}; the transfer on the other backend is not measured, so the \
             mechanism is still inferred"
        ),
        "run the listed L1 transfers to measure the KV transfer on both backends".into(),
    )
}

/// Judges "TPOT does not depend on the backend".
pub fn assess(inputs: &Inputs, s: &Settings) -> Assessment {
    let mut m = BTreeMap::new();
    let mut needed = Vec::new();
    let (transfer_text, measured) = transfers(inputs, s, &mut m, &mut needed);
    let (verdict, after, evidence, explanation, recommendation) = match matched(inputs) {
        None => {
            for b in BACKENDS {
                needed.push(e2e_run(
                    &format!("disaggregated, backend {b}, TPOT"),
                    None,
                    "TPOT over both backends at the same prompt length and concurrency",
                ));
            }
            (
                Verdict::InsufficientData,
                Confidence::Medium,
                EvidenceType::Inferred,
                "no prompt length and concurrency was run over both backends with TPOT recorded"
                    .to_string(),
                "run the E2E benchmark over tcp and efa at the same prompt lengths and concurrencies"
                    .to_string(),
            )
        }
        Some(t) => {
            m.insert("tpot_ms_tcp".into(), t.tpot_ms[0]);
            m.insert("tpot_ms_efa".into(), t.tpot_ms[1]);
            m.insert("tpot_relative_difference".into(), t.relative_difference());
            m.insert("matched_points".into(), t.points as f64);
            judge_matched(&t, s, &transfer_text, measured)
        }
    };
    Assessment {
        analysis: "tpot-independence".into(),
        claim: "TPOT does not depend on the backend (EFA vs TCP): the KV transfer finishes \
                before decode"
            .into(),
        confidence_before: Confidence::Medium,
        confidence_after: after,
        evidence_before: EvidenceType::Inferred,
        evidence_type: evidence,
        verdict,
        key_metrics: m,
        explanation,
        recommendation,
        needed,
    }
}

/// What the claim rests on: TPOT of both backends at matched points, and the KV transfer
/// measured over each (its median time: p50).
pub fn evidence<'a>(inputs: &'a Inputs, s: &Settings) -> ClaimEvidence<'a> {
    let mut ev = ClaimEvidence::at(0.5);
    let both: Vec<&E2eRecord> = inputs
        .e2e
        .iter()
        .filter(|r| {
            let (Some(t), Some(c)) = (r.prompt_tokens, r.concurrency) else {
                return false;
            };
            BACKENDS.iter().any(|b| r.is_disagg(b))
                && BACKENDS
                    .iter()
                    .all(|b| select::tpot(&inputs.e2e, b, t, c).is_some())
        })
        .collect();
    ev.e2e(
        "TPOT over tcp and efa at the same prompt length and concurrency",
        both,
    );
    for b in BACKENDS {
        let t = select::transport(b);
        let pts: Vec<&LowPoint> = match select::largest_transfer(&inputs.low, t) {
            Some((size, _)) => select::transfers(&inputs.low, t, false)
                .filter(|p| p.size == size && p.transfer_time_ms.is_some())
                .collect(),
            None => Vec::new(),
        };
        let ids = s.catalogue.ids(
            "nixlbench",
            b,
            Some(s.gap_tokens * s.bytes_per_token),
            Some(1),
        );
        ev.low(format!("the KV transfer over {b}"), pts, ids);
    }
    ev
}

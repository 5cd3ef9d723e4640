//! token-gap: at 12K tokens, disaggregated TTFT minus the prefill estimate against the
//! theoretical and the measured transfer time, split with the L2 profile.

use std::collections::BTreeMap;

use serde::Serialize;

use super::assess::{e2e_run, Assessment, Confidence, EvidenceType, NeededRun, Verdict};
use super::e2e::E2eRecord;
use super::evidence::ClaimEvidence;
use super::lowlevel::LowPoint;
use super::select::{self, BACKENDS};
use super::{ms, Inputs, Settings};

/// Prompt lengths within this share of the claim's are taken as "12K" (12,000 and 12,288).
const TOKEN_SLACK: f64 = 0.03;

/// The 12K TTFT of one backend, split into its parts (ms). Parts that were not measured are
/// `None`; `runtime_overhead_ms` exists only when the transfer was measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decomposition {
    /// E2E backend.
    pub backend: String,
    /// Prompt tokens of the E2E records used.
    pub tokens: u64,
    /// KV bytes of that prompt.
    pub kv_bytes: u64,
    /// Disaggregated TTFT at c=1.
    pub ttft_ms: f64,
    /// Prefill estimate (unified TTFT, or `--prefill-ms`).
    pub prefill_ms: f64,
    /// Where the prefill estimate came from.
    pub prefill_source: String,
    /// TTFT minus prefill.
    pub gap_ms: f64,
    /// KV bytes at the theoretical link rate.
    pub theoretical_ms: f64,
    /// Measured transfer time of the same bytes (steady state), when measured.
    pub measured_transfer_ms: Option<f64>,
    /// TCP slow start.
    pub slow_start_ms: Option<f64>,
    /// Memory registration (MR cache cold).
    pub registration_ms: Option<f64>,
    /// Per-descriptor costs.
    pub descriptors_ms: Option<f64>,
    /// Protocol overhead.
    pub protocol_ms: Option<f64>,
    /// First transfer's excess over the steady state (shown when slow start is not measured
    /// apart).
    pub cold_excess_ms: Option<f64>,
    /// The rest: runtime (vLLM) overhead.
    pub runtime_overhead_ms: Option<f64>,
}

impl Decomposition {
    /// TTFT over the theoretical transfer time: the team's 7.31x.
    pub fn ratio(&self) -> f64 {
        self.ttft_ms / self.theoretical_ms
    }

    /// The stacked parts in drawing order, measured ones only: (name, ms). They add up to
    /// the TTFT.
    pub fn parts(&self) -> Vec<(&'static str, f64)> {
        let mut v = vec![("prefill", self.prefill_ms)];
        v.extend(self.transfer_parts());
        v.extend(self.cost_parts());
        match self.runtime_overhead_ms {
            Some(r) => v.push(("runtime overhead", r)),
            None => v.push((
                "unexplained (transfer not measured)",
                self.gap_ms - self.theoretical_ms,
            )),
        }
        v
    }

    /// The steady transfer: with the profile's per-descriptor cost or remainder, split into
    /// the wire time at the theoretical rate, the descriptors and the rest (protocol, copies,
    /// the path's own rate), adding up to the measured time.
    fn transfer_parts(&self) -> Vec<(&'static str, f64)> {
        match self.measured_transfer_ms {
            Some(t) if self.descriptors_ms.is_some() || self.protocol_ms.is_some() => {
                let d = self.descriptors_ms.unwrap_or(0.0);
                let mut v = vec![("transfer at theoretical rate", self.theoretical_ms)];
                if let Some(d) = self.descriptors_ms {
                    v.push(("per-descriptor cost", d));
                }
                v.push(("protocol, copies, path rate", t - self.theoretical_ms - d));
                v
            }
            Some(t) => vec![("network transfer (measured)", t)],
            None => vec![("transfer at theoretical rate", self.theoretical_ms)],
        }
    }

    /// Costs a request pays beyond the steady transfer: slow start (the cold first transfer
    /// stands for it, with MR cache warm-up, when it is not measured apart) and registration.
    fn cost_parts(&self) -> Vec<(&'static str, f64)> {
        let cold = self
            .slow_start_ms
            .is_none()
            .then_some(self.cold_excess_ms)
            .flatten();
        [
            ("TCP slow start", self.slow_start_ms),
            ("cold first transfer (slow start + MR warm-up)", cold),
            ("MR registration", self.registration_ms),
        ]
        .into_iter()
        .filter_map(|(n, x)| x.map(|x| (n, x)))
        .collect()
    }
}

/// A part's name as a metric key: lower case words joined by `_`.
fn slug(name: &str) -> String {
    name.to_ascii_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

fn near(tokens: u64, target: u64) -> bool {
    (tokens as f64 - target as f64).abs() <= TOKEN_SLACK * target as f64
}

/// The 12K decomposition of `backend`, when its c=1 TTFT and a prefill estimate exist.
pub fn decompose(inputs: &Inputs, s: &Settings, backend: &str) -> Option<Decomposition> {
    let tokens = select::prompt_lengths(&inputs.e2e, backend)
        .into_iter()
        .filter(|t| near(*t, s.gap_tokens))
        .min_by_key(|t| t.abs_diff(s.gap_tokens))?;
    let ttft = select::ttft(&inputs.e2e, backend, tokens, 1)?;
    let (prefill, source) = match s.prefill_ms {
        Some(p) => (p, "--prefill-ms".to_string()),
        None => (
            select::ttft(&inputs.e2e, "none", tokens, 1)?,
            format!("unified TTFT at {tokens} tokens, c=1"),
        ),
    };
    let bytes = tokens * s.bytes_per_token;
    let theoretical = bytes as f64 / (s.rate_gbps(backend)? * 1e9) * 1e3;
    let t = select::transport(backend);
    // The L2 profile's figures first, with its own steady transfer (the descriptor list back
    // to back, which its per-descriptor cost and remainder split); an xfer run's otherwise.
    let mut sized: Vec<_> = select::transfers(&inputs.low, t, false)
        .filter(|p| p.size == bytes && p.profile.is_some())
        .collect();
    sized.sort_by_key(|p| p.bench != "kv_profile");
    let from_profile = sized
        .first()
        .filter(|p| p.bench == "kv_profile")
        .and_then(|p| p.latency_p50_us.map(|us| us / 1e3).or(p.transfer_time_ms));
    let measured = from_profile.or_else(|| select::transfer_ms(&inputs.low, t, bytes));
    let profile = sized
        .first()
        .and_then(|p| p.profile.clone())
        .unwrap_or_default();
    let mut d = Decomposition {
        backend: backend.to_string(),
        tokens,
        kv_bytes: bytes,
        ttft_ms: ttft,
        prefill_ms: prefill,
        prefill_source: source,
        gap_ms: ttft - prefill,
        theoretical_ms: theoretical,
        measured_transfer_ms: measured,
        slow_start_ms: profile.slow_start_ms,
        registration_ms: profile.registration_ms,
        descriptors_ms: profile.descriptors_ms,
        protocol_ms: profile.protocol_ms,
        cold_excess_ms: profile.cold_excess_ms,
        runtime_overhead_ms: None,
    };
    if let Some(m) = measured {
        let costs: f64 = d.cost_parts().iter().map(|(_, v)| v).sum();
        d.runtime_overhead_ms = Some(d.gap_ms - m - costs);
    }
    Some(d)
}

/// One backend's figures: its metrics, its sentence, and its verdict with confidence; the
/// runs that would measure what is missing. The bool says whether the transfer was measured.
fn judge_backend(
    d: &Decomposition,
    s: &Settings,
    m: &mut BTreeMap<String, f64>,
    needed: &mut Vec<NeededRun>,
) -> (String, (Verdict, Confidence), bool) {
    let b = d.backend.as_str();
    let bytes = s.gap_tokens * s.bytes_per_token;
    let k = |n: &str| format!("{n}_{b}");
    m.insert(k("ttft_ms"), d.ttft_ms);
    m.insert(k("prefill_ms"), d.prefill_ms);
    m.insert(k("gap_ms"), d.gap_ms);
    m.insert(k("theoretical_transfer_ms"), d.theoretical_ms);
    m.insert(k("ttft_over_theoretical"), d.ratio());
    m.insert(k("gap_over_theoretical"), d.gap_ms / d.theoretical_ms);
    let mut line = format!(
        "{b} at {} tokens: TTFT {} is {:.2}x the theoretical {} ({} B at {} GB/s; the team saw \
         {:.2}x); prefill {} ({})",
        d.tokens,
        ms(d.ttft_ms),
        d.ratio(),
        ms(d.theoretical_ms),
        d.kv_bytes,
        s.rate_gbps(b).unwrap_or(f64::NAN),
        s.observed_gap,
        ms(d.prefill_ms),
        d.prefill_source
    );
    let holds = (d.ratio() / s.observed_gap - 1.0).abs() <= 0.25;
    let profile_run = |b| {
        s.catalogue.profile_run(
            b,
            bytes,
            "slow start, registration and per-descriptor cost apart",
        )
    };
    let Some(t) = d.measured_transfer_ms else {
        line.push_str(": the transfer itself is not measured");
        needed.push(s.catalogue.incast_run(
            b,
            bytes,
            1,
            "the measured transfer time of the 12K KV-cache",
        ));
        needed.push(profile_run(b));
        let v = if holds {
            Verdict::Inconclusive
        } else {
            Verdict::Contradicted
        };
        return (line, (v, Confidence::Low), false);
    };
    m.insert(k("measured_transfer_ms"), t);
    line.push_str(&format!(", measured transfer {}", ms(t)));
    // The L2 profile's own parts; registration alone comes from any xfer run.
    let profiled =
        d.slow_start_ms.is_some() || d.descriptors_ms.is_some() || d.protocol_ms.is_some();
    for (n, x) in d.parts().iter().skip(1) {
        line.push_str(&format!(", {n} {}", ms(*x)));
        m.insert(k(&format!("{}_ms", slug(n))), *x);
    }
    if d.runtime_overhead_ms.is_some_and(|r| r < 0.0) {
        line.push_str(
            " (the measured parts exceed the gap: the low-level figures were not taken where \
             the E2E ones were)",
        );
    }
    if !profiled {
        needed.push(profile_run(b));
    }
    let v = match (holds, profiled) {
        (false, _) => (Verdict::Contradicted, Confidence::Low),
        (true, true) => (Verdict::Supported, Confidence::High),
        (true, false) => (Verdict::Supported, Confidence::Medium),
    };
    (line, v, true)
}

/// The claim names one ratio, not the backend: the backend that bears it out best decides.
fn best(verdicts: &[(Verdict, Confidence)]) -> (Verdict, Confidence) {
    let rank = |v: &Verdict| match v {
        Verdict::Supported => 3,
        Verdict::Inconclusive => 2,
        Verdict::Contradicted => 1,
        Verdict::InsufficientData => 0,
    };
    verdicts
        .iter()
        .max_by_key(|v| (rank(&v.0), v.1))
        .copied()
        .unwrap_or((Verdict::InsufficientData, Confidence::Low))
}

/// Judges "at 12K tokens, measured TTFT is 7.31x the theoretical transfer time".
pub fn assess(inputs: &Inputs, s: &Settings) -> Assessment {
    let mut m = BTreeMap::new();
    let mut needed = Vec::new();
    let mut text = Vec::new();
    let mut verdicts = Vec::new();
    let mut evidence = EvidenceType::Inferred;
    for b in BACKENDS {
        let Some(d) = decompose(inputs, s, b) else {
            needed.push(e2e_run(
                &format!(
                    "disaggregated backend {b} and unified, TTFT at {} tokens, c=1",
                    s.gap_tokens
                ),
                Some(1),
                "the 12K TTFT and its prefill estimate",
            ));
            continue;
        };
        let (line, v, measured) = judge_backend(&d, s, &mut m, &mut needed);
        if measured {
            evidence = EvidenceType::Measured;
        }
        text.push(line);
        verdicts.push(v);
    }
    let (verdict, after) = best(&verdicts);
    let explanation = if text.is_empty() {
        "no disaggregated TTFT at 12K tokens, c=1, with a prefill estimate (a unified run or \
         --prefill-ms)"
            .to_string()
    } else {
        text.join("; ")
    };
    let recommendation = match verdict {
        Verdict::Supported => "attack the largest part of the split first",
        Verdict::Contradicted => {
            "re-measure the 12K TTFT: the ratio the team saw is not in this data"
        }
        _ => "run the listed transfers and L2 profiles at 12K tokens",
    };
    Assessment {
        analysis: "token-gap".into(),
        claim: format!(
            "at {} tokens measured TTFT is {:.2}x the theoretical transfer time (slow start, MR \
             warm-up, protocol and runtime overhead)",
            s.gap_tokens, s.observed_gap
        ),
        confidence_before: Confidence::Low,
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

/// The low-level points a backend's decomposition rests on: the transfer of the 12K bytes and
/// the L2 profile of them.
fn decomposition_points<'a>(
    inputs: &'a Inputs,
    d: &Decomposition,
) -> (Vec<&'a LowPoint>, Vec<&'a LowPoint>) {
    let t = select::transport(&d.backend);
    let transfer = select::transfers(&inputs.low, t, false)
        .filter(|p| p.size == d.kv_bytes && p.concurrency.unwrap_or(1) == 1)
        .filter(|p| p.transfer_time_ms.is_some() || p.latency_p50_us.is_some())
        .collect();
    let profile = select::transfers(&inputs.low, t, false)
        .filter(|p| p.size == d.kv_bytes && p.profile.is_some())
        .collect();
    (transfer, profile)
}

/// What the claim rests on: per backend the 12K TTFT and its prefill estimate (E2E), the
/// transfer of the 12K bytes and its L2 profile (medians: p50).
pub fn evidence<'a>(inputs: &'a Inputs, s: &Settings) -> ClaimEvidence<'a> {
    let mut ev = ClaimEvidence::at(0.5);
    let bytes = s.gap_tokens * s.bytes_per_token;
    for b in BACKENDS {
        let d = decompose(inputs, s, b);
        let recs: Vec<&E2eRecord> = match &d {
            Some(d) => select::matching(&inputs.e2e, b, Some(d.tokens), Some(1))
                .chain(select::matching(
                    &inputs.e2e,
                    "none",
                    Some(d.tokens),
                    Some(1),
                ))
                .collect(),
            None => Vec::new(),
        };
        ev.e2e(
            format!("TTFT over {b} at 12K tokens, c=1, and its prefill estimate"),
            recs,
        );
        let (transfer, profile) = match &d {
            Some(d) => decomposition_points(inputs, d),
            None => (Vec::new(), Vec::new()),
        };
        let ids = s.catalogue.ids("nixlbench", b, Some(bytes), Some(1));
        ev.low(
            format!("the transfer of the 12K KV-cache over {b}"),
            transfer,
            ids,
        );
        let ids = s.catalogue.profile_run(b, bytes, "").pattern_ids;
        ev.low(
            format!("the L2 profile at 12K tokens over {b}"),
            profile,
            ids,
        );
    }
    ev
}

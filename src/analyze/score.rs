//! The measurement-validity score: a written rubric (this file's [`RUBRIC`], printed in the
//! report), applied per claim to what the claim rests on, every point traced to the files or
//! MLflow runs it came from; the E2E-only baseline scored by the same rubric.

use serde::Serialize;

use super::evidence::{sources, ClaimEvidence, Need, NeedKind};
use super::lowlevel::{LowPoint, PathCheck};
use super::{incast, staircase, token_gap, tpot, Analysis, Inputs, Settings};

/// One line of the rubric: what earns a claim its points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Criterion {
    /// Short name, as the breakdown names it.
    pub id: &'static str,
    /// Points it is worth per claim.
    pub points: u32,
    /// How the points are given.
    pub rule: &'static str,
}

/// The rubric. Each claim can earn 25 points; the overall score is the claims' sum over their
/// maximum, out of 100.
pub const RUBRIC: [Criterion; 5] = [
    Criterion {
        id: "measured-where",
        points: 8,
        rule: "where the claim's network figures were measured: every one on the nodes 8; some \
               on one host only (loopback, shared memory) 3; none measured, the claim inferred \
               from E2E results 0",
    },
    Criterion {
        id: "stock-twin",
        points: 5,
        rule: "the claim's figures that have a stock twin (a stock tool's result of the same \
               pattern id, size within 2 % and concurrency) agree with it within the plan's \
               cross-check tolerance: 5 x agreeing figures / figures, rounded down; any twin \
               outside the tolerance 0",
    },
    Criterion {
        id: "path-confirmed",
        points: 3,
        rule: "every figure's result records that its payload crossed the intended devices \
               (results[].path, status confirmed): 3; any wrong path, or any result without \
               a path record (not confirmed) 0",
    },
    Criterion {
        id: "samples",
        points: 3,
        rule: "every figure rests on at least 5 samples beyond the percentile the claim states \
               (n >= 5 / (1 - p): p50 10, p75 20, p99 500 timed iterations): 3; else 0",
    },
    Criterion {
        id: "runs-present",
        points: 6,
        rule: "the E2E and low-level runs the claim needs are present: 6 x present / needed, \
               rounded down",
    },
];

/// Points a claim can earn.
pub const CLAIM_POINTS: u32 = 25;

/// The points one criterion gave one claim, and where they came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Award {
    /// The criterion's id.
    pub criterion: &'static str,
    /// Points given.
    pub points: u32,
    /// Points it is worth.
    pub max: u32,
    /// Why, in a sentence.
    pub why: String,
    /// The files or MLflow runs behind it.
    pub sources: Vec<String>,
}

/// One claim's score with its breakdown and the runs it needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClaimScore {
    /// The analysis.
    pub analysis: String,
    /// Points earned.
    pub score: u32,
    /// Points possible.
    pub max: u32,
    /// One award per rubric line.
    pub awards: Vec<Award>,
    /// The runs the claim needs, present or not.
    pub needs: Vec<Need>,
}

/// Scores of a set of claims: per claim and overall (out of 100).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scores {
    /// Per claim.
    pub claims: Vec<ClaimScore>,
    /// Overall, out of 100.
    pub score: u32,
    /// Always 100.
    pub max: u32,
}

/// The validity score of an analysis, its rubric, and the inference-only baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Validity {
    /// The rubric applied.
    pub rubric: Vec<Criterion>,
    /// With every input.
    pub measured: Scores,
    /// The same rubric on the E2E results alone (the evidence before low-level measurement).
    pub baseline: Scores,
    /// What the baseline is, and how it relates to the spec's 59/100.
    pub note: String,
}

/// The evidence of one analysis.
fn evidence_of<'a>(a: Analysis, inputs: &'a Inputs, s: &Settings) -> ClaimEvidence<'a> {
    match a {
        Analysis::TpotIndependence => tpot::evidence(inputs, s),
        Analysis::TcpIncast => incast::evidence(inputs, s),
        Analysis::TokenGap => token_gap::evidence(inputs, s),
        Analysis::Staircase => staircase::evidence(inputs, s),
    }
}

/// Scores `analyses` on `inputs`, and the same on the E2E results alone.
pub fn validity(analyses: &[Analysis], inputs: &Inputs, s: &Settings) -> Validity {
    let e2e_only = Inputs {
        e2e: inputs.e2e.clone(),
        ..Inputs::default()
    };
    Validity {
        rubric: RUBRIC.to_vec(),
        measured: scores(analyses, inputs, s),
        baseline: scores(analyses, &e2e_only, s),
        note: "the baseline is the same rubric on the E2E results alone, as the claims stood \
               before low-level measurement; the spec's 59/100 came from an unpublished rubric \
               and is not comparable with either figure"
            .into(),
    }
}

/// Per-claim and overall scores of `analyses` on `inputs`.
pub fn scores(analyses: &[Analysis], inputs: &Inputs, s: &Settings) -> Scores {
    let claims: Vec<ClaimScore> = analyses
        .iter()
        .map(|a| score_claim(a.name(), &evidence_of(*a, inputs, s), &inputs.low, s))
        .collect();
    let earned: u32 = claims.iter().map(|c| c.score).sum();
    let max = CLAIM_POINTS * claims.len() as u32;
    Scores {
        score: (earned * 100).checked_div(max).unwrap_or(0),
        max: 100,
        claims,
    }
}

/// One claim's score by the rubric.
pub fn score_claim(
    name: &str,
    ev: &ClaimEvidence<'_>,
    all: &[LowPoint],
    s: &Settings,
) -> ClaimScore {
    let awards = vec![
        measured_where(ev),
        stock_twin(ev, all, s.crosscheck_tolerance),
        path_confirmed(ev),
        samples(ev),
        runs_present(ev),
    ];
    ClaimScore {
        analysis: name.to_string(),
        score: awards.iter().map(|a| a.points).sum(),
        max: CLAIM_POINTS,
        awards,
        needs: ev.needs.clone(),
    }
}

fn award(i: usize, points: u32, why: String, sources: Vec<String>) -> Award {
    Award {
        criterion: RUBRIC[i].id,
        points: points.min(RUBRIC[i].points),
        max: RUBRIC[i].points,
        why,
        sources,
    }
}

fn names(pts: &[&LowPoint]) -> Vec<String> {
    sources(pts.iter().map(|p| p.source.as_str()))
}

/// On the nodes, on one host, or not measured.
fn measured_where(ev: &ClaimEvidence<'_>) -> Award {
    let all = names(&ev.points);
    if ev.points.is_empty() {
        return award(
            0,
            0,
            "no low-level figure: the claim rests on E2E results alone".into(),
            all,
        );
    }
    let host: Vec<&LowPoint> = ev.points.iter().copied().filter(|p| p.loopback).collect();
    if host.is_empty() {
        return award(
            0,
            8,
            format!("all {} figures measured on the nodes", ev.points.len()),
            all,
        );
    }
    award(
        0,
        3,
        format!(
            "{} of {} figures measured on one host (loopback or shared memory), not on the nodes",
            host.len(),
            ev.points.len()
        ),
        names(&host),
    )
}

/// The figure a twin comparison uses: transfer time, else p50 or mean latency, else bandwidth.
fn figure(p: &LowPoint) -> Option<f64> {
    p.transfer_time_ms
        .or(p.latency_p50_us)
        .or(p.latency_mean_us)
        .or(p.bandwidth_gbps)
        .filter(|v| *v > 0.0)
}

/// The stock twins of a kvxfer point, or kvxfer's twins of a stock point: the other side's
/// results of the same pattern, concurrency and size (within 2 %).
fn twins<'a>(p: &LowPoint, all: &'a [LowPoint]) -> Vec<&'a LowPoint> {
    let Some(id) = &p.pattern_id else {
        return Vec::new();
    };
    let own = p.tool == "kvxfer";
    all.iter()
        .filter(|q| q.pattern_id.as_ref() == Some(id) && (q.tool == "kvxfer") != own)
        .filter(|q| q.concurrency.unwrap_or(1) == p.concurrency.unwrap_or(1))
        .filter(|q| (q.size as f64 - p.size as f64).abs() <= 0.02 * p.size as f64)
        .filter(|q| figure(q).is_some())
        .collect()
}

/// Whether the claim's figures agree with their stock twins.
fn stock_twin(ev: &ClaimEvidence<'_>, all: &[LowPoint], tolerance: f64) -> Award {
    let mut agree = Vec::new();
    let mut disagree = Vec::new();
    for p in &ev.points {
        let tw = twins(p, all);
        let (Some(own), Some(other)) = (
            figure(p),
            super::select::median(&tw.iter().filter_map(|q| figure(q)).collect::<Vec<_>>()),
        ) else {
            continue;
        };
        // kvxfer's figure over the stock tool's, as the cross-check reads it.
        let ratio = if p.tool == "kvxfer" {
            own / other
        } else {
            other / own
        };
        let mut src = vec![p.source.clone()];
        src.extend(tw.iter().map(|q| q.source.clone()));
        if (ratio - 1.0).abs() <= tolerance {
            agree.push(src);
        } else {
            disagree.push((src, ratio));
        }
    }
    let n = ev.points.len() as u32;
    if let Some((src, ratio)) = disagree.first() {
        return award(
            1,
            0,
            format!(
                "{} figure(s) differ from their stock twin beyond ±{:.0} % (kvxfer / stock {ratio:.2} for {})",
                disagree.len(),
                tolerance * 100.0,
                src.join(" vs ")
            ),
            disagree.iter().flat_map(|d| d.0.clone()).collect(),
        );
    }
    if agree.is_empty() {
        let why = if n == 0 {
            "no low-level figure to compare".to_string()
        } else {
            format!("none of the {n} figures has a stock twin beside it")
        };
        return award(1, 0, why, Vec::new());
    }
    let points = 5 * agree.len() as u32 / n.max(1);
    award(
        1,
        points,
        format!(
            "{} of {n} figures agree with their stock twin within ±{:.0} %",
            agree.len(),
            tolerance * 100.0
        ),
        sources(agree.iter().flatten().map(String::as_str)),
    )
}

/// Whether every figure's result confirms its path.
fn path_confirmed(ev: &ClaimEvidence<'_>) -> Award {
    if ev.points.is_empty() {
        return award(2, 0, "no low-level figure".into(), Vec::new());
    }
    let wrong: Vec<&LowPoint> = ev
        .points
        .iter()
        .copied()
        .filter(|p| matches!(p.path, PathCheck::WrongPath { .. }))
        .collect();
    if !wrong.is_empty() {
        return award(
            2,
            0,
            format!(
                "{} result(s) crossed other devices than intended (wrong path)",
                wrong.len()
            ),
            names(&wrong),
        );
    }
    let unknown: Vec<&LowPoint> = ev
        .points
        .iter()
        .copied()
        .filter(|p| p.path == PathCheck::NotConfirmed)
        .collect();
    if !unknown.is_empty() {
        return award(
            2,
            0,
            format!(
                "{} of {} results record no path: not confirmed",
                unknown.len(),
                ev.points.len()
            ),
            names(&unknown),
        );
    }
    award(
        2,
        3,
        "every result confirms its path".into(),
        names(&ev.points),
    )
}

/// Samples needed for a percentile: 5 beyond it.
pub fn samples_needed(percentile: f64) -> u64 {
    (5.0 / (1.0 - percentile.clamp(0.0, 0.999)) - 1e-9).ceil() as u64
}

/// Whether every figure rests on enough samples for the stated percentile.
fn samples(ev: &ClaimEvidence<'_>) -> Award {
    if ev.points.is_empty() {
        return award(3, 0, "no low-level figure".into(), Vec::new());
    }
    let need = samples_needed(ev.percentile);
    let short: Vec<&LowPoint> = ev
        .points
        .iter()
        .copied()
        .filter(|p| p.samples < need)
        .collect();
    let p = format!("p{:.0}", ev.percentile * 100.0);
    if short.is_empty() {
        return award(
            3,
            3,
            format!("every figure rests on at least {need} samples ({p})"),
            names(&ev.points),
        );
    }
    let least = short.iter().map(|q| q.samples).min().unwrap_or(0);
    let have = if least == 0 {
        "does not say how many".to_string()
    } else {
        format!("has {least}")
    };
    award(
        3,
        0,
        format!(
            "{} of {} figures rest on fewer than the {need} samples {p} needs (the smallest {have})",
            short.len(),
            ev.points.len()
        ),
        names(&short),
    )
}

/// The share of the runs the claim needs that are present.
fn runs_present(ev: &ClaimEvidence<'_>) -> Award {
    let total = ev.needs.len() as u32;
    let met: Vec<&Need> = ev.needs.iter().filter(|n| n.met()).collect();
    let missing: Vec<String> = ev
        .needs
        .iter()
        .filter(|n| !n.met())
        .map(|n| match (n.kind, n.pattern_ids.is_empty()) {
            (NeedKind::LowLevel, false) => format!("{} ({})", n.what, n.pattern_ids.join(", ")),
            _ => n.what.clone(),
        })
        .collect();
    let points = (6 * met.len() as u32).checked_div(total).unwrap_or(0);
    let mut why = format!("{} of {total} needed runs present", met.len());
    if !missing.is_empty() {
        why.push_str(&format!("; missing: {}", missing.join("; ")));
    }
    let from = sources(
        met.iter()
            .flat_map(|n| n.sources.iter().map(String::as_str)),
    );
    award(4, points, why, from)
}

#[cfg(test)]
#[path = "score_tests.rs"]
mod tests;

//! What a claim's verdict rests on, in the form the validity rubric scores: the runs the claim
//! needs (present, with the files or MLflow runs that supply them, or missing, with the
//! pattern ids that would), the low-level points its figures come from, and the percentile
//! those figures state.

use serde::Serialize;

use super::e2e::E2eRecord;
use super::lowlevel::LowPoint;

/// Whether a needed run is an E2E (vLLM) run or a low-level measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NeedKind {
    /// The team's end-to-end runs.
    E2e,
    /// kvxfer's or a stock tool's measurement.
    LowLevel,
}

/// One run (or set of runs) a claim needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Need {
    /// What it is, in words.
    pub what: String,
    /// E2E or low-level.
    pub kind: NeedKind,
    /// The files or MLflow runs that supply it; empty when it is missing.
    pub sources: Vec<String>,
    /// Plan patterns that would supply it when missing.
    pub pattern_ids: Vec<String>,
}

impl Need {
    /// A need met by the E2E records `recs` (missing when there are none).
    pub fn e2e<'a>(what: impl Into<String>, recs: impl IntoIterator<Item = &'a E2eRecord>) -> Need {
        Need {
            what: what.into(),
            kind: NeedKind::E2e,
            sources: sources(recs.into_iter().map(|r| r.source.as_str())),
            pattern_ids: Vec::new(),
        }
    }

    /// A need met by the low-level points `pts`, else by running `pattern_ids`.
    pub fn low<'a>(
        what: impl Into<String>,
        pts: impl IntoIterator<Item = &'a LowPoint>,
        pattern_ids: Vec<String>,
    ) -> Need {
        let sources = sources(pts.into_iter().map(|p| p.source.as_str()));
        Need {
            what: what.into(),
            kind: NeedKind::LowLevel,
            pattern_ids: if sources.is_empty() {
                pattern_ids
            } else {
                Vec::new()
            },
            sources,
        }
    }

    /// True when something supplies it.
    pub fn met(&self) -> bool {
        !self.sources.is_empty()
    }
}

/// Distinct names in first-seen order.
pub fn sources<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        if !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    }
    out
}

/// Everything one claim rests on.
#[derive(Debug, Clone, Default)]
pub struct ClaimEvidence<'a> {
    /// The runs the claim needs.
    pub needs: Vec<Need>,
    /// The low-level points the claim's figures come from.
    pub points: Vec<&'a LowPoint>,
    /// The percentile the claim's figures state (0.5: medians).
    pub percentile: f64,
}

impl<'a> ClaimEvidence<'a> {
    /// Evidence stating figures at `percentile`.
    pub fn at(percentile: f64) -> ClaimEvidence<'a> {
        ClaimEvidence {
            percentile,
            ..ClaimEvidence::default()
        }
    }

    /// Adds a low-level need met by `pts`, whose points the claim's figures use.
    pub fn low(&mut self, what: impl Into<String>, pts: Vec<&'a LowPoint>, ids: Vec<String>) {
        self.needs.push(Need::low(what, pts.iter().copied(), ids));
        for p in pts {
            if !self.points.iter().any(|q| std::ptr::eq(*q, p)) {
                self.points.push(p);
            }
        }
    }

    /// Adds an E2E need met by `recs`.
    pub fn e2e<'r>(
        &mut self,
        what: impl Into<String>,
        recs: impl IntoIterator<Item = &'r E2eRecord>,
    ) {
        self.needs.push(Need::e2e(what, recs));
    }
}

//! E2E (vLLM) results against low-level measurements: the four claims judged, plots and a
//! report.

pub mod assess;
pub mod axis;
pub mod compare;
pub mod draw;
pub mod e2e;
pub mod evidence;
pub mod files;
pub mod incast;
pub mod lowlevel;
pub mod markdown;
pub mod mlflow_source;
pub mod palette;
pub mod plots;
pub mod score;
pub mod select;
pub mod sentences;
pub mod staircase;
pub mod token_gap;
pub mod tpot;

use std::path::PathBuf;

use serde::Serialize;

pub use assess::{Assessment, Catalogue, Confidence, EvidenceType, NeededRun, Verdict};
pub use e2e::E2eRecord;
pub use files::Skipped;
pub use lowlevel::{LowPoint, Transport};

/// Errors of reading the analysis inputs and writing its outputs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnalyzeError {
    /// A file or folder could not be read or written (the cause is the error's source, which
    /// an error chain prints once).
    #[error("{}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The MLflow server could not be read (its error says so; an error chain prints it once).
    #[error(transparent)]
    Mlflow(#[from] crate::mlflow::MlflowError),
    /// A plot could not be drawn.
    #[error("plot {name}: {message}")]
    Plot {
        /// The plot's file stem.
        name: String,
        /// The drawing library's message.
        message: String,
    },
}

/// One of the four analyses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Analysis {
    /// TPOT does not depend on the backend.
    TpotIndependence,
    /// TCP degrades 2.72x at c=16 (incast).
    TcpIncast,
    /// At 12K tokens TTFT is 7.31x the theoretical transfer time.
    TokenGap,
    /// EFA shows a 4-tier staircase.
    Staircase,
}

impl Analysis {
    /// All four, in the spec's order.
    pub const ALL: [Analysis; 4] = [
        Analysis::TpotIndependence,
        Analysis::TcpIncast,
        Analysis::TokenGap,
        Analysis::Staircase,
    ];

    /// The name on the command line and in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Analysis::TpotIndependence => "tpot-independence",
            Analysis::TcpIncast => "tcp-incast",
            Analysis::TokenGap => "token-gap",
            Analysis::Staircase => "staircase",
        }
    }

    /// The analysis called `name`.
    pub fn from_name(name: &str) -> Option<Analysis> {
        Analysis::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// Everything the analyses read.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Inputs {
    /// E2E records.
    pub e2e: Vec<E2eRecord>,
    /// Low-level points.
    pub low: Vec<LowPoint>,
    /// Files left out, with the reason.
    pub skipped: Vec<Skipped>,
}

/// The constants and overrides of the analyses.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Prefill time (ms) to use instead of the unified TTFT in token-gap.
    pub prefill_ms: Option<f64>,
    /// KV-cache bytes per token (Qwen2.5-7B: 57,344).
    pub bytes_per_token: u64,
    /// Theoretical EFA rate, 10^9 B/s.
    pub efa_gbps: f64,
    /// Theoretical TCP rate, 10^9 B/s.
    pub tcp_gbps: f64,
    /// The prompt length of the token-gap claim.
    pub gap_tokens: u64,
    /// Relative TPOT difference under which TPOT counts as backend-independent.
    pub tpot_tolerance: f64,
    /// The team's observations: c=16 degradation, 12K gap ratio, staircase tiers.
    pub observed_incast: f64,
    /// See [`Settings::observed_incast`].
    pub observed_gap: f64,
    /// See [`Settings::observed_incast`].
    pub observed_tiers: usize,
    /// The plan whose pattern ids name missing runs.
    pub catalogue: Catalogue,
    /// Largest relative difference between kvxfer and its stock twin that counts as agreement
    /// (the plan's `validation_targets.crosscheck_tolerance`).
    pub crosscheck_tolerance: f64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            prefill_ms: None,
            bytes_per_token: 57_344,
            efa_gbps: 4.4,
            tcp_gbps: 2.9,
            gap_tokens: 12_288,
            tpot_tolerance: 0.05,
            observed_incast: 2.72,
            observed_gap: 7.31,
            observed_tiers: 4,
            catalogue: Catalogue::default(),
            crosscheck_tolerance: 0.1,
        }
    }
}

impl Settings {
    /// The theoretical rate (10^9 B/s) of an E2E backend.
    pub fn rate_gbps(&self, backend: &str) -> Option<f64> {
        match backend {
            "efa" => Some(self.efa_gbps),
            "tcp" => Some(self.tcp_gbps),
            _ => None,
        }
    }
}

/// Runs one analysis. Network figures measured only on one host (loopback, shared memory)
/// stand in for the nodes' network: the verdict is kept, its confidence is at most medium and
/// the explanation says so.
pub fn assess(a: Analysis, inputs: &Inputs, s: &Settings) -> Assessment {
    let mut out = match a {
        Analysis::TpotIndependence => tpot::assess(inputs, s),
        Analysis::TcpIncast => incast::assess(inputs, s),
        Analysis::TokenGap => token_gap::assess(inputs, s),
        Analysis::Staircase => staircase::assess(inputs, s),
    };
    let mut network = inputs
        .low
        .iter()
        .filter(|p| matches!(p.transport, Transport::Tcp | Transport::Efa))
        .peekable();
    let one_host = network.peek().is_some() && network.all(|p| p.loopback);
    if one_host && out.evidence_type == EvidenceType::Measured {
        out.confidence_after = out.confidence_after.min(Confidence::Medium);
        out.explanation.push_str(
            " (the network figures come from one host's loopback, not the nodes' network: \
             repeat them on the nodes)",
        );
    }
    out
}

/// Formats a millisecond figure for explanations.
pub(crate) fn ms(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.2} ms")
    }
}

#[cfg(test)]
mod tests;

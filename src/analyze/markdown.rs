//! The analysis as JSON (`correlation-analysis.json`), a console summary and a Markdown
//! report with the plots.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::plots::PlotFile;
use super::score::{Scores, Validity};
use super::sentences::Sentence;
use super::{Assessment, Skipped};

/// The whole analysis, as written to `correlation-analysis.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always `kvxfer.correlation/v1`.
    pub schema: &'static str,
    /// RFC 3339 time of the analysis.
    pub generated_at: String,
    /// Where the inputs came from.
    pub sources: Vec<String>,
    /// E2E records read.
    pub e2e_records: usize,
    /// Low-level points read.
    pub low_level_points: usize,
    /// Files or runs left out, with the reason.
    pub skipped: Vec<Skipped>,
    /// The spec's three sentences, filled from the measurements.
    pub sentences: Vec<Sentence>,
    /// The measurement-validity score, its rubric and the E2E-only baseline.
    pub validity: Validity,
    /// One per analysis run.
    pub assessments: Vec<Assessment>,
    /// The plots written.
    pub plots: Vec<PlotFile>,
}

fn name<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The console summary: one block per assessment.
pub fn summary(r: &Report) -> String {
    let mut s = format!(
        "inputs: {} E2E records, {} low-level points, {} skipped\n",
        r.e2e_records,
        r.low_level_points,
        r.skipped.len()
    );
    for t in &r.sentences {
        let _ = writeln!(s, "\n{}", t.text);
    }
    let _ = writeln!(
        s,
        "\nvalidity score: {}/100 (E2E results alone: {}/100)",
        r.validity.measured.score, r.validity.baseline.score
    );
    for a in &r.assessments {
        let _ = writeln!(
            s,
            "\n[{}] {}\n  verdict: {}  confidence: {} -> {}  evidence: {}\n  {}\n  next: {}",
            a.analysis,
            a.claim,
            name(&a.verdict),
            name(&a.confidence_before),
            name(&a.confidence_after),
            name(&a.evidence_type),
            a.explanation,
            a.recommendation
        );
        for n in &a.needed {
            let _ = writeln!(s, "  needs: {}", needed_line(n));
        }
    }
    for p in &r.plots {
        let _ = writeln!(s, "\nplot {}: {}", p.png.display(), p.shows);
    }
    s
}

fn needed_line(n: &super::NeededRun) -> String {
    let mut parts = vec![n.tool.clone()];
    if !n.pattern_ids.is_empty() {
        parts.push(format!("patterns {}", n.pattern_ids.join(", ")));
    }
    if let Some(b) = n.size_bytes {
        parts.push(format!("size {b} B"));
    }
    if let Some(c) = n.concurrency {
        parts.push(format!("c={c}"));
    }
    if let Some(k) = &n.kvxfer {
        parts.push(format!("or `{k}`"));
    }
    format!("{} ({})", parts.join(", "), n.why)
}

/// A path for a Markdown link: relative to `base` when under it.
fn link(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The Markdown report; image links are relative to `dir`, where the report is written.
pub fn markdown(r: &Report, dir: &Path) -> String {
    let mut s = String::from("# E2E against low-level measurements\n\n");
    let _ = writeln!(
        s,
        "Generated {} from {}: {} E2E records, {} low-level points ({} inputs skipped).\n",
        r.generated_at,
        r.sources.join(", "),
        r.e2e_records,
        r.low_level_points,
        r.skipped.len()
    );
    sentences(&mut s, &r.sentences);
    claims(&mut s, &r.assessments);
    validity(&mut s, &r.validity);
    for a in &r.assessments {
        assessment(&mut s, a);
    }
    plots(&mut s, &r.plots, dir);
    if !r.skipped.is_empty() {
        s.push_str("\n## Inputs skipped\n\n");
        for k in &r.skipped {
            let _ = writeln!(s, "- {}: {}", k.file, k.reason);
        }
    }
    s
}

/// The talk's three sentences, each with what it rests on.
fn sentences(s: &mut String, ts: &[Sentence]) {
    s.push_str("## What the measurements say\n\n");
    for t in ts {
        let _ = writeln!(s, "- {}", t.text);
        let mut rests = Vec::new();
        if !t.sources.is_empty() {
            rests.push(format!("from {}", t.sources.join(", ")));
        }
        if !t.on_nodes {
            rests.push("not (all) measured on the nodes".to_string());
        }
        if !t.to_run.is_empty() {
            rests.push(format!("to run: {}", t.to_run.join(", ")));
        }
        if !rests.is_empty() {
            let _ = writeln!(s, "  ({})", rests.join("; "));
        }
    }
    s.push('\n');
}

fn claims(s: &mut String, assessments: &[Assessment]) {
    s.push_str("| analysis | claim | verdict | confidence before -> after | evidence |\n");
    s.push_str("|---|---|---|---|---|\n");
    for a in assessments {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} -> {} | {} |",
            a.analysis,
            a.claim,
            name(&a.verdict),
            name(&a.confidence_before),
            name(&a.confidence_after),
            name(&a.evidence_type)
        );
    }
}

/// The score per claim beside the baseline, each claim's breakdown, and the rubric.
fn validity(s: &mut String, v: &Validity) {
    let _ = writeln!(
        s,
        "\n## Measurement validity score: {}/100\n\nE2E results alone, by the same rubric: \
         {}/100 ({}).\n\n| claim | score | E2E alone |\n|---|---|---|",
        v.measured.score, v.baseline.score, v.note
    );
    for (c, b) in v.measured.claims.iter().zip(&v.baseline.claims) {
        let _ = writeln!(
            s,
            "| {} | {}/{} | {}/{} |",
            c.analysis, c.score, c.max, b.score, b.max
        );
    }
    breakdown(s, &v.measured);
    s.push_str("\n### The rubric (per claim; the overall score is the claims' sum out of 100)\n\n");
    s.push_str("| criterion | points | how they are given |\n|---|---|---|\n");
    for c in &v.rubric {
        let _ = writeln!(s, "| {} | {} | {} |", c.id, c.points, c.rule);
    }
}

fn breakdown(s: &mut String, sc: &Scores) {
    for c in &sc.claims {
        let _ = writeln!(
            s,
            "\n### {}: {}/{}\n\n| criterion | points | why | from |\n|---|---|---|---|",
            c.analysis, c.score, c.max
        );
        for a in &c.awards {
            let from = if a.sources.is_empty() {
                "-".to_string()
            } else {
                a.sources.join(", ")
            };
            let _ = writeln!(
                s,
                "| {} | {}/{} | {} | {from} |",
                a.criterion, a.points, a.max, a.why
            );
        }
    }
}

fn assessment(s: &mut String, a: &Assessment) {
    let _ = writeln!(
        s,
        "\n## {}\n\n{}\n\n**Next:** {}\n",
        a.analysis, a.explanation, a.recommendation
    );
    if !a.key_metrics.is_empty() {
        s.push_str("| metric | value |\n|---|---|\n");
        for (k, v) in &a.key_metrics {
            let _ = writeln!(s, "| {k} | {v:.4} |");
        }
    }
    if !a.needed.is_empty() {
        s.push_str("\nRuns that would settle what is missing:\n\n");
        for n in &a.needed {
            let _ = writeln!(s, "- {}", needed_line(n));
        }
    }
}

fn plots(s: &mut String, ps: &[PlotFile], dir: &Path) {
    s.push_str("\n## Plots\n");
    for p in ps {
        let _ = writeln!(
            s,
            "\n### {}\n\n{}. Series: {}.\n\n![{}]({})\n",
            p.title,
            p.shows,
            if p.series.is_empty() {
                "none (no data)".to_string()
            } else {
                p.series.join(", ")
            },
            p.name,
            link(&p.png, dir)
        );
    }
}

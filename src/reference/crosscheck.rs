//! The cross-check: each kvxfer result beside its stock-tool twin, metric by metric, with a
//! verdict against a tolerance and the reason when a pair cannot be compared.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::report::{ResultDoc, SizeResult};

/// The verdict of one comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Within the tolerance.
    Agree,
    /// Outside the tolerance.
    Differ,
    /// The figures do not measure the same thing; `reason` says why.
    NotComparable,
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Pattern id (or the file stem when the document has none).
    pub pattern: String,
    /// Reference tool.
    pub tool: String,
    /// `latency_us.mean` or `bandwidth_gbps`.
    pub metric: String,
    /// Message size in bytes.
    pub message_size: u64,
    /// kvxfer's figure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kvxfer: Option<f64>,
    /// The stock tool's figure, in the same unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<f64>,
    /// kvxfer / reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// The verdict.
    pub verdict: Verdict,
    /// Why a pair is not comparable, or what to keep in mind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The whole report, as written to `crosscheck.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// `kvxfer.crosscheck/v1`.
    pub schema: &'static str,
    /// Relative tolerance (0.10 = 10 %).
    pub tolerance: f64,
    /// Every comparison.
    pub rows: Vec<Row>,
    /// Result files with no twin.
    pub unpaired: Vec<String>,
}

/// The twin of `<stem>.json` is `<stem>.ref.json` or `<stem>.ref.<size>.json`.
fn twin_stem(name: &str) -> Option<(String, bool)> {
    let stem = name.strip_suffix(".json")?;
    match stem.find(".ref") {
        Some(i) if stem[i..] == *".ref" || stem[i + 4..].starts_with('.') => {
            Some((stem[..i].to_string(), true))
        }
        _ => Some((stem.to_string(), false)),
    }
}

/// Reads every result document in `dir` (other JSON files are left alone) and compares.
pub fn crosscheck_dir(dir: &Path, tolerance: f64) -> std::io::Result<Report> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    let mut own: BTreeMap<String, ResultDoc> = BTreeMap::new();
    let mut refs: BTreeMap<String, Vec<ResultDoc>> = BTreeMap::new();
    for p in names {
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let Some((stem, is_ref)) = twin_stem(&name) else {
            continue;
        };
        let Ok(doc) = ResultDoc::from_json(&std::fs::read(&p)?) else {
            continue;
        };
        if is_ref {
            refs.entry(stem).or_default().push(doc);
        } else {
            own.insert(stem, doc);
        }
    }
    let mut report = Report {
        schema: "kvxfer.crosscheck/v1",
        tolerance,
        rows: Vec::new(),
        unpaired: Vec::new(),
    };
    for (stem, doc) in &own {
        match refs.remove(stem) {
            Some(rs) => {
                for r in &rs {
                    report.rows.extend(compare(stem, doc, r, tolerance));
                }
            }
            None => report.unpaired.push(format!("{stem}.json")),
        }
    }
    report
        .unpaired
        .extend(refs.keys().map(|s| format!("{s}.ref.json")));
    Ok(report)
}

/// Compares one kvxfer document with one reference document, size by size.
pub fn compare(stem: &str, own: &ResultDoc, reference: &ResultDoc, tolerance: f64) -> Vec<Row> {
    let pattern = own
        .pattern_id
        .clone()
        .or_else(|| reference.pattern_id.clone())
        .unwrap_or_else(|| stem.to_string());
    let mut rows = Vec::new();
    let first_size = reference.results.first().map(|r| r.message_size);
    for r in &reference.results {
        let Some(k) = own
            .results
            .iter()
            .find(|k| k.message_size == r.message_size)
        else {
            continue;
        };
        let lat = |x: &SizeResult| x.latency_us.map(|l| l.mean).filter(|m| m.is_finite());
        for (metric, kv, rf) in [
            ("latency_us.mean", lat(k), lat(r)),
            ("bandwidth_gbps", k.bandwidth_gbps, r.bandwidth_gbps),
        ] {
            if kv.is_none() && rf.is_none() {
                continue;
            }
            let mut row = Row {
                pattern: pattern.clone(),
                tool: reference.tool.clone(),
                metric: metric.to_string(),
                message_size: r.message_size,
                kvxfer: kv,
                reference: rf,
                ratio: None,
                verdict: Verdict::NotComparable,
                reason: None,
            };
            row.reason = caveat(reference, metric, Some(r.message_size) == first_size);
            let blocking = reference.tool == "ucx_perftest"
                && reference.bench == "tag_bw"
                && metric == "bandwidth_gbps";
            match (kv, rf) {
                (Some(a), Some(b)) if b > 0.0 && !blocking => {
                    let ratio = a / b;
                    row.ratio = Some(ratio);
                    row.verdict = if (ratio - 1.0).abs() <= tolerance {
                        Verdict::Agree
                    } else {
                        Verdict::Differ
                    };
                }
                (Some(a), Some(b)) if b > 0.0 => row.ratio = Some(a / b),
                (None, _) => row.reason = Some("kvxfer did not measure it".into()),
                (_, None) => row.reason = Some(format!("{} does not print it", reference.tool)),
                _ => row.reason = Some("the reference figure is zero".into()),
            }
            rows.push(row);
        }
    }
    rows
}

/// What to keep in mind about a reference figure.
fn caveat(reference: &ResultDoc, metric: &str, first: bool) -> Option<String> {
    match (reference.tool.as_str(), reference.bench.as_str(), metric) {
        ("ucx_perftest", "tag_bw", "bandwidth_gbps") => Some(
            "ucx_perftest tag_bw without a final acknowledgement (builds before Dec 2024, \
             openucx/ucx#10184) times local send completion and overstates bandwidth"
                .into(),
        ),
        ("fi_pingpong", _, _) if first => Some(
            "fi_pingpong has no warm-up: its first size is inflated (ofiwg/libfabric#5568)".into(),
        ),
        ("nixlbench" | "kvbench", _, "latency_us.mean") => Some(
            "nixlbench's latency is the timed span per block, posts and polling included".into(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::LatencySummary;

    fn doc(tool: &str, bench: &str, rows: &[(u64, f64, f64)]) -> ResultDoc {
        let mut d = ResultDoc::new(tool, bench, "L0");
        for &(size, lat, gbps) in rows {
            d.results.push(SizeResult {
                message_size: size,
                iterations: 10,
                latency_us: Some(LatencySummary::mean_only(lat)),
                bandwidth_gbps: Some(gbps),
                ..Default::default()
            });
        }
        d
    }

    #[test]
    fn ratios_and_verdicts() {
        let own = doc("kvxfer", "pingpong", &[(64, 5.0, 0.02), (1024, 10.0, 0.2)]);
        let rf = doc(
            "fi_pingpong",
            "pingpong",
            &[(64, 8.0, 0.0125), (1024, 10.5, 0.19)],
        );
        let rows = compare("p", &own, &rf, 0.10);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].metric, "latency_us.mean");
        assert_eq!(rows[0].ratio, Some(0.625));
        assert_eq!(rows[0].verdict, Verdict::Differ);
        assert!(rows[0].reason.as_deref().unwrap().contains("no warm-up"));
        assert_eq!(rows[2].verdict, Verdict::Agree);
        assert!(rows[2].reason.is_none());
        assert!((rows[3].ratio.unwrap() - 0.2 / 0.19).abs() < 1e-12);
    }

    #[test]
    fn tag_bw_bandwidth_is_not_comparable_and_missing_figures_say_why() {
        let own = doc("kvxfer", "tag_bw", &[(1 << 20, 3.0, 4.0)]);
        let mut rf = doc("ucx_perftest", "tag_bw", &[(1 << 20, 3.0, 4.1)]);
        rf.results[0].latency_us = None;
        let rows = compare("p", &own, &rf, 0.10);
        assert_eq!(rows[0].verdict, Verdict::NotComparable);
        assert_eq!(
            rows[0].reason.as_deref(),
            Some("ucx_perftest does not print it")
        );
        assert_eq!(rows[1].verdict, Verdict::NotComparable);
        assert!(rows[1].ratio.is_some());
        assert!(rows[1].reason.as_deref().unwrap().contains("10184"));
    }

    #[test]
    fn twins_by_file_name() {
        assert_eq!(twin_stem("pll-a.json"), Some(("pll-a".into(), false)));
        assert_eq!(twin_stem("pll-a.ref.json"), Some(("pll-a".into(), true)));
        assert_eq!(twin_stem("pll-a.ref.64.json"), Some(("pll-a".into(), true)));
        assert_eq!(
            twin_stem("pll-a.server.ref.json"),
            Some(("pll-a.server".into(), true))
        );
        assert_eq!(
            twin_stem("pll-a.server.json"),
            Some(("pll-a.server".into(), false))
        );
        assert_eq!(twin_stem("pll-a.txt"), None);
    }
}

//! The cross-check: kvxfer's results beside their stock-tool twins, figure by figure, read by
//! name and put in one unit, with a verdict against a tolerance and the reason when a pair
//! cannot be compared. Repeated runs of a pattern are compared run by run: the ratio is the
//! median of the per-run ratios (see [`paired_ratio`]); the figures shown are medians over runs.
//!
//! Files pair by name: `<id>[.run<k>][.server].json` is kvxfer's, `<id>[.run<k>][.server].ref
//! [.<size>].json` the stock tool's; every run of a pattern and side forms one group.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::report::folder::{self, Limits};
use crate::report::{ResultDoc, SizeResult};

/// The verdict of one comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Within the tolerance.
    Agree,
    /// Outside the tolerance.
    Differ,
    /// The figures do not measure the same thing, or one is missing; `reason` says why.
    NotComparable,
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Pattern id, with ` (server)` for the target side of a two-node run.
    pub pattern: String,
    /// Reference tool.
    pub tool: String,
    /// The figure, named as in the result documents (`extra.usec_per_xfer`, ...).
    pub metric: String,
    /// Unit of `kvxfer` and `reference`.
    pub unit: &'static str,
    /// Message size in bytes.
    pub message_size: u64,
    /// kvxfer's figure (median over its runs).
    pub kvxfer: Option<f64>,
    /// The stock tool's figure in the same unit (median over its runs).
    pub reference: Option<f64>,
    /// kvxfer / reference: the median of per-run ratios where runs pair up, else the ratio of
    /// the medians.
    pub ratio: Option<f64>,
    /// The verdict.
    pub verdict: Verdict,
    /// Why a pair is not comparable, or what to keep in mind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// kvxfer's figure in each run, in file-name order.
    pub kvxfer_runs: Vec<f64>,
    /// The stock tool's figure in each run, in file-name order.
    pub reference_runs: Vec<f64>,
}

/// A group of results with no twin to compare with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unpaired {
    /// Pattern id (and side).
    pub pattern: String,
    /// The tool whose results are alone.
    pub tool: String,
    /// Their files.
    pub files: Vec<String>,
    /// Why nothing was compared.
    pub reason: String,
}

/// The whole report, as written to `crosscheck.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// `kvxfer.crosscheck/v2`.
    pub schema: &'static str,
    /// Relative tolerance (0.10 = 10 %).
    pub tolerance: f64,
    /// How repeated runs are summarised.
    pub statistic: &'static str,
    /// Every comparison.
    pub rows: Vec<Row>,
    /// Results with no twin.
    pub unpaired: Vec<Unpaired>,
    /// JSON files of the folder that were not read as results, with the reason.
    pub skipped: Vec<Skipped>,
}

/// A JSON file left out of the comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// The file's name.
    pub file: String,
    /// Why it was left out.
    pub reason: String,
}

/// Largest result file read (a result document with its raw output stays far below).
const MAX_FILE_BYTES: u64 = 64 << 20;

/// The report's own file, which the folder holds after a first run.
pub const REPORT_FILE: &str = "crosscheck.json";

/// What a result file's name says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileName {
    /// `<id>` or `<id> (server)`.
    group: String,
    /// A stock tool's result.
    is_ref: bool,
}

/// Reads `<id>[.run<k>][.server][.ref[.<size>]].json`; None for any other name.
fn file_name(name: &str) -> Option<FileName> {
    let stem = name.strip_suffix(".json")?;
    let mut parts = stem.split('.');
    let id = parts.next().filter(|s| !s.is_empty())?;
    let (mut server, mut is_ref, mut run, mut size) = (false, false, false, false);
    for p in parts {
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        match p {
            "server" if !server && !is_ref => server = true,
            "ref" if !is_ref => is_ref = true,
            _ if is_ref && !size && digits(p) => size = true,
            _ if !run && !server && !is_ref && p.strip_prefix("run").is_some_and(digits) => {
                run = true
            }
            _ => return None,
        }
    }
    let group = if server {
        format!("{id} (server)")
    } else {
        id.to_string()
    };
    Some(FileName { group, is_ref })
}

/// Result documents of one group, from one side.
#[derive(Default)]
struct Side {
    files: Vec<String>,
    docs: Vec<ResultDoc>,
}

/// The result documents of a folder, sorted into kvxfer's (by group) and the stock tools' (by
/// group and tool), with every file left out and why.
#[derive(Default)]
struct Sorted {
    own: BTreeMap<String, Side>,
    refs: BTreeMap<(String, String), Side>,
    skipped: Vec<Skipped>,
}

impl Sorted {
    /// Reads the folder's own files, one at a time, never a FIFO or a file past the cap.
    fn read(dir: &Path) -> std::io::Result<Sorted> {
        let limits = Limits {
            depth: 0,
            max_bytes: MAX_FILE_BYTES,
        };
        let (found, left) = folder::json_files(dir, limits)?;
        let mut sorted = Sorted {
            skipped: left
                .into_iter()
                .map(|l| Skipped {
                    file: l.name,
                    reason: l.reason,
                })
                .collect(),
            ..Sorted::default()
        };
        for p in found.iter().filter(|p| p.name != REPORT_FILE) {
            if let Err(reason) = sorted.take(p) {
                sorted.skipped.push(Skipped {
                    file: p.name.clone(),
                    reason,
                });
            }
        }
        Ok(sorted)
    }

    /// Reads one file into its side, or says why it is left out.
    fn take(&mut self, p: &folder::Found) -> Result<(), String> {
        let f =
            file_name(&p.name).ok_or("not named <pattern>[.runN][.server][.ref[.SIZE]].json")?;
        let bytes = folder::read_found(p, MAX_FILE_BYTES)?;
        let mut doc = ResultDoc::from_json(&bytes)
            .map_err(|e| format!("not a kvxfer.result/v1 document: {e}"))?;
        if doc.tool == "nixlbench" {
            per_transfer(&mut doc);
        }
        let side = match (f.is_ref, doc.tool == "kvxfer") {
            (false, true) => self.own.entry(f.group).or_default(),
            (true, false) => self.refs.entry((f.group, doc.tool.clone())).or_default(),
            (true, true) => {
                return Err("named as a stock tool's result (.ref) but holds kvxfer's".into())
            }
            (false, false) => {
                return Err(format!(
                    "holds {}'s result but is not named as a stock tool's (.ref)",
                    doc.tool
                ))
            }
        };
        side.files.push(p.name.clone());
        side.docs.push(doc);
        Ok(())
    }
}

/// Why a kvxfer result of `bench` has no stock twin beside it.
fn no_twin(bench: Option<&str>) -> String {
    match bench {
        Some("xfer") => "no stock-tool result beside it: the twin of kvxfer xfer is nixlbench, \
                         which needs an etcd server and a NIXL build (GPU memory, EFA or UCX); a \
                         loopback host has neither"
            .into(),
        Some("kv_profile") => "no stock-tool result beside it: the twin of kvxfer kv profile is \
                               KVBench, which drives nixlbench (an etcd server and a NIXL build) \
                               and cannot drive libfabric"
            .into(),
        _ => "no stock-tool result beside it".into(),
    }
}

/// Reads every result document in `dir` (other JSON files are left alone) and compares.
pub fn crosscheck_dir(dir: &Path, tolerance: f64) -> std::io::Result<Report> {
    let Sorted { own, refs, skipped } = Sorted::read(dir)?;
    let mut report = Report {
        schema: "kvxfer.crosscheck/v2",
        tolerance,
        statistic: "ratio: median of per-run ratios (run k against run k) where every run has \
                    both figures, else the ratio of the medians; figures: medians over runs",
        rows: Vec::new(),
        unpaired: Vec::new(),
        skipped,
    };
    let mut paired = std::collections::BTreeSet::new();
    for ((group, tool), r) in &refs {
        match own.get(group) {
            Some(k) => {
                paired.insert(group.clone());
                report
                    .rows
                    .extend(compare(group, &k.docs, &r.docs, tolerance));
            }
            None => report.unpaired.push(Unpaired {
                pattern: group.clone(),
                tool: tool.clone(),
                files: r.files.clone(),
                reason: format!(
                    "no kvxfer result beside it (kvxfer's measurement of {} did not run)",
                    r.docs.first().map_or("it", |d| d.bench.as_str())
                ),
            }),
        }
    }
    for (group, k) in own.iter().filter(|(g, _)| !paired.contains(*g)) {
        report.unpaired.push(Unpaired {
            pattern: group.clone(),
            tool: "kvxfer".into(),
            files: k.files.clone(),
            reason: no_twin(k.docs.first().map(|d| d.bench.as_str())),
        });
    }
    Ok(report)
}

/// nixlbench's rows as kvxfer xfer counts: one transfer is its descriptor list, `batch`
/// blocks, so the size is block x batch and the mean latency (nixlbench's Avg Lat. is per
/// block) x batch; the block size stays in `extra.block_size`.
fn per_transfer(doc: &mut ResultDoc) {
    for r in &mut doc.results {
        let batch = r
            .extra
            .get("batch_size")
            .and_then(serde_json::Value::as_u64);
        let Some(batch) = batch.filter(|b| *b > 1) else {
            continue;
        };
        r.extra
            .insert("block_size".into(), serde_json::Value::from(r.message_size));
        r.message_size *= batch;
        if let Some(l) = r.latency_us.as_mut() {
            l.mean *= batch as f64;
        }
    }
}

/// One figure both sides may report.
struct Metric {
    name: &'static str,
    unit: &'static str,
    own: fn(&SizeResult) -> Option<f64>,
    reference: fn(&SizeResult) -> Option<f64>,
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn extra(r: &SizeResult, key: &str) -> Option<f64> {
    r.extra.get(key).and_then(serde_json::Value::as_f64)
}

fn mbps(r: &SizeResult) -> Option<f64> {
    r.bandwidth_mbps
        .or(r.bandwidth_gbps.map(|g| g * 1000.0))
        .and_then(finite)
}

/// The fabtests' usec/xfer at its best precision. Both it and MB/sec are printed with two
/// decimals and MB/sec = size / usec_per_xfer, so the larger of the two carries more digits.
fn fabtests_usec(r: &SizeResult) -> Option<f64> {
    let printed = extra(r, "usec_per_xfer").or(r.latency_us.and_then(|l| finite(l.mean)));
    let from_mbps = extra(r, "mb_per_sec")
        .filter(|m| *m > 0.0 && r.message_size > 0)
        .map(|m| r.message_size as f64 / m);
    match (printed, from_mbps, extra(r, "mb_per_sec")) {
        (Some(u), Some(d), Some(m)) if m > u => Some(d),
        (Some(u), _, _) => Some(u),
        (None, d, _) => d,
    }
}

/// The figures compared for a reference tool, the sound one next to the compatibility one.
fn metrics(tool: &str) -> Vec<Metric> {
    let mean = Metric {
        name: "latency_us.mean",
        unit: "us",
        own: |r| r.latency_us.and_then(|l| finite(l.mean)),
        reference: |r| r.latency_us.and_then(|l| finite(l.mean)),
    };
    let p50 = Metric {
        name: "latency_us.p50",
        unit: "us",
        own: |r| r.latency_us.and_then(|l| finite(l.p50)),
        reference: |r| r.latency_us.and_then(|l| finite(l.p50)),
    };
    let bw = Metric {
        name: "bandwidth_mbps",
        unit: "10^6 B/s",
        own: mbps,
        reference: mbps,
    };
    match tool {
        "fi_pingpong" | "fi_rma_pingpong" => vec![
            Metric {
                name: "extra.usec_per_xfer",
                unit: "us",
                own: |r| extra(r, "usec_per_xfer"),
                reference: fabtests_usec,
            },
            p50,
            bw,
        ],
        // tag_lat is judged by the median of the last 2048 half round trips, kvxfer's
        // compatibility figure beside ucx_perftest's percentile column; the overall figures (a
        // mean over the run) are shown but not judged, see `not_comparable`.
        "ucx_perftest" => vec![
            Metric {
                name: "extra.overall_latency_us",
                unit: "us",
                own: |r| extra(r, "overall_latency_us"),
                reference: |r| extra(r, "latency_overall_us"),
            },
            Metric {
                name: "extra.ucx_perftest_percentile_us",
                unit: "us",
                own: |r| extra(r, "ucx_perftest_percentile_us"),
                reference: |r| extra(r, "latency_percentile_last2048_us"),
            },
            p50,
            bw,
        ],
        _ => vec![mean, p50, bw],
    }
}

/// The UCX version kvxfer's runs report (the plan runs the stock tool with the same UCX).
fn ucx_version(own: &[ResultDoc]) -> Option<&str> {
    own.iter()
        .find_map(|d| d.environment.ucx_version.as_deref())
}

/// Why a reference figure cannot stand beside kvxfer's, whatever the numbers say.
fn not_comparable(own: &[ResultDoc], reference: &ResultDoc, metric: &str) -> Option<String> {
    match (reference.tool.as_str(), reference.bench.as_str(), metric) {
        ("ucx_perftest", "tag_bw", "bandwidth_mbps")
            if !ucx_version(own).is_some_and(|v| crate::ucx::version_lacks(v).is_empty()) =>
        {
            Some(format!(
                "ucx_perftest tag_bw without a final acknowledgement (UCX {}: before 1.18, \
                 openucx/ucx#10184) times local send completion and overstates bandwidth",
                ucx_version(own).unwrap_or("version unknown")
            ))
        }
        ("ucx_perftest", "tag_lat", "extra.overall_latency_us" | "bandwidth_mbps") => Some(
            "not judged: both are the run's mean (span / iterations / 2; bandwidth = size / \
             that), which preemption on a shared host skews; tag_lat is judged by \
             extra.ucx_perftest_percentile_us, the median of the last 2048 on both sides"
                .into(),
        ),
        ("kvbench", _, "latency_us.mean" | "latency_us.p50") => Some(
            "KVBench's latency is nixlbench's span per block (descriptor); kvxfer kv profile's \
             is per transfer of the whole iteration: bandwidth is the figure they share"
                .into(),
        ),
        ("fi_rma_pingpong", _, "extra.usec_per_xfer")
            if reference.config.get("op").and_then(|v| v.as_str()) == Some("read") =>
        {
            Some("fi_rma_pingpong read times a whole round trip, not half of one".into())
        }
        _ => None,
    }
}

/// What to keep in mind about a comparable pair.
fn caveat(own: &[ResultDoc], reference: &ResultDoc, metric: &str) -> Option<String> {
    let warmup = own
        .iter()
        .filter_map(|d| d.config.get("warmup").and_then(|v| v.as_u64()))
        .max()
        .unwrap_or(0);
    match (reference.tool.as_str(), metric) {
        ("fi_pingpong", "extra.usec_per_xfer" | "bandwidth_mbps") if warmup > 0 => Some(format!(
            "kvxfer warmed up ({warmup} iterations per size), fi_pingpong has no warm-up: its \
             cold first iterations are counted (ofiwg/libfabric#5568)"
        )),
        ("ucx_perftest", "bandwidth_mbps") if reference.bench == "tag_bw" => Some(format!(
            "both acknowledged at the end of the stream (UCX {} on kvxfer's side; ucx_perftest \
             1.18+ acks tag_bw)",
            ucx_version(own).unwrap_or("?")
        )),
        ("ucx_perftest", "extra.ucx_perftest_percentile_us") => Some(
            "both: the median half round trip of the last 2048 iterations (ucx_perftest's \
             percentile column, typical in old builds; kvxfer's compatibility figure)"
                .into(),
        ),
        ("nixlbench", "latency_us.mean") => Some(
            "nixlbench's latency is the timed span per block, posts and polling included; here \
             per transfer (x batch), as kvxfer's"
                .into(),
        ),
        ("kvbench", "latency_us.mean") => Some(
            "nixlbench's latency is the timed span per block, posts and polling included".into(),
        ),
        _ => None,
    }
}

/// The median of run-by-run ratios (kvxfer's run k over the stock tool's run k) when every
/// run has both figures; None otherwise.
///
/// Run k of each tool runs back to back, so a pair shares the host's state: a shared two-core
/// VM switches between speed modes for minutes at a time (shm 64 B at 0.08, 0.17 or 0.6 us),
/// and the medians of two sets of runs can fall in different modes where no pair does.
pub fn paired_ratio(kvxfer_runs: &[f64], reference_runs: &[f64]) -> Option<f64> {
    if kvxfer_runs.is_empty() || kvxfer_runs.len() != reference_runs.len() {
        return None;
    }
    let ratios: Option<Vec<f64>> = kvxfer_runs
        .iter()
        .zip(reference_runs)
        .map(|(&a, &b)| (b > 0.0 && a.is_finite() && b.is_finite()).then(|| a / b))
        .collect();
    median(&ratios?)
}

/// The median; None for no value.
pub fn median(values: &[f64]) -> Option<f64> {
    crate::stats::median(values)
}

/// Compares kvxfer's runs of a pattern with the stock tool's, size by size, figure by figure.
pub fn compare(pattern: &str, own: &[ResultDoc], refs: &[ResultDoc], tolerance: f64) -> Vec<Row> {
    let Some(first) = refs.first() else {
        return Vec::new();
    };
    let mut sizes: Vec<u64> = refs
        .iter()
        .flat_map(|d| d.results.iter().map(|r| r.message_size))
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let of = |docs: &[ResultDoc], size: u64, f: fn(&SizeResult) -> Option<f64>| -> Vec<f64> {
        docs.iter()
            .flat_map(|d| d.results.iter().filter(move |r| r.message_size == size))
            .filter_map(f)
            .collect()
    };
    let mut rows = Vec::new();
    for size in sizes {
        let measured = own
            .iter()
            .any(|d| d.results.iter().any(|r| r.message_size == size));
        for m in metrics(&first.tool) {
            let kvxfer_runs = of(own, size, m.own);
            let reference_runs = of(refs, size, m.reference);
            let (kv, rf) = (median(&kvxfer_runs), median(&reference_runs));
            if kv.is_none() && rf.is_none() && measured {
                continue;
            }
            let mut row = Row {
                pattern: pattern.to_string(),
                tool: first.tool.clone(),
                metric: m.name.to_string(),
                unit: m.unit,
                message_size: size,
                kvxfer: kv,
                reference: rf,
                ratio: None,
                verdict: Verdict::NotComparable,
                reason: None,
                kvxfer_runs,
                reference_runs,
            };
            if measured {
                judge(&mut row, own, first, tolerance);
            } else {
                row.reason = Some("kvxfer did not measure this size".into());
            }
            rows.push(row);
        }
    }
    rows
}

/// Takes `row`'s ratio and verdict where both figures are there and comparable, else says why
/// not; `reference` is the stock tool's first document.
fn judge(row: &mut Row, own: &[ResultDoc], reference: &ResultDoc, tolerance: f64) {
    let (name, tool) = (row.metric.as_str(), reference.tool.as_str());
    row.reason = match (row.kvxfer, row.reference) {
        (Some(a), Some(b)) if b > 0.0 => {
            let ratio = paired_ratio(&row.kvxfer_runs, &row.reference_runs).unwrap_or(a / b);
            row.ratio = Some(ratio);
            match not_comparable(own, reference, name) {
                Some(why) => Some(why),
                None => {
                    row.verdict = if (ratio - 1.0).abs() <= tolerance {
                        Verdict::Agree
                    } else {
                        Verdict::Differ
                    };
                    caveat(own, reference, name)
                }
            }
        }
        (None, _) => Some(format!("kvxfer's result has no {name}")),
        (_, None) if name == "latency_us.p50" && tool == "ucx_perftest" => Some(
            "ucx_perftest prints no median over all iterations, only its percentile of the \
             last 2048 (compared as extra.ucx_perftest_percentile_us)"
                .into(),
        ),
        (_, None) if name == "latency_us.p50" => {
            Some(format!("{tool} prints no median, only a mean over the run"))
        }
        (_, None) => Some(format!("{tool} does not print it")),
        (_, Some(b)) => Some(format!(
            "the reference figure is {b}, not positive: no ratio is taken"
        )),
    };
}

#[cfg(test)]
mod tests;

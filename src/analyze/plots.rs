//! The five plots of the analysis, built from the inputs and written as PNG and SVG.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::axis::{bytes_label, Units};
use super::draw::{self, BarPlot, Chart, LinePlot, Series};
use super::lowlevel::{LowPoint, Transport};
use super::select::{self, median, BACKENDS};
use super::{staircase, token_gap, AnalyzeError, Inputs, Settings};

/// A plot written to disk.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlotFile {
    /// File stem.
    pub name: String,
    /// Caption.
    pub title: String,
    /// What it shows, in one sentence.
    pub shows: String,
    /// PNG path.
    pub png: PathBuf,
    /// SVG path.
    pub svg: PathBuf,
    /// Legend entries (series or stacked parts).
    pub series: Vec<String>,
}

/// Median of `f` per (series label, size) of `points`, as log10(size) x values.
fn by_series(
    points: &[&LowPoint],
    f: impl Fn(&LowPoint) -> Option<f64>,
    log_y: bool,
) -> Vec<Series> {
    let mut m: BTreeMap<String, BTreeMap<u64, Vec<f64>>> = BTreeMap::new();
    for p in points {
        if let Some(v) = f(p).filter(|v| *v > 0.0 || !log_y) {
            m.entry(p.series())
                .or_default()
                .entry(p.size)
                .or_default()
                .push(v);
        }
    }
    m.into_iter()
        .filter(|(_, sizes)| sizes.keys().all(|s| *s > 0))
        .map(|(name, sizes)| Series {
            name,
            points: sizes
                .into_iter()
                .filter_map(|(s, v)| {
                    let y = median(&v)?;
                    Some(((s as f64).log10(), if log_y { y.log10() } else { y }))
                })
                .collect(),
            marks_only: false,
        })
        .collect()
}

/// The distinct x values of the series: the sizes (or concurrencies) measured.
fn measured_x(series: &[Series]) -> Vec<f64> {
    let mut xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
    xs
}

fn latency(inputs: &Inputs) -> Chart {
    let pts: Vec<&LowPoint> = inputs
        .low
        .iter()
        .filter(|p| p.layer == "L0" || p.bench == "tag_lat")
        .collect();
    let series = by_series(&pts, |p| p.latency_p50_us.or(p.latency_mean_us), true);
    Chart::Lines(LinePlot {
        title: "Latency vs message size (L0 ping-pong, L3 tag_lat), per backend".into(),
        x_label: "message size (bytes, log scale)".into(),
        y_label: "latency p50 (µs, log scale)".into(),
        x_log: true,
        y_log: true,
        x_units: Units::Bytes,
        x_ticks: measured_x(&series),
        series,
    })
}

fn bandwidth(inputs: &Inputs) -> Chart {
    let pts: Vec<&LowPoint> = inputs
        .low
        .iter()
        .filter(|p| p.layer == "L1" || p.bench == "tag_bw")
        .filter(|p| p.concurrency.unwrap_or(1) == 1 || p.scheme.as_deref() == Some("pairwise"))
        .collect();
    let series = by_series(&pts, |p| p.bandwidth_gbps, false);
    Chart::Lines(LinePlot {
        title: "Bandwidth vs transfer size (L1 KV-sized transfers, L3 tag_bw), per backend".into(),
        x_label: "transfer size (bytes, log scale)".into(),
        y_label: "bandwidth (GB/s, 10^9 B/s)".into(),
        x_log: true,
        y_log: false,
        x_units: Units::Bytes,
        x_ticks: measured_x(&series),
        series,
    })
}

/// Points of a plot: (x, y).
type Points = Vec<(f64, f64)>;

/// The network's incast degradation over `t`: (size, ratio per concurrency, tier marks).
fn net_degradation(low: &[LowPoint], t: Transport) -> Option<(u64, Points, Points)> {
    // The largest size with a c=1 baseline and at least one higher concurrency.
    let mut sizes: Vec<u64> = select::transfers(low, t, true)
        .filter(|p| p.transfer_time_ms.is_some() && p.concurrency.unwrap_or(1) > 1)
        .map(|p| p.size)
        .filter(|s| select::transfer_ms(low, t, *s).is_some_and(|b| b > 0.0))
        .collect();
    sizes.sort_unstable();
    let size = *sizes.last()?;
    let base = select::transfer_ms(low, t, size)?;
    let mut per_c: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    let mut marks = Vec::new();
    for p in select::transfers(low, t, true).filter(|p| p.size == size) {
        let c = p.concurrency.unwrap_or(1);
        if let Some(ms) = p.transfer_time_ms {
            per_c.entry(c).or_default().push(ms / base);
        }
        marks.extend(p.tier_centres_ms.iter().map(|t| (c as f64, t / base)));
    }
    let line = per_c
        .into_iter()
        .filter_map(|(c, v)| Some((c as f64, median(&v)?)))
        .collect::<Vec<_>>();
    (line.len() >= 2).then_some((size, line, marks))
}

fn degradation(inputs: &Inputs) -> Chart {
    let mut series = Vec::new();
    for b in BACKENDS {
        if let Some((t, curve)) = staircase::e2e_curve(inputs, b) {
            if let Some(base) = curve.get(&1).filter(|v| **v > 0.0) {
                series.push(Series {
                    name: format!("E2E TTFT {b} ({t} tokens)"),
                    points: curve.iter().map(|(c, v)| (*c as f64, v / base)).collect(),
                    marks_only: false,
                });
            }
        }
    }
    for t in [Transport::Efa, Transport::Tcp, Transport::Shm] {
        if let Some((size, line, marks)) = net_degradation(&inputs.low, t) {
            series.push(Series {
                name: format!(
                    "network many-to-one {} ({})",
                    t.name(),
                    bytes_label(size as f64)
                ),
                points: line,
                marks_only: false,
            });
            if !marks.is_empty() {
                series.push(Series {
                    name: format!("tier centres {}", t.name()),
                    points: marks,
                    marks_only: true,
                });
            }
        }
    }
    Chart::Lines(LinePlot {
        title: "Degradation vs concurrency (TTFT and transfer time over c=1), tiers marked".into(),
        x_label: "concurrency (streams or requests)".into(),
        y_label: "time over c=1 (x)".into(),
        x_log: false,
        y_log: false,
        x_units: Units::Plain,
        x_ticks: measured_x(&series),
        series,
    })
}

fn decomposition(inputs: &Inputs, s: &Settings) -> Chart {
    let ds: Vec<token_gap::Decomposition> = BACKENDS
        .iter()
        .filter_map(|b| token_gap::decompose(inputs, s, b))
        .collect();
    // The title names the prompt lengths the data holds (12,000 and 12,288 both count as 12K).
    let mut tokens: Vec<u64> = ds.iter().map(|d| d.tokens).collect();
    tokens.dedup();
    let at = match tokens.as_slice() {
        [] => format!("{} tokens (no data)", s.gap_tokens),
        [t] => format!("{t} tokens"),
        many => format!(
            "{} tokens",
            many.iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" / ")
        ),
    };
    let bars = ds
        .into_iter()
        .map(|d| {
            (
                format!("{} ({} tokens)", d.backend, d.tokens),
                d.parts()
                    .into_iter()
                    .map(|(n, v)| (n.to_string(), v))
                    .collect(),
            )
        })
        .collect();
    Chart::Bars(BarPlot {
        title: format!("TTFT at {at}, c=1, decomposed"),
        y_label: "time (ms)".into(),
        bars,
    })
}

fn tpot(inputs: &Inputs) -> Chart {
    let mut bars = Vec::new();
    for b in ["none", "tcp", "efa"] {
        let v: Vec<f64> = select::matching(&inputs.e2e, b, None, None)
            .filter_map(|r| r.tpot.central().map(|c| c.0))
            .collect();
        if let Some(m) = median(&v) {
            let name = if b == "none" { "unified" } else { b };
            bars.push((
                name.to_string(),
                vec![("TPOT median over runs".to_string(), m)],
            ));
        }
    }
    Chart::Bars(BarPlot {
        title: "TPOT per backend (median over the E2E runs)".into(),
        y_label: "TPOT (ms)".into(),
        bars,
    })
}

/// Draws the five plots into `dir` (created when missing).
pub fn write_all(inputs: &Inputs, s: &Settings, dir: &Path) -> Result<Vec<PlotFile>, AnalyzeError> {
    std::fs::create_dir_all(dir).map_err(|e| AnalyzeError::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let specs = [
        ("l0-latency-vs-size", latency(inputs),
         "median latency of each L0 ping-pong (and L3 tag_lat) per message size, one line per tool, backend and transport"),
        ("l1-bandwidth-vs-size", bandwidth(inputs),
         "single-stream bandwidth of each KV-sized transfer (and L3 tag_bw) per size, one line per tool, backend and transport"),
        ("degradation-vs-concurrency", degradation(inputs),
         "E2E TTFT and many-to-one transfer time relative to c=1, with the staircase tiers' centres as crosses"),
        ("token-gap-12k", decomposition(inputs, s),
         "the 12K-token TTFT per backend stacked as prefill, network transfer, the L2 profile's parts and the runtime overhead"),
        ("tpot-per-backend", tpot(inputs),
         "median TPOT of the unified, tcp and efa E2E runs"),
    ];
    let mut out = Vec::new();
    for (name, chart, shows) in specs {
        let png = dir.join(format!("{name}.png"));
        let svg = dir.join(format!("{name}.svg"));
        draw::draw(&chart, &png, &svg).map_err(|message| AnalyzeError::Plot {
            name: name.to_string(),
            message,
        })?;
        let (title, series) = match &chart {
            Chart::Lines(p) => (
                p.title.clone(),
                p.series.iter().map(|s| s.name.clone()).collect(),
            ),
            Chart::Bars(p) => {
                let mut parts: Vec<String> = Vec::new();
                for (_, ps) in &p.bars {
                    for (n, _) in ps {
                        if !parts.contains(n) {
                            parts.push(n.clone());
                        }
                    }
                }
                (p.title.clone(), parts)
            }
        };
        out.push(PlotFile {
            name: name.into(),
            title,
            shows: shows.into(),
            png,
            svg,
            series,
        });
    }
    Ok(out)
}

//! ucx_perftest's table (`Final:` rows under a boxed header), one row per size, with p50, p99
//! and max over all iterations appended.

use std::fmt::Write;

use crate::report::{ResultDoc, SizeResult};
use crate::stats::LatencySummary;

const WIDTHS: [usize; 11] = [16, 14, 11, 9, 9, 12, 10, 11, 9, 9, 10];

fn rule(out: &mut String) {
    out.push('+');
    for w in WIDTHS {
        out.push_str(&"-".repeat(w));
        out.push('+');
    }
    out.push('\n');
}

fn cells(out: &mut String, cols: &[&str]) {
    out.push('|');
    for (c, w) in cols.iter().zip(WIDTHS) {
        let _ = write!(out, "{c:^w$}|");
    }
    out.push('\n');
}

fn f(v: Option<f64>, prec: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.prec$}"),
        _ => "-".into(),
    }
}

fn extra(r: &SizeResult, key: &str) -> Option<f64> {
    r.extra.get(key).and_then(|v| v.as_f64())
}

/// The table for a tag_lat or tag_bw document.
pub fn ucx_perf(doc: &ResultDoc) -> String {
    let bw = doc.bench == "tag_bw";
    let mut out = String::new();
    rule(&mut out);
    header(&mut out, bw);
    rule(&mut out);
    for r in &doc.results {
        row(&mut out, r, bw);
    }
    out.push_str(if bw {
        "* ucx_perftest's percentile is not computed for tag_bw; bandwidth runs to the receiver's \
         acknowledgement.\n"
    } else {
        "* ucx_perftest's figure: the median of the last 2048 iterations; p50/p99/max cover all.\n"
    });
    out.push_str(
        "  MiB/s = 2^20 bytes/s (what ucx_perftest prints as MB/s); GB/s = 10^9 bytes/s.\n",
    );
    out.push_str(&super::precision_lines(doc));
    out.push_str(&crate::report::path_lines::summary(doc));
    out.push_str(&super::scheduling_summary(doc));
    out
}

/// The two header lines: the column groups, then each column's name.
fn header(out: &mut String, bw: bool) {
    let what = if bw {
        "overhead (usec)"
    } else {
        "latency (usec)"
    };
    out.push('|');
    let spans: [(usize, &str); 6] = [
        (1, ""),
        (1, ""),
        (3, what),
        (2, "bandwidth (overall)"),
        (1, "msg rate"),
        (3, "all iterations (usec)"),
    ];
    let mut col = 0;
    for (n, title) in spans {
        let w: usize = WIDTHS[col..col + n].iter().sum::<usize>() + n - 1;
        let _ = write!(out, "{title:^w$}|");
        col += n;
    }
    out.push('\n');
    cells(
        out,
        &[
            "size (B)",
            "# iterations",
            "50.0%ile*",
            "average",
            "overall",
            "MiB/s",
            "GB/s",
            "msg/s",
            "p50",
            "p99",
            "max",
        ],
    );
}

/// One size's row, each figure ending at its column's right border as ucx_perftest's rows do.
fn row(out: &mut String, r: &SizeResult, bw: bool) {
    let spread: Option<LatencySummary> = if bw {
        r.extra
            .get("overhead_us")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    } else {
        r.latency_us
    };
    let overall = if bw {
        extra(r, "overall_overhead_us")
    } else {
        extra(r, "overall_latency_us")
    };
    let vals = [
        r.iterations.to_string(),
        f(extra(r, "ucx_perftest_percentile_us"), 3),
        f(spread.map(|l| l.mean), 3),
        f(overall, 3),
        f(extra(r, "bandwidth_mib_s"), 2),
        f(r.bandwidth_gbps, 3),
        f(extra(r, "msg_per_sec").map(f64::round), 0),
        f(spread.map(|l| l.p50), 3),
        f(spread.map(|l| l.p99), 3),
        f(spread.map(|l| l.max), 3),
    ];
    // Each figure ends where its column's right border is, as in ucx_perftest's rows.
    let w0 = WIDTHS[0] + 1;
    let _ = write!(out, "{:<w0$}", format!("Final: {}", r.message_size));
    for (v, w) in vals.iter().zip(&WIDTHS[1..]) {
        let _ = write!(out, "{v:>w$} ");
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn layout_of_a_tag_lat_row() {
        let mut doc = ResultDoc::new("kvxfer", "tag_lat", "L3");
        let mut r = SizeResult {
            message_size: 64,
            iterations: 10000,
            bandwidth_gbps: Some(0.0156),
            latency_us: Some(LatencySummary {
                p50: 4.1,
                p99: 6.25,
                max: 40.0,
                mean: 4.2,
                ..Default::default()
            }),
            ..Default::default()
        };
        r.extra
            .insert("ucx_perftest_percentile_us".into(), json!(4.13));
        r.extra.insert("overall_latency_us".into(), json!(4.18));
        r.extra.insert("bandwidth_mib_s".into(), json!(14.6));
        r.extra.insert("msg_per_sec".into(), json!(239234.4));
        doc.results.push(r);
        let t = ucx_perf(&doc);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("+----------------+--------------+"));
        assert!(lines[1].contains("latency (usec)") && lines[1].contains("bandwidth (overall)"));
        assert!(lines[2].starts_with("|    size (B)    | # iterations | 50.0%ile* |"));
        let row = lines[4];
        assert!(row.starts_with("Final: 64"), "{row}");
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cols,
            [
                "Final:", "64", "10000", "4.130", "4.200", "4.180", "14.60", "0.016", "239234",
                "4.100", "6.250", "40.000"
            ]
        );
        // Every box line has the same width, and the row fits under it.
        assert_eq!(lines[0].len(), lines[2].len());
        assert_eq!(lines[1].len(), lines[0].len());
        assert!(row.len() <= lines[0].len());
        // A figure ends one character before its column's right border.
        let borders: Vec<usize> = lines[2].match_indices('|').map(|(i, _)| i).collect();
        assert_eq!(row.find("4.130").unwrap() + 5, borders[3] - 1);
        assert_eq!(row.find("239234").unwrap() + 6, borders[8] - 1);
        assert!(t.contains("2^20 bytes/s"));
    }

    #[test]
    fn absent_figures_print_as_dashes() {
        let mut doc = ResultDoc::new("kvxfer", "tag_bw", "L3");
        doc.results.push(SizeResult {
            message_size: 1 << 20,
            iterations: 10,
            ..Default::default()
        });
        let t = ucx_perf(&doc);
        assert!(t.contains("overhead (usec)"));
        let row = t.lines().nth(4).unwrap();
        assert_eq!(
            row.split_whitespace().filter(|c| *c == "-").count(),
            9,
            "{row}"
        );
    }
}

//! Terminal tables in the layouts the reference tools' users know.

use std::fmt::Write;

use crate::units::{cnt_str, size_str};

use super::ResultDoc;

mod precision;
mod sched;
mod ucx;
mod xfer;

pub use self::precision::{precision_line, precision_lines, range_str, time_str};
pub use self::sched::{scheduling_lines, scheduling_summary};
pub use self::ucx::ucx_perf;
pub use self::xfer::{cache_lines, xfer};

fn extra_f64(r: &super::SizeResult, key: &str) -> Option<f64> {
    r.extra.get(key).and_then(|v| v.as_f64())
}

fn us_or_dash(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into())
}

/// fi_pingpong's table (`bytes #sent #ack total time MB/sec usec/xfer Mxfers/sec`) with
/// p50, p99 and max of the half round trips appended.
pub fn pingpong(doc: &ResultDoc) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8}{:<8}{:<9}{:<12}{:<9}{:<10}{:<12}{:<10}{:>8}{:>10}{:>10}",
        "bytes",
        "#sent",
        "#ack",
        "total",
        "time",
        "MB/sec",
        "usec/xfer",
        "Mxfers/sec",
        "p50(us)",
        "p99(us)",
        "max(us)"
    );
    for r in &doc.results {
        let lat = r.latency_us.as_ref();
        let _ = writeln!(
            out,
            "{:<8}{:<8}{:<9}{:<8}{:>8.2}s{:>10.2}{:>11.2}{:>11.2}  {:>10}{:>10}{:>10}",
            size_str(r.message_size),
            cnt_str(r.iterations),
            format!("={}", cnt_str(r.iterations)),
            size_str(
                r.extra
                    .get("bytes_counted")
                    .and_then(|v| v.as_u64())
                    .unwrap_or(
                        r.iterations
                            .saturating_mul(r.message_size)
                            .saturating_mul(2)
                    )
            ),
            extra_f64(r, "time_s").unwrap_or(f64::NAN),
            r.bandwidth_mbps.unwrap_or(f64::NAN),
            extra_f64(r, "usec_per_xfer").unwrap_or(f64::NAN),
            extra_f64(r, "mxfers_per_sec").unwrap_or(f64::NAN),
            us_or_dash(lat.map(|l| l.p50)),
            us_or_dash(lat.map(|l| l.p99)),
            us_or_dash(lat.map(|l| l.max)),
        );
    }
    out.push_str(&precision_lines(doc));
    out.push_str(&super::path_lines::summary(doc));
    out.push_str(&scheduling_summary(doc));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::SizeResult;
    use crate::stats::LatencySummary;
    use serde_json::json;

    #[test]
    fn matches_fi_pingpong_layout() {
        let mut doc = ResultDoc::new("kvxfer", "pingpong", "L0");
        let mut r = SizeResult {
            message_size: 64,
            iterations: 1000,
            bandwidth_mbps: Some(89.57),
            latency_us: Some(LatencySummary {
                p50: 0.7,
                p99: 1.25,
                max: 9.5,
                ..Default::default()
            }),
            ..Default::default()
        };
        r.extra.insert("time_s".into(), json!(0.00143));
        r.extra.insert("usec_per_xfer".into(), json!(0.71));
        r.extra.insert("mxfers_per_sec".into(), json!(1.40));
        doc.results.push(r);
        let t = pingpong(&doc);
        let lines: Vec<&str> = t.lines().collect();
        // fi_pingpong's own header and row, column for column, then kvxfer's columns.
        assert!(lines[0].starts_with(
            "bytes   #sent   #ack     total       time     MB/sec    usec/xfer   Mxfers/sec"
        ));
        assert!(
            lines[1].starts_with(
                "64      1k      =1k      125k        0.00s     89.57       0.71       1.40"
            ),
            "{}",
            lines[1]
        );
        assert!(lines[1].trim_end().ends_with("0.70      1.25      9.50"));
        // kvxfer's columns are right-aligned under their headers.
        for (h, v) in [
            ("p50(us)", "0.70"),
            ("p99(us)", "1.25"),
            ("max(us)", "9.50"),
        ] {
            let he = lines[0].find(h).unwrap() + h.len();
            let ve = lines[1].rfind(v).unwrap() + v.len();
            assert_eq!(he, ve, "{h} misaligned");
        }
    }

    #[test]
    fn missing_percentiles_print_as_dashes() {
        let mut doc = ResultDoc::new("kvxfer", "pingpong", "L0");
        doc.results.push(SizeResult {
            message_size: 1024,
            iterations: 10,
            ..Default::default()
        });
        assert!(pingpong(&doc)
            .lines()
            .nth(1)
            .unwrap()
            .trim_end()
            .ends_with("-         -         -"));
    }
}

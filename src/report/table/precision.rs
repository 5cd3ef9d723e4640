//! The line under a table that says how precise each result's median is:
//! `64: p50 11.84 ms +-0.6 % (1234 iterations, stopped by precision; p99 12.10-12.90 ms)`, and
//! for a run in blocks or rounds `... +-4.2 % (1287 iterations in 12 blocks, samples alone
//! +-1.1 %, ...)`.

use std::fmt::Write;

use crate::report::{ResultDoc, SizeResult};
use crate::stats::{P99Interval, Precision};

/// Microseconds in the unit that suits them, two decimals.
pub fn time_str(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.2} us")
    }
}

/// A range of microseconds in the unit that suits its upper end: `12.10-12.90 ms`.
pub fn range_str(lo_us: f64, hi_us: f64) -> String {
    let (scale, unit) = if hi_us >= 1e6 {
        (1e6, "s")
    } else if hi_us >= 1e3 {
        (1e3, "ms")
    } else {
        (1.0, "us")
    };
    format!("{:.2}-{:.2} {unit}", lo_us / scale, hi_us / scale)
}

/// One result's precision line, when it carries `extra.precision` and a median.
pub fn precision_line(r: &SizeResult) -> Option<String> {
    let p = Precision::from_extra(&r.extra)?;
    let p50 = r
        .latency_us
        .as_ref()
        .map(|l| l.p50)
        .filter(|v| v.is_finite())?;
    let hw = p
        .half_width_pct
        .map_or_else(|| "+-? %".to_string(), |h| format!("+-{h:.1} %"));
    let coverage = match p.coverage {
        Some(c) if c < crate::stats::LEVEL => format!(", {:.0} % interval", c * 100.0),
        _ => String::new(),
    };
    let p99 = match &p.p99_interval_us {
        P99Interval::Interval([lo, hi]) => {
            format!("p99 {}", range_str(*lo, *hi))
        }
        P99Interval::TooFew(why) => why.clone(),
    };
    let mut within = String::new();
    if let Some(r) = &p.rounds {
        let _ = write!(within, " in {} rounds", r.p50_us.len());
    }
    if let Some(b) = &p.blocks {
        let _ = write!(within, " in {} blocks", b.count);
    }
    if let Some([lo, hi]) = p.samples_p50_interval_us {
        let hw = 100.0 * (p50 - lo).max(hi - p50) / p50;
        let _ = write!(within, ", samples alone +-{hw:.1} %");
    }
    Some(format!(
        "{}: p50 {} {hw}{coverage} ({} iterations{within}, stopped by {}; {p99})",
        crate::units::human_size(r.message_size),
        time_str(p50),
        p.iterations,
        p.stopped_by.name(),
    ))
}

/// The precision lines of every result that has one.
pub fn precision_lines(doc: &ResultDoc) -> String {
    let mut out = String::new();
    for line in doc.results.iter().filter_map(precision_line) {
        let _ = writeln!(out, "{line}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{new_histogram, BlockInterval, LatencySummary, StoppedBy};

    #[test]
    fn the_line_names_the_median_its_half_width_and_the_stop() {
        let mut h = new_histogram();
        for v in 0..1000u64 {
            h.record(11_800_000 + v * 80).unwrap();
        }
        let mut r = SizeResult {
            message_size: 57_344_000,
            latency_us: LatencySummary::from_histogram(&h),
            ..Default::default()
        };
        // The line of `r` carrying precision `p`.
        let mut line_of = |p: &Precision| {
            r.extra
                .insert("precision".into(), serde_json::to_value(p).unwrap());
            precision_line(&r).unwrap()
        };
        let line = line_of(&Precision::of(
            &h,
            StoppedBy::Precision,
            Some(1.0),
            None,
            None,
        ));
        // The histogram keeps 3 significant digits: 11.84 ms reads as 11.85.
        assert!(line.starts_with("56000K: p50 11.85 ms +-0.0 % "), "{line}");
        assert!(
            line.ends_with("(1000 iterations, stopped by precision; p99 11.89-11.89 ms)"),
            "{line}"
        );
        assert_eq!(range_str(800.0, 1200.0), "0.80-1.20 ms");
        // Blocks whose medians spread wider than the samples' interval: the line states the
        // wider one and the samples' own.
        let blocks = BlockInterval {
            count: 12,
            iterations_each: 80,
            p50_interval_us: [11_300.0, 12_400.0],
            coverage: 0.96,
        };
        let p = Precision::of(&h, StoppedBy::MaxTime, Some(1.0), Some(&blocks), None);
        let line = line_of(&p);
        assert!(
            line.contains("+-4.7 % (1000 iterations in 12 blocks, samples alone +-0.0 %, stopped by max-time;"),
            "{line}"
        );
        // Three rounds on fresh endpoints, each of which reached its precision: their
        // medians' range, what it covers, and that the rounds ran out before the target.
        let rounds = crate::stats::RoundsInterval::of(&[11_000.0, 11_850.0, 13_000.0]).unwrap();
        let p = Precision::of(&h, StoppedBy::Precision, Some(1.0), None, Some(&rounds));
        let line = line_of(&p);
        assert!(
            line.contains("+-9.7 %, 75 % interval (1000 iterations in 3 rounds, samples alone"),
            "{line}"
        );
        assert!(line.contains(", stopped by rounds;"), "{line}");
        // Rounds that agree within the target keep the precision they reached.
        let rounds = crate::stats::RoundsInterval::of(&[11_850.0, 11_855.0, 11_860.0]).unwrap();
        let p = Precision::of(&h, StoppedBy::Precision, Some(1.0), None, Some(&rounds));
        assert_eq!(p.stopped_by, StoppedBy::Precision);
        r.extra.clear();
        assert!(precision_line(&r).is_none());
        assert_eq!(time_str(0.71), "0.71 us");
        assert_eq!(time_str(2_500_000.0), "2.50 s");
    }
}

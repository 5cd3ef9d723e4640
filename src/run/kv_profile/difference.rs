//! A derived difference (slow start, per-descriptor cost, cold against warm) with its interval,
//! and what it says: a cost whose interval holds 0 is `none measured (+-X ms)`, never a negative
//! cost.

use serde::Serialize;

/// A difference of two measured times, microseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// The point estimate (later minus earlier, or the median of per-run differences).
    pub us: f64,
    /// Its interval, when the figures it comes from have one.
    pub interval_us: Option<[f64; 2]>,
    /// The interval's coverage (at least this).
    pub coverage: Option<f64>,
    /// What the interval says, in words.
    pub verdict: String,
    /// What the difference adds to a decomposition: the estimate when the interval lies above
    /// 0, else 0.
    pub cost_us: f64,
}

/// Milliseconds with two decimals.
fn ms(us: f64) -> String {
    format!("{:.2} ms", us / 1e3)
}

impl Difference {
    /// The difference `us` with interval `interval` of coverage `coverage`.
    pub fn new(us: f64, interval: Option<[f64; 2]>, coverage: Option<f64>) -> Difference {
        let (verdict, cost_us) = match interval {
            Some([lo, hi]) => {
                let pm = (hi - lo) / 2.0;
                if lo > 0.0 {
                    (format!("{} (+-{})", ms(us), ms(pm)), us)
                } else if hi < 0.0 {
                    (
                        format!("none measured: lower by {} (+-{})", ms(-us), ms(pm)),
                        0.0,
                    )
                } else {
                    (format!("none measured (+-{})", ms(pm)), 0.0)
                }
            }
            None if us > 0.0 => (format!("{} (no interval)", ms(us)), us),
            None => ("none measured (no interval)".to_string(), 0.0),
        };
        Difference {
            us,
            interval_us: interval,
            coverage,
            verdict,
            cost_us,
        }
    }

    /// `later` minus `earlier`, two medians each with its 95 % interval: the difference's
    /// interval runs from the lowest to the highest difference the two intervals allow (both
    /// hold with at least 90 %).
    pub fn of_medians(
        later: f64,
        later_interval: Option<[f64; 2]>,
        earlier: f64,
        earlier_interval: Option<[f64; 2]>,
    ) -> Difference {
        let interval = later_interval
            .zip(earlier_interval)
            .map(|(a, b)| [a[0] - b[1], a[1] - b[0]]);
        Difference::new(later - earlier, interval, interval.map(|_| 0.90))
    }

    /// One sample `single` minus a median with its interval (the single sample has none of its
    /// own: the interval is the median's).
    pub fn of_sample(single: f64, median: f64, median_interval: Option<[f64; 2]>) -> Difference {
        let interval = median_interval.map(|[lo, hi]| [single - hi, single - lo]);
        Difference::new(single - median, interval, interval.map(|_| 0.95))
    }

    /// The median of per-run differences with its order-statistic interval (the coverage the
    /// number of runs allows: 3 runs 75 %, 5 runs 94 %).
    pub fn of_runs(diffs: &[f64]) -> Option<Difference> {
        let us = crate::stats::median(diffs)?;
        let iv = crate::stats::median_interval(diffs);
        Some(Difference::new(
            us,
            iv.map(|(lo, hi, _)| [lo, hi]),
            iv.map(|x| x.2),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interval_that_holds_zero_measures_nothing() {
        // After 1000 ms idle the median was 23 ms faster, but the intervals overlap.
        let d = Difference::of_medians(
            30_000.0,
            Some([20_000.0, 41_000.0]),
            53_000.0,
            Some([28_000.0, 60_000.0]),
        );
        assert_eq!(d.us, -23_000.0);
        assert_eq!(d.interval_us, Some([-40_000.0, 13_000.0]));
        assert_eq!(d.verdict, "none measured (+-26.50 ms)");
        assert_eq!(d.cost_us, 0.0);
        let d = Difference::of_medians(
            42_000.0,
            Some([41_000.0, 43_000.0]),
            30_000.0,
            Some([29_500.0, 30_500.0]),
        );
        assert_eq!(d.interval_us, Some([10_500.0, 13_500.0]));
        assert_eq!(d.verdict, "12.00 ms (+-1.50 ms)");
        assert_eq!(d.cost_us, 12_000.0);
        let d = Difference::of_sample(10_000.0, 30_000.0, Some([29_000.0, 31_000.0]));
        assert_eq!(d.verdict, "none measured: lower by 20.00 ms (+-1.00 ms)");
        assert_eq!(d.cost_us, 0.0);
        assert_eq!(Difference::new(-5.0, None, None).cost_us, 0.0);
    }

    #[test]
    fn per_run_differences_take_the_median_and_its_interval() {
        let d = Difference::of_runs(&[100.0, 300.0, 210.0, 250.0, 150.0, 120.0]).unwrap();
        assert_eq!(d.us, 180.0);
        assert_eq!(d.interval_us, Some([100.0, 300.0]));
        assert!((d.coverage.unwrap() - 0.96875).abs() < 1e-12);
        assert!(
            d.verdict.starts_with("0.18 ms (+-0.10 ms)"),
            "{}",
            d.verdict
        );
        assert!(Difference::of_runs(&[]).is_none());
    }
}

//! How many timed iterations a run takes (a count, until the median is known to a precision,
//! or as many as fit in a time) and what a result says about the precision it reached.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::blocks::BlockInterval;
use super::interval::{median_ranks, quantile_ranks, values_at, LEVEL};
use super::rounds::RoundsInterval;

/// Limits of a precision-driven run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoLimits {
    /// Stop once the median's 95 % interval is within +-this percent of it.
    pub precision_pct: f64,
    /// Stop after this many timed iterations at most.
    pub max_iterations: u64,
    /// Stop once the timed iterations took this long.
    pub max_time: Duration,
}

impl AutoLimits {
    /// Each of `parts` runs' share of these limits (the precision is each one's own).
    pub fn shared_by(self, parts: u64) -> AutoLimits {
        let parts = parts.max(1);
        AutoLimits {
            precision_pct: self.precision_pct,
            max_iterations: (self.max_iterations / parts).max(1),
            max_time: self.max_time / parts.min(u32::MAX as u64) as u32,
        }
    }
}

/// Default `--precision`: 1 %.
pub const DEFAULT_PRECISION_PCT: f64 = 1.0;
/// Default `--max-iterations` of an auto run.
pub const DEFAULT_MAX_ITERATIONS: u64 = 1_000_000;
/// Default `--max-time` of an auto run.
pub const DEFAULT_MAX_TIME: Duration = Duration::from_secs(60);

impl Default for AutoLimits {
    fn default() -> AutoLimits {
        AutoLimits {
            precision_pct: DEFAULT_PRECISION_PCT,
            max_iterations: DEFAULT_MAX_ITERATIONS,
            max_time: DEFAULT_MAX_TIME,
        }
    }
}

/// How many timed iterations a run takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Count {
    /// This many.
    Fixed(u64),
    /// In batches until the median's interval is narrow enough, or a limit.
    Auto(AutoLimits),
    /// As many as fit in this time (perftest's -D).
    Duration(Duration),
}

impl Count {
    /// What each of `rounds` rounds runs to: an auto count's limits shared by them (the
    /// precision each one's own); a fixed count or a duration is each round's.
    pub fn per_round(self, rounds: u64) -> Count {
        match self {
            Count::Auto(a) => Count::Auto(a.shared_by(rounds)),
            c => c,
        }
    }

    /// The form in fingerprints and configuration blocks: `N`, `auto (+-P %, ...)`, `30s`.
    pub fn name(&self) -> String {
        match self {
            Count::Fixed(n) => n.to_string(),
            Count::Auto(a) => format!(
                "auto (+-{} %, at most {} iterations, {} s)",
                a.precision_pct,
                a.max_iterations,
                a.max_time.as_secs_f64()
            ),
            Count::Duration(d) => format!("{} s", d.as_secs_f64()),
        }
    }

    /// The fixed count, if it is one.
    pub fn fixed(&self) -> Option<u64> {
        match self {
            Count::Fixed(n) => Some(*n),
            _ => None,
        }
    }

    /// The most timed iterations the run may take (a duration: unbounded).
    pub fn at_most(&self) -> u64 {
        match self {
            Count::Fixed(n) => *n,
            Count::Auto(a) => a.max_iterations,
            Count::Duration(_) => u64::MAX,
        }
    }

    /// Checks the count's own numbers; the message names the option.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Count::Fixed(0) => Err("--iterations must be at least 1".into()),
            Count::Auto(a) if !(a.precision_pct > 0.0 && a.precision_pct < 100.0) => Err(format!(
                "--precision {}: a percentage above 0 and below 100",
                a.precision_pct
            )),
            Count::Auto(a) if a.max_iterations < 2 => {
                Err("--max-iterations must be at least 2 for an interval".into())
            }
            Count::Auto(a) if a.max_time.is_zero() => {
                Err("--max-time must be longer than 0".into())
            }
            Count::Duration(d) if d.is_zero() => Err("--duration must be longer than 0".into()),
            _ => Ok(()),
        }
    }
}

/// What ended a run's timed iterations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoppedBy {
    /// The median's interval reached the precision asked for.
    Precision,
    /// `--max-iterations` was reached first.
    MaxIterations,
    /// `--max-time` was reached first.
    MaxTime,
    /// The fixed count was run.
    Fixed,
    /// `--duration` was up.
    Duration,
    /// Every round reached the precision, but the interval over the rounds' medians is wider
    /// than it: the rounds asked for ran out.
    Rounds,
}

impl StoppedBy {
    /// The name in results and tables.
    pub fn name(self) -> &'static str {
        match self {
            StoppedBy::Precision => "precision",
            StoppedBy::MaxIterations => "max-iterations",
            StoppedBy::MaxTime => "max-time",
            StoppedBy::Fixed => "fixed",
            StoppedBy::Duration => "duration",
            StoppedBy::Rounds => "rounds",
        }
    }
}

/// The p99's interval, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum P99Interval {
    /// Its 95 % interval, microseconds.
    Interval([f64; 2]),
    /// `too few samples for p99 (N)`.
    TooFew(String),
}

/// What a result says about its own precision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Precision {
    /// The median's distribution-free interval (order statistics), microseconds; absent with
    /// fewer than 2 samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_interval_us: Option<[f64; 2]>,
    /// The interval's farther end from the median, percent of the median.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_width_pct: Option<f64>,
    /// The interval's coverage: 0.95 or more, less only with too few samples to reach it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<f64>,
    /// Timed iterations (samples).
    pub iterations: u64,
    /// What ended the timed iterations.
    pub stopped_by: StoppedBy,
    /// The precision asked for (auto runs), percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_pct: Option<f64>,
    /// The p99's 95 % interval, or `too few samples for p99 (N)`.
    pub p99_interval_us: P99Interval,
    /// The median's interval from the samples alone, microseconds, stated where the blocks'
    /// interval is wider (`p50_interval_us` then spans both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples_p50_interval_us: Option<[f64; 2]>,
    /// The run's samples in blocks of equal iterations and the median's interval over their
    /// medians (runs in batches: auto and duration counts, 10 blocks or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<BlockInterval>,
    /// The median's interval over the medians of rounds on fresh endpoints (`--rounds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounds: Option<RoundsInterval>,
}

/// The median's half-width in percent and its coverage from the histogram's samples, None
/// with fewer than 2.
pub fn median_half_width(h: &Histogram<u64>) -> Option<(f64, f64)> {
    stated_interval(h, &[]).map(|s| (s.half_width_pct, s.coverage))
}

/// The median's interval a result states: the samples' own, widened to the blocks' and the
/// rounds' where those are wider (each covers the median at its level, so together they do).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stated {
    /// Microseconds.
    pub interval_us: [f64; 2],
    /// The samples' own, microseconds.
    pub samples_us: [f64; 2],
    /// The farther end from the median, percent of the median.
    pub half_width_pct: f64,
    /// The coverage of the interval of the widest scope: the rounds', else the blocks', else
    /// the samples'.
    pub coverage: f64,
}

/// The median's stated interval from the samples in `h` (ns), widened to each of the `wider`
/// intervals (microseconds, with their coverage), narrowest scope first (the blocks', then the
/// rounds'); None with fewer than 2 samples.
pub fn stated_interval(h: &Histogram<u64>, wider: &[([f64; 2], f64)]) -> Option<Stated> {
    let r = median_ranks(h.len(), LEVEL)?;
    let (lo, hi) = values_at(h, &r)?;
    let p50 = h.value_at_quantile(0.5) as f64 / 1000.0;
    if p50 <= 0.0 {
        return None;
    }
    let samples_us = [lo as f64 / 1000.0, hi as f64 / 1000.0];
    let mut interval_us = samples_us;
    for ([lo, hi], _) in wider {
        interval_us = [interval_us[0].min(*lo), interval_us[1].max(*hi)];
    }
    // The samples' coverage holds only if they are independent; the interval of the widest
    // scope (the last) is the one whose premise the others do not contradict.
    let coverage = wider.last().map_or(r.coverage, |w| w.1);
    let far = (p50 - interval_us[0]).max(interval_us[1] - p50);
    Some(Stated {
        interval_us,
        samples_us,
        half_width_pct: 100.0 * far / p50,
        coverage,
    })
}

impl Precision {
    /// The precision of the samples in `h` (nanoseconds), of their `blocks` and of the
    /// `rounds` they ran in, ended by `stopped_by`.
    pub fn of(
        h: &Histogram<u64>,
        stopped_by: StoppedBy,
        target_pct: Option<f64>,
        blocks: Option<&BlockInterval>,
        rounds: Option<&RoundsInterval>,
    ) -> Precision {
        let us = |ns: u64| ns as f64 / 1000.0;
        let n = h.len();
        let p99 = quantile_ranks(n, 0.99, LEVEL).and_then(|r| values_at(h, &r));
        let wider: Vec<([f64; 2], f64)> = blocks
            .map(|b| (b.p50_interval_us, b.coverage))
            .into_iter()
            .chain(rounds.map(|r| (r.p50_interval_us, r.coverage)))
            .collect();
        let stated = stated_interval(h, &wider);
        // Precision is claimed only where the stated interval reached it.
        let stopped_by = match (stopped_by, rounds, target_pct, stated) {
            (StoppedBy::Precision, Some(_), Some(t), Some(s)) if s.half_width_pct > t => {
                StoppedBy::Rounds
            }
            _ => stopped_by,
        };
        let widened = stated.filter(|s| s.interval_us != s.samples_us);
        Precision {
            p50_interval_us: stated.map(|s| s.interval_us),
            half_width_pct: stated.map(|s| s.half_width_pct),
            coverage: stated.map(|s| s.coverage),
            iterations: n,
            stopped_by,
            target_pct,
            p99_interval_us: match p99 {
                Some((lo, hi)) => P99Interval::Interval([us(lo), us(hi)]),
                None => P99Interval::TooFew(format!("too few samples for p99 ({n})")),
            },
            samples_p50_interval_us: widened.map(|s| s.samples_us),
            blocks: blocks.copied(),
            rounds: rounds.cloned(),
        }
    }

    /// The target of `count`, for [`Precision::of`].
    pub fn target_of(count: &Count) -> Option<f64> {
        match count {
            Count::Auto(a) => Some(a.precision_pct),
            _ => None,
        }
    }

    /// Reads the block a result carries in its `extra.precision`.
    pub fn from_extra(extra: &serde_json::Map<String, serde_json::Value>) -> Option<Precision> {
        serde_json::from_value(extra.get("precision")?.clone()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;

    #[test]
    fn auto_limits_are_shared_and_the_precision_is_each_ones_own() {
        let a = AutoLimits {
            precision_pct: 1.5,
            max_iterations: 1000,
            max_time: Duration::from_secs(60),
        };
        let six = a.shared_by(6);
        assert_eq!(six.precision_pct, 1.5);
        assert_eq!(six.max_iterations, 166, "never more than the whole in all");
        assert_eq!(six.max_time, Duration::from_secs(10));
        assert_eq!(a.shared_by(1).max_iterations, 1000);
        assert_eq!(a.shared_by(0).max_time, a.max_time, "no division by zero");
        assert_eq!(
            a.shared_by(5000).max_iterations,
            1,
            "at least one iteration each"
        );
    }

    #[test]
    fn precision_of_known_samples() {
        let mut h = new_histogram();
        for v in 1..=100u64 {
            h.record(10 * v).unwrap(); // 10..1000 ns, each exact in the histogram
        }
        let p = Precision::of(&h, StoppedBy::Fixed, None, None, None);
        // Ranks 40 and 61 of 100: 400 ns and 610 ns around a median of 500 ns.
        assert_eq!(p.p50_interval_us, Some([0.4, 0.61]));
        assert!((p.half_width_pct.unwrap() - 22.0).abs() < 1e-9);
        assert_eq!(p.iterations, 100);
        assert_eq!(
            p.p99_interval_us,
            P99Interval::TooFew("too few samples for p99 (100)".into())
        );
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["stopped_by"], "fixed");
        assert_eq!(json["p99_interval_us"], "too few samples for p99 (100)");
        assert!(json.get("target_pct").is_none());
        let back: Precision = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn counts_check_their_numbers() {
        assert!(Count::Fixed(0).check().is_err());
        assert!(Count::Fixed(1).check().is_ok());
        let a = AutoLimits::default();
        assert!(Count::Auto(a).check().is_ok());
        for bad in [0.0, 100.0, f64::NAN] {
            let c = Count::Auto(AutoLimits {
                precision_pct: bad,
                ..a
            });
            assert!(c.check().unwrap_err().contains("--precision"));
        }
        assert!(Count::Duration(Duration::ZERO).check().is_err());
        assert_eq!(Count::Duration(Duration::from_secs(30)).name(), "30 s");
        assert_eq!(StoppedBy::MaxIterations.name(), "max-iterations");
        assert_eq!(
            serde_json::to_value(StoppedBy::MaxTime).unwrap(),
            "max-time"
        );
    }
}

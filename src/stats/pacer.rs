//! The batches of a run whose count is not fixed: after each, whether to go on and with how
//! many iterations, from the samples so far and the time they took.

use std::time::Duration;

use hdrhistogram::Histogram;

use super::precision::{median_half_width, AutoLimits, Count, StoppedBy};
use super::LEVEL;

/// The first batch of an auto run: enough samples for a 95 % interval of the median (6) many
/// times over, few enough that a 50 ms transfer spends about a second on it.
pub const FIRST_AUTO_BATCH: u64 = 24;
/// The first batch of a duration run, from which the time per iteration is estimated.
pub const FIRST_DURATION_BATCH: u64 = 4;
/// A batch at most this many times the iterations done so far, so the estimate that sized it
/// is checked again before it is trusted with much more.
const GROWTH: u64 = 3;

/// Decides the batches of one run.
#[derive(Debug, Clone)]
pub struct Pacer {
    count: Count,
    done: u64,
    stopped: Option<StoppedBy>,
}

impl Pacer {
    /// A run of `count`, nothing done yet.
    pub fn new(count: Count) -> Pacer {
        Pacer {
            count,
            done: 0,
            stopped: None,
        }
    }

    /// What ended the run, once it ended.
    pub fn stopped_by(&self) -> Option<StoppedBy> {
        self.stopped
    }

    /// Timed iterations asked for so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// The next batch's size, given the samples so far (`h`) and the time the timed iterations
    /// took (`timed`); 0 once the run is over ([`stopped_by`](Self::stopped_by) says why).
    pub fn next(&mut self, h: &Histogram<u64>, timed: Duration) -> u64 {
        if self.stopped.is_some() {
            return 0;
        }
        let n = match self.count {
            Count::Fixed(n) => self.fixed(n),
            Count::Auto(a) => self.auto(&a, h, timed),
            Count::Duration(d) => self.duration(d, timed),
        };
        self.done = self.done.saturating_add(n);
        n
    }

    fn stop(&mut self, why: StoppedBy) -> u64 {
        self.stopped = Some(why);
        0
    }

    fn fixed(&mut self, n: u64) -> u64 {
        if self.done >= n {
            return self.stop(StoppedBy::Fixed);
        }
        n - self.done
    }

    fn auto(&mut self, a: &AutoLimits, h: &Histogram<u64>, timed: Duration) -> u64 {
        if self.done == 0 {
            return FIRST_AUTO_BATCH.min(a.max_iterations);
        }
        let hw = median_half_width(h);
        if let Some((pct, coverage)) = hw {
            if coverage >= LEVEL && pct <= a.precision_pct {
                return self.stop(StoppedBy::Precision);
            }
        }
        if self.done >= a.max_iterations {
            return self.stop(StoppedBy::MaxIterations);
        }
        if timed >= a.max_time {
            return self.stop(StoppedBy::MaxTime);
        }
        // The interval narrows as 1 / sqrt(n): the samples that would bring it to the target,
        // a fifth more for luck, at least a quarter of those done, at most GROWTH times them.
        let wanted = match hw {
            Some((pct, _)) => {
                let factor = (pct / a.precision_pct).powi(2) * 1.2;
                ((self.done as f64 * factor) as u64).saturating_sub(self.done)
            }
            None => self.done,
        };
        let more = wanted
            .clamp((self.done / 4).max(1), self.done.saturating_mul(GROWTH))
            .min(a.max_iterations - self.done);
        more.min(fit(self.done, timed, a.max_time))
    }

    fn duration(&mut self, d: Duration, timed: Duration) -> u64 {
        if self.done == 0 {
            return FIRST_DURATION_BATCH;
        }
        if timed >= d {
            return self.stop(StoppedBy::Duration);
        }
        fit(self.done, timed, d).min(self.done.saturating_mul(GROWTH).max(1))
    }
}

/// How many more iterations fit before `limit` at the rate of `done` in `timed` (at least 1).
fn fit(done: u64, timed: Duration, limit: Duration) -> u64 {
    let per = timed.as_secs_f64() / done.max(1) as f64;
    let left = limit.saturating_sub(timed).as_secs_f64();
    if per <= 0.0 {
        return done.max(1);
    }
    ((left / per) as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;

    fn spread(h: &mut Histogram<u64>, n: u64, centre: u64, width: u64) {
        for i in 0..n {
            h.record(centre - width / 2 + (i * 7919) % width.max(1))
                .unwrap();
        }
    }

    #[test]
    fn fixed_is_one_batch() {
        let mut p = Pacer::new(Count::Fixed(100));
        let h = new_histogram();
        assert_eq!(p.next(&h, Duration::ZERO), 100);
        assert_eq!(p.stopped_by(), None);
        assert_eq!(p.next(&h, Duration::from_secs(1)), 0);
        assert_eq!(p.stopped_by(), Some(StoppedBy::Fixed));
        assert_eq!(p.next(&h, Duration::from_secs(1)), 0);
        assert_eq!(p.done(), 100);
    }

    #[test]
    fn auto_stops_at_the_precision() {
        let mut p = Pacer::new(Count::Auto(AutoLimits::default()));
        let mut h = new_histogram();
        assert_eq!(p.next(&h, Duration::ZERO), FIRST_AUTO_BATCH);
        // Samples spread +-50 % around 10 us: the interval is far wider than 1 %, so more
        // come, at most three times those done.
        spread(&mut h, FIRST_AUTO_BATCH, 10_000, 10_000);
        let more = p.next(&h, Duration::from_millis(1));
        assert_eq!(more, 3 * FIRST_AUTO_BATCH);
        // Samples all within 0.5 % of each other: the interval is too.
        let mut tight = new_histogram();
        spread(&mut tight, 200, 100_000, 1_000);
        assert_eq!(p.next(&tight, Duration::from_millis(2)), 0);
        assert_eq!(p.stopped_by(), Some(StoppedBy::Precision));
    }

    #[test]
    fn auto_names_the_limit_that_stopped_it() {
        let mut h = new_histogram();
        spread(&mut h, 50, 10_000, 10_000);
        let limits = AutoLimits {
            max_iterations: 30,
            ..AutoLimits::default()
        };
        let mut p = Pacer::new(Count::Auto(limits));
        assert_eq!(p.next(&h, Duration::ZERO), FIRST_AUTO_BATCH);
        assert_eq!(p.next(&h, Duration::from_millis(1)), 6);
        assert_eq!(p.next(&h, Duration::from_millis(1)), 0);
        assert_eq!(p.stopped_by(), Some(StoppedBy::MaxIterations));
        let limits = AutoLimits {
            max_time: Duration::from_secs(2),
            ..AutoLimits::default()
        };
        let mut p = Pacer::new(Count::Auto(limits));
        p.next(&h, Duration::ZERO);
        // 24 iterations in 1.5 s: 8 more fit in the 0.5 s left.
        assert_eq!(p.next(&h, Duration::from_millis(1500)), 8);
        assert_eq!(p.next(&h, Duration::from_millis(2000)), 0);
        assert_eq!(p.stopped_by(), Some(StoppedBy::MaxTime));
    }

    #[test]
    fn duration_fills_the_time() {
        let h = new_histogram();
        let mut p = Pacer::new(Count::Duration(Duration::from_secs(10)));
        assert_eq!(p.next(&h, Duration::ZERO), FIRST_DURATION_BATCH);
        // 4 in 1 ms: growth caps the next batch at 12.
        assert_eq!(p.next(&h, Duration::from_millis(1)), 12);
        // 16 in 8 s: 4 more fit in the 2 s left.
        assert_eq!(p.next(&h, Duration::from_secs(8)), 4);
        assert_eq!(p.next(&h, Duration::from_secs(10)), 0);
        assert_eq!(p.stopped_by(), Some(StoppedBy::Duration));
        assert_eq!(p.done(), 20);
    }
}

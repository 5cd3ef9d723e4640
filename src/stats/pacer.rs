//! The batches of a run whose count is not fixed: after each, whether to go on and with how
//! many iterations, from the samples so far and the time they took. Such a run goes in blocks
//! of equal iterations, one batch each, so that its precision also covers how the samples
//! drifted during the run ([`Blocks`]).

use std::time::Duration;

use hdrhistogram::Histogram;

use super::blocks::{BlockInterval, Blocks};
use super::precision::{stated_interval, AutoLimits, Count, StoppedBy};

/// The first batch of an auto run: enough samples for a 95 % interval of the median (6) many
/// times over, few enough that a 50 ms transfer spends about a second on it.
pub const FIRST_AUTO_BATCH: u64 = 24;
/// The first batch of a duration run, from which the time per iteration is estimated.
pub const FIRST_DURATION_BATCH: u64 = 4;

/// Decides the batches of one run.
#[derive(Debug, Clone)]
pub struct Pacer {
    count: Count,
    done: u64,
    /// The last batch asked for.
    last: u64,
    /// The batches so far as blocks (auto and duration counts).
    blocks: Option<Blocks>,
    stopped: Option<StoppedBy>,
}

impl Pacer {
    /// A run of `count`, nothing done yet.
    pub fn new(count: Count) -> Pacer {
        let first = match count {
            Count::Fixed(_) => None,
            Count::Auto(_) => Some(FIRST_AUTO_BATCH),
            Count::Duration(_) => Some(FIRST_DURATION_BATCH),
        };
        Pacer {
            count,
            done: 0,
            last: 0,
            blocks: first.map(Blocks::new),
            stopped: None,
        }
    }

    /// What ended the run, once it ended.
    pub fn stopped_by(&self) -> Option<StoppedBy> {
        self.stopped
    }

    /// The median's interval over the run's blocks, once there are enough of them.
    pub fn blocks(&self) -> Option<BlockInterval> {
        self.blocks.as_ref().and_then(Blocks::interval)
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
        if let Some(b) = self.blocks.as_mut().filter(|_| self.done > 0) {
            b.push(h, self.last);
        }
        let n = match self.count {
            Count::Fixed(n) => self.fixed(n),
            Count::Auto(a) => self.auto(&a, h, timed),
            Count::Duration(d) => self.duration(d, timed),
        };
        self.done = self.done.saturating_add(n);
        self.last = n;
        n
    }

    /// The next block's iterations.
    fn block(&self) -> u64 {
        self.blocks.as_ref().map_or(1, Blocks::block_iterations)
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
            return self.block().min(a.max_iterations);
        }
        // Precision is reached only once the blocks state their interval too.
        let blocks = self.blocks();
        if let Some(s) = blocks.and_then(|b| stated_interval(h, &[(b.p50_interval_us, b.coverage)]))
        {
            // Ten blocks of at least FIRST_AUTO_BATCH iterations hold 240 samples or more, so
            // the samples' own interval has long reached its 95 % as well.
            if s.half_width_pct <= a.precision_pct {
                return self.stop(StoppedBy::Precision);
            }
        }
        if self.done >= a.max_iterations {
            return self.stop(StoppedBy::MaxIterations);
        }
        if timed >= a.max_time {
            return self.stop(StoppedBy::MaxTime);
        }
        // One block, or what is left of a limit (a shorter last batch is no block).
        self.block()
            .min(a.max_iterations - self.done)
            .min(fit(self.done, timed, a.max_time))
    }

    fn duration(&mut self, d: Duration, timed: Duration) -> u64 {
        if self.done > 0 && timed >= d {
            return self.stop(StoppedBy::Duration);
        }
        if self.done == 0 {
            return self.block();
        }
        self.block().min(fit(self.done, timed, d))
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
    use crate::stats::{median_half_width, new_histogram};

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

    /// Asks `p` for at most `batches` batches and runs them, batch `i`'s samples all at
    /// `level(i)` ns and 1 us of wall time per iteration; the sizes asked for (0: it stopped).
    fn drive(
        p: &mut Pacer,
        h: &mut Histogram<u64>,
        batches: usize,
        level: impl Fn(usize) -> u64,
    ) -> Vec<u64> {
        let mut asked = Vec::new();
        for i in 0..batches {
            let n = p.next(h, Duration::from_micros(p.done()));
            asked.push(n);
            if n == 0 {
                break;
            }
            h.record_n(level(i), n).unwrap();
        }
        asked
    }

    #[test]
    fn auto_stops_at_the_precision_once_ten_blocks_state_it() {
        let mut p = Pacer::new(Count::Auto(AutoLimits::default()));
        let mut h = new_histogram();
        // Equal samples: the samples' interval is exact from the first batch, but the claim
        // waits for ten blocks of FIRST_AUTO_BATCH, one batch each.
        let asked = drive(&mut p, &mut h, 20, |_| 1000);
        let mut want = vec![FIRST_AUTO_BATCH; 10];
        want.push(0);
        assert_eq!(asked, want);
        assert_eq!(p.stopped_by(), Some(StoppedBy::Precision));
        let b = p.blocks().unwrap();
        assert_eq!((b.count, b.iterations_each), (10, FIRST_AUTO_BATCH));
        assert_eq!(b.p50_interval_us, [1.0, 1.0]);
    }

    #[test]
    fn drift_between_blocks_keeps_an_auto_run_going_and_blocks_double() {
        let mut p = Pacer::new(Count::Auto(AutoLimits::default()));
        let mut h = new_histogram();
        // Each block at one level, the levels 0.95, 1, 1.05 us in turn (exact in the histogram
        // below 2048 ns): after ten blocks the samples' own interval is exact (the middle level
        // holds the median), the blocks' is +-5 %, so the run goes on.
        let levels = |i: usize| [950, 1000, 1050][i % 3];
        let asked = drive(&mut p, &mut h, 11, levels);
        assert_eq!(asked, vec![FIRST_AUTO_BATCH; 11]);
        assert_eq!(median_half_width(&h).unwrap().0, 0.0);
        let b = p.blocks().unwrap();
        assert_eq!(b.p50_interval_us, [0.95, 1.05]);
        assert_eq!(p.stopped_by(), None);
        // The twentieth block merges pairs: the batch after it is a block of twice as many.
        let asked = drive(&mut p, &mut h, 12, |i| levels(i + 11));
        assert_eq!(asked[..9], [FIRST_AUTO_BATCH; 9]);
        assert_eq!(asked[9..], [2 * FIRST_AUTO_BATCH; 3]);
        assert_eq!(p.stopped_by(), None);
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
        // One block at a time.
        assert_eq!(p.next(&h, Duration::from_millis(1)), FIRST_DURATION_BATCH);
        // 8 in 8 s: 2 more fit in the 2 s left.
        assert_eq!(p.next(&h, Duration::from_secs(8)), 2);
        assert_eq!(p.next(&h, Duration::from_secs(10)), 0);
        assert_eq!(p.stopped_by(), Some(StoppedBy::Duration));
        assert_eq!(p.done(), 10);
    }
}

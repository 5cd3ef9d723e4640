//! The iterations of one process's initiator workers, decided together: the target's workers
//! meet at one barrier per iteration, so every worker of a process runs the same iterations;
//! the count comes from all their samples (a fixed count, `auto` until the median is known to
//! the precision asked for, or as many as fit in a duration).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::stats::{new_histogram, BlockInterval, Count, Pacer, StoppedBy};

/// The shared decision.
#[derive(Debug)]
pub(super) struct SharedPace {
    warmup: u64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    pacer: Pacer,
    /// Every worker's timed samples so far, ns.
    samples: Histogram<u64>,
    /// The highest iteration any worker started.
    started: Option<u64>,
    /// No worker starts this iteration or a later one.
    stop_at: Option<u64>,
    /// The iteration after which the pacer decides again (the current batch's last).
    decide_after: u64,
    /// When the first timed iteration started.
    timed_since: Option<Instant>,
}

impl SharedPace {
    /// `count` timed iterations after `warmup` untimed ones.
    pub fn new(count: Count, warmup: u64) -> SharedPace {
        let mut pacer = Pacer::new(count);
        let first = pacer.next(&new_histogram(), Duration::ZERO);
        SharedPace {
            warmup,
            state: Mutex::new(State {
                pacer,
                samples: new_histogram(),
                started: None,
                stop_at: (first == 0).then_some(warmup),
                decide_after: (warmup + first).saturating_sub(1),
                timed_since: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a worker may start iteration `i` (counted from 0, warm-up included).
    pub fn begin(&self, i: u64) -> bool {
        let mut s = self.lock();
        if s.stop_at.is_some_and(|stop| i >= stop) {
            return false;
        }
        s.started = Some(s.started.map_or(i, |m| m.max(i)));
        if i == self.warmup && s.timed_since.is_none() {
            s.timed_since = Some(Instant::now());
        }
        true
    }

    /// A worker finished iteration `i`, whose end-to-end times were `samples_ns` (timed
    /// iterations only); at the end of a batch the next is decided, and when the run is over,
    /// every worker stops after the iterations already started.
    pub fn end(&self, i: u64, samples_ns: &[u64]) {
        let mut s = self.lock();
        if i >= self.warmup {
            for &v in samples_ns {
                s.samples.saturating_record(v.max(1));
            }
        }
        if i < s.decide_after || s.stop_at.is_some() {
            return;
        }
        let timed = s.timed_since.map_or(Duration::ZERO, |t| t.elapsed());
        let State { pacer, samples, .. } = &mut *s;
        let n = pacer.next(samples, timed);
        if n == 0 {
            s.stop_at = Some(s.started.map_or(i + 1, |m| m.max(i) + 1));
        } else {
            s.decide_after = s.decide_after.saturating_add(n);
        }
    }

    /// The median's interval over the run's blocks, once there are enough.
    pub fn blocks(&self) -> Option<BlockInterval> {
        self.lock().pacer.blocks()
    }

    /// What ended the run (a fixed count until it ends otherwise).
    pub fn stopped_by(&self) -> StoppedBy {
        self.lock().pacer.stopped_by().unwrap_or(StoppedBy::Fixed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::AutoLimits;

    #[test]
    fn a_fixed_count_stops_every_worker_after_it() {
        let p = SharedPace::new(Count::Fixed(3), 2);
        let mut ran = Vec::new();
        for i in 0..10 {
            if !p.begin(i) {
                break;
            }
            p.end(i, &[1000]);
            ran.push(i);
        }
        assert_eq!(ran, [0, 1, 2, 3, 4]);
        assert_eq!(p.stopped_by(), StoppedBy::Fixed);
    }

    #[test]
    fn workers_stop_together_after_the_iterations_started() {
        // Three workers in step, each one iteration ahead of the last; the samples are all
        // equal, so the decision after the tenth block (a batch each) stops the run.
        let p = SharedPace::new(Count::Auto(AutoLimits::default()), 1);
        let first_batch = crate::stats::FIRST_AUTO_BATCH;
        let mut ran = [0u64; 3];
        let mut i = 0;
        loop {
            let mut any = false;
            for (w, r) in ran.iter_mut().enumerate() {
                let it = i + w as u64;
                if !p.begin(it) {
                    continue;
                }
                any = true;
                p.end(it, &[5000]);
                *r = it + 1;
            }
            if !any {
                break;
            }
            i += 1;
        }
        // The worker ahead ended the batch's last iteration first and stopped the run; the
        // others then ran the iterations up to the last one started, and no further.
        assert_eq!(p.stopped_by(), StoppedBy::Precision);
        let stop = ran[2];
        assert!(stop > 10 * first_batch, "{ran:?}");
        assert_eq!(ran, [stop; 3]);
    }
}

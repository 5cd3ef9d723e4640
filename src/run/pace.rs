//! The batches of a two-sided loop over the control connection: the measuring side decides each
//! batch from its samples and tells the other, which waits for each decision at most the run's
//! time-out (and hears the peer's failure instead, when it failed).

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::bench::pace::{decode_batch, encode_batch, Pace};
use crate::bench::BenchError;
use crate::bootstrap::Oob;
use crate::peer::Side;
use crate::run::sched::{SchedMark, ThreadSched};
use crate::stats::{BlockInterval, Count, Pacer, StoppedBy};

/// The deciding side: every decision of its pacer goes to the peer.
pub struct Leader<'a> {
    pacer: Pacer,
    oob: &'a mut Oob,
}

impl Pace for Leader<'_> {
    fn next_batch(&mut self, samples: &Histogram<u64>, timed: Duration) -> Result<u64, BenchError> {
        let n = self.pacer.next(samples, timed);
        self.oob
            .send_frame(&encode_batch(n, self.pacer.stopped_by()))
            .map_err(BenchError::Control)?;
        Ok(n)
    }
    fn stopped_by(&self) -> Option<StoppedBy> {
        self.pacer.stopped_by()
    }
    fn blocks(&self) -> Option<BlockInterval> {
        self.pacer.blocks()
    }
}

/// The side that is told each batch.
pub struct Follower<'a> {
    oob: &'a mut Oob,
    stopped: Option<StoppedBy>,
}

impl Pace for Follower<'_> {
    fn next_batch(&mut self, _: &Histogram<u64>, _: Duration) -> Result<u64, BenchError> {
        let frame = self.oob.recv_frame().map_err(BenchError::Control)?;
        let (n, why) = decode_batch(&frame)?;
        self.stopped = why;
        Ok(n)
    }
    fn stopped_by(&self) -> Option<StoppedBy> {
        self.stopped
    }
}

/// The pace of side `role` of a loop of `count` timed iterations: the initiator decides (it
/// holds the samples), the target follows.
pub fn two_sided<'a>(role: Side, count: Count, oob: &'a mut Oob) -> Gapped<'a> {
    let inner: Box<dyn Pace + 'a> = match role {
        Side::Initiator => Box::new(Leader {
            pacer: Pacer::new(count),
            oob,
        }),
        Side::Target => Box::new(Follower { oob, stopped: None }),
    };
    Gapped::new(inner)
}

/// A pace whose decisions, the gaps between a loop's batches (the pacing, the word to or
/// from the peer), are read by this thread's scheduler counters: what a loop's scheduling
/// figures leave out, so that they cover its batches alone.
pub struct Gapped<'a> {
    inner: Box<dyn Pace + 'a>,
    /// The gaps so far, summed (None once a reading failed).
    gaps: Option<ThreadSched>,
}

impl<'a> Gapped<'a> {
    /// `inner`, its gaps read from now on.
    fn new(inner: Box<dyn Pace + 'a>) -> Gapped<'a> {
        Gapped {
            inner,
            gaps: Some(ThreadSched::default()),
        }
    }

    /// The gaps between the batches so far, summed (None where the counters could not be
    /// read).
    pub fn gaps(&self) -> Option<ThreadSched> {
        self.gaps
    }
}

impl Pace for Gapped<'_> {
    fn next_batch(&mut self, samples: &Histogram<u64>, timed: Duration) -> Result<u64, BenchError> {
        let mark = SchedMark::now();
        let n = self.inner.next_batch(samples, timed);
        self.gaps = ThreadSched::sum(self.gaps, mark.and_then(|m| m.since()));
        n
    }
    fn stopped_by(&self) -> Option<StoppedBy> {
        self.inner.stopped_by()
    }
    fn blocks(&self) -> Option<BlockInterval> {
        self.inner.blocks()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pace that takes `pause` over each decision and asks for one batch of 10.
    struct Slow {
        pause: Duration,
        left: u32,
    }

    impl Pace for Slow {
        fn next_batch(&mut self, _: &Histogram<u64>, _: Duration) -> Result<u64, BenchError> {
            std::thread::sleep(self.pause);
            self.left = self.left.saturating_sub(1);
            Ok(if self.left > 0 { 10 } else { 0 })
        }
        fn stopped_by(&self) -> Option<StoppedBy> {
            (self.left == 0).then_some(StoppedBy::Fixed)
        }
    }

    #[test]
    fn the_gaps_between_batches_are_read_and_summed() {
        let Some(_) = SchedMark::now() else {
            eprintln!("skipped: this kernel offers no /proc/thread-self/schedstat");
            return;
        };
        let pause = Duration::from_millis(20);
        let mut pace = Gapped::new(Box::new(Slow { pause, left: 3 }));
        let h = crate::stats::new_histogram();
        let mut batches = Vec::new();
        loop {
            let n = pace.next_batch(&h, Duration::ZERO).unwrap();
            if n == 0 {
                break;
            }
            batches.push(n);
            // A batch: its time is not a gap.
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(batches, [10, 10]);
        assert_eq!(pace.stopped_by(), Some(StoppedBy::Fixed));
        let gaps = pace.gaps().expect("readable");
        // Three decisions of at least 20 ms each, each asleep at least once; the two 200 ms
        // batches between them are not counted (with them, the span would pass 460 ms).
        assert!(gaps.span_ns >= 3 * 20_000_000, "{gaps:?}");
        assert!(gaps.span_ns < 3 * 20_000_000 + 300_000_000, "{gaps:?}");
        assert!(gaps.voluntary_switches >= 3, "{gaps:?}");
    }
}

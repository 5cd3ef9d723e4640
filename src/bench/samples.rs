//! The samples of one size of a ping-pong loop, as they are recorded and as they come back.

use hdrhistogram::Histogram;

use crate::stats::{
    new_histogram, BlockInterval, Recent, RoundsInterval, StoppedBy, UCX_PERFTEST_WINDOW,
};

/// What one size measured.
#[derive(Debug)]
pub struct SizeSamples {
    /// Latency per timed iteration, nanoseconds: half round trips for ping-pongs, full round
    /// trips for RMA reads.
    pub latency_ns: Histogram<u64>,
    /// Wall time of the timed iterations, nanoseconds (fi_pingpong's "time"): the sum of the
    /// batches' spans, without the decisions between them.
    pub elapsed_ns: u64,
    /// Timed iterations.
    pub iterations: u64,
    /// The last 2048 samples of `latency_ns`, in order (ucx_perftest's percentile window).
    pub recent_ns: Recent,
    /// What ended the timed iterations.
    pub stopped_by: StoppedBy,
    /// The median's interval over the loop's blocks (batched counts, enough blocks).
    pub blocks: Option<BlockInterval>,
    /// The median's interval over the rounds these samples ran in ([`SizeSamples::merge`]).
    pub rounds: Option<RoundsInterval>,
}

impl SizeSamples {
    /// The samples of several rounds of one size as one: every sample, iteration and timed
    /// nanosecond, the window of the last samples over the rounds in order, a limit that stopped any round (else the last
    /// round's reason), and the interval over the rounds' medians in place of any one round's
    /// blocks. One round is returned as it is; none gives None.
    pub fn merge(rounds: Vec<SizeSamples>) -> Option<SizeSamples> {
        let medians: Vec<f64> = rounds
            .iter()
            .map(|r| r.latency_ns.value_at_quantile(0.5) as f64 / 1000.0)
            .collect();
        let limit = rounds
            .iter()
            .map(|r| r.stopped_by)
            .find(|s| matches!(s, StoppedBy::MaxTime | StoppedBy::MaxIterations));
        let several = rounds.len() > 1;
        let mut it = rounds.into_iter();
        let mut all = it.next()?;
        if !several {
            return Some(all);
        }
        for r in it {
            // Same bounds everywhere: adding never fails.
            let _ = all.latency_ns.add(&r.latency_ns);
            all.elapsed_ns = all.elapsed_ns.saturating_add(r.elapsed_ns);
            all.iterations = all.iterations.saturating_add(r.iterations);
            all.recent_ns.append(&r.recent_ns);
            all.stopped_by = r.stopped_by;
        }
        all.stopped_by = limit.unwrap_or(all.stopped_by);
        all.blocks = None;
        all.rounds = RoundsInterval::of(&medians);
        Some(all)
    }
}

/// The samples of one size as they are recorded.
pub struct Recorder {
    /// Latency per timed iteration, nanoseconds.
    pub hist: Histogram<u64>,
    /// The last samples, in order.
    pub recent: Recent,
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder::new()
    }
}

impl Recorder {
    /// Nothing recorded yet.
    pub fn new() -> Recorder {
        Recorder {
            hist: new_histogram(),
            recent: Recent::new(UCX_PERFTEST_WINDOW),
        }
    }

    /// Records one sample of `ns` nanoseconds (1 ns floor: the histogram's lower bound).
    #[inline]
    pub fn record(&mut self, ns: u64) {
        let ns = ns.max(1);
        self.hist.saturating_record(ns);
        self.recent.push(ns);
    }

    /// The samples, after `iterations` timed iterations in `elapsed_ns` ended by `stopped_by`.
    pub fn samples(self, iterations: u64, elapsed_ns: u64, stopped_by: StoppedBy) -> SizeSamples {
        SizeSamples {
            latency_ns: self.hist,
            elapsed_ns,
            iterations,
            recent_ns: self.recent,
            stopped_by,
            blocks: None,
            rounds: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One round: `n` samples of `ns` each over `elapsed_ns`, ended by `why`.
    fn round(ns: u64, n: u64, elapsed_ns: u64, why: StoppedBy) -> SizeSamples {
        let mut rec = Recorder::new();
        for _ in 0..n {
            rec.record(ns);
        }
        let mut s = rec.samples(n, elapsed_ns, why);
        s.blocks = Some(BlockInterval {
            count: 10,
            iterations_each: 1,
            p50_interval_us: [0.0, 1.0],
            coverage: 0.98,
        });
        s
    }

    #[test]
    fn rounds_merge_into_every_sample_and_the_interval_over_their_medians() {
        let merged = SizeSamples::merge(vec![
            round(1000, 10, 20_000, StoppedBy::Precision),
            round(1200, 20, 50_000, StoppedBy::MaxTime),
            round(1100, 5, 11_000, StoppedBy::Precision),
        ])
        .unwrap();
        assert_eq!(merged.iterations, 35);
        assert_eq!(merged.latency_ns.len(), 35);
        assert_eq!(merged.elapsed_ns, 81_000);
        // A round that hit a limit names it for the whole.
        assert_eq!(merged.stopped_by, StoppedBy::MaxTime);
        // No one round's blocks speak for the others; the rounds' medians do.
        assert!(merged.blocks.is_none());
        let r = merged.rounds.unwrap();
        assert_eq!(r.p50_us, [1.0, 1.2, 1.1]);
        assert_eq!(r.p50_interval_us, [1.0, 1.2]);
        assert!((r.coverage - 0.75).abs() < 1e-9);
        assert!(SizeSamples::merge(Vec::new()).is_none());
        // One round alone keeps its reason and has no interval over rounds.
        let one = SizeSamples::merge(vec![round(1000, 4, 8000, StoppedBy::Fixed)]).unwrap();
        assert_eq!(one.stopped_by, StoppedBy::Fixed);
        assert!(one.rounds.is_none());
        assert!(one.blocks.is_some());
    }
}

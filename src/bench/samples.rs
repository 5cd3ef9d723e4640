//! The samples of one size of a ping-pong loop, as they are recorded and as they come back.

use hdrhistogram::Histogram;

use crate::stats::{new_histogram, BlockInterval, Recent, StoppedBy, UCX_PERFTEST_WINDOW};

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
        }
    }
}

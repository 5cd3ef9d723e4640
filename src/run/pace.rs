//! The batches of a two-sided loop over the control connection: the measuring side decides each
//! batch from its samples and tells the other, which waits for each decision at most the run's
//! time-out (and hears the peer's failure instead, when it failed).

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::bench::pace::{decode_batch, encode_batch, Pace};
use crate::bench::BenchError;
use crate::bootstrap::Oob;
use crate::peer::Side;
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
pub fn two_sided<'a>(role: Side, count: Count, oob: &'a mut Oob) -> Box<dyn Pace + 'a> {
    match role {
        Side::Initiator => Box::new(Leader {
            pacer: Pacer::new(count),
            oob,
        }),
        Side::Target => Box::new(Follower { oob, stopped: None }),
    }
}

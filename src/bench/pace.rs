//! Who decides how many timed iterations a loop runs, batch by batch: the side that measures
//! (from its samples), or the side it tells.

use std::time::Duration;

use hdrhistogram::Histogram;

use super::samples::{Recorder, SizeSamples};
use super::BenchError;
use crate::stats::{BlockInterval, Pacer, StoppedBy};

/// One batch of iterations: records their samples, returns their wall time in ns.
pub type Batch<'a> = dyn FnMut(std::ops::Range<u64>, &mut Recorder) -> Result<u64, BenchError> + 'a;

/// Runs the timed batches `pace` decides, numbered on from iteration `first`, each through
/// `batch` (which records its samples and returns its wall time, ns); checks that the counts of
/// `size`-byte iterations of `xfers` transfers stay countable. The samples and what ended them.
pub fn run_batches(
    first: u64,
    size: u64,
    xfers: u64,
    pace: &mut dyn Pace,
    batch: &mut Batch<'_>,
) -> Result<SizeSamples, BenchError> {
    let mut rec = Recorder::new();
    let (mut next, mut elapsed_ns) = (first, 0u64);
    loop {
        let n = pace.next_batch(&rec.hist, Duration::from_nanos(elapsed_ns))?;
        if n == 0 {
            break;
        }
        let end = next
            .checked_add(n)
            .ok_or_else(|| BenchError::Invalid("more iterations than 64 bits count".into()))?;
        super::check_counts(size, end - first, first, xfers).map_err(BenchError::Invalid)?;
        elapsed_ns += batch(next..end, &mut rec)?;
        next = end;
    }
    let stopped_by = pace.stopped_by().unwrap_or(StoppedBy::Fixed);
    let mut samples = rec.samples(next - first, elapsed_ns, stopped_by);
    samples.blocks = pace.blocks();
    Ok(samples)
}

/// The batches of one loop.
pub trait Pace {
    /// The next batch's timed iterations, given the samples so far and the time the timed
    /// iterations took; 0 ends the loop.
    fn next_batch(&mut self, samples: &Histogram<u64>, timed: Duration) -> Result<u64, BenchError>;
    /// What ended the loop, once it ended (the deciding side's reason; a side that is told
    /// learns it with the last batch).
    fn stopped_by(&self) -> Option<StoppedBy>;
    /// The median's interval over the loop's blocks (the deciding side's, once it has enough).
    fn blocks(&self) -> Option<BlockInterval> {
        None
    }
}

/// A pace decided here and told to no one: a side that runs alone (reads), or both sides of a
/// fixed count, which each know it.
impl Pace for Pacer {
    fn next_batch(&mut self, samples: &Histogram<u64>, timed: Duration) -> Result<u64, BenchError> {
        Ok(self.next(samples, timed))
    }
    fn stopped_by(&self) -> Option<StoppedBy> {
        Pacer::stopped_by(self)
    }
    fn blocks(&self) -> Option<BlockInterval> {
        Pacer::blocks(self)
    }
}

/// A batch decision as the deciding side sends it: the batch's size, or 0 with the reason the
/// run ended.
pub fn encode_batch(n: u64, stopped: Option<StoppedBy>) -> Vec<u8> {
    let mut b = n.to_be_bytes().to_vec();
    if n == 0 {
        b.extend_from_slice(stopped.map_or("fixed", StoppedBy::name).as_bytes());
    }
    b
}

/// A batch decision as [`encode_batch`] wrote it.
pub fn decode_batch(bytes: &[u8]) -> Result<(u64, Option<StoppedBy>), BenchError> {
    let bad = || BenchError::Invalid(format!("a batch decision of {} bytes", bytes.len()));
    let head: [u8; 8] = bytes
        .get(..8)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(bad)?;
    let n = u64::from_be_bytes(head);
    if n > 0 {
        return Ok((n, None));
    }
    let why = match &bytes[8..] {
        b"precision" => StoppedBy::Precision,
        b"max-iterations" => StoppedBy::MaxIterations,
        b"max-time" => StoppedBy::MaxTime,
        b"duration" => StoppedBy::Duration,
        b"fixed" => StoppedBy::Fixed,
        _ => return Err(bad()),
    };
    Ok((0, Some(why)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_round_trip() {
        assert_eq!(decode_batch(&encode_batch(42, None)).unwrap(), (42, None));
        for why in [
            StoppedBy::Precision,
            StoppedBy::MaxIterations,
            StoppedBy::MaxTime,
            StoppedBy::Duration,
            StoppedBy::Fixed,
        ] {
            let b = encode_batch(0, Some(why));
            assert_eq!(decode_batch(&b).unwrap(), (0, Some(why)));
        }
        assert!(decode_batch(b"short").is_err());
        assert!(decode_batch(&[0, 0, 0, 0, 0, 0, 0, 0, b'x']).is_err());
    }
}

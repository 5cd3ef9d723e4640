//! fi_rma_pingpong's read measurement: the initiator reads the target's buffer and times each
//! full round trip (not halved). Write and writedata ping-pongs run the ping-pong loop of
//! [`super::pingpong`] over an RMA transport.

use std::time::Instant;

use super::clock::LoopClock;
use super::pingpong::{Recorder, SizeParams};
use super::{pattern, BenchError};

/// The pattern sequence number the target's buffer holds for `--verify` reads.
pub const READ_SEQ: u64 = 0x5eed;

/// What the read loop needs from a transport.
pub trait RmaReadTransport {
    /// Reads `len` bytes of the peer's buffer into the local one; returns on completion.
    fn read(&mut self, len: usize) -> Result<(), BenchError>;
    /// The local buffer the reads land in.
    fn read_buf(&self) -> &[u8];
}

/// Runs reads `range` of one size (numbering continues across calls); with `rec`, timed: each
/// full round trip recorded, and the wall time returned.
pub fn run_read_batch<T: RmaReadTransport>(
    t: &mut T,
    p: &SizeParams,
    range: std::ops::Range<u64>,
    mut rec: Option<&mut Recorder>,
) -> Result<u64, BenchError> {
    let clock = LoopClock::new();
    // The timed span of a batch: from here to the end of its last read.
    let start = Instant::now();
    let mut prev = clock.now();
    // The clock is read once per iteration, so the samples add up to the elapsed time (a
    // --verify check is inside its iteration's sample, as in the ping-pong loop).
    for i in range {
        crate::stop::check()?;
        t.read(p.size)?;
        if p.verify {
            if let Some((offset, expected, got)) = pattern::check(&t.read_buf()[..p.size], READ_SEQ)
            {
                return Err(BenchError::Verify {
                    iteration: i,
                    offset,
                    expected,
                    got,
                });
            }
        }
        let now = clock.now();
        if let Some(rec) = rec.as_deref_mut() {
            rec.record(clock.nanos_between(prev, now));
        }
        prev = now;
    }
    Ok(start.elapsed().as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    struct Mem {
        remote: Vec<u8>,
        local: Vec<u8>,
        delay: Duration,
        reads: u64,
        /// How long each read took, in call order.
        took: Vec<Duration>,
    }

    impl RmaReadTransport for Mem {
        fn read(&mut self, len: usize) -> Result<(), BenchError> {
            let start = std::time::Instant::now();
            std::thread::sleep(self.delay);
            self.local[..len].copy_from_slice(&self.remote[..len]);
            self.reads += 1;
            self.took.push(start.elapsed());
            Ok(())
        }
        fn read_buf(&self) -> &[u8] {
            &self.local
        }
    }

    #[test]
    fn full_round_trips_are_recorded_and_checked() {
        let mut remote = vec![0u8; 512];
        pattern::fill(&mut remote, READ_SEQ);
        let mut m = Mem {
            remote,
            local: vec![0; 512],
            delay: Duration::from_millis(1),
            reads: 0,
            took: Vec::new(),
        };
        let p = SizeParams {
            size: 300,
            warmup: 2,
            verify: true,
        };
        run_read_batch(&mut m, &p, 0..2, None).unwrap();
        let mut rec = Recorder::new();
        let elapsed_ns = run_read_batch(&mut m, &p, 2..10, Some(&mut rec)).unwrap();
        assert_eq!(m.reads, 10);
        assert_eq!(rec.hist.len(), 8);
        // Not halved: each read sleeps 1 ms, so every sample is at least 1 ms.
        assert!(rec.hist.min() >= 1_000_000);
        assert!(elapsed_ns >= 8_000_000);
        // The clock is read once per iteration, so each sample holds its whole read and the
        // samples lie within the batch's elapsed time. Both bounds hold however the scheduler
        // delays the test; 2 % is the loop clock's calibration against the OS clock.
        let sum = rec.hist.mean() * 8.0;
        let read: f64 = m.took[2..].iter().map(|d| d.as_nanos() as f64).sum();
        assert!(sum >= read * 0.98, "samples {sum} ns, reads {read} ns");
        assert!(
            sum <= elapsed_ns as f64 * 1.02,
            "samples {sum} ns, elapsed {elapsed_ns} ns"
        );
        m.remote[299] ^= 0xff;
        let e = run_read_batch(&mut m, &p, 10..11, None).unwrap_err();
        assert!(matches!(e, BenchError::Verify { offset: 299, .. }), "{e}");
    }
}

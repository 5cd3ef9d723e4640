//! fi_rma_pingpong's read measurement: the initiator reads the target's buffer and times each
//! full round trip (not halved). Write and writedata ping-pongs run the ping-pong loop of
//! [`super::pingpong`] over an RMA transport.

use std::time::Instant;

use super::clock::LoopClock;
use super::pingpong::{SizeParams, SizeSamples};
use super::{pattern, BenchError};
use crate::stats::new_histogram;

/// The pattern sequence number the target's buffer holds for `--verify` reads.
pub const READ_SEQ: u64 = 0x5eed;

/// What the read loop needs from a transport.
pub trait RmaReadTransport {
    /// Reads `len` bytes of the peer's buffer into the local one; returns on completion.
    fn read(&mut self, len: usize) -> Result<(), BenchError>;
    /// The local buffer the reads land in.
    fn read_buf(&self) -> &[u8];
}

/// Runs one size of reads; every sample is a full round trip.
pub fn run_read_size<T: RmaReadTransport>(
    t: &mut T,
    p: &SizeParams,
) -> Result<SizeSamples, BenchError> {
    let mut hist = new_histogram();
    let mut recent = crate::stats::Recent::new(crate::stats::UCX_PERFTEST_WINDOW);
    let mut timed_start = Instant::now();
    let clock = LoopClock::new();
    let mut prev = clock.now();
    // The clock is read once per iteration, so the samples add up to the elapsed time (a
    // --verify check is inside its iteration's sample, as in the ping-pong loop).
    super::check_counts(p.size as u64, p.iterations, p.warmup, 1).map_err(BenchError::Invalid)?;
    for i in 0..p.warmup + p.iterations {
        crate::stop::check()?;
        if i == p.warmup {
            timed_start = Instant::now();
            prev = clock.now();
        }
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
        if i >= p.warmup {
            let rtt = clock.nanos_between(prev, now).max(1);
            hist.saturating_record(rtt);
            recent.push(rtt);
        }
        prev = now;
    }
    Ok(SizeSamples {
        latency_ns: hist,
        recent_ns: recent,
        elapsed_ns: timed_start.elapsed().as_nanos() as u64,
        iterations: p.iterations,
    })
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
    }

    impl RmaReadTransport for Mem {
        fn read(&mut self, len: usize) -> Result<(), BenchError> {
            std::thread::sleep(self.delay);
            self.local[..len].copy_from_slice(&self.remote[..len]);
            self.reads += 1;
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
        };
        let p = SizeParams {
            size: 300,
            iterations: 8,
            warmup: 2,
            verify: true,
        };
        let s = run_read_size(&mut m, &p).unwrap();
        assert_eq!(m.reads, 10);
        assert_eq!(s.latency_ns.len(), 8);
        // Not halved: each read sleeps 1 ms, so every sample is at least 1 ms.
        assert!(s.latency_ns.min() >= 1_000_000);
        assert!(s.elapsed_ns >= 8_000_000);
        let sum = s.latency_ns.mean() * 8.0;
        assert!((sum - s.elapsed_ns as f64).abs() / (s.elapsed_ns as f64) < 0.01);
        m.remote[299] ^= 0xff;
        let e = run_read_size(&mut m, &p).unwrap_err();
        assert!(matches!(e, BenchError::Verify { offset: 299, .. }), "{e}");
    }
}

//! The one-core limit for host-to-host transfers: a single-thread copy between two
//! pre-faulted buffers, timed per copy.

use std::time::Instant;

use hdrhistogram::Histogram;

use super::BenchError;
use crate::mem::HostBuffer;
use crate::stats::new_histogram;

/// What the copies measured.
#[derive(Debug)]
pub struct MemcpySamples {
    /// Time of each timed copy, ns.
    pub copy_ns: Histogram<u64>,
    /// Bytes per copy.
    pub size: usize,
}

/// Copies `size` bytes from one buffer to another `warmup + iterations` times, timing each;
/// stops early, with the copies timed so far, once a signal asked the process to stop.
pub fn run_memcpy(size: usize, iterations: u64, warmup: u64) -> Result<MemcpySamples, BenchError> {
    super::check_counts(size as u64, iterations, warmup, 1).map_err(BenchError::Invalid)?;
    let alloc = |n| {
        HostBuffer::for_bulk(n).map_err(|e| BenchError::Invalid(format!("memcpy buffers: {e}")))
    };
    let mut src = alloc(size)?;
    let mut dst = alloc(size)?;
    src.as_mut_slice()
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = i as u8);
    let mut h = new_histogram();
    let mut copied = false;
    for i in 0..warmup + iterations {
        if crate::stop::requested().is_some() {
            break;
        }
        copied = true;
        let a = Instant::now();
        dst.as_mut_slice().copy_from_slice(src.as_slice());
        let ns = a.elapsed().as_nanos() as u64;
        std::hint::black_box(dst.as_slice());
        if i >= warmup {
            h.saturating_record(ns.max(1));
        }
    }
    if copied && dst.as_slice() != src.as_slice() {
        return Err(BenchError::Invalid(
            "the copy differs from its source".into(),
        ));
    }
    Ok(MemcpySamples { copy_ns: h, size })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_timed_and_checked() {
        let s = run_memcpy(1 << 20, 5, 1).unwrap();
        assert_eq!(s.copy_ns.len(), 5);
        assert_eq!(s.size, 1 << 20);
        // A MiB cannot be copied in under 10 us on any machine this runs on (100 GB/s).
        assert!(s.copy_ns.min() >= 10_000, "{}", s.copy_ns.min());
    }

    #[test]
    fn counts_that_wrap_are_refused_before_copying() {
        for (iterations, warmup) in [(10, u64::MAX), (10, u64::MAX - 2), (0, 1)] {
            let e = run_memcpy(1 << 10, iterations, warmup).unwrap_err();
            assert!(matches!(e, BenchError::Invalid(_)), "{e}");
        }
    }
}

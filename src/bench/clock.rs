//! The ping-pong loop's clock: the CPU's time-stamp counter where it is invariant (through
//! `quanta`, calibrated against the OS monotonic clock), else the OS monotonic clock itself.
//!
//! A read costs a few nanoseconds instead of the 20-30 ns of `clock_gettime` on a VM, which
//! matters when a half round trip is 150 ns: ucx_perftest reads the counter the same way.

/// A clock whose readings are raw ticks, converted to nanoseconds only when subtracted.
#[derive(Debug, Clone)]
pub struct LoopClock(quanta::Clock);

impl LoopClock {
    /// The process-wide calibrated clock.
    pub fn new() -> LoopClock {
        LoopClock(quanta::Clock::new())
    }

    /// The current reading, in ticks.
    #[inline]
    pub fn now(&self) -> u64 {
        self.0.raw()
    }

    /// Nanoseconds in `ticks` (a difference of two readings).
    #[inline]
    pub fn ticks_to_nanos(&self, ticks: u64) -> u64 {
        if ticks == 0 {
            return 0;
        }
        self.0.delta_as_nanos(0, ticks)
    }

    /// Nanoseconds from reading `start` to reading `end` (0 if `end` is earlier).
    #[inline]
    pub fn nanos_between(&self, start: u64, end: u64) -> u64 {
        self.ticks_to_nanos(end.saturating_sub(start))
    }
}

impl Default for LoopClock {
    fn default() -> LoopClock {
        LoopClock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn ticks_convert_to_the_monotonic_clocks_nanoseconds() {
        let c = LoopClock::new();
        let (t0, i0) = (c.now(), Instant::now());
        std::thread::sleep(Duration::from_millis(30));
        let (t1, i1) = (c.now(), Instant::now());
        let ours = c.nanos_between(t0, t1) as f64;
        let os = i1.duration_since(i0).as_nanos() as f64;
        assert!(
            (ours / os - 1.0).abs() < 0.02,
            "tsc {ours} ns vs monotonic {os} ns"
        );
        assert_eq!(c.nanos_between(t1, t0), 0);
        let d = c.ticks_to_nanos(t1 - t0) as f64;
        assert!((d / ours - 1.0).abs() < 1e-6, "{d} vs {ours}");
    }
}

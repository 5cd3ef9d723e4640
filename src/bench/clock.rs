//! The ping-pong loop's clock: the CPU's time-stamp counter where it is invariant (through
//! `quanta`, calibrated against the OS monotonic clock), else the OS monotonic clock itself.
//!
//! A read costs a few nanoseconds instead of the 20-30 ns of `clock_gettime` on a VM, which
//! matters when a half round trip is 150 ns: ucx_perftest reads the counter the same way.

/// A clock whose readings are raw ticks, converted to nanoseconds only when subtracted.
#[derive(Debug, Clone)]
pub struct LoopClock(quanta::Clock);

impl LoopClock {
    /// The process-wide calibrated clock: made once, then copied. Making a `quanta` clock asks
    /// the CPU about its counter with four `cpuid` instructions, each a trip to the hypervisor
    /// on a VM (23 us for the four on this host), and the xfer loops take a clock at the start
    /// of every iteration: a target still asking is not yet polling for the initiator's data.
    pub fn new() -> LoopClock {
        static CLOCK: std::sync::OnceLock<quanta::Clock> = std::sync::OnceLock::new();
        LoopClock(CLOCK.get_or_init(quanta::Clock::new).clone())
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
        // Each reading sits between two OS readings, so the span it measures lies between the
        // inner and the outer OS span whenever the scheduler steps in; 2 % is calibration.
        let (a0, t0, b0) = (Instant::now(), c.now(), Instant::now());
        std::thread::sleep(Duration::from_millis(30));
        let (a1, t1, b1) = (Instant::now(), c.now(), Instant::now());
        let ours = c.nanos_between(t0, t1) as f64;
        let inner = a1.duration_since(b0).as_nanos() as f64;
        let outer = b1.duration_since(a0).as_nanos() as f64;
        assert!(
            ours >= inner * 0.98 && ours <= outer * 1.02,
            "tsc {ours} ns vs monotonic {inner} to {outer} ns"
        );
        assert_eq!(c.nanos_between(t1, t0), 0);
        let d = c.ticks_to_nanos(t1 - t0) as f64;
        assert!((d / ours - 1.0).abs() < 1e-6, "{d} vs {ours}");
        // A clock made later reads the same counter on the same scale.
        let later = LoopClock::new();
        let (t2, t3) = (c.now(), later.now());
        assert!(t3 >= t2, "{t3} < {t2}");
        assert_eq!(later.ticks_to_nanos(t1 - t0), c.ticks_to_nanos(t1 - t0));
    }
}

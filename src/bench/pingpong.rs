//! The ping-pong loop of fi_pingpong: one message each way per iteration, half the round trip
//! recorded per iteration.

use std::time::Instant;

use crate::peer::Side;

use super::clock::LoopClock;
use super::pace::{run_batches, Pace};
pub use super::samples::{Recorder, SizeSamples};
use super::{pattern, BenchError};
#[cfg(test)]
use std::time::Duration;

/// What a ping-pong loop needs from a transport.
pub trait PingPongTransport {
    /// Posts a receive for the next message (the whole receive buffer).
    fn post_recv(&mut self) -> Result<(), BenchError>;
    /// Sends the first `len` bytes of the send buffer; returns when the buffer may be reused.
    fn send(&mut self, len: usize) -> Result<(), BenchError>;
    /// Busy-polls until the posted receive completes; returns its length.
    fn wait_recv(&mut self) -> Result<usize, BenchError>;
    /// The send buffer.
    fn send_buf(&mut self) -> &mut [u8];
    /// The receive buffer, between a completed receive and the next post.
    fn recv_buf(&self) -> &[u8];
    /// Called before a size's first message, while the peer cannot be sending (before the
    /// size's barrier); transports that watch memory for arrivals reset it here.
    fn prepare(&mut self, _size: usize) -> Result<(), BenchError> {
        Ok(())
    }
}

/// One size's parameters.
#[derive(Debug, Clone, Copy)]
pub struct SizeParams {
    /// Message size in bytes.
    pub size: usize,
    /// Untimed iterations before the timed ones.
    pub warmup: u64,
    /// Fill and check the payload of every message.
    pub verify: bool,
}

/// Runs one size: the warm-up, then timed batches as `pace` decides. The transport must already
/// have a receive posted; one stays posted after.
pub fn run_size<T: PingPongTransport>(
    t: &mut T,
    role: Side,
    p: &SizeParams,
    pace: &mut dyn Pace,
) -> Result<SizeSamples, BenchError> {
    run_size_with(t, role, p, pace, &mut || Ok(()))
}

/// [`run_size`], calling `at_timed` once between the last warm-up iteration and the first
/// timed one, before the timed span's clock starts (a failure there ends the loop).
pub fn run_size_with<T: PingPongTransport>(
    t: &mut T,
    role: Side,
    p: &SizeParams,
    pace: &mut dyn Pace,
    at_timed: &mut dyn FnMut() -> Result<(), BenchError>,
) -> Result<SizeSamples, BenchError> {
    warm_up(t, role, p)?;
    at_timed()?;
    run_timed(t, role, p, pace)
}

/// The warm-up iterations of one size (a receive posted before and after).
pub fn warm_up<T: PingPongTransport>(
    t: &mut T,
    role: Side,
    p: &SizeParams,
) -> Result<(), BenchError> {
    iterations(t, role, p, 0..p.warmup, None).map(|_| ())
}

/// The timed batches of one size after its warm-up, as `pace` decides.
pub fn run_timed<T: PingPongTransport>(
    t: &mut T,
    role: Side,
    p: &SizeParams,
    pace: &mut dyn Pace,
) -> Result<SizeSamples, BenchError> {
    run_batches(p.warmup, p.size as u64, 2, pace, &mut |range, rec| {
        iterations(t, role, p, range, Some(rec))
    })
}

/// Runs iterations `range` (messages numbered by iteration, so numbering continues across
/// calls); with `rec`, timed: each half round trip recorded, and the wall time returned.
fn iterations<T: PingPongTransport>(
    t: &mut T,
    role: Side,
    p: &SizeParams,
    range: std::ops::Range<u64>,
    mut rec: Option<&mut Recorder>,
) -> Result<u64, BenchError> {
    let clock = LoopClock::new();
    // The timed span of a batch: from here to the end of its last iteration.
    let start = Instant::now();
    let mut prev = clock.now();
    // The initiator's sample of iteration i is recorded in iteration i + 1, after its ping
    // left: the bookkeeping then overlaps the message's flight instead of delaying the ping.
    let mut pending: Option<u64> = None;
    // Message sequence numbers: the initiator's are even, the target's odd.
    for i in range {
        crate::stop::check()?;
        match role {
            Side::Initiator => {
                if p.verify {
                    pattern::fill(&mut t.send_buf()[..p.size], 2 * i);
                }
                t.send(p.size)?;
                if let (Some(rtt), Some(rec)) = (pending.take(), rec.as_deref_mut()) {
                    // Half a round trip.
                    rec.record(clock.ticks_to_nanos(rtt) / 2);
                }
                let got = t.wait_recv()?;
                let now = clock.now();
                check(t, p, got, 2 * i + 1, i)?;
                t.post_recv()?;
                // Converted to nanoseconds when recorded, while the next ping flies.
                pending = Some(now.saturating_sub(prev));
                prev = now;
            }
            Side::Target => {
                let got = t.wait_recv()?;
                check(t, p, got, 2 * i, i)?;
                t.post_recv()?;
                if p.verify {
                    pattern::fill(&mut t.send_buf()[..p.size], 2 * i + 1);
                }
                t.send(p.size)?;
            }
        }
    }
    let elapsed_ns = start.elapsed().as_nanos() as u64;
    if let (Some(rtt), Some(rec)) = (pending, rec) {
        rec.record(clock.ticks_to_nanos(rtt) / 2);
    }
    Ok(elapsed_ns)
}

#[inline]
fn check<T: PingPongTransport>(
    t: &T,
    p: &SizeParams,
    got: usize,
    seq: u64,
    iteration: u64,
) -> Result<(), BenchError> {
    if got != p.size {
        return Err(BenchError::Length {
            expected: p.size,
            got,
        });
    }
    if p.verify {
        if let Some((offset, expected, got)) = pattern::check(&t.recv_buf()[..p.size], seq) {
            return Err(BenchError::Verify {
                iteration,
                offset,
                expected,
                got,
            });
        }
    }
    Ok(())
}

/// fi_pingpong's figures for one size, from the elapsed time of the timed iterations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FabtestsFigures {
    /// usec/xfer: elapsed / iterations / 2.
    pub usec_per_xfer: f64,
    /// MB/sec (10^6): iterations x size x 2 / elapsed.
    pub mb_per_sec: f64,
    /// Mxfers/sec: 1 / usec_per_xfer.
    pub mxfers_per_sec: f64,
    /// Bytes counted: iterations x size x 2.
    pub bytes: u64,
}

impl FabtestsFigures {
    /// Computes the figures as fabtests does for a ping-pong (two transfers per iteration).
    pub fn new(size: u64, iterations: u64, elapsed_ns: u64) -> FabtestsFigures {
        FabtestsFigures::with_xfers(size, iterations, elapsed_ns, 2)
    }

    /// The figures with `xfers` transfers per iteration (fi_rma_pingpong's read: 1).
    pub fn with_xfers(size: u64, iterations: u64, elapsed_ns: u64, xfers: u64) -> FabtestsFigures {
        let us = elapsed_ns as f64 / 1000.0;
        // run_size refuses counts whose bytes pass 64 bits (check_counts); no wrap here.
        let bytes = iterations.saturating_mul(size).saturating_mul(xfers);
        let usec_per_xfer = us / iterations as f64 / xfers as f64;
        FabtestsFigures {
            usec_per_xfer,
            mb_per_sec: bytes as f64 / us,
            mxfers_per_sec: 1.0 / usec_per_xfer,
            bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::StoppedBy;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    /// An in-memory transport: two queues between two threads, with an optional delay per send.
    struct MemTransport {
        tx: Arc<Mutex<VecDeque<Vec<u8>>>>,
        rx: Arc<Mutex<VecDeque<Vec<u8>>>>,
        sbuf: Vec<u8>,
        rbuf: Vec<u8>,
        posted: bool,
        delay: Duration,
        corrupt_at: Option<u64>,
        sent: u64,
        shared_sent: SentCounter,
        /// How long each `wait_recv` waited, in call order.
        waits: Vec<Duration>,
    }

    impl PingPongTransport for MemTransport {
        fn post_recv(&mut self) -> Result<(), BenchError> {
            self.posted = true;
            Ok(())
        }
        fn send(&mut self, len: usize) -> Result<(), BenchError> {
            if !self.delay.is_zero() {
                std::thread::sleep(self.delay);
            }
            let mut m = self.sbuf[..len].to_vec();
            if self.corrupt_at == Some(self.sent) {
                m[len / 2] ^= 0xff;
            }
            self.sent += 1;
            self.shared_sent
                .0
                .store(self.sent, std::sync::atomic::Ordering::SeqCst);
            self.tx.lock().unwrap().push_back(m);
            Ok(())
        }
        fn wait_recv(&mut self) -> Result<usize, BenchError> {
            assert!(self.posted, "receive completed without a posted buffer");
            let start = std::time::Instant::now();
            loop {
                if start.elapsed() > Duration::from_secs(2) {
                    return Err(crate::fabric::FabricError::Timeout {
                        what: "a message",
                        secs: 2.0,
                    }
                    .into());
                }
                if let Some(m) = self.rx.lock().unwrap().pop_front() {
                    self.rbuf[..m.len()].copy_from_slice(&m);
                    self.posted = false;
                    self.waits.push(start.elapsed());
                    return Ok(m.len());
                }
                std::thread::yield_now();
            }
        }
        fn send_buf(&mut self) -> &mut [u8] {
            &mut self.sbuf
        }
        fn recv_buf(&self) -> &[u8] {
            &self.rbuf
        }
    }

    fn fixed(n: u64) -> crate::stats::Pacer {
        crate::stats::Pacer::new(crate::stats::Count::Fixed(n))
    }

    /// Messages a transport has sent so far, readable from its loop's hook.
    #[derive(Clone)]
    struct SentCounter(Arc<std::sync::atomic::AtomicU64>);

    impl SentCounter {
        fn get(&self) -> u64 {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    impl MemTransport {
        fn sent_counter(&self) -> SentCounter {
            self.shared_sent.clone()
        }
    }

    fn pair(delay: Duration, corrupt_at: Option<u64>) -> (MemTransport, MemTransport) {
        let a = Arc::new(Mutex::new(VecDeque::new()));
        let b = Arc::new(Mutex::new(VecDeque::new()));
        let mk = |tx: &Arc<_>, rx: &Arc<_>, d, c| MemTransport {
            tx: Arc::clone(tx),
            rx: Arc::clone(rx),
            sbuf: vec![0; 4096],
            rbuf: vec![0; 4096],
            posted: true,
            delay: d,
            corrupt_at: c,
            sent: 0,
            shared_sent: SentCounter(Arc::default()),
            waits: Vec::new(),
        };
        (
            mk(&a, &b, Duration::ZERO, None),
            mk(&b, &a, delay, corrupt_at),
        )
    }

    #[test]
    fn records_one_half_round_trip_per_timed_iteration() {
        let (mut ini, mut tgt) = pair(Duration::from_millis(2), None);
        let p = SizeParams {
            size: 100,
            warmup: 3,
            verify: true,
        };
        let h = std::thread::spawn(move || {
            run_size(&mut tgt, Side::Target, &p, &mut fixed(20)).map(|_| ())
        });
        let s = run_size(&mut ini, Side::Initiator, &p, &mut fixed(20)).unwrap();
        h.join().unwrap().unwrap();
        assert_eq!(s.latency_ns.len(), 20);
        assert_eq!(s.recent_ns.len(), 20);
        assert_eq!((s.iterations, s.stopped_by), (20, StoppedBy::Fixed));
        assert!(s.recent_ns.percentile(50.0).unwrap() >= 1_000_000);
        // The target sleeps 2 ms before each reply: every half round trip is >= 1 ms.
        assert!(
            s.latency_ns.min() >= 1_000_000,
            "min {}",
            s.latency_ns.min()
        );
        // The clock is read once per iteration, so each sample holds its iteration's whole wait
        // for the reply, and the samples lie within the batch's elapsed time. Both bounds hold
        // however the scheduler delays the test (it only widens the gap between them); 2 % is the
        // loop clock's calibration against the OS clock.
        let sum_full: f64 = s.latency_ns.mean() * 20.0 * 2.0;
        let waited: f64 = ini.waits[ini.waits.len() - 20..]
            .iter()
            .map(|d| d.as_nanos() as f64)
            .sum();
        assert!(
            sum_full >= waited * 0.98,
            "samples {sum_full} ns, waits {waited} ns"
        );
        assert!(
            sum_full <= s.elapsed_ns as f64 * 1.02,
            "samples {sum_full} ns, elapsed {} ns",
            s.elapsed_ns
        );
    }

    #[test]
    fn the_hook_runs_once_between_warm_up_and_timed_iterations_outside_the_clock() {
        let (mut ini, mut tgt) = pair(Duration::ZERO, None);
        let p = SizeParams {
            size: 100,
            warmup: 3,
            verify: true,
        };
        // Each side's hook notes how many messages it had sent, then stalls 200 ms (a slow
        // counter reading): none of it may show in a timed sample.
        let hook = |sent: u64, calls: &mut Vec<u64>| {
            calls.push(sent);
            std::thread::sleep(Duration::from_millis(200));
            Ok(())
        };
        let h = std::thread::spawn(move || {
            let mut calls = Vec::new();
            let sent = tgt.sent_counter();
            run_size_with(&mut tgt, Side::Target, &p, &mut fixed(20), &mut || {
                hook(sent.get(), &mut calls)
            })
            .map(|_| calls)
        });
        let mut calls = Vec::new();
        let sent = ini.sent_counter();
        let mut held = Duration::ZERO;
        let wall = std::time::Instant::now();
        let s = run_size_with(&mut ini, Side::Initiator, &p, &mut fixed(20), &mut || {
            let t = std::time::Instant::now();
            let r = hook(sent.get(), &mut calls);
            held += t.elapsed();
            r
        })
        .unwrap();
        let wall = wall.elapsed();
        // Once each, after the three warm-up messages of each side.
        assert_eq!(calls, [3]);
        assert_eq!(h.join().unwrap().unwrap(), [3]);
        assert_eq!(s.latency_ns.len(), 20);
        assert!(
            s.latency_ns.max() < 200_000_000,
            "a timed sample holds the hook: {} ns",
            s.latency_ns.max()
        );
        // The timed span and the hook's stall fit in the call one after the other, however
        // slowly the scheduler ran either (both read the same OS clock).
        let timed = Duration::from_nanos(s.elapsed_ns);
        assert!(timed + held <= wall, "{timed:?} + {held:?} > {wall:?}");
        // A failing hook ends the loop with its error.
        let (mut ini, _tgt) = pair(Duration::ZERO, None);
        let p = SizeParams { warmup: 0, ..p };
        let e = run_size_with(&mut ini, Side::Initiator, &p, &mut fixed(20), &mut || {
            Err(BenchError::Invalid("no counters".into()))
        })
        .unwrap_err();
        assert!(matches!(e, BenchError::Invalid(m) if m == "no counters"));
    }

    #[test]
    fn corrupted_payload_is_reported() {
        let (mut ini, mut tgt) = pair(Duration::ZERO, Some(4));
        let p = SizeParams {
            size: 64,
            warmup: 0,
            verify: true,
        };
        let h = std::thread::spawn(move || {
            run_size(&mut tgt, Side::Target, &p, &mut fixed(10)).map(|_| ())
        });
        let e = run_size(&mut ini, Side::Initiator, &p, &mut fixed(10))
            .err()
            .unwrap();
        assert!(
            matches!(
                e,
                BenchError::Verify {
                    iteration: 4,
                    offset: 32,
                    ..
                }
            ),
            "{e}"
        );
        drop(ini);
        let _ = h.join();
    }

    #[test]
    fn fabtests_arithmetic() {
        // 1000 iterations of 64 B in 1.42 ms: 0.71 usec/xfer, 90.14 MB/sec.
        let f = FabtestsFigures::new(64, 1000, 1_420_000);
        assert!((f.usec_per_xfer - 0.71).abs() < 1e-9);
        assert!((f.mb_per_sec - 128_000.0 / 1420.0).abs() < 1e-9);
        assert!((f.mxfers_per_sec - 1.0 / 0.71).abs() < 1e-9);
        assert_eq!(f.bytes, 128_000);
        // A read is one transfer per iteration: not halved.
        let r = FabtestsFigures::with_xfers(64, 1000, 1_420_000, 1);
        assert!((r.usec_per_xfer - 1.42).abs() < 1e-9);
        assert_eq!(r.bytes, 64_000);
        assert!((r.mb_per_sec - 64_000.0 / 1420.0).abs() < 1e-9);
    }
}

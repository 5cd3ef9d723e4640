//! ucx_perftest's tag_bw: the initiator streams messages keeping at most a window outstanding;
//! the receiver acknowledges the last one, so the measured bandwidth is end to end.

use std::time::Instant;

use hdrhistogram::Histogram;

use super::pattern;
use super::BenchError;
use crate::peer::Side;
use crate::stats::new_histogram;

/// What a windowed stream needs from a transport. Sends and receives complete in posting
/// order (tag matching on one endpoint keeps it).
pub trait WindowTransport {
    /// Posts a send of the first `len` bytes of send slot `slot`.
    fn post_send(&mut self, slot: usize, len: usize) -> Result<(), BenchError>;
    /// Waits for the oldest outstanding send to complete.
    fn complete_send(&mut self) -> Result<(), BenchError>;
    /// Posts a receive of up to `len` bytes into receive slot `slot`.
    fn post_recv(&mut self, slot: usize, len: usize) -> Result<(), BenchError>;
    /// Waits for the oldest outstanding receive; returns its length.
    fn complete_recv(&mut self) -> Result<usize, BenchError>;
    /// Posts the receive of the end-of-phase acknowledgement.
    fn post_ack_recv(&mut self) -> Result<(), BenchError>;
    /// Sends the acknowledgement and waits until it is on its way.
    fn send_ack(&mut self) -> Result<(), BenchError>;
    /// Waits for the acknowledgement posted with `post_ack_recv`.
    fn wait_ack(&mut self) -> Result<(), BenchError>;
    /// Send and receive slots each side has (1 unless payloads are verified).
    fn slots(&self) -> usize;
    /// Send slot `slot`.
    fn send_slot(&mut self, slot: usize) -> &mut [u8];
    /// Receive slot `slot`, after its receive completed.
    fn recv_slot(&self, slot: usize) -> &[u8];
}

/// One size's parameters.
#[derive(Debug, Clone, Copy)]
pub struct BwParams {
    /// Message size in bytes.
    pub size: usize,
    /// Timed messages.
    pub iterations: u64,
    /// Untimed messages before them (a phase of their own, acknowledged too).
    pub warmup: u64,
    /// Most sends outstanding at once (ucx_perftest's -O; 32 by default).
    pub window: usize,
    /// Fill and check every payload (needs `window` slots on each side).
    pub verify: bool,
}

/// What the initiator measured for one size (the receiver measures nothing).
pub struct BwSamples {
    /// Time between consecutive posts, nanoseconds (ucx_perftest's per-message "overhead").
    pub post_interval_ns: Histogram<u64>,
    /// From the first post to the acknowledgement of the last message, nanoseconds.
    pub elapsed_ns: u64,
    /// Timed messages.
    pub iterations: u64,
}

/// Sequence numbers of the timed phase start here, so no warm-up payload can pass for one.
const TIMED_BASE: u64 = 1 << 40;

/// Runs one size on either side.
pub fn run_size<T: WindowTransport>(
    t: &mut T,
    role: Side,
    p: &BwParams,
) -> Result<Option<BwSamples>, BenchError> {
    run_size_with(t, role, p, &mut || Ok(()))
}

/// [`run_size`], calling `at_timed` once between the warm-up phase and the timed one (a
/// failure there ends the loop).
pub fn run_size_with<T: WindowTransport>(
    t: &mut T,
    role: Side,
    p: &BwParams,
    at_timed: &mut dyn FnMut() -> Result<(), BenchError>,
) -> Result<Option<BwSamples>, BenchError> {
    match role {
        Side::Initiator => {
            if p.warmup > 0 {
                send_phase(t, p, p.warmup, 0)?;
            }
            at_timed()?;
            send_phase(t, p, p.iterations, TIMED_BASE).map(Some)
        }
        Side::Target => {
            if p.warmup > 0 {
                recv_phase(t, p, p.warmup, 0)?;
            }
            at_timed()?;
            recv_phase(t, p, p.iterations, TIMED_BASE)?;
            Ok(None)
        }
    }
}

fn send_phase<T: WindowTransport>(
    t: &mut T,
    p: &BwParams,
    n: u64,
    base: u64,
) -> Result<BwSamples, BenchError> {
    let slots = t.slots().max(1);
    let mut hist = new_histogram();
    t.post_ack_recv()?;
    let mut outstanding = 0usize;
    let start = Instant::now();
    let mut prev = start;
    for i in 0..n {
        crate::stop::check()?;
        if outstanding >= p.window.max(1) {
            t.complete_send()?;
            outstanding -= 1;
        }
        let slot = (i % slots as u64) as usize;
        if p.verify {
            pattern::fill(&mut t.send_slot(slot)[..p.size], base + i);
        }
        t.post_send(slot, p.size)?;
        outstanding += 1;
        let now = Instant::now();
        hist.saturating_record((now.duration_since(prev).as_nanos() as u64).max(1));
        prev = now;
    }
    while outstanding > 0 {
        t.complete_send()?;
        outstanding -= 1;
    }
    t.wait_ack()?;
    Ok(BwSamples {
        post_interval_ns: hist,
        elapsed_ns: start.elapsed().as_nanos() as u64,
        iterations: n,
    })
}

fn recv_phase<T: WindowTransport>(
    t: &mut T,
    p: &BwParams,
    n: u64,
    base: u64,
) -> Result<(), BenchError> {
    let slots = t.slots().max(1) as u64;
    let (mut posted, mut done) = (0u64, 0u64);
    while done < n {
        crate::stop::check()?;
        while posted < n && posted - done < p.window.max(1) as u64 {
            t.post_recv((posted % slots) as usize, p.size)?;
            posted += 1;
        }
        let got = t.complete_recv()?;
        if got != p.size {
            return Err(BenchError::Length {
                expected: p.size,
                got,
            });
        }
        if p.verify {
            let slot = (done % slots) as usize;
            if let Some((offset, expected, got)) =
                pattern::check(&t.recv_slot(slot)[..p.size], base + done)
            {
                return Err(BenchError::Verify {
                    iteration: done,
                    offset,
                    expected,
                    got,
                });
            }
        }
        done += 1;
    }
    t.send_ack()
}

/// ucx_perftest's figures for a stream, from its elapsed time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BwFigures {
    /// Bytes per second.
    pub bytes_per_sec: f64,
    /// MB/s as ucx_perftest prints it: 2^20 bytes per second (MiB/s).
    pub mib_per_sec: f64,
    /// GB/s in 10^9 bytes per second.
    pub gb_per_sec: f64,
    /// Messages per second.
    pub msg_per_sec: f64,
    /// Overall time per message in microseconds (ucx_perftest's "overall" overhead).
    pub usec_per_msg: f64,
}

impl BwFigures {
    /// `iterations` messages of `size` bytes in `elapsed_ns`.
    pub fn new(size: u64, iterations: u64, elapsed_ns: u64) -> BwFigures {
        let secs = elapsed_ns as f64 / 1e9;
        let bytes = size as f64 * iterations as f64;
        BwFigures {
            bytes_per_sec: bytes / secs,
            mib_per_sec: bytes / secs / (1u64 << 20) as f64,
            gb_per_sec: bytes / secs / 1e9,
            msg_per_sec: iterations as f64 / secs,
            usec_per_msg: elapsed_ns as f64 / 1000.0 / iterations as f64,
        }
    }
}

#[cfg(test)]
mod tests;

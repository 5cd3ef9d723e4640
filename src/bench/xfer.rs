//! The KV-sized transfer loop: one or more transfers of `size` bytes, each cut into chunks of at
//! most `block` bytes, with at most `window` chunks in flight; the target counts each
//! transfer's chunks (as one notification tells it) and confirms, so times are end to end.

use std::time::Duration;

use super::clock::LoopClock;
use super::BenchError;
use crate::xfer::{TargetEvent, XferInitiator, XferTarget};

/// The chunks of one transfer: (offset, length), in order, none longer than `block`.
pub fn plan_chunks(size: usize, block: usize) -> Vec<(usize, usize)> {
    let block = block.max(1);
    (0..size)
        .step_by(block)
        .map(|off| (off, block.min(size - off)))
        .collect()
}

/// One iteration's parameters on the initiator.
#[derive(Debug, Clone, Copy)]
pub struct IterParams {
    /// Bytes per transfer.
    pub size: usize,
    /// Largest chunk.
    pub block: usize,
    /// Chunks in flight at most.
    pub window: usize,
    /// Transfers driven together on this transport.
    pub transfers: usize,
    /// Give up after this long.
    pub timeout: Duration,
}

/// What one iteration measured on the initiator.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IterSample {
    /// Building the chunk plan (nixlbench's "prep"), ns.
    pub prep_ns: u64,
    /// Time spent inside post calls (nixlbench's "post"), ns.
    pub post_ns: u64,
    /// Per transfer: first post to its last local completion, ns.
    pub local_ns: Vec<u64>,
    /// Per transfer: first post to the target's confirmation, ns.
    pub confirmed_ns: Vec<u64>,
    /// Chunks per transfer.
    pub chunks: usize,
    /// Post attempts the transport refused (queue full).
    pub busy_retries: u64,
}

fn timeout_error(what: &'static str, timeout: Duration) -> BenchError {
    BenchError::Timeout {
        what,
        after: timeout,
    }
}

/// Whether more than `timeout` passed since reading `start` of `clock`.
#[inline]
fn past(clock: &LoopClock, start: u64, timeout: Duration) -> bool {
    u128::from(clock.nanos_between(start, clock.now())) > timeout.as_nanos()
}

/// Runs one iteration: every transfer posted, completed, notified and confirmed.
pub fn run_initiator_iteration<T: XferInitiator>(
    t: &mut T,
    p: &IterParams,
) -> Result<IterSample, BenchError> {
    if p.transfers == 0 || p.window == 0 || p.size == 0 {
        return Err(BenchError::Invalid(
            "transfers, window and size must be at least 1".into(),
        ));
    }
    let clock = LoopClock::new();
    let prep = clock.now();
    let chunks = plan_chunks(p.size, p.block);
    let prep_ns = clock.nanos_between(prep, clock.now());
    let n = chunks.len();
    let nt = p.transfers;
    let mut next = vec![0usize; nt];
    let mut done = vec![0usize; nt];
    let mut local_ns = vec![0u64; nt];
    let mut confirmed_ns: Vec<Option<u64>> = vec![None; nt];
    let mut unconfirmed = nt;
    let mut to_post = nt * n;
    let mut inflight = 0usize;
    let mut rr = 0usize;
    let mut post_ns = 0u64;
    let mut busy_retries = 0u64;
    let mut completed = Vec::with_capacity(64);
    let mut confirmed = Vec::with_capacity(nt);
    let mut spins = 0u32;
    let start = clock.now();
    while unconfirmed > 0 {
        while inflight < p.window && to_post > 0 {
            // Round robin over the transfers that still have chunks to post.
            let tr = (0..nt)
                .map(|k| (rr + k) % nt)
                .find(|&k| next[k] < n)
                .expect("to_post > 0 means some transfer has chunks left");
            let (off, len) = chunks[next[tr]];
            let a = clock.now();
            let ok = t.post(tr as u32, next[tr] as u32, off, len)?;
            post_ns += clock.nanos_between(a, clock.now());
            if !ok {
                busy_retries += 1;
                break;
            }
            next[tr] += 1;
            inflight += 1;
            to_post -= 1;
            rr = (tr + 1) % nt;
        }
        t.poll(&mut completed)?;
        for (tr, _chunk) in completed.drain(..) {
            let tr = tr as usize;
            if tr >= nt || done[tr] >= next[tr] {
                return Err(BenchError::Invalid(format!(
                    "a completion for transfer {tr} that was not posted"
                )));
            }
            inflight -= 1;
            done[tr] += 1;
            if done[tr] == n {
                local_ns[tr] = clock.nanos_between(start, clock.now());
                t.notify(tr as u32, n as u64)?;
            }
        }
        t.poll_confirmed(&mut confirmed)?;
        for tr in confirmed.drain(..) {
            let tr = tr as usize;
            match confirmed_ns.get_mut(tr) {
                Some(slot @ None) if done[tr] == n => {
                    *slot = Some(clock.nanos_between(start, clock.now()));
                    unconfirmed -= 1;
                }
                _ => {
                    return Err(BenchError::Invalid(format!(
                        "the target confirmed transfer {tr} before it was complete"
                    )))
                }
            }
        }
        spins = spins.wrapping_add(1);
        if spins & 0x3ff == 0 && past(&clock, start, p.timeout) {
            return Err(timeout_error("the transfers to complete", p.timeout));
        }
    }
    Ok(IterSample {
        prep_ns,
        post_ns,
        local_ns,
        confirmed_ns: confirmed_ns.into_iter().map(|c| c.unwrap_or(0)).collect(),
        chunks: n,
        busy_retries,
    })
}

/// What one iteration saw on the target: chunks counted per transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSample {
    /// Chunks counted per transfer.
    pub chunks: Vec<u64>,
}

/// The target's count of one iteration: each transfer's chunks against its notification,
/// confirmed once they match.
#[derive(Debug)]
pub struct TargetCount {
    counted: Vec<u64>,
    expected: Vec<Option<u64>>,
    confirmed: Vec<bool>,
    left: usize,
}

impl TargetCount {
    /// A count of `transfers` transfers, none seen yet.
    pub fn new(transfers: usize) -> TargetCount {
        TargetCount {
            counted: vec![0; transfers],
            expected: vec![None; transfers],
            confirmed: vec![false; transfers],
            left: transfers,
        }
    }

    /// Whether every transfer was confirmed.
    pub fn done(&self) -> bool {
        self.left == 0
    }

    /// Counts `events` (drained) and confirms through `t` each transfer now complete.
    pub fn take<T: XferTarget + ?Sized>(
        &mut self,
        t: &mut T,
        events: &mut Vec<TargetEvent>,
    ) -> Result<(), BenchError> {
        for ev in events.drain(..) {
            let tr = match ev {
                TargetEvent::Data(tr) => tr as usize,
                TargetEvent::Notify { transfer, .. } => transfer as usize,
            };
            if tr >= self.counted.len() || self.confirmed[tr] {
                return Err(BenchError::Invalid(format!(
                    "an event for transfer {tr}, which is not expected now"
                )));
            }
            match ev {
                TargetEvent::Data(_) => self.counted[tr] += 1,
                TargetEvent::Notify { chunks, .. } => self.expected[tr] = Some(chunks),
            }
            if let Some(e) = self.expected[tr] {
                if self.counted[tr] > e {
                    return Err(BenchError::Invalid(format!(
                        "transfer {tr}: {} chunks arrived where {e} were announced",
                        self.counted[tr]
                    )));
                }
                if self.counted[tr] == e {
                    t.confirm(tr as u32)?;
                    self.confirmed[tr] = true;
                    self.left -= 1;
                }
            }
        }
        Ok(())
    }

    /// What the iteration saw.
    pub fn sample(self) -> TargetSample {
        TargetSample {
            chunks: self.counted,
        }
    }
}

/// Runs one iteration on the target: counts each transfer's chunks until its notification's
/// count is reached, then confirms it.
pub fn run_target_iteration<T: XferTarget>(
    t: &mut T,
    transfers: usize,
    timeout: Duration,
) -> Result<TargetSample, BenchError> {
    let mut count = TargetCount::new(transfers);
    let mut events = Vec::with_capacity(64);
    let mut spins = 0u32;
    let clock = LoopClock::new();
    let start = clock.now();
    while !count.done() {
        t.poll(&mut events)?;
        count.take(t, &mut events)?;
        spins = spins.wrapping_add(1);
        if spins & 0x3ff == 0 && past(&clock, start, timeout) {
            return Err(timeout_error("the initiator's transfers", timeout));
        }
    }
    Ok(count.sample())
}

#[cfg(test)]
#[path = "xfer_tests.rs"]
mod tests;

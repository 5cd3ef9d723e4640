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

/// Gives up a spinning loop once more than its time-out passed since it started, reading the
/// clock only every 1024 spins.
struct SpinLimit {
    start: u64,
    timeout: Duration,
    spins: u32,
}

impl SpinLimit {
    /// Counts from the clock's reading `start`.
    fn new(start: u64, timeout: Duration) -> SpinLimit {
        SpinLimit {
            start,
            timeout,
            spins: 0,
        }
    }

    /// Counts a spin; the loop's time-out, waiting for `what`, once the time is up, and
    /// [`crate::stop::Stopped`] once a signal asked the process to stop.
    #[inline]
    fn spin(&mut self, clock: &LoopClock, what: &'static str) -> Result<(), BenchError> {
        self.spins = self.spins.wrapping_add(1);
        if self.spins & 0x3ff != 0 {
            return Ok(());
        }
        crate::stop::check()?;
        if u128::from(clock.nanos_between(self.start, clock.now())) > self.timeout.as_nanos() {
            return Err(BenchError::Timeout {
                what,
                after: self.timeout,
            });
        }
        Ok(())
    }
}

/// One transfer's progress on the initiator.
#[derive(Debug, Clone, Copy, Default)]
struct TransferState {
    /// Chunks posted.
    posted: usize,
    /// Chunks completed locally.
    done: usize,
    /// First post to the last local completion, ns.
    local_ns: u64,
    /// First post to the target's confirmation, ns, once it came.
    confirmed_ns: Option<u64>,
}

/// The initiator's side of one iteration: chunks posted round robin within the window, local
/// completions counted (a transfer's last one notifies the target), confirmations taken.
struct Initiation<'a> {
    chunks: &'a [(usize, usize)],
    window: usize,
    clock: &'a LoopClock,
    /// The clock's reading at the first post.
    start: u64,
    transfers: Vec<TransferState>,
    unconfirmed: usize,
    to_post: usize,
    inflight: usize,
    /// The transfer whose turn it is to post.
    rr: usize,
    post_ns: u64,
    busy_retries: u64,
}

impl<'a> Initiation<'a> {
    /// Nothing posted yet; the times count from now.
    fn new(chunks: &'a [(usize, usize)], p: &IterParams, clock: &'a LoopClock) -> Self {
        let transfers = vec![TransferState::default(); p.transfers];
        Initiation {
            chunks,
            window: p.window,
            clock,
            start: clock.now(),
            transfers,
            unconfirmed: p.transfers,
            to_post: p.transfers * chunks.len(),
            inflight: 0,
            rr: 0,
            post_ns: 0,
            busy_retries: 0,
        }
    }

    /// Posts chunks round robin over the transfers that have some left, while the window
    /// allows and the transport takes them.
    #[inline]
    fn post_window<T: XferInitiator>(&mut self, t: &mut T) -> Result<(), BenchError> {
        let (n, nt) = (self.chunks.len(), self.transfers.len());
        while self.inflight < self.window && self.to_post > 0 {
            let tr = (0..nt)
                .map(|k| (self.rr + k) % nt)
                .find(|&k| self.transfers[k].posted < n)
                .expect("to_post > 0 means some transfer has chunks left");
            let c = self.transfers[tr].posted;
            let (off, len) = self.chunks[c];
            let a = self.clock.now();
            let ok = t.post(tr as u32, c as u32, off, len)?;
            self.post_ns += self.clock.nanos_between(a, self.clock.now());
            if !ok {
                self.busy_retries += 1;
                return Ok(());
            }
            self.transfers[tr].posted += 1;
            self.inflight += 1;
            self.to_post -= 1;
            self.rr = (tr + 1) % nt;
        }
        Ok(())
    }

    /// Takes the transport's local completions (through `completed`) and counts them; a
    /// transfer's last one stamps its local time and notifies the target of its chunk count.
    #[inline]
    fn take_completions<T: XferInitiator>(
        &mut self,
        t: &mut T,
        completed: &mut Vec<(u32, u32)>,
    ) -> Result<(), BenchError> {
        t.poll(completed)?;
        let (n, clock, start) = (self.chunks.len(), self.clock, self.start);
        for (tr, _chunk) in completed.drain(..) {
            let s = match self.transfers.get_mut(tr as usize) {
                Some(s) if s.done < s.posted => s,
                _ => {
                    return Err(BenchError::Invalid(format!(
                        "a completion for transfer {tr} that was not posted"
                    )))
                }
            };
            self.inflight -= 1;
            s.done += 1;
            if s.done == n {
                s.local_ns = clock.nanos_between(start, clock.now());
                t.notify(tr, n as u64)?;
            }
        }
        Ok(())
    }

    /// Takes the target's confirmations (through `confirmed`), each of a transfer complete
    /// here, and stamps their times.
    #[inline]
    fn take_confirmations<T: XferInitiator>(
        &mut self,
        t: &mut T,
        confirmed: &mut Vec<u32>,
    ) -> Result<(), BenchError> {
        t.poll_confirmed(confirmed)?;
        let (n, clock, start) = (self.chunks.len(), self.clock, self.start);
        for tr in confirmed.drain(..) {
            match self.transfers.get_mut(tr as usize) {
                Some(s) if s.confirmed_ns.is_none() && s.done == n => {
                    s.confirmed_ns = Some(clock.nanos_between(start, clock.now()));
                    self.unconfirmed -= 1;
                }
                _ => {
                    return Err(BenchError::Invalid(format!(
                        "the target confirmed transfer {tr} before it was complete"
                    )))
                }
            }
        }
        Ok(())
    }

    /// The iteration's figures, with `prep_ns` spent planning the chunks.
    fn sample(&self, prep_ns: u64) -> IterSample {
        IterSample {
            prep_ns,
            post_ns: self.post_ns,
            local_ns: self.transfers.iter().map(|s| s.local_ns).collect(),
            confirmed_ns: self
                .transfers
                .iter()
                .map(|s| s.confirmed_ns.unwrap_or(0))
                .collect(),
            chunks: self.chunks.len(),
            busy_retries: self.busy_retries,
        }
    }
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
    let mut completed = Vec::with_capacity(64);
    let mut confirmed = Vec::with_capacity(p.transfers);
    let mut it = Initiation::new(&chunks, p, &clock);
    let mut limit = SpinLimit::new(it.start, p.timeout);
    while it.unconfirmed > 0 {
        it.post_window(t)?;
        it.take_completions(t, &mut completed)?;
        it.take_confirmations(t, &mut confirmed)?;
        limit.spin(&clock, "the transfers to complete")?;
    }
    Ok(it.sample(prep_ns))
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

    /// Makes every confirmed transfer's slot ready for its next transfer (open-loop runs reuse
    /// a slot once the initiator has its confirmation); how many there were.
    pub fn reopen_confirmed(&mut self) -> u64 {
        let mut n = 0;
        for tr in 0..self.confirmed.len() {
            if self.confirmed[tr] {
                self.confirmed[tr] = false;
                self.counted[tr] = 0;
                self.expected[tr] = None;
                self.left += 1;
                n += 1;
            }
        }
        n
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
    let clock = LoopClock::new();
    let mut limit = SpinLimit::new(clock.now(), timeout);
    while !count.done() {
        t.poll(&mut events)?;
        count.take(t, &mut events)?;
        limit.spin(&clock, "the initiator's transfers")?;
    }
    Ok(count.sample())
}

/// How often an open-loop target asks whether the session is over.
const OPEN_CHECK: Duration = Duration::from_millis(1);

/// Serves an open-loop session on the target: counts each slot's chunks against its
/// notification, confirms it and makes the slot ready again, until `ended` (asked about once a
/// millisecond) says the initiator closed the session. Gives up when nothing arrives for
/// `timeout`. Returns the transfers confirmed.
pub fn run_target_open<T: XferTarget>(
    t: &mut T,
    slots: usize,
    timeout: Duration,
    ended: &mut dyn FnMut() -> Result<bool, BenchError>,
) -> Result<u64, BenchError> {
    let mut count = TargetCount::new(slots);
    let mut events = Vec::with_capacity(64);
    let clock = LoopClock::new();
    let (mut last_event, mut last_check) = (clock.now(), clock.now());
    let mut confirmed = 0;
    loop {
        t.poll(&mut events)?;
        let now = clock.now();
        if !events.is_empty() {
            last_event = now;
            count.take(t, &mut events)?;
            confirmed += count.reopen_confirmed();
        }
        if u128::from(clock.nanos_between(last_check, now)) >= OPEN_CHECK.as_nanos() {
            last_check = now;
            if ended()? {
                return Ok(confirmed);
            }
            if u128::from(clock.nanos_between(last_event, now)) > timeout.as_nanos() {
                return Err(BenchError::Timeout {
                    what: "the initiator's open-loop transfers",
                    after: timeout,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;

//! The open-loop transfer loop: transfers arrive on a schedule whether or not earlier ones have
//! finished, each takes a free slot (its own region) or is counted as dropped, and their chunks
//! are posted first come first served within the window. Each transfer's times are kept from
//! its scheduled arrival, so its latency is measured from when it was due (corrected for
//! coordinated omission), beside the service time (first post to completion) and the queueing
//! delay (arrival to first post).

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::arrivals::Schedule;
use super::clock::LoopClock;
use super::xfer::plan_chunks;
use super::BenchError;
use crate::xfer::XferInitiator;

/// The loop's time, nanoseconds from its start.
pub trait OpenClock {
    /// Now.
    fn now(&self) -> u64;
    /// A pass found nothing to do; the next arrival is due at `next`, and transfers are
    /// outstanding when `busy`. A test's clock moves to the next thing that happens.
    fn idle(&self, _next: u64, _busy: bool) {}
}

/// The calibrated loop clock, counted from when this was made.
pub struct RealClock {
    clock: LoopClock,
    start: u64,
}

impl RealClock {
    /// Counting from now.
    pub fn start() -> RealClock {
        let clock = LoopClock::new();
        let start = clock.now();
        RealClock { clock, start }
    }
}

impl OpenClock for RealClock {
    #[inline]
    fn now(&self) -> u64 {
        self.clock.nanos_between(self.start, self.clock.now())
    }

    /// Spins while transfers are outstanding (the transport's idle count yields the core now
    /// and then); with none, sleeps until shortly before the next arrival, so a slow schedule
    /// leaves the core to others.
    fn idle(&self, next: u64, busy: bool) {
        const EARLY: u64 = 200_000;
        let now = self.now();
        if !busy && next > now + 2 * EARLY {
            std::thread::sleep(Duration::from_nanos((next - now - EARLY).min(10_000_000)));
        }
    }
}

/// When the schedule ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrivalLimit {
    /// After this many arrivals (warm-up not counted).
    Count(u64),
    /// Arrivals due within this long of the first one after the warm-up.
    Time(Duration),
}

/// One open-loop session's parameters.
#[derive(Debug, Clone, Copy)]
pub struct OpenParams {
    /// Bytes per transfer.
    pub size: usize,
    /// Largest chunk.
    pub block: usize,
    /// Chunks in flight at most.
    pub window: usize,
    /// Transfer slots: at most this many transfers outstanding; an arrival that finds none
    /// free is dropped.
    pub slots: usize,
    /// The first arrivals, scheduled and served but not recorded.
    pub warmup: u64,
    /// When the schedule ends.
    pub limit: ArrivalLimit,
    /// Give up when transfers are outstanding and nothing completes for this long.
    pub timeout: Duration,
}

/// One recorded transfer's times, ns from the session's start: scheduled arrival, first post,
/// last local completion, the target's confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arrived(pub u64, pub u64, pub u64, pub u64);

impl Arrived {
    /// When it was due.
    pub fn scheduled(&self) -> u64 {
        self.0
    }
    /// Its first chunk's post.
    pub fn posted(&self) -> u64 {
        self.1
    }
    /// Its last local completion.
    pub fn local(&self) -> u64 {
        self.2
    }
    /// The target's confirmation.
    pub fn confirmed(&self) -> u64 {
        self.3
    }
}

/// What a session saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpenOutcome {
    /// Recorded transfers, in completion order.
    pub transfers: Vec<Arrived>,
    /// Recorded arrivals (dropped ones included).
    pub arrivals: u64,
    /// Recorded arrivals that found every slot busy.
    pub dropped: u64,
    /// The first recorded arrival's time.
    pub first_arrival_ns: u64,
    /// The last recorded arrival's time.
    pub last_arrival_ns: u64,
    /// When the last transfer completed.
    pub end_ns: u64,
    /// Post attempts the transport refused (queue full).
    pub busy_retries: u64,
    /// Transfers the target confirmed, warm-up ones included: what the session moved.
    #[serde(default)]
    pub completed: u64,
}

/// A transfer in a slot.
#[derive(Debug, Clone, Copy)]
struct Active {
    recorded: bool,
    scheduled: u64,
    posted_at: u64,
    posted: usize,
    done: usize,
    local: Option<u64>,
}

/// The schedule's side of the loop: arrivals due, the warm-up and the limit.
struct Arrivals<'a> {
    schedule: &'a mut Schedule,
    next: u64,
    index: u64,
    open: bool,
    first_recorded: Option<u64>,
}

impl Arrivals<'_> {
    /// The next arrival due by `now`, whether it is recorded; None when none is due or the
    /// schedule has ended.
    fn due(&mut self, now: u64, p: &OpenParams) -> Option<(u64, bool)> {
        if !self.open || self.next > now {
            return None;
        }
        let recorded = self.index >= p.warmup;
        if recorded {
            let first = *self.first_recorded.get_or_insert(self.next);
            let over = match p.limit {
                ArrivalLimit::Count(n) => self.index - p.warmup >= n,
                ArrivalLimit::Time(d) => u128::from(self.next - first) >= d.as_nanos(),
            };
            if over {
                self.open = false;
                return None;
            }
        }
        let at = self.next;
        self.index += 1;
        self.next = self.schedule.next_arrival();
        Some((at, recorded))
    }
}

/// Runs one session: arrivals from `schedule` until its limit, each transfer in a free slot
/// (slot k is transfer index k on the transport), until every one is confirmed.
pub fn run_open_loop<T: XferInitiator, C: OpenClock>(
    t: &mut T,
    p: &OpenParams,
    schedule: &mut Schedule,
    clock: &C,
) -> Result<OpenOutcome, BenchError> {
    if p.slots == 0 || p.window == 0 || p.size == 0 {
        return Err(BenchError::Invalid(
            "slots, window and size must be at least 1".into(),
        ));
    }
    let chunks = plan_chunks(p.size, p.block);
    let n = chunks.len();
    let mut slots: Vec<Option<Active>> = vec![None; p.slots];
    // Slots with chunks left to post, in arrival order.
    let mut fifo: VecDeque<usize> = VecDeque::with_capacity(p.slots);
    let mut inflight = 0usize;
    let mut arrivals = Arrivals {
        next: schedule.next_arrival(),
        schedule,
        index: 0,
        open: true,
        first_recorded: None,
    };
    let mut out = OpenOutcome::default();
    let (mut completed, mut confirmed) = (Vec::with_capacity(64), Vec::with_capacity(p.slots));
    let mut last_progress = clock.now();
    loop {
        let mut progressed = false;
        progressed |= complete(t, clock, &mut completed, &mut slots, &mut inflight, n)?;
        progressed |= confirm(t, clock, &mut confirmed, &mut slots, &mut out)?;
        progressed |= admit(&mut arrivals, clock, p, &mut slots, &mut fifo, &mut out);
        progressed |= post_ready(
            t,
            clock,
            &chunks,
            &mut slots,
            &mut fifo,
            &mut inflight,
            p.window,
            &mut out,
        )?;
        if !arrivals.open && slots.iter().all(Option::is_none) {
            break;
        }
        let now = clock.now();
        if progressed {
            last_progress = now;
            continue;
        }
        let busy = slots.iter().any(Option::is_some);
        if busy && u128::from(now.saturating_sub(last_progress)) > p.timeout.as_nanos() {
            return Err(BenchError::Timeout {
                what: "the open-loop transfers to complete",
                after: p.timeout,
            });
        }
        clock.idle(
            if arrivals.open {
                arrivals.next
            } else {
                u64::MAX
            },
            busy,
        );
    }
    out.end_ns = clock.now();
    Ok(out)
}

/// Reads the local completions: each counts toward its transfer's chunks, and a transfer
/// whose `n` chunks are done notifies the target; true when any came.
fn complete<T: XferInitiator, C: OpenClock>(
    t: &mut T,
    clock: &C,
    completed: &mut Vec<(u32, u32)>,
    slots: &mut [Option<Active>],
    inflight: &mut usize,
    n: usize,
) -> Result<bool, BenchError> {
    let mut any = false;
    t.poll(completed)?;
    let now = clock.now();
    for (tr, _) in completed.drain(..) {
        let a = match slots.get_mut(tr as usize).and_then(Option::as_mut) {
            Some(a) if a.done < a.posted => a,
            _ => return Err(unexpected("a completion", tr)),
        };
        a.done += 1;
        *inflight -= 1;
        if a.done == n {
            a.local = Some(now);
            t.notify(tr, n as u64)?;
        }
        any = true;
    }
    Ok(any)
}

/// Reads the target's confirmations: each ends its transfer, freeing its slot, and a recorded
/// one joins the outcome; true when any came.
fn confirm<T: XferInitiator, C: OpenClock>(
    t: &mut T,
    clock: &C,
    confirmed: &mut Vec<u32>,
    slots: &mut [Option<Active>],
    out: &mut OpenOutcome,
) -> Result<bool, BenchError> {
    let mut any = false;
    t.poll_confirmed(confirmed)?;
    let now = clock.now();
    for tr in confirmed.drain(..) {
        let a = match slots.get_mut(tr as usize).map(Option::take) {
            Some(Some(a)) if a.local.is_some() => a,
            _ => return Err(unexpected("a confirmation", tr)),
        };
        if a.recorded {
            let local = a.local.unwrap_or(now);
            out.transfers
                .push(Arrived(a.scheduled, a.posted_at, local, now));
        }
        out.completed += 1;
        any = true;
    }
    Ok(any)
}

/// Takes every arrival due into a free slot (queued for posting), counting the recorded ones
/// and dropping those that find no slot; true when any arrived.
fn admit<C: OpenClock>(
    arrivals: &mut Arrivals<'_>,
    clock: &C,
    p: &OpenParams,
    slots: &mut [Option<Active>],
    fifo: &mut VecDeque<usize>,
    out: &mut OpenOutcome,
) -> bool {
    let mut admitted = false;
    while let Some((at, recorded)) = arrivals.due(clock.now(), p) {
        match slots.iter().position(Option::is_none) {
            Some(k) => {
                slots[k] = Some(Active {
                    recorded,
                    scheduled: at,
                    posted_at: 0,
                    posted: 0,
                    done: 0,
                    local: None,
                });
                fifo.push_back(k);
            }
            None if recorded => out.dropped += 1,
            None => {}
        }
        if recorded {
            if out.arrivals == 0 {
                out.first_arrival_ns = at;
            }
            out.arrivals += 1;
            out.last_arrival_ns = at;
        }
        admitted = true;
    }
    admitted
}

/// Posts the queued transfers' chunks in arrival order while the window has room and the
/// provider takes them; true when any was posted.
#[allow(clippy::too_many_arguments)]
fn post_ready<T: XferInitiator, C: OpenClock>(
    t: &mut T,
    clock: &C,
    chunks: &[(usize, usize)],
    slots: &mut [Option<Active>],
    fifo: &mut VecDeque<usize>,
    inflight: &mut usize,
    window: usize,
    out: &mut OpenOutcome,
) -> Result<bool, BenchError> {
    let mut posted = false;
    let n = chunks.len();
    while *inflight < window {
        let Some(&k) = fifo.front() else { break };
        let a = slots[k].as_mut().expect("a queued slot holds its transfer");
        let (off, len) = chunks[a.posted];
        let at = clock.now();
        if !t.post(k as u32, a.posted as u32, off, len)? {
            out.busy_retries += 1;
            break;
        }
        if a.posted == 0 {
            a.posted_at = at;
        }
        a.posted += 1;
        *inflight += 1;
        if a.posted == n {
            fifo.pop_front();
        }
        posted = true;
    }
    Ok(posted)
}

fn unexpected(what: &str, tr: u32) -> BenchError {
    BenchError::Invalid(format!(
        "{what} for transfer slot {tr}, which holds no such transfer"
    ))
}

#[cfg(test)]
mod tests;

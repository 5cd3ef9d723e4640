//! Which devices carried a run's payload: the kernel's counters read before the first and after
//! the last timed iteration (never inside one), attributed to the devices whose counters moved,
//! with what the span cost the CPU; each side's view, the verdict, and `--expect-path`.

pub mod counters;
pub mod expect;
pub mod verdict;
pub mod view;

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub use self::expect::{judge, ExpectPath, Judgement};
pub use self::verdict::{PathReport, SCOPE};
pub use self::view::{PathKind, Payload, SideView};

use crate::bench::BenchError;
use crate::bootstrap::Oob;
use crate::run::path::counters::{CounterReader, Snapshot};
use crate::run::sched::{SchedMark, ThreadSched};
use crate::run::RunError;

/// This host's counters and its name, found once for a run.
#[derive(Clone)]
pub struct Probe {
    reader: Arc<CounterReader>,
    host: String,
}

impl Probe {
    /// The counters of the host this process runs on (the sysfs and proc roots the
    /// environment sets).
    pub fn host() -> Probe {
        Probe::with(CounterReader::host(), &crate::run::environment::base().host)
    }

    /// The counters `reader` finds, on host `host`.
    pub fn with(reader: CounterReader, host: &str) -> Probe {
        Probe {
            reader: Arc::new(reader),
            host: host.to_string(),
        }
    }

    /// Reads every counter once.
    pub fn read(&self) -> Snapshot {
        self.reader.read()
    }

    /// The view of side `role` over the span between `before` and `after`, for `payload`.
    pub fn view(&self, role: &str, before: &Snapshot, after: &Snapshot, p: Payload) -> SideView {
        SideView::of(role, &self.host, self.reader.devices(), before, after, p)
    }
}

/// The two readings of a span, with the probe that took them.
pub struct SpanReadings {
    /// The host's counters.
    pub probe: Probe,
    /// Before the first timed iteration.
    pub before: Snapshot,
    /// After the last.
    pub after: Snapshot,
}

impl SpanReadings {
    /// The view of side `role` for `payload`.
    pub fn view(&self, role: &str, payload: Payload) -> SideView {
        self.probe.view(role, &self.before, &self.after, payload)
    }
}

#[derive(Default)]
struct GateState {
    started: usize,
    ended: usize,
    before: Option<Snapshot>,
    after: Option<Snapshot>,
    abandoned: bool,
}

/// The readings around the timed span of a side whose workers run at once: the last worker to
/// reach its first timed iteration reads before (the others wait for their peer at that
/// iteration's start), the last to finish its last timed iteration reads after.
pub struct SpanGate {
    probe: Probe,
    workers: usize,
    state: Mutex<GateState>,
    cv: Condvar,
}

impl SpanGate {
    /// A gate for `workers` workers reading `probe`.
    pub fn new(probe: Probe, workers: usize) -> SpanGate {
        SpanGate {
            probe,
            workers,
            state: Mutex::new(GateState::default()),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A worker is about to start its first timed iteration (none of its transfers in flight).
    pub fn start(&self) {
        let mut s = self.lock();
        s.started += 1;
        if s.started == self.workers {
            s.before = Some(self.probe.read());
            self.cv.notify_all();
        }
    }

    /// [`SpanGate::start`], then waits up to `timeout` until every worker has started and
    /// the reading before is taken (or a worker gave up): for workers that would otherwise
    /// send before it, such as open-loop sessions, which meet nowhere else.
    pub fn start_and_wait(&self, timeout: Duration) {
        self.start();
        drop(self.wait_for(timeout, |s| s.before.is_some()));
    }

    /// The state once `done` holds of it or a worker gave up, or once `timeout` has passed.
    fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&GateState) -> bool,
    ) -> std::sync::MutexGuard<'_, GateState> {
        let start = Instant::now();
        let mut s = self.lock();
        while !done(&s) && !s.abandoned {
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                break;
            }
            s = self
                .cv
                .wait_timeout(s, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        s
    }

    /// A worker finished its last timed iteration.
    pub fn end(&self) {
        let mut s = self.lock();
        s.ended += 1;
        if s.ended == self.workers && s.before.is_some() {
            s.after = Some(self.probe.read());
            self.cv.notify_all();
        }
    }

    /// A worker failed: nobody waits for the reading after.
    pub fn abandon(&self) {
        let mut s = self.lock();
        s.abandoned = true;
        self.cv.notify_all();
    }

    /// Waits up to `timeout` for the reading after the span; false when it did not come.
    pub fn wait_end(&self, timeout: Duration) -> bool {
        self.wait_for(timeout, |s| s.after.is_some())
            .after
            .is_some()
    }

    /// Both readings, once they were taken.
    pub fn readings(&self) -> Option<SpanReadings> {
        let s = self.lock();
        Some(SpanReadings {
            probe: self.probe.clone(),
            before: s.before.clone()?,
            after: s.after.clone()?,
        })
    }
}

/// A two-sided run's readings around each size's timed iterations: both sides meet over the
/// control connection before they read (nothing of either side is in flight) and after (the
/// peer starts its timed iterations only then), and trade their views at the end.
pub struct PairProbe {
    probe: Probe,
    role: &'static str,
    before: Option<Snapshot>,
    note: Option<&'static str>,
    failed: Option<RunError>,
    on: bool,
    /// This thread's scheduler counters at the start of the span.
    sched_from: Option<SchedMark>,
    /// An off probe's scheduler figures over the span it last finished, until taken.
    unreported: Option<ThreadSched>,
    /// What the span's scheduler figures leave out: the gaps between its batches.
    gaps: Option<ThreadSched>,
}

impl PairProbe {
    /// The probe of side `role` (`initiator`, `target`).
    pub fn new(role: &'static str) -> PairProbe {
        PairProbe {
            probe: Probe::host(),
            role,
            before: None,
            note: None,
            failed: None,
            on: true,
            sched_from: None,
            unreported: None,
            gaps: None,
        }
    }

    /// A probe of the same side that reads no counters and meets nobody (both sides must
    /// agree on it): for spans this one already witnessed, such as a run's later rounds. It
    /// still reads what the scheduler did to this thread, for [`PairProbe::take_sched`].
    pub fn off(&self) -> PairProbe {
        PairProbe {
            probe: self.probe.clone(),
            role: self.role,
            before: None,
            note: None,
            failed: None,
            on: false,
            sched_from: None,
            unreported: None,
            gaps: None,
        }
    }

    /// What the scheduler did to this thread over the span an off probe last finished (None
    /// from a probe that is on, whose view carries it, or where the counters could not be
    /// read).
    pub fn take_sched(&mut self) -> Option<ThreadSched> {
        self.unreported.take()
    }

    /// Says `note` in every view this probe makes (what its span holds beyond the timed
    /// iterations).
    pub fn with_note(mut self, note: &'static str) -> PairProbe {
        self.note = Some(note);
        self
    }

    /// Before the first timed iteration: meet, read, meet (an off probe only marks this
    /// thread's scheduler counters).
    pub fn start(&mut self, oob: &mut Oob) -> Result<(), RunError> {
        if !self.on {
            self.sched_from = SchedMark::now();
            return Ok(());
        }
        oob.barrier()?;
        self.before = Some(self.probe.read());
        oob.barrier()?;
        self.sched_from = SchedMark::now();
        Ok(())
    }

    /// [`PairProbe::start`] as the hook a loop calls before its first timed iteration: its
    /// error is kept for [`PairProbe::failure`], the loop told only that it must stop.
    pub fn hook<'a>(&'a mut self, oob: &'a mut Oob) -> impl FnMut() -> Result<(), BenchError> + 'a {
        move || {
            self.start(oob).map_err(|e| {
                let stop = BenchError::Invalid(format!("before the timed iterations: {e}"));
                self.failed = Some(e);
                stop
            })
        }
    }

    /// The timed batches of one loop under this probe: its span started, then `run` with the
    /// two-sided pace of side `role` and `count`; the gaps between the batches (the pacing,
    /// the word to or from the peer) are left out of the span's scheduler figures.
    pub fn timed<T>(
        &mut self,
        oob: &mut Oob,
        role: crate::peer::Side,
        count: crate::stats::Count,
        run: impl FnOnce(&mut dyn crate::bench::pace::Pace) -> Result<T, BenchError>,
    ) -> Result<T, BenchError> {
        self.hook(oob)()?;
        let mut pace = crate::run::pace::two_sided(role, count, oob);
        let out = run(&mut pace);
        self.gaps = pace.gaps();
        out
    }

    /// The error the hook met, when a loop stopped because of it; else the loop's `error` at
    /// `at`.
    pub fn failure(&mut self, at: String, error: BenchError) -> RunError {
        self.failed.take().unwrap_or(RunError::Bench { at, error })
    }

    /// After the last timed iteration: meet (everything has arrived), read, trade views. The
    /// path of this side's result, or None when [`PairProbe::start`] was not called.
    pub fn finish(
        &mut self,
        oob: &mut Oob,
        payload: Payload,
    ) -> Result<Option<PathReport>, RunError> {
        let gaps = self.gaps.take();
        let sched = self.sched_from.take().and_then(|m| m.since());
        let sched = sched.map(|s| gaps.map_or(s, |g| s.less(&g)));
        if !self.on {
            self.unreported = sched;
            return Ok(None);
        }
        oob.barrier()?;
        let after = self.probe.read();
        let ours = self
            .before
            .take()
            .map(|b| self.probe.view(self.role, &b, &after, payload))
            .map(|mut v| {
                v.notes.extend(self.note.map(String::from));
                v.sched = sched;
                v
            });
        let bytes = serde_json::to_vec(&ours).unwrap_or_else(|_| b"null".to_vec());
        let theirs: Option<SideView> =
            serde_json::from_slice(&oob.exchange(&bytes)?).unwrap_or(None);
        Ok(ours.map(|o| PathReport::of(o, theirs.into_iter().collect())))
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod view_tests;

//! How long a rank waits for the others: a rank at work on its part of the run (setting up,
//! measuring) says so once a second (a beat under `alive/R`), except while it is itself
//! waiting for other ranks; a wait gives up only after a whole time-out in which no rank's
//! beat moved. A pair that finishes minutes after the others (a slower link, a slower
//! registration) is waited for; a group in which every rank only waits still ends.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How often a working rank beats.
pub(super) const BEAT_EVERY: Duration = Duration::from_secs(1);

/// How often the beating thread looks whether the work is over.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// The name the beats are published under.
pub(super) const ALIVE: &str = "alive";

/// A rank's own beating: whether it is at work, and how many of its threads are waiting for
/// other ranks (no beat then).
#[derive(Debug, Default)]
pub(super) struct Beats {
    working: AtomicBool,
    waiting: AtomicUsize,
}

/// Marks one wait for other ranks while it lives.
pub(super) struct Waiting<'a>(&'a Beats);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Beats {
    /// A wait for other ranks begins; it ends when the guard is dropped.
    pub(super) fn waiting(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(self)
    }

    /// Runs `work`, calling `beat(n)` with n = 1, 2, ... from another thread at once and then
    /// once every [`BEAT_EVERY`] while `work` runs and no wait is open.
    pub(super) fn beating<T>(&self, beat: impl Fn(u64) + Sync, work: impl FnOnce() -> T) -> T {
        self.working.store(true, Ordering::SeqCst);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut n = 0;
                let mut last: Option<Instant> = None;
                while self.working.load(Ordering::SeqCst) {
                    let due = last.map_or(true, |t| t.elapsed() >= BEAT_EVERY);
                    if due && self.waiting.load(Ordering::SeqCst) == 0 {
                        n += 1;
                        beat(n);
                        last = Some(Instant::now());
                    }
                    std::thread::sleep(STOP_CHECK);
                }
            });
            // Ends the beating however `work` ends (a panic too: the scope joins the thread).
            let _over = Over(&self.working);
            work()
        })
    }
}

/// Clears a flag when dropped.
struct Over<'a>(&'a AtomicBool);

impl Drop for Over<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// A wait's patience: the time-out counts from the last change seen among the ranks' beats.
#[derive(Debug)]
pub(super) struct Patience {
    since: Instant,
    seen: Vec<(String, Vec<u8>)>,
    timeout: Duration,
}

impl Patience {
    /// A wait that starts now.
    pub(super) fn new(timeout: Duration) -> Patience {
        Patience {
            since: Instant::now(),
            seen: Vec::new(),
            timeout,
        }
    }

    /// Takes the beats read now (key and value, in key order); true once a whole time-out
    /// has passed since the wait began or any beat last moved.
    pub(super) fn exhausted(&mut self, beats: Vec<(String, Vec<u8>)>) -> bool {
        if beats != self.seen {
            self.since = Instant::now();
            self.seen = beats;
        }
        self.since.elapsed() >= self.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn work_beats_at_once_and_every_second_but_not_while_it_waits() {
        let beats = Beats::default();
        let got = Mutex::new(Vec::new());
        let out = beats.beating(
            |n| got.lock().unwrap().push((n, Instant::now())),
            || {
                std::thread::sleep(BEAT_EVERY + BEAT_EVERY / 2);
                let w = beats.waiting();
                std::thread::sleep(BEAT_EVERY * 2);
                drop(w);
                std::thread::sleep(BEAT_EVERY / 2);
                7
            },
        );
        assert_eq!(out, 7);
        let got = got.into_inner().unwrap();
        let ns: Vec<u64> = got.iter().map(|(n, _)| *n).collect();
        // At once, one second later, none during the two-second wait, one once it ended.
        assert_eq!(ns, [1, 2, 3], "{got:?}");
        let gap = got[2].1 - got[1].1;
        assert!(gap >= BEAT_EVERY * 2, "{gap:?}");
    }

    #[test]
    fn work_that_panics_ends_its_beating_instead_of_hanging() {
        let beats = Beats::default();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            beats.beating(|_| {}, || panic!("the work failed"))
        }));
        assert!(caught.is_err());
        assert!(!beats.working.load(Ordering::SeqCst));
    }

    #[test]
    fn patience_restarts_when_a_beat_moves_and_runs_out_when_none_does() {
        let beat = |v: &str| vec![("alive/1".to_string(), v.as_bytes().to_vec())];
        let mut p = Patience::new(Duration::from_millis(50));
        assert!(!p.exhausted(beat("1")));
        std::thread::sleep(Duration::from_millis(60));
        // The beat moved: the time-out counts again from now.
        assert!(!p.exhausted(beat("2")));
        std::thread::sleep(Duration::from_millis(60));
        assert!(p.exhausted(beat("2")));
        // No beats at all: the wait's own time-out.
        let mut silent = Patience::new(Duration::from_millis(50));
        assert!(!silent.exhausted(Vec::new()));
        std::thread::sleep(Duration::from_millis(60));
        assert!(silent.exhausted(Vec::new()));
    }
}

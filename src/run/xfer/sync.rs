//! A barrier for the threads of one process that gives up after a time-out and can be broken
//! by a thread that failed, so no thread waits forever for one that is gone.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::run::RunError;

struct State {
    /// Threads that still meet here.
    n: usize,
    waiting: usize,
    generation: u64,
    broken: bool,
}

impl State {
    /// Lets every waiter go on.
    fn release(&mut self, cv: &Condvar) {
        self.waiting = 0;
        self.generation += 1;
        cv.notify_all();
    }
}

/// A reusable barrier for `n` threads with a time-out; a thread that is done leaves it.
pub struct TimedBarrier {
    state: Mutex<State>,
    cv: Condvar,
}

impl TimedBarrier {
    /// A barrier for `n` threads.
    pub fn new(n: usize) -> TimedBarrier {
        TimedBarrier {
            state: Mutex::new(State {
                n,
                waiting: 0,
                generation: 0,
                broken: false,
            }),
            cv: Condvar::new(),
        }
    }

    /// Waits until all `n` threads arrive, the barrier is broken, or `timeout` passes.
    pub fn wait(&self, timeout: Duration) -> Result<(), RunError> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.broken {
            return Err(RunError::Aborted);
        }
        s.waiting += 1;
        if s.waiting >= s.n {
            s.release(&self.cv);
            return Ok(());
        }
        let gen = s.generation;
        let start = Instant::now();
        while s.generation == gen && !s.broken {
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                s.broken = true;
                self.cv.notify_all();
                return Err(RunError::Barrier { after: timeout });
            }
            s = self
                .cv
                .wait_timeout(s, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if s.generation == gen {
            return Err(RunError::Aborted);
        }
        Ok(())
    }

    /// This thread meets here no more: the others no longer wait for it.
    pub fn leave(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.n = s.n.saturating_sub(1);
        if s.waiting > 0 && s.waiting >= s.n {
            s.release(&self.cv);
        }
    }

    /// Releases every waiter with an error, now and for later waits.
    pub fn break_all(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.broken = true;
        self.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn releases_all_then_reuses() {
        let b = Arc::new(TimedBarrier::new(3));
        let hs: Vec<_> = (0..3)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    b.wait(Duration::from_secs(5)).unwrap();
                    b.wait(Duration::from_secs(5)).unwrap();
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    }

    #[test]
    fn a_thread_that_leaves_is_not_waited_for() {
        let b = Arc::new(TimedBarrier::new(3));
        let b2 = b.clone();
        let waiter = std::thread::spawn(move || b2.wait(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(10));
        // Of three, one leaves while one waits: the two left meet.
        b.leave();
        b.wait(Duration::from_secs(10)).unwrap();
        waiter.join().unwrap().unwrap();
        // A leave that completes a meeting releases the one waiting.
        let c = Arc::new(TimedBarrier::new(2));
        let c2 = c.clone();
        let waiter = std::thread::spawn(move || c2.wait(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(10));
        c.leave();
        waiter.join().unwrap().unwrap();
    }

    #[test]
    fn times_out_and_breaks() {
        let b = Arc::new(TimedBarrier::new(2));
        let start = Instant::now();
        let e = b.wait(Duration::from_millis(50)).unwrap_err();
        assert!(
            matches!(e, RunError::Barrier { after } if after == Duration::from_millis(50)),
            "{e:?}"
        );
        assert!(start.elapsed() < Duration::from_secs(2));
        let e = b.wait(Duration::from_secs(5)).unwrap_err();
        assert!(matches!(e, RunError::Aborted), "stays broken: {e:?}");
        let c = Arc::new(TimedBarrier::new(2));
        let c2 = c.clone();
        let h = std::thread::spawn(move || c2.wait(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(20));
        c.break_all();
        let e = h.join().unwrap().unwrap_err();
        assert!(matches!(e, RunError::Aborted), "{e:?}");
    }
}

//! The open-loop loop against a fake end whose every chunk takes a known service time, on a
//! clock that jumps from one event to the next: the times are exact.

use std::cell::RefCell;
use std::rc::Rc;

use super::*;
use crate::bench::arrivals::{ArrivalKind, Schedule};
use crate::xfer::XferError;

const MS: u64 = 1_000_000;

/// Virtual time and the fake end's chunks in flight (slot, chunk, completion time).
#[derive(Default)]
struct World {
    now: u64,
    inflight: Vec<(u32, u32, u64)>,
    confirmations: Vec<u32>,
}

struct FakeClock(Rc<RefCell<World>>);

impl OpenClock for FakeClock {
    fn now(&self) -> u64 {
        self.0.borrow().now
    }
    fn idle(&self, next: u64, _busy: bool) {
        let mut w = self.0.borrow_mut();
        let due = w.inflight.iter().map(|c| c.2).min().unwrap_or(u64::MAX);
        let to = next.min(due);
        assert!(to != u64::MAX, "idle with nothing to wait for");
        w.now = w.now.max(to);
    }
}

/// One chunk at a time takes `service` from its post (the window of 1 keeps them in turn);
/// the target confirms a transfer the moment it is notified.
struct FakeEnd {
    world: Rc<RefCell<World>>,
    service: u64,
}

impl XferInitiator for FakeEnd {
    fn post(&mut self, tr: u32, c: u32, _off: usize, _len: usize) -> Result<bool, XferError> {
        let mut w = self.world.borrow_mut();
        let due = w.now + self.service;
        w.inflight.push((tr, c, due));
        Ok(true)
    }
    fn poll(&mut self, done: &mut Vec<(u32, u32)>) -> Result<(), XferError> {
        let mut w = self.world.borrow_mut();
        let now = w.now;
        w.inflight.retain(|&(tr, c, due)| {
            if due <= now {
                done.push((tr, c));
                false
            } else {
                true
            }
        });
        Ok(())
    }
    fn notify(&mut self, tr: u32, _chunks: u64) -> Result<(), XferError> {
        self.world.borrow_mut().confirmations.push(tr);
        Ok(())
    }
    fn poll_confirmed(&mut self, out: &mut Vec<u32>) -> Result<(), XferError> {
        out.append(&mut self.world.borrow_mut().confirmations);
        Ok(())
    }
}

fn run(slots: usize, service: u64, arrivals: u64) -> OpenOutcome {
    let world = Rc::new(RefCell::new(World::default()));
    let mut end = FakeEnd {
        world: world.clone(),
        service,
    };
    let p = OpenParams {
        size: 4096,
        block: 4096,
        window: 1,
        slots,
        warmup: 0,
        limit: ArrivalLimit::Count(arrivals),
        timeout: Duration::from_secs(1),
    };
    // One arrival per millisecond.
    let mut schedule = Schedule::new(ArrivalKind::Fixed, 1000.0, 0);
    run_open_loop(&mut end, &p, &mut schedule, &FakeClock(world)).unwrap()
}

#[test]
fn latency_counts_from_the_scheduled_arrival() {
    // Each transfer takes 2 ms and one arrives every 1 ms: the k-th waits k ms for the ones
    // before it. A closed loop would see 2 ms each; from the schedule they take 2, 3, ... 6 ms.
    let o = run(8, 2 * MS, 5);
    let want: Vec<Arrived> = (0..5)
        .map(|k| Arrived(k * MS, 2 * k * MS, 2 * (k + 1) * MS, 2 * (k + 1) * MS))
        .collect();
    assert_eq!(o.transfers, want);
    let corrected: Vec<u64> = o
        .transfers
        .iter()
        .map(|a| a.confirmed() - a.scheduled())
        .collect();
    assert_eq!(corrected, [2 * MS, 3 * MS, 4 * MS, 5 * MS, 6 * MS]);
    assert!(o
        .transfers
        .iter()
        .all(|a| a.confirmed() - a.posted() == 2 * MS));
    assert_eq!((o.arrivals, o.dropped), (5, 0));
    assert_eq!(
        (o.first_arrival_ns, o.last_arrival_ns, o.end_ns),
        (0, 4 * MS, 10 * MS)
    );
}

#[test]
fn arrivals_that_find_every_slot_busy_are_dropped_not_delayed() {
    // Two slots, 2.5 ms per transfer, an arrival each ms: those due at 2 and 4 ms find both
    // slots taken and are dropped; the rest keep their scheduled times.
    let o = run(2, 5 * MS / 2, 6);
    assert_eq!((o.arrivals, o.dropped), (6, 2));
    let h = MS / 2;
    assert_eq!(
        o.transfers,
        [
            Arrived(0, 0, 5 * h, 5 * h),
            Arrived(2 * h, 5 * h, 10 * h, 10 * h),
            Arrived(6 * h, 10 * h, 15 * h, 15 * h),
            Arrived(10 * h, 15 * h, 20 * h, 20 * h),
        ]
    );
}

#[test]
fn warm_up_arrivals_are_served_but_not_recorded() {
    let world = Rc::new(RefCell::new(World::default()));
    let mut end = FakeEnd {
        world: world.clone(),
        service: MS / 2,
    };
    let p = OpenParams {
        size: 10,
        block: 4,
        window: 4,
        slots: 4,
        warmup: 3,
        limit: ArrivalLimit::Time(Duration::from_millis(4)),
        timeout: Duration::from_secs(1),
    };
    let mut schedule = Schedule::new(ArrivalKind::Fixed, 1000.0, 0);
    let o = run_open_loop(&mut end, &p, &mut schedule, &FakeClock(world)).unwrap();
    // Arrivals at 0, 1, 2 ms warm up; 3..6 ms fall within 4 ms of the first recorded one.
    assert_eq!(o.arrivals, 4);
    assert_eq!(o.first_arrival_ns, 3 * MS);
    assert_eq!(o.last_arrival_ns, 6 * MS);
    let scheduled: Vec<u64> = o.transfers.iter().map(Arrived::scheduled).collect();
    assert_eq!(scheduled, [3 * MS, 4 * MS, 5 * MS, 6 * MS]);
    // Three chunks, all posted at once (window 4), each 0.5 ms.
    assert!(o
        .transfers
        .iter()
        .all(|a| a.confirmed() - a.scheduled() == MS / 2));
}

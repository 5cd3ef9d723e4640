//! Tests of the transfer loop against an in-memory transport.

use std::collections::VecDeque;

use super::*;

/// Completes the oldest chunks a few at a time, refuses some posts, and plays the target:
/// a notification is confirmed when every chunk of the transfer was posted and completed.
struct Fake {
    size: usize,
    inflight: VecDeque<(u32, u32, usize, usize)>,
    max_inflight: usize,
    posts: u64,
    refuse_every: u64,
    bytes: Vec<usize>,
    notified: Vec<(u32, u64)>,
    pending_confirm: Vec<u32>,
}

impl Fake {
    fn new(size: usize, transfers: usize) -> Fake {
        Fake {
            size,
            inflight: VecDeque::new(),
            max_inflight: 0,
            posts: 0,
            refuse_every: 5,
            bytes: vec![0; transfers],
            notified: Vec::new(),
            pending_confirm: Vec::new(),
        }
    }
}

impl XferInitiator for Fake {
    fn post(
        &mut self,
        tr: u32,
        c: u32,
        off: usize,
        len: usize,
    ) -> Result<bool, crate::xfer::XferError> {
        self.posts += 1;
        if self.posts % self.refuse_every == 0 {
            return Ok(false);
        }
        assert!(off + len <= self.size && len > 0);
        self.inflight.push_back((tr, c, off, len));
        self.max_inflight = self.max_inflight.max(self.inflight.len());
        Ok(true)
    }
    fn poll(&mut self, done: &mut Vec<(u32, u32)>) -> Result<(), crate::xfer::XferError> {
        for _ in 0..2 {
            if let Some((tr, c, _, len)) = self.inflight.pop_front() {
                self.bytes[tr as usize] += len;
                done.push((tr, c));
            }
        }
        Ok(())
    }
    fn notify(&mut self, tr: u32, chunks: u64) -> Result<(), crate::xfer::XferError> {
        self.notified.push((tr, chunks));
        if self.bytes[tr as usize] == self.size {
            self.pending_confirm.push(tr);
        }
        Ok(())
    }
    fn poll_confirmed(&mut self, out: &mut Vec<u32>) -> Result<(), crate::xfer::XferError> {
        out.append(&mut self.pending_confirm);
        Ok(())
    }
}

fn params(size: usize, block: usize, window: usize, transfers: usize) -> IterParams {
    IterParams {
        size,
        block,
        window,
        transfers,
        timeout: Duration::from_secs(5),
    }
}

#[test]
fn chunks_cover_the_transfer_without_overlap() {
    assert_eq!(plan_chunks(10, 4), vec![(0, 4), (4, 4), (8, 2)]);
    assert_eq!(plan_chunks(8, 4), vec![(0, 4), (4, 4)]);
    assert_eq!(plan_chunks(3, 100), vec![(0, 3)]);
    let c = plan_chunks(704_643_072, 4 << 20);
    assert_eq!(c.len(), 168);
    assert_eq!(c.iter().map(|x| x.1).sum::<usize>(), 704_643_072);
}

#[test]
fn one_transfer_respects_the_window_and_is_confirmed() {
    let mut f = Fake::new(1000, 1);
    let s = run_initiator_iteration(&mut f, &params(1000, 64, 4, 1)).unwrap();
    assert_eq!(s.chunks, 16);
    assert_eq!(f.bytes, vec![1000]);
    assert!(
        f.max_inflight <= 4 && f.max_inflight >= 2,
        "{}",
        f.max_inflight
    );
    assert_eq!(f.notified, vec![(0, 16)]);
    assert!(s.busy_retries > 0, "refused posts are counted");
    assert!(s.local_ns[0] <= s.confirmed_ns[0]);
    assert!(s.confirmed_ns[0] > 0);
}

#[test]
fn outstanding_transfers_share_the_window_round_robin() {
    let mut f = Fake::new(4096, 3);
    let s = run_initiator_iteration(&mut f, &params(4096, 1024, 6, 3)).unwrap();
    assert_eq!(s.chunks, 4);
    assert_eq!(f.bytes, vec![4096; 3]);
    assert!(f.max_inflight <= 6);
    let mut n = f.notified.clone();
    n.sort();
    assert_eq!(n, vec![(0, 4), (1, 4), (2, 4)]);
    assert_eq!(s.confirmed_ns.len(), 3);
    assert!(s.confirmed_ns.iter().all(|&c| c > 0));
}

#[test]
fn zero_window_is_refused() {
    let mut f = Fake::new(10, 1);
    assert!(run_initiator_iteration(&mut f, &params(10, 4, 0, 1)).is_err());
}

/// Takes every post, then completes and confirms what it is told to, posted or not.
struct Stray {
    complete: Vec<(u32, u32)>,
    confirm: Vec<u32>,
}

impl XferInitiator for Stray {
    fn post(&mut self, _: u32, _: u32, _: usize, _: usize) -> Result<bool, crate::xfer::XferError> {
        Ok(true)
    }
    fn poll(&mut self, done: &mut Vec<(u32, u32)>) -> Result<(), crate::xfer::XferError> {
        done.append(&mut self.complete);
        Ok(())
    }
    fn notify(&mut self, _: u32, _: u64) -> Result<(), crate::xfer::XferError> {
        Ok(())
    }
    fn poll_confirmed(&mut self, out: &mut Vec<u32>) -> Result<(), crate::xfer::XferError> {
        out.append(&mut self.confirm);
        Ok(())
    }
}

#[test]
fn stray_completions_and_early_confirmations_are_refused_and_silence_times_out() {
    let stray = |complete: Vec<(u32, u32)>, confirm: Vec<u32>| Stray { complete, confirm };
    // One transfer of two 1-byte chunks with a window of one: only chunk 0 is posted at first.
    let p = IterParams {
        timeout: Duration::from_millis(50),
        ..params(2, 1, 1, 1)
    };
    let cases = [
        (
            stray(vec![(3, 0)], vec![]),
            "a completion for transfer 3 that was not posted",
        ),
        (
            stray(vec![(0, 0), (0, 1)], vec![]),
            "a completion for transfer 0 that was not posted",
        ),
        (
            stray(vec![], vec![0]),
            "the target confirmed transfer 0 before it was complete",
        ),
        (
            stray(vec![(0, 0)], vec![0]),
            "the target confirmed transfer 0 before it was complete",
        ),
    ];
    for (mut t, want) in cases {
        let e = run_initiator_iteration(&mut t, &p).unwrap_err();
        assert!(matches!(&e, BenchError::Invalid(m) if m == want), "{e}");
    }
    let e = run_initiator_iteration(&mut stray(vec![], vec![]), &p).unwrap_err();
    assert!(
        matches!(e, BenchError::Timeout { what: "the transfers to complete", after }
            if after == Duration::from_millis(50)),
        "{e}"
    );
}

/// A target fed from a script of events; records confirmations.
struct Script {
    events: VecDeque<Vec<TargetEvent>>,
    confirmed: Vec<u32>,
}

impl XferTarget for Script {
    fn poll(&mut self, out: &mut Vec<TargetEvent>) -> Result<(), crate::xfer::XferError> {
        if let Some(batch) = self.events.pop_front() {
            out.extend(batch);
        }
        Ok(())
    }
    fn confirm(&mut self, tr: u32) -> Result<(), crate::xfer::XferError> {
        self.confirmed.push(tr);
        Ok(())
    }
}

#[test]
fn target_confirms_when_the_announced_count_is_reached_in_any_order() {
    use TargetEvent::*;
    let mut s = Script {
        events: VecDeque::from(vec![
            vec![Data(1), Data(0)],
            vec![Notify {
                transfer: 1,
                chunks: 3,
            }],
            vec![Data(1), Data(0)],
            vec![
                Notify {
                    transfer: 0,
                    chunks: 2,
                },
                Data(1),
            ],
        ]),
        confirmed: vec![],
    };
    let r = run_target_iteration(&mut s, 2, Duration::from_secs(2)).unwrap();
    assert_eq!(r.chunks, vec![2, 3]);
    assert_eq!(s.confirmed, vec![0, 1]);
}

#[test]
fn target_refuses_more_chunks_than_announced_and_times_out_when_short() {
    use TargetEvent::*;
    let mut s = Script {
        events: VecDeque::from(vec![vec![
            Data(0),
            Data(0),
            Notify {
                transfer: 0,
                chunks: 1,
            },
        ]]),
        confirmed: vec![],
    };
    let e = run_target_iteration(&mut s, 1, Duration::from_secs(2)).unwrap_err();
    assert!(e.to_string().contains("2 chunks arrived where 1"), "{e}");
    let mut short = Script {
        events: VecDeque::from(vec![vec![Notify {
            transfer: 0,
            chunks: 2,
        }]]),
        confirmed: vec![],
    };
    let e = run_target_iteration(&mut short, 1, Duration::from_millis(50)).unwrap_err();
    assert!(
        matches!(e, BenchError::Timeout { after, .. } if after == Duration::from_millis(50)),
        "{e}"
    );
}

#[test]
fn a_timeout_of_either_library_is_the_loops_own() {
    let after = Duration::from_millis(1500);
    let from_fabric = BenchError::from(crate::fabric::FabricError::Timeout {
        what: "completions",
        secs: 1.5,
    });
    let from_ucx = BenchError::from(crate::ucx::UcxError::Timeout {
        what: "completions",
        secs: 1.5,
    });
    for e in [from_fabric, from_ucx] {
        assert!(
            matches!(e, BenchError::Timeout { what: "completions", after: a } if a == after),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "timed out after 1.5 s waiting for completions"
        );
    }
    let other = BenchError::from(crate::ucx::UcxError::Invalid("x".into()));
    assert!(matches!(other, BenchError::Ucx(_)), "{other:?}");
}

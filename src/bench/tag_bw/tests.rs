//! The windowed stream against an in-memory transport whose delays and faults are scripted.

use super::*;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Queue = Arc<Mutex<VecDeque<(u64, Vec<u8>)>>>;

const DATA: u64 = 1;
const ACK: u64 = 2;

/// Messages travel through a shared queue; a send "completes" once the receiver took it.
struct Mem {
    tx: Queue,
    rx: Queue,
    taken_by_peer: Arc<AtomicUsize>,
    taken_by_us: Arc<AtomicUsize>,
    sent: usize,
    completed: usize,
    max_outstanding: usize,
    posted: VecDeque<usize>,
    ack_posted: bool,
    sbufs: Vec<Vec<u8>>,
    rbufs: Vec<Vec<u8>>,
    recv_delay: Duration,
    ack_delay: Duration,
    corrupt_at: Option<usize>,
}

fn wait_for(q: &Queue, tag: u64) -> Vec<u8> {
    let start = Instant::now();
    loop {
        {
            let mut q = q.lock().unwrap();
            if let Some(pos) = q.iter().position(|(t, _)| *t == tag) {
                return q.remove(pos).unwrap().1;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "message never came"
        );
        std::thread::yield_now();
    }
}

impl WindowTransport for Mem {
    fn post_send(&mut self, slot: usize, len: usize) -> Result<(), BenchError> {
        let mut m = self.sbufs[slot][..len].to_vec();
        if self.corrupt_at == Some(self.sent) {
            m[len - 1] ^= 0x80;
        }
        self.tx.lock().unwrap().push_back((DATA, m));
        self.sent += 1;
        self.max_outstanding = self.max_outstanding.max(self.sent - self.completed);
        Ok(())
    }
    fn complete_send(&mut self) -> Result<(), BenchError> {
        let start = Instant::now();
        while self.taken_by_peer.load(Ordering::SeqCst) <= self.completed {
            if start.elapsed() > Duration::from_secs(5) {
                return Err(BenchError::Invalid(
                    "the peer stopped taking messages".into(),
                ));
            }
            std::thread::yield_now();
        }
        self.completed += 1;
        Ok(())
    }
    fn post_recv(&mut self, slot: usize, _len: usize) -> Result<(), BenchError> {
        self.posted.push_back(slot);
        Ok(())
    }
    fn complete_recv(&mut self) -> Result<usize, BenchError> {
        let slot = self.posted.pop_front().expect("a receive was posted");
        std::thread::sleep(self.recv_delay);
        let m = wait_for(&self.rx, DATA);
        self.taken_by_us.fetch_add(1, Ordering::SeqCst);
        self.rbufs[slot][..m.len()].copy_from_slice(&m);
        Ok(m.len())
    }
    fn post_ack_recv(&mut self) -> Result<(), BenchError> {
        self.ack_posted = true;
        Ok(())
    }
    fn send_ack(&mut self) -> Result<(), BenchError> {
        std::thread::sleep(self.ack_delay);
        self.tx.lock().unwrap().push_back((ACK, vec![1]));
        Ok(())
    }
    fn wait_ack(&mut self) -> Result<(), BenchError> {
        assert!(self.ack_posted, "ack awaited without a posted receive");
        wait_for(&self.rx, ACK);
        self.ack_posted = false;
        Ok(())
    }
    fn slots(&self) -> usize {
        self.sbufs.len()
    }
    fn send_slot(&mut self, slot: usize) -> &mut [u8] {
        &mut self.sbufs[slot]
    }
    fn recv_slot(&self, slot: usize) -> &[u8] {
        &self.rbufs[slot]
    }
}

fn pair(
    slots: usize,
    recv_delay: Duration,
    ack_delay: Duration,
    corrupt_at: Option<usize>,
) -> (Mem, Mem) {
    let a: Queue = Arc::default();
    let b: Queue = Arc::default();
    let ta = Arc::new(AtomicUsize::new(0));
    let tb = Arc::new(AtomicUsize::new(0));
    let mk = |tx: &Queue, rx: &Queue, peer: &Arc<AtomicUsize>, us: &Arc<AtomicUsize>| Mem {
        tx: tx.clone(),
        rx: rx.clone(),
        taken_by_peer: peer.clone(),
        taken_by_us: us.clone(),
        sent: 0,
        completed: 0,
        max_outstanding: 0,
        posted: VecDeque::new(),
        ack_posted: false,
        sbufs: vec![vec![0; 256]; slots],
        rbufs: vec![vec![0; 256]; slots],
        recv_delay,
        ack_delay,
        corrupt_at,
    };
    let ini = mk(&a, &b, &tb, &ta);
    let tgt = mk(&b, &a, &ta, &tb);
    (ini, tgt)
}

fn run_pair(
    mut ini: Mem,
    mut tgt: Mem,
    p: BwParams,
) -> (Result<Option<BwSamples>, BenchError>, Mem) {
    let h = std::thread::spawn(move || run_size(&mut tgt, Side::Target, &p).map(|_| ()));
    let r = run_size(&mut ini, Side::Initiator, &p);
    let _ = h.join().unwrap();
    (r, ini)
}

#[test]
fn window_is_honoured_and_bandwidth_includes_the_acknowledgement() {
    let (ini, tgt) = pair(1, Duration::from_millis(1), Duration::from_millis(60), None);
    let p = BwParams {
        size: 200,
        iterations: 40,
        warmup: 5,
        window: 4,
        verify: false,
    };
    let (r, ini) = run_pair(ini, tgt, p);
    let s = r.unwrap().expect("the initiator measures");
    assert_eq!(s.iterations, 40);
    assert_eq!(s.post_interval_ns.len(), 40);
    assert!(
        ini.max_outstanding <= 4 && ini.max_outstanding >= 2,
        "{}",
        ini.max_outstanding
    );
    // 40 receives of >= 1 ms each, then a 60 ms wait before the ack: at least 100 ms end to end.
    assert!(s.elapsed_ns >= 100_000_000, "{}", s.elapsed_ns);
    // The posts alone finished long before the ack: the stream time is not the post time.
    let posts: f64 = s.post_interval_ns.mean() * 40.0;
    assert!(
        posts < s.elapsed_ns as f64 - 50e6,
        "posts {posts} elapsed {}",
        s.elapsed_ns
    );
}

#[test]
fn verified_payloads_pass_and_a_flipped_bit_is_caught() {
    let p = BwParams {
        size: 256,
        iterations: 30,
        warmup: 3,
        window: 8,
        verify: true,
    };
    let (ini, tgt) = pair(8, Duration::ZERO, Duration::ZERO, None);
    assert!(run_pair(ini, tgt, p).0.is_ok());
    // Message 3 + 17 is timed message 17; the receiver reports it, and the initiator, whose
    // messages are no longer taken, fails instead of waiting for ever.
    let (mut ini, mut tgt) = pair(8, Duration::ZERO, Duration::ZERO, Some(20));
    let h = std::thread::spawn(move || run_size(&mut ini, Side::Initiator, &p).map(|_| ()));
    let e = run_size(&mut tgt, Side::Target, &p)
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(
            e,
            BenchError::Verify {
                iteration: 17,
                offset: 255,
                ..
            }
        ),
        "{e}"
    );
    let ini = h.join().expect("the initiator returns, it does not panic");
    assert!(
        matches!(ini, Err(BenchError::Invalid(ref m)) if m.contains("stopped taking")),
        "{ini:?}"
    );
}

#[test]
fn ucx_perftest_units() {
    // 32 messages of 1 MiB in 10 ms: 3200 MiB/s, 3.355 GB/s, 3200 msg/s, 312.5 us per message.
    let f = BwFigures::new(1 << 20, 32, 10_000_000);
    assert!((f.mib_per_sec - 3200.0).abs() < 1e-9);
    assert!((f.gb_per_sec - 32.0 * 1_048_576.0 / 0.01 / 1e9).abs() < 1e-12);
    assert!((f.msg_per_sec - 3200.0).abs() < 1e-9);
    assert!((f.usec_per_msg - 312.5).abs() < 1e-9);
    // The two bandwidth units differ by exactly 2^20 / 10^9.
    assert!((f.gb_per_sec / f.mib_per_sec - 1_048_576.0 / 1e9).abs() < 1e-15);
}

#[test]
fn the_hook_runs_between_the_phases_outside_the_timed_stream() {
    let (mut ini, mut tgt) = pair(1, Duration::ZERO, Duration::ZERO, None);
    let p = BwParams {
        size: 200,
        iterations: 30,
        warmup: 5,
        window: 4,
        verify: true,
    };
    // The receiver notes what it had taken when its hook ran; the sender's hook stalls 200 ms
    // (a slow counter reading), which its timed stream must not hold.
    let h = std::thread::spawn(move || {
        let mut at = Vec::new();
        let taken = tgt.taken_by_us.clone();
        run_size_with(&mut tgt, Side::Target, &p, &mut || {
            at.push(taken.load(Ordering::SeqCst));
            Ok(())
        })
        .map(|_| at)
    });
    let mut at = Vec::new();
    let mut held = Duration::ZERO;
    let wall = std::time::Instant::now();
    let s = run_size_with(&mut ini, Side::Initiator, &p, &mut || {
        let t = std::time::Instant::now();
        at.push(0);
        std::thread::sleep(Duration::from_millis(200));
        held += t.elapsed();
        Ok(())
    })
    .unwrap()
    .unwrap();
    let wall = wall.elapsed();
    // Once on each side; the receiver had taken the five warm-up messages.
    assert_eq!(at.len(), 1);
    assert_eq!(h.join().unwrap().unwrap(), [5]);
    assert_eq!(ini.sent, 35);
    // The timed stream and the hook's stall fit in the call one after the other, however
    // slowly the scheduler ran either (both read the same OS clock).
    let timed = Duration::from_nanos(s.elapsed_ns);
    assert!(timed + held <= wall, "{timed:?} + {held:?} > {wall:?}");
}

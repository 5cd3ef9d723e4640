//! What the ping-pong loop itself costs per iteration, apart from the fabric: the clock read
//! (the OS monotonic clock and the loop's TSC clock), the check for a request to stop,
//! the histogram record and an empty completion-queue poll (on the shm provider).

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use kvxfer::bench::clock::LoopClock;
use kvxfer::fabric::{CompletionQueue, CqEntry, Domain, EndpointType, Fabric, Hints, InfoList};
use kvxfer::stats::new_histogram;

fn shm_cq() -> Option<(Fabric, Domain, CompletionQueue)> {
    let list = InfoList::query(&Hints::new(Some("shm"), EndpointType::Rdm)).ok()?;
    let info = list.iter().next()?.to_owned().ok()?;
    let fabric = Fabric::open(&info).ok()?;
    let domain = Domain::open(&fabric, &info).ok()?;
    let cq = CompletionQueue::open(&domain, 0).ok()?;
    Some((fabric, domain, cq))
}

fn overhead(c: &mut Criterion) {
    let mut g = c.benchmark_group("pingpong_iteration");
    g.bench_function("clock_now", |b| b.iter(|| black_box(Instant::now())));
    let clock = LoopClock::new();
    g.bench_function("loop_clock_now", |b| b.iter(|| black_box(clock.now())));
    // The check every loop makes per iteration for a signal's request to stop.
    g.bench_function("stop_requested", |b| {
        b.iter(|| black_box(kvxfer::stop::requested()))
    });

    let mut h = new_histogram();
    let mut v: u64 = 180;
    g.bench_function("histogram_record", |b| {
        b.iter(|| {
            v = v
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            h.saturating_record(black_box(150 + (v >> 56)));
        })
    });

    match shm_cq() {
        Some((_fabric, _domain, cq)) => {
            let mut e = [CqEntry::default()];
            g.bench_function("cq_read_empty_shm", |b| {
                b.iter(|| black_box(cq.read(&mut e).unwrap()))
            });
            let mut h = new_histogram();
            let mut prev = Instant::now();
            g.bench_function("clock_record_poll", |b| {
                b.iter(|| {
                    let _ = black_box(cq.read(&mut e).unwrap());
                    let now = Instant::now();
                    h.saturating_record((now.duration_since(prev).as_nanos() as u64 / 2).max(1));
                    prev = now;
                })
            });
        }
        None => eprintln!("SKIPPED cq_read_empty_shm: the shm provider is not available"),
    }
    g.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);

//! The transfer loop on the loopback: whole local runs over shm and tcp (set-up included,
//! reported per transferred byte), and the loop's own cost per chunk against a transport that
//! completes every post at once.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kvxfer::bench::xfer::{run_initiator_iteration, IterParams};
use kvxfer::fabric::EndpointType;
use kvxfer::run::xfer::{
    run_local, ConcurrencyMode, LocalThreads, Scheme, XferConfig, XferProgress,
};
use kvxfer::xfer::{XferError, XferInitiator, XferOp};

/// Completes every chunk at the next poll and confirms every notified transfer at once.
struct Instant {
    done: Vec<(u32, u32)>,
    confirmed: Vec<u32>,
}

impl XferInitiator for Instant {
    fn post(&mut self, t: u32, c: u32, _: usize, _: usize) -> Result<bool, XferError> {
        self.done.push((t, c));
        Ok(true)
    }
    fn poll(&mut self, out: &mut Vec<(u32, u32)>) -> Result<(), XferError> {
        out.append(&mut self.done);
        Ok(())
    }
    fn notify(&mut self, t: u32, _: u64) -> Result<(), XferError> {
        self.confirmed.push(t);
        Ok(())
    }
    fn poll_confirmed(&mut self, out: &mut Vec<u32>) -> Result<(), XferError> {
        out.append(&mut self.confirmed);
        Ok(())
    }
}

fn loop_overhead(c: &mut Criterion) {
    let mut g = c.benchmark_group("xfer_loop_overhead");
    // 672 MiB in 4 MiB chunks: 168 chunks per transfer; per-chunk cost = time / 168.
    for transfers in [1usize, 16] {
        let p = IterParams {
            size: 704_643_072,
            block: 4 << 20,
            window: 16,
            transfers,
            timeout: Duration::from_secs(10),
        };
        g.throughput(Throughput::Elements(168 * transfers as u64));
        g.bench_with_input(BenchmarkId::new("chunks", transfers), &p, |b, p| {
            let mut t = Instant {
                done: Vec::new(),
                confirmed: Vec::new(),
            };
            b.iter(|| black_box(run_initiator_iteration(&mut t, p).unwrap()))
        });
    }
    g.finish();
}

fn config(provider: &str, size: u64) -> XferConfig {
    XferConfig {
        backend: kvxfer::run::xfer::XferBackend::Libfabric,
        provider: provider.into(),
        endpoint: EndpointType::Rdm,
        domain: None,
        op: XferOp::Write,
        size,
        block: None,
        window: 16,
        concurrency: 1,
        mode: ConcurrencyMode::Endpoints,
        scheme: Scheme::Pairwise,
        iterations: kvxfer::stats::Count::Fixed(10),
        warmup: 1,
        verify: false,
        reuse: false,
        cold_cache: false,
        timeout: Duration::from_secs(60),
        idle_before_timed: Duration::ZERO,
        rails: None,
        stripe_threshold: kvxfer::run::xfer::DEFAULT_STRIPE_THRESHOLD,
        mem: Default::default(),
        open: None,
        rounds: 1,
        cpus: Default::default(),
    }
}

fn loopback_runs(c: &mut Criterion) {
    let mut g = c.benchmark_group("xfer_local_run");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    for (provider, size) in [("shm", 16u64 << 20), ("tcp", 16 << 20)] {
        let cfg = config(provider, size);
        g.throughput(Throughput::Bytes(size * 11));
        g.bench_with_input(BenchmarkId::new(provider, size), &cfg, |b, cfg| {
            b.iter(|| {
                black_box(run_local(cfg, LocalThreads::Side, &XferProgress::default()).unwrap())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, loop_overhead, loopback_runs);
criterion_main!(benches);

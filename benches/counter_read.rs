//! What one reading of every counter costs (a run takes two per side, outside its timed
//! iterations): this host's network devices, TCP counters, CPU ticks and getrusage; and a fake
//! p5-like host of 32 EFA devices with the driver's hardware counters.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use kvxfer::run::path::counters::{CounterReader, Roots};
use kvxfer::topo::fake::FakeSysfs;

/// EFA's port counters (the driver's names), each present on every device of the fake host.
const EFA_COUNTERS: [&str; 20] = [
    "tx_bytes",
    "tx_pkts",
    "rx_bytes",
    "rx_pkts",
    "rx_drops",
    "send_bytes",
    "send_wrs",
    "recv_bytes",
    "recv_wrs",
    "rdma_read_wrs",
    "rdma_read_bytes",
    "rdma_read_wr_err",
    "rdma_read_resp_bytes",
    "rdma_write_wrs",
    "rdma_write_bytes",
    "rdma_write_wr_err",
    "rdma_write_recv_bytes",
    "retrans_bytes",
    "retrans_pkts",
    "retrans_timeout_events",
];

fn p5_like(dir: &std::path::Path) -> Roots {
    let f = FakeSysfs::new(&dir.join("sys")).expect("fake sysfs");
    let stats = [
        ("tx_bytes", 1),
        ("rx_bytes", 2),
        ("tx_packets", 3),
        ("rx_packets", 4),
    ];
    for net in ["lo", "eth0"] {
        f.virtual_net(net).expect("net");
        f.net_counters(net, &stats, Some(100_000))
            .expect("net counters");
    }
    let hw: Vec<(&str, u64)> = EFA_COUNTERS.iter().map(|c| (*c, 123_456_789)).collect();
    for k in 0..32 {
        f.rdma_port(&format!("rdmap{k}s0"), 1, "100 Gb/sec", &hw)
            .expect("efa port");
    }
    Roots {
        sysfs: f.root().to_path_buf(),
        proc: "/proc".into(),
    }
}

fn reads(c: &mut Criterion) {
    let mut g = c.benchmark_group("counter_read");
    let host = CounterReader::host();
    eprintln!(
        "this host: {} devices, {} counter files",
        host.devices().len(),
        host.devices().iter().map(|d| d.files.len()).sum::<usize>()
    );
    g.bench_function("this_host", |b| b.iter(|| black_box(host.read())));
    let dir = tempfile::tempdir().expect("temporary folder");
    let p5 = CounterReader::discover(&p5_like(dir.path()));
    eprintln!(
        "fake p5: {} devices, {} counter files",
        p5.devices().len(),
        p5.devices().iter().map(|d| d.files.len()).sum::<usize>()
    );
    g.bench_function("fake_p5_32_efa", |b| b.iter(|| black_box(p5.read())));
    g.finish();
}

criterion_group!(benches, reads);
criterion_main!(benches);

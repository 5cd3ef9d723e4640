use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::report::{ResultDoc, SizeResult, Status};
use crate::run::path::counters::Roots;
use crate::topo::fake::{write_counter, FakeSysfs};

/// A host with lo and four EFA devices of 100 Gb/s, one of them (efa3) with a counter that
/// cannot be read and one (efa2) without retransmission counters.
fn efa_host(dir: &std::path::Path) -> (FakeSysfs, Roots) {
    let f = FakeSysfs::new(&dir.join("sys")).unwrap();
    f.virtual_net("lo").unwrap();
    let zero = [
        ("tx_bytes", 0),
        ("rx_bytes", 0),
        ("tx_packets", 0),
        ("rx_packets", 0),
    ];
    f.net_counters("lo", &zero, None).unwrap();
    for k in 0..4 {
        let name = format!("efa{k}");
        let mut hw = vec![("tx_bytes", 0), ("rx_bytes", 0), ("rdma_write_bytes", 0)];
        if k != 2 {
            hw.push(("retrans_pkts", 0));
        }
        let port = f.rdma_port(&name, 1, "100 Gb/sec (4X EDR)", &hw).unwrap();
        if k == 3 {
            // A folder where a counter should be: unreadable.
            std::fs::create_dir(port.join("hw_counters/unresponsive_remote_events")).unwrap();
        }
    }
    let proc = dir.join("proc");
    std::fs::create_dir_all(proc.join("net")).unwrap();
    std::fs::write(
        proc.join("stat"),
        "cpu  10 0 10 80 0 0 0 0\ncpu0 10 0 10 80 0 0 0 0\n",
    )
    .unwrap();
    let roots = Roots {
        sysfs: f.root().to_path_buf(),
        proc,
    };
    (f, roots)
}

fn hw(f: &FakeSysfs, dev: &str, counter: &str, v: u64) {
    let p = f
        .root()
        .join("class/infiniband")
        .join(dev)
        .join("ports/1/hw_counters")
        .join(counter);
    write_counter(&p, v).unwrap();
}

#[test]
fn a_fake_efa_host_read_twice_gives_the_four_way_split() {
    let dir = tempfile::tempdir().unwrap();
    let (f, roots) = efa_host(dir.path());
    let reader = CounterReader::discover(&roots);
    let names: Vec<&str> = reader.devices().iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["lo", "efa0", "efa1", "efa2", "efa3"]);
    let probe = Probe::with(reader, "p5");
    let before = probe.read();
    let quarter = 56u64 << 20;
    for k in 0..4 {
        let dev = format!("efa{k}");
        hw(&f, &dev, "tx_bytes", quarter + 1000);
        hw(&f, &dev, "rdma_write_bytes", quarter);
        if k != 2 {
            hw(&f, &dev, "retrans_pkts", k as u64);
        }
    }
    let after = probe.read();
    let payload = Payload {
        sent: 4 * quarter,
        received: 0,
        timed_ns: Some(10_000_000),
    };
    let v = probe.view("initiator", &before, &after, payload);
    assert_eq!(v.carriers, ["efa0", "efa1", "efa2", "efa3"]);
    assert_eq!(v.line_rate_gbit_s, Some(400.0));
    // 224 MiB in 10 ms: 187.9 Gb/s, 47% of 400.
    let f400 = (4 * quarter) as f64 * 8.0 / 0.01 / 1e9 / 400.0;
    assert!((v.line_rate_fraction.unwrap() - f400).abs() < 1e-12);
    let retrans: Vec<(&str, u64)> = v
        .retransmissions
        .iter()
        .map(|r| (r.device.as_str(), r.count))
        .collect();
    assert_eq!(retrans, [("efa1", 1), ("efa3", 3)]);
    // The unreadable counter is named as such; the others of efa3 still count.
    let e3 = v.devices.iter().find(|d| d.name == "efa3").unwrap();
    assert!(e3.carried && e3.bytes == Some(quarter + 1000));
    assert_eq!(e3.unknown.len(), 1, "{:?}", e3.unknown);
    assert!(e3.unknown[0].starts_with("unresponsive_remote_events: unreadable"));
    assert!(!e3.counters.contains_key("unresponsive_remote_events"));
    // lo, with no counter moving, is listed with zeros it did read.
    let lo = v.devices.iter().find(|d| d.name == "lo").unwrap();
    assert_eq!((lo.bytes, lo.carried), (Some(0), false));
    let report = PathReport::of(v, Vec::new());
    assert_eq!(report.devices.len(), 4);
    assert!(report
        .verdict
        .starts_with("efa0 25% efa1 25% efa2 25% efa3 25%, 1.00x, 47% of 400 Gb/s"));
    // The proc root is read too: the fake host's CPU line (no tick passed: no fraction).
    assert_eq!(after.host_cpu.map(|h| h.cpus), Some(1));
    assert_eq!(report.sides[0].cpu.host_busy_fraction, None);
}

#[test]
fn a_missing_counter_file_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let (f, roots) = efa_host(dir.path());
    std::fs::remove_file(f.root().join("class/net/lo/statistics/rx_bytes")).unwrap();
    let probe = Probe::with(CounterReader::discover(&roots), "h");
    let before = probe.read();
    let after = probe.read();
    let v = probe.view(
        "target",
        &before,
        &after,
        Payload {
            sent: 0,
            received: 1 << 20,
            timed_ns: None,
        },
    );
    let lo = v.devices.iter().find(|d| d.name == "lo").unwrap();
    assert_eq!((lo.tx_bytes, lo.rx_bytes), (Some(0), None));
    assert_eq!(lo.unknown, ["rx_bytes: no such file"]);
    // The loopback's bytes are what it sent: known, and zero, so no carrier but no blind spot.
    assert_eq!(lo.bytes, Some(0));
    assert_eq!(v.kind, PathKind::None);
}

#[test]
fn the_last_worker_in_reads_and_the_last_out_reads_again() {
    let dir = tempfile::tempdir().unwrap();
    let (_f, roots) = efa_host(dir.path());
    let gate = Arc::new(SpanGate::new(
        Probe::with(CounterReader::discover(&roots), "h"),
        3,
    ));
    gate.start();
    gate.start();
    assert!(gate.readings().is_none());
    assert!(!gate.wait_end(Duration::from_millis(10)));
    gate.start();
    gate.end();
    gate.end();
    let g = gate.clone();
    let waiter = std::thread::spawn(move || g.wait_end(Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(20));
    gate.end();
    assert!(waiter.join().unwrap());
    let r = gate.readings().unwrap();
    assert!(r.after.at >= r.before.at);
    // A failed worker: the waiters go on without the reading.
    let gate = Arc::new(SpanGate::new(
        Probe::with(CounterReader::discover(&roots), "h"),
        2,
    ));
    gate.start();
    let g = gate.clone();
    let waiter = std::thread::spawn(move || g.wait_end(Duration::from_secs(10)));
    gate.abandon();
    assert!(!waiter.join().unwrap());
    assert!(gate.readings().is_none());
}

/// A view of `kind` through `carriers` on `host`.
fn view(role: &str, host: &str, kind: PathKind, carriers: &[&str]) -> SideView {
    let devices = carriers
        .iter()
        .map(|c| view::DeviceMove {
            name: c.to_string(),
            class: crate::run::path::counters::DeviceClass::Net,
            loopback: *c == "lo",
            tx_bytes: Some(1 << 20),
            rx_bytes: Some(0),
            tx_packets: Some(100),
            rx_packets: Some(0),
            bytes: Some(1 << 20),
            ratio: Some(1.02),
            share: Some(1.0 / carriers.len() as f64),
            carried: true,
            line_rate_gbit_s: None,
            unknown: Vec::new(),
            counters: Default::default(),
        })
        .collect();
    SideView {
        role: role.into(),
        host: host.into(),
        sent_bytes: 1 << 20,
        received_bytes: 0,
        span_s: 0.1,
        kind,
        carriers: carriers.iter().map(|c| c.to_string()).collect(),
        bytes: (!carriers.is_empty()).then_some(1 << 20),
        bytes_ratio: (!carriers.is_empty()).then_some(1.02),
        line_rate_gbit_s: None,
        achieved_gbit_s: None,
        line_rate_fraction: None,
        other_traffic_likely: false,
        devices,
        retransmissions: Vec::new(),
        tcp: None,
        cpu: Default::default(),
        read_us: vec![],
        notes: vec![],
        sched: None,
    }
}

#[test]
fn the_verdict_names_the_other_side_where_it_differs() {
    let ours = view("initiator", "a", PathKind::Network, &["kva"]);
    let theirs = view("target", "a", PathKind::Network, &["kvb"]);
    let p = PathReport::of(ours.clone(), vec![theirs]);
    assert_eq!(
        p.verdict,
        "kva carried 1.02x of the payload; target: kvb 1.02x"
    );
    // The same counters seen from the other side of one process: said once.
    let same = view("target", "a", PathKind::Network, &["kva"]);
    let p = PathReport::of(ours, vec![same]);
    assert_eq!(p.verdict, "kva carried 1.02x of the payload");
    assert_eq!(p.sides.len(), 2);
    assert_eq!(p.counters, SCOPE);
    let back = PathReport::from_value(&p.to_value()).unwrap();
    assert_eq!(back, p);
}

fn doc_with(views: Vec<SideView>) -> ResultDoc {
    let mut d = ResultDoc::new("kvxfer", "xfer", "L1");
    d.status = Status::Complete;
    for v in views {
        d.results.push(SizeResult {
            message_size: 1 << 20,
            path: Some(PathReport::of(v, vec![]).to_value()),
            ..Default::default()
        });
    }
    d
}

#[test]
fn a_wrong_path_keeps_the_figures_and_says_what_carried_them() {
    let none = view("initiator", "a", PathKind::None, &[]);
    let mut d = doc_with(vec![none.clone()]);
    let j = judge(&mut d, &ExpectPath::Network);
    assert_eq!(d.status, Status::WrongPath);
    assert_eq!(
        j.wrong,
        [
            "no network device carried the payload (it moved through shared memory or a same-host \
          copy), not the requested network"
        ]
    );
    assert_eq!(d.errors[0].at, "path");
    let p = PathReport::from_value(d.results[0].path.as_ref().unwrap()).unwrap();
    assert_eq!(
        (p.expected.as_deref(), p.as_expected),
        (Some("network"), Some(false))
    );
    assert_eq!(p.verdict, j.wrong[0]);
    // Shared memory is a local path.
    let mut d = doc_with(vec![none]);
    assert!(judge(&mut d, &ExpectPath::Local).wrong.is_empty());
    assert_eq!(d.status, Status::Complete);
    // eth0 where two EFA devices were asked for; one of two rails idle.
    let eth = view("initiator", "a", PathKind::Network, &["eth0"]);
    let efa0 = view("initiator", "a", PathKind::Network, &["efa0"]);
    let both = view("initiator", "a", PathKind::Network, &["efa0", "efa1"]);
    let want = ExpectPath::parse("efa0,efa1").unwrap();
    let mut d = doc_with(vec![eth, efa0, both.clone()]);
    let j = judge(&mut d, &want);
    assert_eq!(
        j.wrong,
        [
            "eth0 carried it, not the requested efa0,efa1 (efa0, efa1 carried nothing)",
            "efa0 carried it, not the requested efa0,efa1 (efa1 carried nothing)"
        ]
    );
    assert_eq!(d.status, Status::WrongPath);
    let mut d = doc_with(vec![both.clone()]);
    assert!(judge(&mut d, &ExpectPath::parse("efa*").unwrap())
        .wrong
        .is_empty());
    // A family of names admits its devices without asking each to carry; a device outside
    // every family is a wrong path.
    let families = ExpectPath::parse("rdmap*,efa*").unwrap();
    assert!(judge(&mut d, &families).wrong.is_empty());
    let mut d = doc_with(vec![view(
        "initiator",
        "a",
        PathKind::Network,
        &["efa0", "eth0"],
    )]);
    assert_eq!(
        judge(&mut d, &families).wrong,
        ["efa0 and eth0 carried it, not the requested rdmap*,efa*"]
    );
    let mut d = doc_with(vec![both.clone()]);
    assert!(judge(&mut d, &ExpectPath::Network).wrong.is_empty());
    let lo = view("initiator", "a", PathKind::Local, &["lo"]);
    let mut d = doc_with(vec![lo]);
    assert_eq!(
        judge(&mut d, &ExpectPath::Network).wrong,
        ["lo carried it, not the requested network"]
    );
    // Counters that cannot tell: not checked, not wrong; a partial run stays partial.
    let mut d = doc_with(vec![view("initiator", "a", PathKind::Unknown, &[])]);
    let j = judge(&mut d, &ExpectPath::Network);
    assert_eq!((j.wrong.len(), j.unchecked), (0, 1));
    let mut d = doc_with(vec![view("initiator", "a", PathKind::None, &[])]);
    d.status = Status::Partial;
    assert_eq!(judge(&mut d, &ExpectPath::Network).wrong.len(), 1);
    assert_eq!(d.status, Status::Partial);
    let mut d = doc_with(vec![both]);
    d.results.push(SizeResult::default());
    assert_eq!(judge(&mut d, &ExpectPath::Network).unchecked, 1);
}

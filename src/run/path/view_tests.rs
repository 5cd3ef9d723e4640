use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::view::*;
use super::{verdict, Snapshot};
use crate::run::path::counters::{Device, DeviceClass, HostCpu, ProcessCpu, Reading, Unknown};

fn net(name: &str, loopback: bool, speed_bps: Option<f64>) -> Device {
    Device {
        name: name.into(),
        class: DeviceClass::Net,
        loopback,
        line_rate_bps: speed_bps,
        files: ["tx_bytes", "rx_bytes", "tx_packets", "rx_packets"]
            .iter()
            .map(|f| (f.to_string(), PathBuf::from(f)))
            .collect(),
    }
}

const EFA_FILES: [&str; 5] = [
    "tx_bytes",
    "rx_bytes",
    "retrans_pkts",
    "rdma_write_bytes",
    "port_xmit_data",
];

fn efa(name: &str) -> Device {
    Device {
        name: name.into(),
        class: DeviceClass::Rdma,
        loopback: false,
        line_rate_bps: Some(100e9),
        files: EFA_FILES
            .iter()
            .map(|f| (f.to_string(), PathBuf::from(f)))
            .collect(),
    }
}

fn snap(
    at: Instant,
    devices: Vec<Vec<Reading>>,
    cpu_us: (u64, u64),
    ticks: (u64, u64),
) -> Snapshot {
    Snapshot {
        at,
        read_ns: 50_000,
        devices,
        tcp: None,
        host_cpu: Some(HostCpu {
            busy: ticks.0,
            total: ticks.1,
            cpus: 4,
        }),
        process_cpu: Some(ProcessCpu {
            user_us: cpu_us.0,
            system_us: cpu_us.1,
        }),
    }
}

fn ok(v: &[u64]) -> Vec<Reading> {
    v.iter().map(|&x| Ok(x)).collect()
}

const P: u64 = 224 << 20;

fn sent(bytes: u64) -> Payload {
    Payload {
        sent: bytes,
        received: 0,
        timed_ns: Some(1_000_000_000),
    }
}

#[test]
fn the_loopback_counts_its_sent_bytes_once() {
    let t0 = Instant::now();
    let devs = [net("lo", true, None), net("eth0", false, Some(25e9))];
    let before = snap(
        t0,
        vec![ok(&[1000, 1000, 10, 10]), ok(&[5, 5, 1, 1])],
        (0, 0),
        (0, 0),
    );
    let lo = P + P / 50;
    let after = snap(
        t0 + Duration::from_secs(1),
        vec![ok(&[1000 + lo, 1000 + lo, 4010, 4010]), ok(&[905, 5, 3, 1])],
        (200_000, 300_000),
        (150, 400),
    );
    let v = SideView::of("initiator", "h", &devs, &before, &after, sent(P));
    assert_eq!(v.kind, PathKind::Local);
    assert_eq!(v.carriers, ["lo"]);
    assert_eq!(v.bytes, Some(lo));
    assert!((v.bytes_ratio.unwrap() - 1.02).abs() < 1e-6);
    // eth0 moved 900 bytes: not a carrier, still listed with its figures.
    let eth = v.devices.iter().find(|d| d.name == "eth0").unwrap();
    assert_eq!(
        (eth.bytes, eth.carried, eth.share),
        (Some(900), false, None)
    );
    assert_eq!(v.devices[0].share, Some(1.0));
    // No line rate on lo: no fraction.
    assert_eq!(v.line_rate_fraction, None);
    assert!((v.span_s - 1.0).abs() < 1e-9);
    // 0.5 s of CPU for 224 MiB; 150 of the host's 400 ticks were busy.
    assert!((v.cpu.process_s.unwrap() - 0.5).abs() < 1e-12);
    assert!((v.cpu.cpu_s_per_gb.unwrap() - 0.5 / (P as f64 / 1e9)).abs() < 1e-9);
    assert!((v.cpu.host_busy_fraction.unwrap() - 0.375).abs() < 1e-12);
    assert_eq!(v.read_us, [50.0, 50.0]);
    assert!(v.notes.is_empty(), "{:?}", v.notes);
}

#[test]
fn four_rails_split_the_payload_with_their_line_rate_and_retransmissions() {
    let t0 = Instant::now();
    let devs: Vec<Device> = (0..4).map(|k| efa(&format!("efa{k}"))).collect();
    let before: Vec<Vec<Reading>> = (0..4).map(|_| ok(&[0, 0, 0, 0, 7])).collect();
    let quarter = P / 4;
    let after: Vec<Vec<Reading>> = (0..4u64)
        .map(|k| ok(&[quarter, 4096, k * 3, quarter, 7]))
        .collect();
    let b = snap(t0, before, (0, 0), (0, 0));
    let a = snap(
        t0 + Duration::from_millis(500),
        after,
        (1000, 2000),
        (10, 100),
    );
    // 224 MiB in 50 ms of timed iterations: 37.6 Gb/s of 400.
    let payload = Payload {
        sent: P,
        received: 0,
        timed_ns: Some(50_000_000),
    };
    let v = SideView::of("initiator", "h", &devs, &b, &a, payload);
    assert_eq!(v.kind, PathKind::Network);
    assert_eq!(v.carriers, ["efa0", "efa1", "efa2", "efa3"]);
    for d in &v.devices {
        assert!((d.share.unwrap() - 0.25).abs() < 1e-12, "{d:?}");
        // The driver's byte counters, not the port's 4-byte words.
        assert_eq!(d.tx_bytes, Some(quarter));
    }
    assert_eq!(v.line_rate_gbit_s, Some(400.0));
    let achieved = P as f64 * 8.0 / 0.05 / 1e9;
    assert!((v.achieved_gbit_s.unwrap() - achieved).abs() < 1e-9);
    assert!((v.line_rate_fraction.unwrap() - achieved / 400.0).abs() < 1e-12);
    // efa0 retransmitted nothing; the others 3, 6, 9 packets.
    let r: Vec<(String, u64)> = v
        .retransmissions
        .iter()
        .map(|r| (r.device.clone(), r.count))
        .collect();
    assert_eq!(
        r,
        [("efa1".into(), 3), ("efa2".into(), 6), ("efa3".into(), 9)]
    );
    assert!(v
        .retransmissions
        .iter()
        .all(|r| r.counter == "retrans_pkts"));
    assert_eq!(v.devices[1].counters["rdma_write_bytes"], quarter);
    let verdict = verdict::describe(&v);
    assert_eq!(
        verdict,
        format!(
            "efa0 25% efa1 25% efa2 25% efa3 25%, {:.2}x, {:.0}% of 400 Gb/s",
            v.bytes_ratio.unwrap(),
            achieved / 4.0
        )
    );
}

#[test]
fn port_counters_count_four_byte_words_and_a_saturated_one_is_unknown() {
    let t0 = Instant::now();
    let mut d = efa("mlx5_0");
    d.files = ["port_xmit_data", "port_rcv_data"]
        .iter()
        .map(|f| (f.to_string(), PathBuf::from(f)))
        .collect();
    let b = snap(t0, vec![ok(&[0, 0])], (0, 0), (0, 0));
    let a = snap(t0, vec![ok(&[P / 4, 100])], (0, 0), (0, 0));
    let v = SideView::of("target", "h", &[d.clone()], &b, &a, sent(P));
    assert_eq!(v.devices[0].tx_bytes, Some(P));
    assert_eq!(v.devices[0].bytes, Some(P + 400));
    let a = snap(t0, vec![ok(&[u32::MAX as u64, 100])], (0, 0), (0, 0));
    let v = SideView::of("target", "h", &[d], &b, &a, sent(P));
    assert_eq!(v.devices[0].tx_bytes, None);
    assert_eq!(v.kind, PathKind::Unknown);
    assert!(
        v.devices[0].unknown[0].contains("saturated"),
        "{:?}",
        v.devices[0]
    );
}

#[test]
fn unreadable_counters_are_unknown_never_zero() {
    let t0 = Instant::now();
    let devs = [net("lo", true, None), efa("efa0")];
    let b = snap(
        t0,
        vec![ok(&[0, 0, 0, 0]), ok(&[0, 0, 0, 0, 0])],
        (0, 0),
        (0, 0),
    );
    let mut efa_after = ok(&[0, 0, 0, 0, 0]);
    efa_after[0] = Err(Unknown::Unreadable("permission denied".into()));
    efa_after[2] = Err(Unknown::Missing);
    // The port counter stands in for the driver's bytes only where the driver has none: with
    // tx_bytes unreadable, what efa0 sent is unknown.
    efa_after[4] = Err(Unknown::NotANumber("N/A".into()));
    let a = snap(t0, vec![ok(&[100, 100, 1, 1]), efa_after], (0, 0), (0, 0));
    let v = SideView::of("initiator", "h", &devs, &b, &a, sent(P));
    // lo moved almost nothing, efa0 cannot say: the path is unknown, not "none".
    assert_eq!(v.kind, PathKind::Unknown);
    let e = v.devices.iter().find(|d| d.name == "efa0").unwrap();
    assert_eq!((e.tx_bytes, e.bytes, e.ratio), (None, None, None));
    assert_eq!(e.rx_bytes, Some(0));
    assert!(
        e.unknown
            .iter()
            .any(|u| u == "tx_bytes: unreadable: permission denied"),
        "{:?}",
        e.unknown
    );
    assert!(
        e.unknown.iter().any(|u| u == "retrans_pkts: no such file"),
        "{:?}",
        e.unknown
    );
    assert!(
        v.notes[0].contains("traffic unknown on efa0"),
        "{:?}",
        v.notes
    );
    assert!(verdict::describe(&v).starts_with("unknown: traffic unknown on efa0"));
    // A counter that went back (a re-created device) is unknown too.
    let a = snap(
        t0,
        vec![ok(&[0, 0, 0, 0]), ok(&[0, 0, 0, 0, 0])],
        (0, 0),
        (0, 0),
    );
    let b2 = snap(
        t0,
        vec![ok(&[5, 0, 0, 0]), ok(&[0, 0, 0, 0, 0])],
        (0, 0),
        (0, 0),
    );
    let v = SideView::of("initiator", "h", &devs, &b2, &a, sent(P));
    assert_eq!(
        v.devices.iter().find(|d| d.name == "lo").unwrap().tx_bytes,
        None
    );
}

#[test]
fn a_payload_no_device_carried_and_other_traffic_on_a_carrier() {
    let t0 = Instant::now();
    let devs = [net("lo", true, None), net("eth0", false, None)];
    let b = snap(
        t0,
        vec![ok(&[0, 0, 0, 0]), ok(&[0, 0, 0, 0])],
        (0, 0),
        (0, 0),
    );
    // Control messages only: 2 KB on lo for 224 MiB moved.
    let a = snap(
        t0,
        vec![ok(&[2048, 2048, 20, 20]), ok(&[0, 0, 0, 0])],
        (0, 0),
        (0, 0),
    );
    let v = SideView::of("initiator", "h", &devs, &b, &a, sent(P));
    assert_eq!(v.kind, PathKind::None);
    assert!(v.carriers.is_empty() && v.bytes.is_none() && v.bytes_ratio.is_none());
    assert_eq!(
        verdict::describe(&v),
        "no network device carried the payload (it moved through shared memory or a same-host copy)"
    );
    // Twice the payload on eth0 in 200 large packets: more than headers explain.
    let a = snap(
        t0,
        vec![ok(&[0, 0, 0, 0]), ok(&[2 * P, 0, 200, 0])],
        (0, 0),
        (0, 0),
    );
    let v = SideView::of("initiator", "h", &devs, &b, &a, sent(P));
    assert_eq!(v.kind, PathKind::Network);
    assert!(v.other_traffic_likely);
    assert!(
        v.notes.iter().any(|n| n.contains("other traffic")),
        "{:?}",
        v.notes
    );
    assert!(verdict::describe(&v).ends_with("(other traffic likely)"));
    // Small messages: headers alone make the ratio large, and that is not other traffic.
    let small = 64 * 10_000;
    let a = snap(
        t0,
        vec![ok(&[0, 0, 0, 0]), ok(&[small + 10_000 * 66, 0, 10_000, 0])],
        (0, 0),
        (0, 0),
    );
    let v = SideView::of("initiator", "h", &devs, &b, &a, sent(small));
    assert!(v.bytes_ratio.unwrap() > 2.0);
    assert!(v.notes.is_empty(), "{:?}", v.notes);
    // Nothing moved at all: nothing to attribute.
    let v = SideView::of("initiator", "h", &devs, &b, &b, sent(0));
    assert_eq!(v.kind, PathKind::Unknown);
}

//! Which devices carried a run's payload, read from fake sysfs trees (`KVXFER_SYSFS_ROOT`):
//! an EFA host whose counters a thread advances while kvxfer runs, a host whose payload crossed
//! no device (`--expect-path`), and a counter file that stalls every reading for seconds,
//! which no timed iteration may hold. Runs over the real loopback; the fake trees only decide
//! what the counters say.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use kvxfer::report::Status;
use kvxfer::topo::fake::{write_counter, FakeSysfs};
use serde_json::Value;

const LO: [(&str, u64); 4] = [
    ("tx_bytes", 1000),
    ("rx_bytes", 1000),
    ("tx_packets", 10),
    ("rx_packets", 10),
];

/// A host with a quiet lo and four EFA devices of 100 Gb/s; efa3 has a counter file that
/// cannot be read.
fn efa_host(dir: &Path) -> FakeSysfs {
    let f = FakeSysfs::new(&dir.join("sys")).unwrap();
    f.virtual_net("lo").unwrap();
    f.net_counters("lo", &LO, None).unwrap();
    for k in 0..4 {
        let hw = [
            ("tx_bytes", 0),
            ("rx_bytes", 0),
            ("rdma_write_bytes", 0),
            ("retrans_pkts", 0),
            ("retrans_timeout_events", 0),
        ];
        let port = f
            .rdma_port(&format!("efa{k}"), 1, "100 Gb/sec (4X EDR)", &hw)
            .unwrap();
        if k == 3 {
            std::fs::create_dir(port.join("hw_counters/impaired_remote_conn_events")).unwrap();
        }
    }
    f
}

/// Advances the four devices' counters every millisecond until `stop`: the same bytes on each,
/// a retransmitted packet on efa1 now and then.
fn advance(root: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut step = 0u64;
        while !stop.load(Ordering::Relaxed) {
            step += 1;
            for k in 0..4 {
                let hw = root.join(format!("class/infiniband/efa{k}/ports/1/hw_counters"));
                write_counter(&hw.join("tx_bytes"), step << 22).unwrap();
                write_counter(&hw.join("rdma_write_bytes"), step << 22).unwrap();
                if k == 1 {
                    write_counter(&hw.join("retrans_pkts"), step / 5).unwrap();
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        step
    })
}

fn path(doc: &kvxfer::report::ResultDoc) -> &Value {
    doc.results[0].path.as_ref().expect("the result has a path")
}

/// Runs kvxfer `args` expecting efa0-efa3 as its path, `--json` into `json`, on a fake host of
/// four EFA devices in `dir` whose counters [`advance`] meanwhile; checks that it succeeded
/// and returns its stdout and the counter steps taken.
fn on_efa_host(dir: &Path, args: &[&str], json: &Path) -> (String, u64) {
    let f = efa_host(dir);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = advance(f.root().to_path_buf(), stop.clone());
    let out = kvxfer()
        .env("KVXFER_SYSFS_ROOT", f.root())
        .args(args)
        .args(["--expect-path", "efa0,efa1,efa2,efa3", "--json"])
        .arg(json)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let steps = writer.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (stdout, steps)
}

#[test]
fn a_fake_efa_host_splits_four_ways_with_its_line_rate_and_retransmissions() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("x.json");
    let (stdout, steps) = on_efa_host(
        dir.path(),
        &["xfer", "-s", "16M", "-I", "20", "-w", "1", "--domain", "lo"],
        &json,
    );
    let doc = read_doc(&json);
    assert_eq!(doc.status, Status::Complete);
    let p = path(&doc);
    let own = &p["sides"][0];
    let names: Vec<&str> = own["carriers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(names, ["efa0", "efa1", "efa2", "efa3"]);
    for d in p["devices"].as_array().unwrap() {
        let share = d["share"].as_f64().unwrap();
        assert!((share - 0.25).abs() < 0.02, "{d}");
    }
    assert_eq!(p["line_rate_gbit_s"].as_f64(), Some(400.0));
    // The achieved rate is the run's own bandwidth (10^9 B/s) in bits, over 400 Gb/s.
    let bw = doc.results[0].bandwidth_gbps.unwrap();
    let fraction = p["line_rate_fraction"].as_f64().unwrap();
    assert!(
        (fraction - bw * 8.0 / 400.0).abs() < 1e-9 * bw.max(1.0),
        "{fraction} {bw}"
    );
    let retrans = own["retransmissions"].as_array().unwrap();
    assert!(
        retrans
            .iter()
            .any(|r| r["device"] == "efa1" && r["counter"] == "retrans_pkts"),
        "{retrans:?}"
    );
    // The unreadable counter of efa3 is named unknown, not counted as zero.
    let efa3 = own["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "efa3")
        .unwrap();
    let unknown = efa3["unknown"].as_array().unwrap();
    assert_eq!(unknown.len(), 1, "{efa3}");
    assert!(unknown[0]
        .as_str()
        .unwrap()
        .starts_with("impaired_remote_conn_events: unreadable"));
    assert!(efa3["counters"]
        .get("impaired_remote_conn_events")
        .is_none());
    assert_eq!(p["as_expected"], true);
    let verdict = p["verdict"].as_str().unwrap();
    // The split as the verdict words it: each device's share in whole percent (the thread
    // may be between two devices when a reading comes: a share can round to 24 % or 26 %).
    let split: Vec<String> = p["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let share = d["share"].as_f64().unwrap() * 100.0;
            format!("{} {share:.0}%", d["name"].as_str().unwrap())
        })
        .collect();
    assert!(
        verdict.starts_with(&format!("{}, ", split.join(" "))),
        "{verdict}"
    );
    assert!(verdict.contains("of 400 Gb/s"), "{verdict}");
    assert!(stdout.contains(&format!("path: {verdict}")), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("path retransmissions:"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("efa1 retrans_pkts"), "{line}");
    println!("{steps} counter steps; {verdict}\n{line}");
}

#[test]
fn a_payload_no_device_carried_is_a_wrong_path_for_network_and_right_for_local() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    // lo's counters stand still: the payload crossed no network device this host has.
    let f = FakeSysfs::new(&dir.path().join("sys")).unwrap();
    f.virtual_net("lo").unwrap();
    f.net_counters("lo", &LO, None).unwrap();
    let run = |expect: &str, json: &Path| {
        kvxfer()
            .env("KVXFER_SYSFS_ROOT", f.root())
            .args(["xfer", "-s", "4M", "-I", "5", "-w", "1", "--domain", "lo"])
            .args(["--expect-path", expect, "--json"])
            .arg(json)
            .timeout(Duration::from_secs(120))
            .output()
            .unwrap()
    };
    let wrong = dir.path().join("wrong.json");
    let out = run("network", &wrong);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap();
    assert_eq!(
        last,
        format!(
            "kvxfer: error: wrong path: no network device carried the payload (it moved through \
             shared memory or a same-host copy), not the requested network (the figures are kept \
             in {} with status wrong-path)",
            wrong.display()
        )
    );
    let doc = read_doc(&wrong);
    assert_eq!(doc.status, Status::WrongPath);
    // The measurement is kept whole.
    let r = &doc.results[0];
    assert_eq!(r.iterations, 5);
    assert!(r.bandwidth_gbps.is_some() && r.histogram.is_some() && r.latency_us.is_some());
    assert_eq!(path(&doc)["kind"], "none");
    assert_eq!(path(&doc)["as_expected"], false);
    assert_eq!(doc.errors[0].at, "path");
    let right = dir.path().join("right.json");
    let out = run("local", &right);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read_doc(&right).status, Status::Complete);
    // A device that is not there is not the path either.
    let out = run("efa0", &dir.path().join("efa.json"));
    assert_eq!(out.status.code(), Some(1));
}

// Open-loop arrivals: the side reads its counters once before its first session and once
// after its last, and its result names the devices that carried what every session moved.
#[test]
fn open_loop_runs_name_the_devices_that_carried_them() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("open.json");
    let size = 1u64 << 20;
    let (stdout, _) = on_efa_host(
        dir.path(),
        &[
            "xfer",
            "-s",
            "1M",
            "-I",
            "40",
            "-w",
            "2",
            "--domain",
            "lo",
            "--arrival",
            "fixed:400",
        ],
        &json,
    );
    let doc = read_doc(&json);
    assert_eq!(doc.config["open_loop"], true);
    let p = path(&doc);
    assert_eq!(p["as_expected"], true, "{p}");
    let own = &p["sides"][0];
    assert_eq!(own["role"], "initiator", "{own}");
    assert_eq!(
        own["carriers"],
        serde_json::json!(["efa0", "efa1", "efa2", "efa3"])
    );
    // The payload is what the session moved: its 40 recorded arrivals less the dropped ones,
    // and the served warm-up transfers (2 at most).
    let dropped = doc.results[0].extra["dropped"].as_u64().unwrap();
    let sent = own["sent_bytes"].as_u64().unwrap();
    assert_eq!(sent % size, 0, "{own}");
    assert!(
        (40 - dropped) * size <= sent && sent <= 42 * size,
        "{sent} B sent, {dropped} dropped"
    );
    assert!(stdout.contains("path: efa0 "), "{stdout}");
}

/// Holds every reading of `fifo` (a counter file) for `hold`, until `stop`; the stalls.
fn stall(fifo: PathBuf, hold: Duration, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::thread::spawn(move || {
        let mut reads = 0;
        while !stop.load(Ordering::Relaxed) {
            // Opens only while a reader waits on the other end.
            let w = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo);
            match w {
                Ok(mut w) => {
                    std::thread::sleep(hold);
                    let _ = w.write_all(b"42\n");
                    reads += 1;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        reads
    })
}

/// A host whose lo's `tx_bytes` is a FIFO: every reading of the counters waits for it.
fn stalling_host(dir: &Path) -> (FakeSysfs, PathBuf) {
    let f = FakeSysfs::new(&dir.join("sys")).unwrap();
    f.virtual_net("lo").unwrap();
    f.net_counters("lo", &LO[1..], None).unwrap();
    let fifo = f.root().join("class/net/lo/statistics/tx_bytes");
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(ok.success());
    (f, fifo)
}

#[test]
fn no_timed_iteration_holds_a_counter_reading() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let (f, fifo) = stalling_host(dir.path());
    let hold = Duration::from_secs(2);
    let stop = Arc::new(AtomicBool::new(false));
    let staller = stall(fifo, hold, stop.clone());
    let started = Instant::now();
    let run = |args: &[&str], json: &Path| {
        let out = kvxfer()
            .env("KVXFER_SYSFS_ROOT", f.root())
            .args(args)
            .arg("--json")
            .arg(json)
            .timeout(Duration::from_secs(120))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
    };
    let xfer = dir.path().join("x.json");
    run(
        &["xfer", "-s", "1M", "-I", "5", "-w", "1", "--domain", "lo"],
        &xfer,
    );
    let ping = dir.path().join("p.json");
    run(
        &["pingpong", "--sizes", "4K", "-I", "200", "-w", "10"],
        &ping,
    );
    stop.store(true, Ordering::Relaxed);
    let stalls = staller.join().unwrap();
    // Each side read before and after its timed iterations: four readings per run, held two
    // seconds each (two sides reading at once share a stall; one that comes late waits less).
    assert!(stalls >= 4, "{stalls} stalls");
    assert!(started.elapsed() >= 4 * hold);
    for json in [&xfer, &ping] {
        let doc = read_doc(json);
        let r = &doc.results[0];
        let p = path(&doc);
        let sides = p["sides"].as_array().unwrap();
        assert_eq!(sides.len(), 2, "{}: both sides' views", doc.bench);
        for side in sides {
            let held = side["read_us"]
                .as_array()
                .unwrap()
                .iter()
                .map(|us| us.as_f64().unwrap())
                .fold(0.0, f64::max);
            assert!(held >= 0.5e6, "{}: {side}", doc.bench);
        }
        // Yet no timed sample waited for one.
        let max_ms = r.latency_us.unwrap().max / 1e3;
        assert!(
            max_ms < 500.0,
            "{}: a timed sample of {max_ms} ms",
            doc.bench
        );
        println!(
            "{}: readings {:?} us, slowest timed sample {max_ms:.2} ms",
            doc.bench, p["sides"][0]["read_us"]
        );
    }
}

//! `kvxfer xfer` on the real tcp and shm providers over the loopback: one process and several,
//! 1M to 672M, c = 1, 4, 16, --verify, many-to-one with separate initiator processes, bad input.

mod common;
mod xfer_support;

use std::path::Path;
use std::process::{Command as Std, Stdio};
use std::time::{Duration, Instant};

use common::*;
use predicates::prelude::*;
use xfer_support::*;

#[test]
fn shm_1m_verify_one_process() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let doc = local(
        &[
            "xfer", "-p", "shm", "-s", "1M", "-b", "256K", "-W", "2", "-I", "4", "-w", "1",
            "--verify",
        ],
        &dir.path().join("r.json"),
    );
    let e = Expect {
        size: 1 << 20,
        iterations: 4,
        warmup: 1,
        transfers: 1,
        verify: true,
        op: "write",
    };
    assert_xfer_consistent(&doc, &e);
    assert_eq!(doc.config["block"], 256 << 10);
    assert_eq!(doc.config["chunks"], 4);
    assert!(doc
        .environment
        .provider
        .as_deref()
        .unwrap()
        .starts_with("shm"));
}

#[test]
fn tcp_4m_c4_verify_one_process() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let doc = local(
        &[
            "xfer", "-p", "tcp", "-s", "4M", "-b", "1M", "-c", "4", "-I", "3", "-w", "1",
            "--verify",
        ],
        &dir.path().join("r.json"),
    );
    let e = Expect {
        size: 4 << 20,
        iterations: 3,
        warmup: 1,
        transfers: 4,
        verify: true,
        op: "write",
    };
    assert_xfer_consistent(&doc, &e);
    assert_eq!(doc.environment.domain.as_deref(), Some("lo"));
    assert_eq!(doc.config["workers"], 4);
}

#[test]
fn tcp_read_verify_one_process() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let doc = local(
        &[
            "xfer", "-p", "tcp", "-o", "read", "-s", "3M", "-b", "1M", "-I", "3", "-w", "1",
            "--verify",
        ],
        &dir.path().join("r.json"),
    );
    let e = Expect {
        size: 3 << 20,
        iterations: 3,
        warmup: 1,
        transfers: 1,
        verify: true,
        op: "read",
    };
    assert_xfer_consistent(&doc, &e);
}

// The initiator's report carries every timed sample to the target: at 12000 iterations it
// passes the control connection's 1 MiB frame, and went as parts of a longer message.
#[test]
fn a_report_longer_than_a_control_frame_reaches_the_target() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let doc = local(
        &[
            "xfer", "-p", "tcp", "-d", "lo", "-s", "64", "-I", "12000", "-w", "1",
        ],
        &dir.path().join("r.json"),
    );
    let e = Expect {
        size: 64,
        iterations: 12000,
        warmup: 1,
        transfers: 1,
        verify: false,
        op: "write",
    };
    assert_xfer_consistent(&doc, &e);
}

#[test]
fn shm_outstanding_on_one_endpoint_with_reuse() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let doc = local(
        &[
            "xfer",
            "-p",
            "shm",
            "-s",
            "2M",
            "-b",
            "512K",
            "-c",
            "4",
            "--concurrency-mode",
            "outstanding",
            "--reuse",
            "-I",
            "3",
            "-w",
            "1",
            "--verify",
        ],
        &dir.path().join("r.json"),
    );
    let e = Expect {
        size: 2 << 20,
        iterations: 3,
        warmup: 1,
        transfers: 4,
        verify: true,
        op: "write",
    };
    assert_xfer_consistent(&doc, &e);
    assert_eq!(doc.config["workers"], 1);
    assert_eq!(doc.config["concurrency_mode"], "outstanding");
}

#[test]
fn tcp_55m_c16_has_sixteen_workers_and_tiers() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let doc = local(
        &[
            "xfer",
            "-p",
            "tcp",
            "-s",
            "55M",
            "-c",
            "16",
            "-I",
            "2",
            "-w",
            "1",
            "--scheme",
            "many-to-one",
        ],
        &dir.path().join("r.json"),
    );
    let e = Expect {
        size: 55 << 20,
        iterations: 2,
        warmup: 1,
        transfers: 16,
        verify: false,
        op: "write",
    };
    assert_xfer_consistent(&doc, &e);
    assert_eq!(doc.config["scheme"], "many_to_one");
    assert_eq!(
        extra(&doc, "tiers_per_iteration").as_array().unwrap().len(),
        2
    );
}

#[test]
fn shm_672m_is_the_default_subcommand() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    kvxfer()
        .args([
            "--provider",
            "shm",
            "--size",
            "672M",
            "-I",
            "2",
            "-w",
            "1",
            "--json",
        ])
        .arg(&json)
        .timeout(Duration::from_secs(300))
        .assert()
        .success()
        // Two 672M regions and two shm endpoints (8M each).
        .stderr(predicate::str::contains("host memory: 1.3 GiB"));
    let doc = read_doc(&json);
    let e = Expect {
        size: 704_643_072,
        iterations: 2,
        warmup: 1,
        transfers: 1,
        verify: false,
        op: "write",
    };
    assert_xfer_consistent(&doc, &e);
    assert_eq!(extra(&doc, "nixlbench")["batch_size"], 168);
}

fn spawn_target(args: &[&str], port: u16, json: &Path) -> std::process::Child {
    Std::new(kvxfer_path())
        .args(args)
        .args([
            "--timeout",
            "120",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--json",
        ])
        .arg(json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn ok(o: &std::process::Output, who: &str) {
    assert!(
        o.status.success(),
        "{who}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn tcp_two_processes_verify() {
    let _g = fabric_lock();
    let e = Expect {
        size: 8 << 20,
        iterations: 3,
        warmup: 1,
        transfers: 1,
        verify: true,
        op: "write",
    };
    let (idoc, tdoc) = two_processes_consistent(
        &[],
        &[
            "xfer", "-p", "tcp", "-s", "8M", "-I", "3", "-w", "1", "--verify",
        ],
        &e,
    );
    // The target's document carries the initiator's measurements.
    assert_eq!(
        idoc.results[0].extra["workers"],
        tdoc.results[0].extra["workers"]
    );
}

#[test]
fn cold_cache_evicts_on_both_sides_and_every_byte_still_arrives() {
    let _g = fabric_lock();
    let e = Expect {
        size: 4 << 20,
        iterations: 3,
        warmup: 1,
        transfers: 2,
        verify: true,
        op: "write",
    };
    let (idoc, tdoc) = two_processes_consistent(
        &[],
        &[
            "xfer",
            "-p",
            "tcp",
            "-s",
            "4M",
            "-c",
            "2",
            "-I",
            "3",
            "-w",
            "1",
            "--verify",
            "--cold-cache",
        ],
        &e,
    );
    for doc in [&idoc, &tdoc] {
        assert_eq!(doc.config["cold_cache"], true);
        let c = &doc.results[0].extra["cache"];
        assert_eq!(c["evicted_before_each"], true, "{c}");
        // Both workers' transfers, one side's host bytes.
        assert_eq!(c["host_payload_bytes"], 8u64 << 20, "{c}");
        let llc = doc
            .environment
            .extra
            .get("llc_bytes")
            .and_then(|v| v.as_u64());
        assert_eq!(c["llc_bytes"].as_u64(), llc, "{c}");
        assert_eq!(c["fits_llc"].as_bool(), llc.map(|l| l >= 8 << 20), "{c}");
    }
    // Tagged sends evict before their receives are armed over the regions, in one process.
    let dir = tempfile::tempdir().unwrap();
    let doc = local(
        &[
            "xfer",
            "-p",
            "tcp",
            "-s",
            "1M",
            "-b",
            "256K",
            "-o",
            "send",
            "-I",
            "2",
            "-w",
            "1",
            "--verify",
            "--cold-cache",
        ],
        &dir.path().join("r.json"),
    );
    assert_eq!(doc.results[0].extra["verified_bytes"], 3u64 << 20);
    assert_eq!(doc.results[0].extra["cache"]["evicted_before_each"], true);
    // A target without --cold-cache is not the initiator's peer: it names the parameter.
    let port = free_port();
    let base = ["xfer", "-p", "tcp", "-s", "1M", "-I", "2", "--timeout", "3"];
    let target = listening_target(&base, port);
    kvxfer()
        .args(base)
        .args(["--cold-cache", "--peer", &format!("127.0.0.1:{port}")])
        .timeout(Duration::from_secs(60))
        .assert()
        .failure()
        .stderr(predicate::str::contains("cold_cache"));
    let _ = target.wait_with_output();
}

#[test]
fn rounds_run_the_session_again_and_both_sides_merge_them() {
    let _g = fabric_lock();
    let e = Expect {
        size: 1 << 20,
        iterations: 12,
        // One warm-up iteration in each of the 3 rounds.
        warmup: 3,
        transfers: 2,
        verify: true,
        op: "write",
    };
    let (idoc, tdoc) = two_processes_consistent(
        &[],
        &[
            "xfer", "-p", "tcp", "-s", "1M", "-c", "2", "-I", "4", "-w", "1", "--verify",
            "--rounds", "3",
        ],
        &e,
    );
    for doc in [&idoc, &tdoc] {
        assert_eq!(doc.config["rounds"], 3);
        let r = &doc.results[0];
        let p = &r.extra["precision"];
        assert_eq!(p["rounds"]["p50_us"].as_array().unwrap().len(), 3, "{p}");
        assert_eq!(p["iterations"], 24, "{p}");
        // Every round's bytes checked, its warm-up too: 2 workers x (12 + 3) x 1 MiB.
        assert_eq!(r.extra["verified_bytes"], 30u64 << 20);
    }
    // The counters span the first round, so the payload judged against them is that round's:
    // 2 workers x 4 iterations x 1 MiB each side, not every round's 12 iterations.
    for (doc, key) in [(&idoc, "sent_bytes"), (&tdoc, "received_bytes")] {
        let own = &doc.results[0].path.as_ref().unwrap()["sides"][0];
        assert_eq!(own[key], 8u64 << 20, "{own}");
    }
}

#[test]
fn auto_runs_six_rounds_unless_told_and_they_share_its_limits() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    // A precision no round reaches: every round runs to its share of the time.
    let auto = [
        "xfer",
        "-p",
        "shm",
        "-s",
        "64K",
        "-I",
        "auto",
        "--precision",
        "0.01",
        "--max-time",
        "1200ms",
    ];
    let start = Instant::now();
    let doc = local(&auto, &dir.path().join("six.json"));
    let wall = start.elapsed();
    assert_eq!(doc.config["rounds"], 6);
    let p = &doc.results[0].extra["precision"];
    assert_eq!(p["rounds"]["p50_us"].as_array().unwrap().len(), 6, "{p}");
    assert_eq!(p["stopped_by"], "max-time", "{p}");
    // 1.2 s is the run's, six rounds of 0.2 s: rounds that each took the whole 1.2 s would
    // spend 7.2 s in timed iterations alone (the limit is on the clock, however busy the host).
    assert!(wall < Duration::from_millis(7200), "{wall:?}");
    let one = local(
        &[&auto[..], &["--rounds", "1"]].concat(),
        &dir.path().join("one.json"),
    );
    assert_eq!(one.config["rounds"], 1);
    assert!(one.results[0].extra["precision"].get("rounds").is_none());
}

#[test]
fn both_sides_of_a_many_worker_run_name_workers_and_tiers_alike() {
    let _g = fabric_lock();
    let e = Expect {
        size: 1 << 20,
        iterations: 3,
        warmup: 1,
        transfers: 4,
        verify: false,
        op: "write",
    };
    let (idoc, tdoc) = two_processes_consistent(
        &[],
        &[
            "xfer", "-p", "tcp", "-s", "1M", "-c", "4", "-I", "3", "-w", "1",
        ],
        &e,
    );
    // The target accepts the four workers in whatever order they connect; both documents
    // still number them as the initiator does, so the same figures give the same tiers.
    let (i, t) = (&idoc.results[0].extra, &tdoc.results[0].extra);
    assert_eq!(i["workers"], t["workers"]);
    // (two_processes_consistent has checked that the tiers partition the four transfers.)
    assert_eq!(i["tiers"], t["tiers"]);
}

#[test]
fn shm_672m_two_processes() {
    let _g = fabric_lock();
    let e = Expect {
        size: 704_643_072,
        iterations: 1,
        warmup: 1,
        transfers: 1,
        verify: false,
        op: "write",
    };
    two_processes_consistent(
        &[],
        &["xfer", "-p", "shm", "-s", "672M", "-I", "1", "-w", "1"],
        &e,
    );
}

#[test]
fn many_to_one_with_initiators_in_separate_processes() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let common = [
        "xfer",
        "-p",
        "tcp",
        "-s",
        "2M",
        "-I",
        "2",
        "-w",
        "1",
        "--verify",
        "--scheme",
        "many-to-one",
        "--reuse",
    ];
    let mut targs = common.to_vec();
    targs.extend(["-c", "3"]);
    let t = spawn_target(&targs, port, &dir.path().join("t.json"));
    let inis: Vec<_> = (0..3)
        .map(|k| {
            Std::new(kvxfer_path())
                .args(common)
                .args([
                    "-c",
                    "1",
                    "--timeout",
                    "120",
                    "--peer",
                    &format!("127.0.0.1:{port}"),
                    "--json",
                ])
                .arg(dir.path().join(format!("i{k}.json")))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (k, c) in inis.into_iter().enumerate() {
        ok(&c.wait_with_output().unwrap(), &format!("initiator {k}"));
    }
    let t = t.wait_with_output().unwrap();
    ok(&t, "target");
    // The target sees the incast: all three workers, each checked byte for byte.
    let tdoc = read_doc(&dir.path().join("t.json"));
    let e = Expect {
        size: 2 << 20,
        iterations: 2,
        warmup: 1,
        transfers: 3,
        verify: true,
        op: "write",
    };
    assert_xfer_consistent(&tdoc, &e);
    let mut seen = Vec::new();
    for k in 0..3 {
        let d = read_doc(&dir.path().join(format!("i{k}.json")));
        let one = Expect { transfers: 1, ..e };
        assert_xfer_consistent(&d, &one);
        seen.push(extra(&d, "workers")[0]["target_worker"].as_u64().unwrap());
    }
    // Each initiator process is told its place at the target.
    seen.sort_unstable();
    assert_eq!(seen, vec![0, 1, 2]);
}

#[test]
fn bad_input_is_refused_before_any_connection() {
    for (args, what) in [
        // Counts out of their range: refused before measuring, with the range or the bound.
        (vec!["-c", "0"], "0 is not in 1..=16777216"),
        (vec!["-W", "0"], "0 is not in 1..=65536"),
        (vec!["-s", "1M", "-b", "2M"], "is larger than --size 1M"),
        (vec!["-s", "4000G"], "of host memory"),
        (vec!["-s", "0"], "size"),
        (vec!["-I", "0"], "--iterations must be at least 1"),
        (vec!["--rounds", "0"], "0 is not in 1..=1000"),
        (
            vec!["--rounds", "2", "--arrival", "fixed:10"],
            "leave --rounds out with --arrival",
        ),
        (
            vec!["--cold-cache", "--arrival", "fixed:10"],
            "no --cold-cache",
        ),
    ] {
        // Refused with nothing measured: one error line, no table on stdout.
        kvxfer()
            .args(["xfer", "-p", "tcp"])
            .args(&args)
            .timeout(Duration::from_secs(20))
            .assert()
            .failure()
            .stderr(predicate::str::contains(what))
            .stdout(predicate::str::is_empty());
    }
}

#[test]
fn target_gives_up_when_initiators_are_missing() {
    let _g = fabric_lock();
    let port = free_port();
    let start = Instant::now();
    kvxfer()
        .args(["xfer", "-p", "tcp", "-s", "1M", "-c", "2", "--timeout", "1"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .timeout(Duration::from_secs(20))
        .assert()
        .failure()
        .stderr(predicate::str::contains("no kvxfer initiator connected"));
    assert!(start.elapsed() < Duration::from_secs(8));
}

#[test]
fn send_verify_on_tcp_and_shm() {
    let _g = fabric_lock();
    for (provider, extra_args) in [
        ("tcp", vec!["-c", "2"]),
        ("shm", vec!["-c", "3", "--concurrency-mode", "outstanding"]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec![
            "xfer", "-p", provider, "-o", "send", "-s", "2M", "-b", "128K", "-I", "2", "-w", "1",
            "--verify",
        ];
        args.extend(extra_args);
        let doc = local(&args, &dir.path().join("r.json"));
        let transfers = if provider == "tcp" { 2 } else { 3 };
        let e = Expect {
            size: 2 << 20,
            iterations: 2,
            warmup: 1,
            transfers,
            verify: true,
            op: "send",
        };
        assert_xfer_consistent(&doc, &e);
        assert_eq!(extra(&doc, "nixlbench")["batch_size"], 16);
    }
}

#[test]
fn msg_endpoints_carry_transfers_too() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let doc = local(
        &[
            "xfer", "-p", "tcp", "-e", "msg", "-s", "2M", "-c", "2", "-I", "2", "-w", "1",
            "--verify",
        ],
        &dir.path().join("r.json"),
    );
    let e = Expect {
        size: 2 << 20,
        iterations: 2,
        warmup: 1,
        transfers: 2,
        verify: true,
        op: "write",
    };
    assert_xfer_consistent(&doc, &e);
    assert_eq!(doc.config["endpoint"], "msg");
}

#[test]
fn one_to_many_spreads_workers_over_target_processes() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let common = [
        "xfer",
        "-p",
        "tcp",
        "-s",
        "1M",
        "-I",
        "2",
        "-w",
        "1",
        "--verify",
        "--scheme",
        "one-to-many",
    ];
    let ports = [free_port(), free_port()];
    let targets: Vec<_> = ports
        .iter()
        .enumerate()
        .map(|(k, &p)| spawn_target(&common, p, &dir.path().join(format!("t{k}.json"))))
        .collect();
    let mut args = common.to_vec();
    args.extend(["-c", "2"]);
    let peers: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let out = kvxfer()
        .args(&args)
        .args([
            "--timeout",
            "120",
            "--peer",
            &peers[0],
            "--peer",
            &peers[1],
            "--json",
        ])
        .arg(dir.path().join("i.json"))
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    ok(&out, "initiator");
    for t in targets {
        ok(&t.wait_with_output().unwrap(), "target");
    }
    let e = Expect {
        size: 1 << 20,
        iterations: 2,
        warmup: 1,
        transfers: 2,
        verify: true,
        op: "write",
    };
    let idoc = read_doc(&dir.path().join("i.json"));
    assert_eq!(idoc.config["scheme"], "one_to_many");
    assert_xfer_consistent(&idoc, &e);
    // Both workers are worker 0 of their own target.
    let w = extra(&idoc, "workers").as_array().unwrap();
    assert!(w.iter().all(|x| x["target_worker"] == 0));
    for k in 0..2 {
        let t = read_doc(&dir.path().join(format!("t{k}.json")));
        assert_xfer_consistent(&t, &Expect { transfers: 1, ..e });
    }
}

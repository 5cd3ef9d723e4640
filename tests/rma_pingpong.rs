//! `kvxfer rma-pingpong` on the real tcp and shm providers: the three operations, one process
//! and two, with every payload checked.

mod common;

use std::time::Duration;

use common::*;
use kvxfer::report::{ResultDoc, Status};
use predicates::prelude::*;

/// fi_rma_pingpong's arithmetic: writes count two transfers per iteration, reads one.
fn assert_rma_consistent(doc: &ResultDoc, op: &str, sizes: &[u64], iterations: u64) {
    assert_eq!(doc.bench, "rma_pingpong");
    assert_eq!(doc.layer, "L0");
    assert_eq!(doc.status, Status::Complete, "{:?}", doc.errors);
    assert_eq!(doc.config["op"], op);
    let got: Vec<u64> = doc.results.iter().map(|r| r.message_size).collect();
    assert_eq!(got, sizes);
    let xfers = if op == "read" { 1.0 } else { 2.0 };
    for r in &doc.results {
        assert_eq!(r.iterations, iterations);
        let time_s = r.extra["time_s"].as_f64().unwrap();
        let usec = r.extra["usec_per_xfer"].as_f64().unwrap();
        assert!((usec - time_s * 1e6 / iterations as f64 / xfers).abs() <= usec * 1e-9);
        let bytes = iterations as f64 * r.message_size as f64 * xfers;
        assert_eq!(r.extra["bytes_counted"].as_f64().unwrap(), bytes);
        let mbps = r.bandwidth_mbps.unwrap();
        assert!((mbps - bytes / time_s / 1e6).abs() <= mbps * 1e-9);
        let l = r.latency_us.unwrap();
        assert!(l.min > 0.0 && l.min <= l.p50 && l.p50 <= l.p99 && l.p99 <= l.max);
        // Each sample is the figure's unit: the mean of the samples is usec/xfer.
        assert_samples_make_the_figure(l.mean, usec);
    }
}

fn one_process(provider: &str, op: &str) {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    kvxfer()
        .args([
            "rma-pingpong",
            "-p",
            provider,
            "-o",
            op,
            "-S",
            "1,64,5000,256K",
        ])
        .args([
            "-I",
            "30",
            "-w",
            "2",
            "--verify",
            "--timeout",
            "60",
            "--json",
        ])
        .arg(&json)
        .timeout(Duration::from_secs(120))
        .assert()
        .success()
        .stdout(predicate::str::starts_with("bytes   #sent   #ack"));
    let doc = read_doc(&json);
    assert_rma_consistent(&doc, op, &[1, 64, 5000, 256 << 10], 30);
    // As fi_rma_pingpong, small writes are injected; reads never are.
    let injected: Vec<Option<bool>> = doc
        .results
        .iter()
        .map(|r| r.extra.get("injected").and_then(|v| v.as_bool()))
        .collect();
    if op == "read" {
        assert!(injected.iter().all(|i| i.is_none()), "{injected:?}");
    } else {
        assert_eq!(injected[1], Some(true), "64 bytes: {injected:?}");
        assert_eq!(injected[3], Some(false), "256K: {injected:?}");
    }
}

#[test]
fn shm_write() {
    one_process("shm", "write");
}

#[test]
fn shm_writedata() {
    one_process("shm", "writedata");
}

#[test]
fn shm_read() {
    one_process("shm", "read");
}

#[test]
fn tcp_write() {
    one_process("tcp", "write");
}

#[test]
fn tcp_writedata() {
    one_process("tcp", "writedata");
}

#[test]
fn tcp_read() {
    one_process("tcp", "read");
}

fn two_processes(provider: &str, op: &str) {
    let _g = fabric_lock();
    two_processes_with(provider, op, 1);
}

/// A target and an initiator process, 64 B and 64 KiB, 20 iterations in each of `rounds`
/// rounds, every payload checked: the initiator's document, once both sides' add up.
fn two_processes_with(provider: &str, op: &str, rounds: u64) -> ResultDoc {
    let dir = tempfile::tempdir().unwrap();
    let rounds_arg = rounds.to_string();
    let args = [
        "rma-pingpong",
        "-p",
        provider,
        "-o",
        op,
        "-S",
        "64,64K",
        "-I",
        "20",
        "--verify",
        "--rounds",
        &rounds_arg,
    ];
    let (ini, t) = target_and_initiator(&args, dir.path());
    assert!(
        ini.status.success(),
        "{op}: {}",
        String::from_utf8_lossy(&ini.stderr)
    );
    assert!(
        t.status.success(),
        "{op}: {}",
        String::from_utf8_lossy(&t.stderr)
    );
    let doc = read_doc(&dir.path().join("i.json"));
    assert_rma_consistent(&doc, op, &[64, 65536], 20 * rounds);
    let tdoc = read_doc(&dir.path().join("t.json"));
    assert_eq!(tdoc.config["role"], "target");
    // Only the initiator measures reads, as fi_rma_pingpong's client alone prints.
    assert_eq!(tdoc.results.len(), if op == "read" { 0 } else { 2 }, "{op}");
    doc
}

#[test]
fn tcp_write_two_processes() {
    two_processes("tcp", "write");
}

#[test]
fn shm_read_two_processes() {
    two_processes("shm", "read");
}

#[test]
fn shm_writedata_two_processes() {
    two_processes("shm", "writedata");
}

#[test]
fn no_inject_posts_every_write_with_a_completion() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    kvxfer()
        .args([
            "rma-pingpong",
            "-p",
            "shm",
            "-o",
            "writedata",
            "-S",
            "64",
            "-I",
            "50",
        ])
        .args(["--no-inject", "--verify", "--json"])
        .arg(&json)
        .timeout(Duration::from_secs(60))
        .assert()
        .success();
    let doc = read_doc(&json);
    assert_rma_consistent(&doc, "writedata", &[64], 50);
    assert_eq!(doc.config["inject"], false);
    assert_eq!(doc.results[0].extra["injected"], false);
}

#[test]
fn op_mismatch_between_peers_is_refused() {
    let port = free_port();
    let target = listening_target(
        &[
            "rma-pingpong",
            "-p",
            "tcp",
            "-o",
            "write",
            "-S",
            "64",
            "--timeout",
            "20",
        ],
        port,
    );
    kvxfer()
        .args([
            "rma-pingpong",
            "-p",
            "tcp",
            "-o",
            "read",
            "-S",
            "64",
            "--timeout",
            "20",
        ])
        .args(["--peer", &format!("127.0.0.1:{port}")])
        .timeout(Duration::from_secs(30))
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "op is read here but write on the peer",
        ));
    // The target refused it and waits on for a matching initiator.
    let mut target = target;
    assert!(target.try_wait().unwrap().is_none(), "the target ended");
    target.kill().unwrap();
    let t = target.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&t.stderr).contains("op is write here but read on the peer"));
}

#[test]
fn rounds_run_every_op_on_fresh_channels_across_two_processes() {
    let _g = fabric_lock();
    for op in ["write", "writedata", "read"] {
        let doc = two_processes_with("shm", op, 3);
        assert_eq!(doc.config["rounds"], 3);
        for r in &doc.results {
            let p = &r.extra["precision"];
            let medians = p["rounds"]["p50_us"].as_array().unwrap();
            assert_eq!(medians.len(), 3, "{op}: {p}");
            // The path was read over the first round.
            assert!(r.path.is_some(), "{op}");
        }
    }
}

//! kvxfer xfer's NIXL twin, scripts/nixl_xfer.py: NIXL's own engine (the nixl-cu12 wheel in the
//! test venv) on a pairwise DRAM transfer over UCX tcp, its nixlbench table read by
//! `kvxfer parse --tool nixlbench`; and what happens where NIXL is not installed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;
use kvxfer::plan;
use kvxfer::report::ResultDoc;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn driver() -> PathBuf {
    root().join("scripts/nixl_xfer.py")
}

/// The test venv's python when NIXL is installed there; None (the test skipped by name)
/// otherwise.
fn nixl_python(test: &str) -> Option<PathBuf> {
    let py = root().join(".cache/mlflow-venv/bin/python");
    let ok = Command::new(&py)
        .arg(driver())
        .arg("--check")
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        skip(
            test,
            "NIXL's Python API is not installed (scripts/setup.sh --test)",
        );
    }
    ok.then_some(py)
}

fn run(py: &Path, args: &[&str]) -> std::process::Child {
    Command::new("timeout")
        .args(["-k", "5", "60"])
        .arg(py)
        .arg(driver())
        .args(args)
        .env("UCX_TLS", "tcp")
        .env("UCX_NET_DEVICES", "lo")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn ok(out: Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    String::from_utf8(out.stdout).unwrap()
}

/// Parses the driver's table as nixlbench's; checks nixlbench's arithmetic on it.
fn parsed(table: &str, block: u64, batch: u64, iters: u64, op: &str) -> ResultDoc {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("nixl.txt");
    std::fs::write(&raw, table).unwrap();
    kvxfer()
        .args(["parse", "--tool", "nixlbench"])
        .arg(&raw)
        .arg("--json")
        .arg(dir.path().join("r.json"))
        .assert()
        .success();
    let d = read_doc(&dir.path().join("r.json"));
    assert_eq!((d.tool.as_str(), d.bench.as_str()), ("nixlbench", "xfer"));
    assert_eq!(d.config["op_type"], op);
    assert_eq!(d.config["scheme"], "pairwise");
    assert_eq!(d.config["initiator_seg_type"], "DRAM");
    assert_eq!(d.results.len(), 1);
    let r = &d.results[0];
    assert_eq!(r.message_size, block);
    assert_eq!(r.extra["batch_size"], batch);
    assert_eq!(r.iterations, iters);
    // B/W = block x batch x iterations / span; Avg Lat. = span / (iterations x batch): their
    // product is the block size (in 10^9 B/s x us = 10^3 B), to the printed precision.
    let gbps = r.extra["bw_gb_sec"].as_f64().unwrap();
    let lat = r.extra["avg_lat_us"].as_f64().unwrap();
    let kb = gbps * lat;
    let want = block as f64 / 1e3;
    assert!(
        (kb - want).abs() <= want * 1e-3 + gbps * 0.05,
        "{gbps} x {lat} vs {want}"
    );
    assert!((r.bandwidth_gbps.unwrap() - gbps).abs() < 1e-9);
    // Every transfer waited for: post plus transfer time fits in the span per transfer.
    let per_transfer = lat * batch as f64;
    let (post, tx) = (
        r.extra["avg_post_us"].as_f64().unwrap(),
        r.extra["avg_tx_us"].as_f64().unwrap(),
    );
    assert!(
        post + tx <= per_transfer * 1.01 + 1.0,
        "{post} + {tx} > {per_transfer}"
    );
    assert!(tx > 0.0);
    d
}

#[test]
fn one_process_write_prints_a_table_kvxfer_parses() {
    let Some(py) = nixl_python("one_process_write_prints_a_table_kvxfer_parses") else {
        return;
    };
    let _g = fabric_lock();
    let args = [
        "--block_size",
        "1048576",
        "--batch_size",
        "4",
        "--num_iter",
        "5",
        "--warmup_iter",
        "1",
        "--check_consistency",
        "1",
    ];
    let table = ok(run(&py, &args).wait_with_output().unwrap());
    // stdout is the table alone: NIXL's own log lines go to stderr.
    assert!(table.starts_with("NIXLBench Configuration\n"), "{table}");
    assert!(!table.contains("NIXL INFO"), "{table}");
    parsed(&table, 1 << 20, 4, 5, "WRITE");
}

#[test]
fn two_processes_read_meet_over_a_local_socket() {
    let Some(py) = nixl_python("two_processes_read_meet_over_a_local_socket") else {
        return;
    };
    let _g = fabric_lock();
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let common = [
        "--op_type",
        "READ",
        "--block_size",
        "262144",
        "--batch_size",
        "8",
        "--num_iter",
        "4",
        "--warmup_iter",
        "1",
        "--check_consistency",
        "1",
        "--timeout",
        "40",
    ];
    let target = run(&py, &[&common[..], &["--listen", &listen]].concat());
    let initiator = run(&py, &[&common[..], &["--peer", &listen]].concat());
    let table = ok(initiator.wait_with_output().unwrap());
    // Only the initiator prints figures.
    assert!(ok(target.wait_with_output().unwrap()).is_empty());
    assert!(table.contains("two processes"), "{table}");
    parsed(&table, 262144, 8, 4, "READ");
}

#[test]
fn peers_with_other_parameters_are_refused() {
    let Some(py) = nixl_python("peers_with_other_parameters_are_refused") else {
        return;
    };
    let _g = fabric_lock();
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let base = [
        "--block_size",
        "65536",
        "--num_iter",
        "2",
        "--timeout",
        "30",
    ];
    let target = run(
        &py,
        &[&base[..], &["--batch_size", "2", "--listen", &listen]].concat(),
    );
    let initiator = run(
        &py,
        &[&base[..], &["--batch_size", "4", "--peer", &listen]].concat(),
    );
    let i = initiator.wait_with_output().unwrap();
    let t = target.wait_with_output().unwrap();
    assert!(!i.status.success() && !t.status.success());
    assert!(String::from_utf8_lossy(&i.stderr).contains("refused this run's parameters"));
    assert!(String::from_utf8_lossy(&t.stderr).contains("differ from"));
}

#[test]
fn without_nixl_the_driver_says_so_and_the_twin_task_is_skipped() {
    // The system python has no NIXL (it lives in the test venv only).
    let out = Command::new("python3")
        .arg(driver())
        .arg("--check")
        .output()
        .unwrap();
    if out.status.code() != Some(3) {
        skip(
            "without_nixl_the_driver_says_so_and_the_twin_task_is_skipped",
            "the system python3 has NIXL installed",
        );
        return;
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NIXL's Python API is not installed"), "{err}");
    assert!(err.contains("scripts/setup.sh --test"), "{err}");
    // A one-pattern plan with the twin, NIXL's python pointing at that one: kvxfer xfer runs,
    // the twin is skipped with the reason printed, and the cross-check lists xfer as alone.
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("results");
    let mut p = plan::load_plan(&root().join("plans/loopback.json")).unwrap();
    p["common"]["output_dir"] = out_dir.display().to_string().into();
    p["common"]["control_port"] = free_port().into();
    let tools = &mut p["infrastructure"]["tools"];
    tools["kvxfer"] = env!("CARGO_BIN_EXE_kvxfer").into();
    tools["nixl_python"] = "python3".into();
    tools["nixl_xfer"] = driver().display().to_string().into();
    let l1 = p["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == "L1")
        .unwrap();
    let mut twin = l1["patterns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["params"]["twin"] == "nixl")
        .unwrap()
        .clone();
    let id = twin["id"].as_str().unwrap().to_string();
    twin["params"]["size"] = (4u64 << 20).into();
    twin["params"]["block"] = (1u64 << 20).into();
    p["layers"] = serde_json::json!([{"id": "L1", "name": "twin", "patterns": [twin]}]);
    assert_eq!(plan::validate(&p), []);
    let defs = dir.path().join("defs");
    plan::write_generated(
        &defs,
        &plan::generate(&p, &root().join("templates")).unwrap(),
    )
    .unwrap();
    let _g = fabric_lock();
    let run = kvxfer()
        .args(["task", "run"])
        .arg(defs.join(format!("{id}.json")))
        .arg("--state")
        .arg(dir.path().join("state.json"))
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{err}");
    assert!(
        err.contains("[nixl-r1] skipped (needs NIXL's Python API (scripts/setup.sh --test"),
        "{err}"
    );
    assert!(out_dir.join(format!("{id}.run1.json")).is_file());
    assert!(!out_dir.join(format!("{id}.run1.ref.json")).exists());
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("crosscheck.json")).unwrap()).unwrap();
    assert_eq!(report["unpaired"][0]["pattern"], id.as_str());
}

//! The keys of a result document stay as they are: one document each of xfer (libfabric in one
//! process, its target and initiator in two, UCX), pingpong and ucx-perf is reduced to its key
//! paths and compared with the list pinned in tests/data/result_keys/, so results taken before
//! and after a change to the code compare field by field.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::Value;

const UCX_TCP: [(&str, &str); 3] = [
    ("UCX_TLS", "tcp"),
    ("UCX_NET_DEVICES", "lo"),
    ("UCX_LOG_FILE", "stderr"),
];

/// Maps whose keys are data (environment variable names, counter names), and lists whose
/// entries come and go with what the host did (the devices that carried a payload, the
/// retransmission counters that moved): their children are not key paths.
const FREE_MAPS: [&str; 4] = [
    "environment.env",
    "results[].path.devices[]",
    "results[].path.sides[].retransmissions[]",
    "results[].path.sides[].devices[].counters",
];

/// Every key path of `v` under `prefix`: objects add `.key`, arrays add `[]` (the union over
/// their elements).
fn key_paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if FREE_MAPS.contains(&prefix) {
                return;
            }
            for (k, child) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(p.clone());
                key_paths(child, &p, out);
            }
        }
        Value::Array(items) => {
            let p = format!("{prefix}[]");
            for child in items {
                key_paths(child, &p, out);
            }
        }
        _ => {}
    }
}

/// Compares the key paths of the document at `json` with the pinned list `name`.
fn assert_keys_pinned(json: &Path, name: &str) {
    let v: Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    let mut got = BTreeSet::new();
    key_paths(&v, "", &mut got);
    let pinned_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/result_keys")
        .join(format!("{name}.txt"));
    let pinned: BTreeSet<String> = std::fs::read_to_string(&pinned_path)
        .unwrap_or_else(|e| panic!("{}: {e}", pinned_path.display()))
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let missing: Vec<_> = pinned.difference(&got).collect();
    let added: Vec<_> = got.difference(&pinned).collect();
    assert!(
        missing.is_empty() && added.is_empty(),
        "{name}: keys missing {missing:?}, keys added {added:?}; whole list:\n{}",
        got.iter().cloned().collect::<Vec<_>>().join("\n")
    );
}

fn run_ok(env: &[(&str, &str)], args: &[&str], json: &Path) {
    kvxfer()
        .env_remove("UCX_TLS")
        .env_remove("UCX_NET_DEVICES")
        .envs(env.iter().copied())
        .args(args)
        .args(["--timeout", "60", "--json"])
        .arg(json)
        .timeout(Duration::from_secs(180))
        .assert()
        .success();
}

#[test]
fn key_path_walk_sees_nested_keys_arrays_and_skips_free_maps() {
    let v: Value = serde_json::json!({
        "a": {"b": 1, "c": [{"d": 2}, {"e": 3}]},
        "environment": {"env": {"UCX_TLS": "tcp"}, "host": "h"}
    });
    let mut got = BTreeSet::new();
    key_paths(&v, "", &mut got);
    let want: BTreeSet<String> = [
        "a",
        "a.b",
        "a.c",
        "a.c[].d",
        "a.c[].e",
        "environment",
        "environment.env",
        "environment.host",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(got, want);
}

#[test]
fn xfer_libfabric_one_process_keys() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    run_ok(
        &[],
        &[
            "xfer", "-p", "shm", "-s", "1M", "-b", "256K", "-W", "2", "-I", "3", "-w", "1",
            "--verify",
        ],
        &json,
    );
    assert_keys_pinned(&json, "xfer_libfabric");
}

#[test]
fn xfer_libfabric_two_processes_keys() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let (ini, t) = target_and_initiator(
        &[
            "xfer",
            "-p",
            "tcp",
            "-s",
            "1M",
            "-b",
            "256K",
            "-W",
            "2",
            "-I",
            "3",
            "-w",
            "1",
            "--verify",
            "--timeout",
            "60",
        ],
        dir.path(),
    );
    for (o, who) in [(&ini, "initiator"), (&t, "target")] {
        assert!(
            o.status.success(),
            "{who}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert_keys_pinned(&dir.path().join("i.json"), "xfer_libfabric_initiator");
    assert_keys_pinned(&dir.path().join("t.json"), "xfer_libfabric_target");
}

#[test]
fn xfer_ucx_one_process_keys() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    run_ok(
        &UCX_TCP,
        &[
            "xfer",
            "--backend",
            "ucx",
            "-s",
            "1M",
            "-b",
            "256K",
            "-W",
            "2",
            "-I",
            "3",
            "-w",
            "1",
            "--verify",
        ],
        &json,
    );
    assert_keys_pinned(&json, "xfer_ucx");
}

#[test]
fn pingpong_keys() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    run_ok(
        &[],
        &[
            "pingpong", "-p", "tcp", "-e", "rdm", "-m", "msg", "-S", "64,4K", "-I", "20", "-w",
            "2", "--verify",
        ],
        &json,
    );
    assert_keys_pinned(&json, "pingpong");
}

#[test]
fn ucx_perf_keys() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    for (test, name) in [
        ("tag_lat", "ucx_perf_tag_lat"),
        ("tag_bw", "ucx_perf_tag_bw"),
    ] {
        let json = dir.path().join(format!("{test}.json"));
        run_ok(
            &UCX_TCP,
            &[
                "ucx-perf", "-t", test, "-s", "64,8K", "-n", "100", "-w", "10", "--verify",
            ],
            &json,
        );
        assert_keys_pinned(&json, name);
    }
}

//! Each result's `scheduling`: how long each side's worker threads waited for a CPU over the
//! timed span, read from the kernel's per-thread counters, crossing from the target to the
//! initiator with the rest of its summary.

mod common;

use common::*;
use serde_json::Value;

/// Checks one side's block: `workers` threads read, figures that add up, and returns it.
fn side<'a>(s: &'a Value, name: &str, workers: u64) -> &'a Value {
    let v = &s[name];
    assert_eq!(v["workers"], workers, "{name}: {s}");
    let f = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{name}.{k}: {s}"));
    let (span, on, wait) = (f("span_ms"), f("on_cpu_ms"), f("waiting_ms"));
    assert!(span > 0.0, "{s}");
    // A thread runs, waits for a CPU or sleeps: never more than its span (plus the scheduler
    // tick either reading may lag, 10 ms per thread at the slowest HZ).
    assert!(
        on + wait <= span + 10.0 * 2.0 * workers as f64,
        "{name}: {s}"
    );
    assert!((f("waiting_pct") - wait * 100.0 / span).abs() < 1e-6, "{s}");
    assert_eq!(
        v["worker_waiting_pct"].as_array().map(Vec::len),
        Some(workers as usize),
        "{s}"
    );
    v
}

/// Runs kvxfer `args` with `--json` under `prefix` (e.g. `taskset -c 0`; empty: none) and
/// expects success; returns its stdout and document.
fn measured(prefix: &[&str], args: &[&str]) -> (String, kvxfer::report::ResultDoc) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let prefix: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
    let out = prefixed(&prefix, kvxfer_path())
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        read_doc(&json),
    )
}

#[test]
fn xfer_states_both_sides_waits_across_two_processes() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "xfer", "-p", "tcp", "--domain", "lo", "-s", "1M", "-c", "2", "-I", "100", "--rounds", "2",
    ];
    let (ini, tgt) = target_and_initiator(&args, dir.path());
    assert!(
        ini.status.success() && tgt.status.success(),
        "{ini:?} {tgt:?}"
    );
    for json in ["i.json", "t.json"] {
        let doc = read_doc(&dir.path().join(json));
        let s = &doc.results[0].extra["scheduling"];
        side(s, "initiator", 2);
        side(s, "target", 2);
        assert!(s["host_cpus"].as_u64().unwrap() >= 1, "{s}");
    }
    let out = String::from_utf8_lossy(&ini.stdout);
    assert!(
        out.lines()
            .any(|l| l.starts_with("scheduling: waited for a CPU")
                && l.contains("initiator 2 worker(s)")
                && l.contains("target 2 worker(s)")),
        "{out}"
    );
}

/// One process's xfer over tcp on lo: 256 KiB, 300 timed iterations.
const XFER_LO: [&str; 9] = [
    "xfer", "-p", "tcp", "--domain", "lo", "-s", "256K", "-I", "300",
];

#[test]
fn on_one_cpu_both_sides_of_a_pair_wait_for_it() {
    if !have("taskset") {
        return skip("on_one_cpu_both_sides_of_a_pair_wait_for_it", "no taskset");
    }
    let _g = fabric_lock();
    let (_, doc) = measured(&["taskset", "-c", "0"], &XFER_LO);
    let s = &doc.results[0].extra["scheduling"];
    // Two polling threads on one CPU: each is runnable while the other runs.
    assert_eq!(s["host_cpus"], 1, "{s}");
    for name in ["initiator", "target"] {
        let v = side(s, name, 1);
        assert!(v["waiting_ms"].as_f64().unwrap() > 0.0, "{s}");
        assert!(v["involuntary_switches"].as_u64().unwrap() > 0, "{s}");
    }
}

#[test]
fn pingpong_sides_state_theirs_per_size() {
    let _g = fabric_lock();
    let args = [
        "pingpong",
        "-p",
        "shm",
        "--sizes",
        "64,4k",
        "--iterations",
        "500",
    ];
    let (table, doc) = measured(&[], &args);
    assert_eq!(doc.results.len(), 2);
    for r in &doc.results {
        let s = &r.extra["scheduling"];
        side(s, "initiator", 1);
        side(s, "target", 1);
        // Carried in the result's `scheduling` alone, not again in its path's sides.
        let sides = r.path.as_ref().unwrap()["sides"].as_array().unwrap();
        assert!(sides.iter().all(|v| v.get("sched").is_none()), "{sides:?}");
    }
    assert!(
        table.contains("\nscheduling (64): waited for a CPU"),
        "{table}"
    );
    assert!(
        table.contains("\nscheduling (4k): waited for a CPU"),
        "{table}"
    );
}

#[test]
fn cpus_pin_every_worker_and_the_witness_sees_no_migration() {
    let _g = fabric_lock();
    let (_, doc) = measured(&[], &[&XFER_LO[..], &["--cpus", "0"]].concat());
    assert_eq!(doc.config["cpus"], serde_json::json!([0]));
    let s = &doc.results[0].extra["scheduling"];
    for name in ["initiator", "target"] {
        let v = side(s, name, 1);
        // Pinned before the span began: no move within it; both on CPU 0, each waits.
        if !v["migrations"].is_null() {
            assert_eq!(v["migrations"], 0, "{s}");
        }
        assert!(v["waiting_ms"].as_f64().unwrap() > 0.0, "{s}");
    }
}

/// Checks a ping-pong document pinned to `cpus` with `--cpus`: recorded, and neither side's
/// thread moved over its timed spans.
fn assert_pinned(doc: &kvxfer::report::ResultDoc, cpus: &[u64]) {
    assert_eq!(doc.config["cpus"], serde_json::json!(cpus));
    for r in &doc.results {
        let s = &r.extra["scheduling"];
        for name in ["initiator", "target"] {
            let v = side(s, name, 1);
            if !v["migrations"].is_null() {
                assert_eq!(v["migrations"], 0, "{s}");
            }
        }
    }
}

#[test]
fn pingpong_cpus_pin_each_side_and_one_cpu_makes_them_take_turns() {
    let _g = fabric_lock();
    let base = [
        "pingpong", "-p", "shm", "--sizes", "64,4k", "-I", "50", "-w", "2",
    ];
    // Both sides on CPU 0: the two polling threads take turns, each iteration a preemption,
    // and each waits for the other about half the span (unpinned here: 0 %, no preemption).
    let (_, doc) = measured(
        &[],
        &[&base[..], &["--cpus", "0", "--rounds", "2"]].concat(),
    );
    assert_pinned(&doc, &[0]);
    for r in &doc.results {
        let s = &r.extra["scheduling"];
        for name in ["initiator", "target"] {
            assert!(s[name]["waiting_pct"].as_f64().unwrap() > 20.0, "{s}");
            assert!(
                s[name]["involuntary_switches"].as_u64().unwrap() >= 50,
                "{s}"
            );
        }
    }
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return skip(
            "pingpong_cpus_pin_each_side_and_one_cpu_makes_them_take_turns (two CPUs)",
            "one CPU",
        );
    }
    // The initiator on the first CPU named, the target on the second.
    let (_, doc) = measured(&[], &[&base[..], &["--cpus", "1,0"]].concat());
    assert_pinned(&doc, &[1, 0]);
}

#[test]
fn cpus_outside_the_process_or_malformed_are_refused_in_one_line() {
    let allowed = std::thread::available_parallelism().map_or(1, |n| n.get());
    let outside = (allowed + 64).to_string();
    for (list, says) in [
        (outside.as_str(), "is not among this process's CPUs"),
        ("1-0", "is no range of CPUs"),
        ("0,0", "named twice"),
        ("zero", "is not a CPU number"),
    ] {
        let out = kvxfer()
            .args([
                "xfer", "-p", "tcp", "--domain", "lo", "-I", "2", "--cpus", list,
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{list}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.lines().next().unwrap().contains(says), "{list}: {err}");
        assert!(out.stdout.is_empty(), "{list}");
    }
}

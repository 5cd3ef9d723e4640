//! scripts/reruns.py, the check that reruns of one command agree with the error bars each run
//! states: how many of the other runs' medians each run's interval holds.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::json;

/// A result document with one 64-byte result of median `p50` and interval `[lo, hi]` (us).
fn doc(dir: &Path, name: &str, p50: f64, lo: f64, hi: f64) -> PathBuf {
    let d = json!({
        "tool": "kvxfer",
        "results": [{
            "message_size": 64,
            "iterations": 1000,
            "latency_us": {"p50": p50},
            "extra": {"precision": {
                "p50_interval_us": [lo, hi],
                "half_width_pct": 100.0 * (p50 - lo).max(hi - p50) / p50,
                "iterations": 1000,
                "stopped_by": "precision",
                "p99_interval_us": "too few samples for p99 (1000)",
                "blocks": {"count": 12, "iterations_each": 80,
                           "p50_interval_us": [lo, hi], "coverage": 0.96}
            }}
        }]
    });
    let path = dir.join(name);
    std::fs::write(&path, d.to_string()).unwrap();
    path
}

fn reruns(files: &[PathBuf]) -> Output {
    Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/reruns.py"))
        .args(files)
        .output()
        .expect("python3 runs")
}

#[test]
fn each_interval_is_checked_against_the_other_runs_medians() {
    let dir = tempfile::tempdir().unwrap();
    let a = doc(dir.path(), "a.json", 1.0, 0.95, 1.05);
    let b = doc(dir.path(), "b.json", 1.02, 0.99, 1.03);
    let c = doc(dir.path(), "c.json", 1.5, 1.4, 1.6);
    // a holds b's median, b holds a's, c holds neither, and neither holds c's.
    let out = reruns(&[a.clone(), b.clone(), c]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(
            "size 64: 0 of 3 runs' intervals hold every other median; 2 of 6 pairs hold; \
             medians spread 50.0 %"
        ),
        "{text}"
    );
    assert!(text.contains("run 1: p50 1 us [0.95, 1.05] +-5.00 %, 1000 iterations in 12 blocks, stopped by precision; holds 1 of 2"), "{text}");
    assert!(text.contains("run 3: p50 1.5 us [1.4, 1.6] +-6.67 %, 1000 iterations in 12 blocks, stopped by precision; holds 0 of 2"), "{text}");
    let out = reruns(&[a, b]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("size 64: 2 of 2 runs' intervals hold every other median; 2 of 2 pairs"),
        "{text}"
    );
}

#[test]
fn a_document_without_an_interval_or_too_few_runs_is_refused_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = doc(dir.path(), "good.json", 1.0, 0.9, 1.1);
    let bare = dir.path().join("bare.json");
    std::fs::write(
        &bare,
        r#"{"results": [{"message_size": 64, "latency_us": {"p50": 1.0}}]}"#,
    )
    .unwrap();
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{").unwrap();
    for (files, want) in [
        (
            vec![good.clone(), bare],
            "no result states a median's interval",
        ),
        (vec![good.clone(), broken], "broken.json"),
        (vec![good], "two runs or more"),
    ] {
        let out = reruns(&files);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(want), "{err}");
    }
}

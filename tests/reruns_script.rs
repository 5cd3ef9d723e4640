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

/// A document whose median's interval spans its rounds' medians `rounds` (as a run of
/// `--rounds` states it), with the middle round as its median.
fn doc_with_rounds(dir: &Path, name: &str, rounds: &[f64]) -> PathBuf {
    let mut sorted = rounds.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (lo, hi, p50) = (
        sorted[0],
        sorted[sorted.len() - 1],
        sorted[sorted.len() / 2],
    );
    let path = doc(dir, name, p50, lo, hi);
    let mut d: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    d["results"][0]["extra"]["precision"]["rounds"] =
        json!({"p50_us": rounds, "p50_interval_us": [lo, hi], "coverage": 0.75});
    std::fs::write(&path, d.to_string()).unwrap();
    path
}

#[test]
fn rounds_grouped_by_run_say_whether_the_host_moved_between_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str, r: &[f64]| doc_with_rounds(dir.path(), name, r);
    // Two runs whose rounds do not mix: ranks 1-3 and 4-6, so H = 12/42 x (6^2/3 + 15^2/3) -
    // 21 = 3.857 on 1 degree of freedom, p = erfc(sqrt(3.857 / 2)) = 0.0495.
    let out = reruns(&[d("a.json", &[1.0, 2.0, 3.0]), d("b.json", &[4.0, 5.0, 6.0])]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(
            "rounds by run (6 rounds in 2 runs): Kruskal-Wallis H 3.86 on 1 df, p 0.0495; \
             the runs differ by more than their rounds do"
        ),
        "{text}"
    );
    // Three runs whose rounds interleave (with a tie across runs): alike.
    let out = reruns(&[
        d("c.json", &[1.0, 4.0, 7.0]),
        d("e.json", &[2.0, 5.0, 8.0]),
        d("f.json", &[3.0, 4.0, 9.0]),
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.lines().find(|l| l.contains("Kruskal-Wallis")).unwrap();
    assert!(
        line.contains("on 2 df") && line.contains("no difference between runs shown"),
        "{line}"
    );
    assert!(
        text.contains("by chance alone (3 rounds each, all alike): "),
        "{text}"
    );
    // Without rounds in every document there is no such line.
    let plain = doc(dir.path(), "plain.json", 5.0, 4.0, 6.0);
    let out = reruns(&[d("g.json", &[1.0, 2.0, 3.0]), plain]);
    assert!(!String::from_utf8(out.stdout).unwrap().contains("Kruskal"));
}

// Alike runs still miss each other's intervals: another run's median is itself an estimate.
// Five runs of six rounds, each interval the range of its rounds (96.9 %): about 18 of 20
// pairs hold on average, and 16 or more in most samples, not all.
#[test]
fn chance_alone_is_simulated_for_alike_runs() {
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/reruns.py"))
        .args(["--chance", "5", "6"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let nums: Vec<f64> = text
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|w| w.parse().ok())
        .collect();
    // 5 runs, 6 rounds, mean held, 20 pairs, 4 in 5, share %.
    assert_eq!(nums.len(), 7, "{text}");
    assert!((17.0..19.0).contains(&nums[2]) && nums[3] == 20.0, "{text}");
    assert!((75.0..95.0).contains(&nums[6]), "{text}");
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/reruns.py"))
        .args(["--chance", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

//! What a run is given is checked before it measures (issue 29, items 5, 7 and 9): every
//! per-rail and per-iteration allocation is in the memory estimate, counts have limits the
//! options state, a panic ends the process, domains the provider does not offer and MLflow
//! URIs that cannot work are refused up front.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Runs kvxfer `args` to the end: exit code, stderr, wall time.
fn run(args: &[&str]) -> (Option<i32>, String, Duration) {
    let start = Instant::now();
    let out = kvxfer()
        .args(args)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(!err.contains("memory allocation"), "abort: {err}");
    (out.status.code(), err, start.elapsed())
}

/// The host memory the announce line estimates, in bytes (`host memory: 1.5 GiB of ...`).
fn estimate(err: &str) -> u64 {
    let at = err.find("host memory: ").expect("an estimate") + "host memory: ".len();
    let mut words = err[at..].split_whitespace();
    let n: f64 = words.next().unwrap().parse().unwrap();
    let unit = match words.next().unwrap() {
        "GiB" => 1u64 << 30,
        "MiB" => 1 << 20,
        "KiB" => 1 << 10,
        _ => 1,
    };
    (n * unit as f64) as u64
}

// Item 5: a rail is an endpoint on each side; the estimate counts them, and the peak resident
// set stays within it.
#[test]
fn the_memory_estimate_covers_every_rail() {
    if !std::path::Path::new("/usr/bin/time").exists() {
        skip(
            "the_memory_estimate_covers_every_rail",
            "no /usr/bin/time (Debian's time) to read the peak resident set",
        );
        return;
    }
    let _g = fabric_lock();
    let out = std::process::Command::new("/usr/bin/time")
        .args(["-f", "peak %M KiB"])
        .arg(kvxfer_path())
        .args(["xfer", "-s", "1M", "-I", "2", "-w", "1", "--rails", "6"])
        .args(["--timeout", "60"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let peak_kib: u64 = err
        .lines()
        .find_map(|l| l.strip_prefix("peak "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let est = estimate(&err);
    println!(
        "--rails 6: peak {} MiB, estimate {} MiB",
        peak_kib >> 10,
        est >> 20
    );
    // Twelve endpoints (six rails, two sides) of tcp;ofi_rxm hold about 70 MB each: more than
    // the buffers and one endpoint per side that the estimate once counted (194 MiB).
    assert!(peak_kib << 10 > 400 << 20, "peak {peak_kib} KiB");
    assert!(
        peak_kib << 10 <= est,
        "peak {peak_kib} KiB over the estimate {est}"
    );
}

// Item 5: per-iteration samples are counted; counts past their limits are refused by the
// option parser, never by an allocation.
#[test]
fn iteration_counts_are_bounded_and_their_samples_counted() {
    let (code, err, took) = run(&["xfer", "-s", "64K", "-I", "1000000000", "--domain", "lo"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("per-iteration samples"), "{err}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    // Past 10^9 (the samples' bound) the run's own count check refuses before setting up.
    let (code, err, _) = run(&["xfer", "-s", "64K", "-I", "1000000001", "--domain", "lo"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("are at most 1000000000 each"), "{err}");
    for args in [
        &["xfer", "-s", "64K", "-I", "18446744073709551615"][..],
        &["xfer", "-s", "64K", "-w", "18446744073709551615"],
        &["xfer", "-s", "64K", "--rails", "300"],
        &["xfer", "-s", "64K", "-c", "0"],
        &["xfer", "-s", "64K", "-W", "1000000"],
    ] {
        let (code, err, _) = run(args);
        // clap's usage error: nothing set up, nothing allocated.
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains("error: invalid value"), "{args:?}: {err}");
    }
}

// Item 7: --world is bounded by the parser; a run of many ranks that cannot meet says so in
// one short line.
#[test]
fn world_sizes_are_bounded_and_missing_ranks_summarised() {
    let (code, err, took) = run(&[
        "xfer",
        "--etcd",
        "http://127.0.0.1:9",
        "--world",
        "18446744073709551615",
        "--group",
        "g",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--world"), "{err}");
    assert!(took < Duration::from_secs(10));
}

// Item 9: a domain the provider does not offer is refused before anything runs, naming the
// ones it does; nothing is written.
#[test]
fn unknown_domains_are_refused_naming_those_offered() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let j = json.to_str().unwrap();
    for args in [
        &["xfer", "-s", "4K", "-I", "2", "-d", "nosuch0", "--json", j][..],
        &[
            "xfer",
            "-s",
            "4K",
            "-I",
            "2",
            "--rails",
            "nosuch0,nosuch1",
            "--json",
            j,
        ],
        &[
            "pingpong", "--sizes", "64", "-I", "10", "--domain", "nosuch0", "--json", j,
        ],
        &[
            "rma-pingpong",
            "--sizes",
            "64",
            "-I",
            "10",
            "--domain",
            "nosuch0",
            "--json",
            j,
        ],
    ] {
        let (code, err, _) = run(args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        let last = err.lines().last().unwrap_or_default();
        assert!(last.contains("no domain \"nosuch0\""), "{args:?}: {last}");
        assert!(
            last.contains("it offers: ") && last.contains("lo"),
            "{last}"
        );
        assert!(!json.exists(), "{args:?} measured and wrote a result");
    }
}

// Item 9: an MLflow URI that cannot work is refused before measuring, not after.
#[test]
fn unusable_mlflow_uris_are_refused_before_measuring() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    for uri in [
        "http://127.0.0.1:99999",
        "http://exa mple.com",
        "http://a..b:80",
    ] {
        let (code, err, took) = run(&[
            "pingpong",
            "--domain",
            "lo",
            "--sizes",
            "64",
            "-I",
            "10",
            "--json",
            json.to_str().unwrap(),
            "--mlflow-uri",
            uri,
        ]);
        assert_eq!(code, Some(1), "{uri}: {err}");
        assert!(err.contains("--mlflow-uri"), "{uri}: {err}");
        assert!(!json.exists(), "{uri}: measured before refusing");
        assert!(took < Duration::from_secs(10), "{uri}: {took:?}");
    }
}

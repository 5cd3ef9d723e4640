//! scripts/compare-builds.sh: two kvxfer builds on one command, interleaved, with the median
//! of per-round ratios new / old. Here both "builds" are the test binary, on a short pingpong
//! over shm.

mod common;

use std::process::{Command, Output};

use common::*;

fn compare(env: &[(&str, &str)], rounds: &str, args: &[&str]) -> Output {
    let bin = kvxfer_path();
    Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/compare-builds.sh"
        ))
        .arg(&bin)
        .arg(&bin)
        .arg(rounds)
        .arg("--")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("bash runs")
}

const PINGPONG: &[&str] = &["pingpong", "-p", "shm", "-S", "64", "-I", "500", "-w", "5"];

#[test]
fn each_round_runs_both_builds_and_the_ratio_is_new_over_old() {
    let _g = fabric_lock();
    let out = compare(&[], "2", PINGPONG);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Two rows of round, old figure, new figure; the ratio line is new / old of those figures.
    let rows: Vec<Vec<f64>> = text
        .lines()
        .filter(|l| l.starts_with(char::is_numeric))
        .map(|l| l.split_whitespace().map(|w| w.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(
        rows.iter()
            .all(|r| r.len() == 3 && r[1] > 0.0 && r[2] > 0.0),
        "{text}"
    );
    let mut ratios: Vec<f64> = rows.iter().map(|r| r[2] / r[1]).collect();
    ratios.sort_by(f64::total_cmp);
    let median = (ratios[0] + ratios[1]) / 2.0;
    let last = text.lines().last().unwrap();
    assert!(last.starts_with("latency_us.p50: new / old "), "{last}");
    let stated: f64 = last["latency_us.p50: new / old ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (stated - median).abs() < 0.0015,
        "{stated} vs {median}: {text}"
    );
    assert!(
        last.contains("lower is better") && last.contains("too few rounds"),
        "{last}"
    );
}

#[test]
fn a_figure_the_document_lacks_and_bad_arguments_are_refused() {
    let _g = fabric_lock();
    let out = compare(&[("FIGURE", "latency_us.nope")], "2", PINGPONG);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("has no number at results[0].latency_us.nope"),
        "{err}"
    );
    let out = compare(&[], "1", PINGPONG);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ROUNDS must be 2 or more"));
    let out = compare(&[("BETTER", "sideways")], "2", PINGPONG);
    assert_eq!(out.status.code(), Some(2));
}

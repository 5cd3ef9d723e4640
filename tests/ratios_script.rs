//! scripts/ratios.py, the verdict every compare script prints: the median of per-round ratios,
//! its distribution-free interval with the coverage reached, and which side is better.

use std::process::{Command, Output};

fn ratios(args: &[&str]) -> Output {
    Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ratios.py"))
        .args(args)
        .output()
        .expect("python3 runs")
}

fn line(args: &[&str]) -> String {
    let out = ratios(args);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end()
        .to_string()
}

#[test]
fn five_rounds_reach_94_percent_and_show_no_difference_across_one() {
    let got = line(&[
        "tcp 672M", "kvxfer", "NIXL", "GB/s", "higher", "--", "4.508", "4.578", "4.598", "4.489",
        "4.461", "--", "4.582", "4.350", "4.589", "4.253", "4.715",
    ]);
    // Ratios 0.984 1.052 1.002 1.055 0.946: median 1.002, range 0.946-1.055 (94 %).
    assert_eq!(
        got,
        "tcp 672M: kvxfer / NIXL 1.002 (median of 5 per-round ratios, higher is better; 94% \
         interval 0.946-1.055: no difference shown; medians kvxfer 4.508, NIXL 4.582 GB/s)"
    );
}

#[test]
fn eleven_rounds_drop_the_outer_ratios_and_name_the_better_side() {
    let a: Vec<String> = (0..11)
        .map(|i| format!("{}", 1.0 + 0.1 * i as f64))
        .collect();
    let mut args = vec!["lat", "kvxfer", "fi", "us", "lower", "--"];
    args.extend(a.iter().map(String::as_str));
    args.push("--");
    args.extend(std::iter::repeat("0.5").take(11));
    let got = line(&args);
    // Ratios 2.0 .. 4.0: the 2nd smallest and 2nd largest cover the median with 98.8 %.
    assert!(got.contains("median of 11 per-round ratios"), "{got}");
    assert!(
        got.contains("99% interval 2.200-3.800: kvxfer slower"),
        "{got}"
    );
    let faster = line(&[
        "bw", "a", "b", "GB/s", "higher", "--", "2", "2", "2", "2", "2", "2", "--", "1", "1.1",
        "1.2", "1.3", "1.4", "1.5",
    ]);
    assert!(
        faster.contains("97% interval 1.333-2.000: a faster"),
        "{faster}"
    );
}

#[test]
fn unpaired_or_bad_figures_are_refused_with_one_line() {
    for args in [
        &["x", "a", "b", "u", "higher", "--", "1", "2", "--", "1"][..],
        &["x", "a", "b", "u", "sideways", "--", "1", "--", "1"][..],
        &["x", "a", "b", "u", "higher", "--", "1", "--", "0"][..],
        &["x", "a", "b", "u", "higher", "--", "one", "--", "1"][..],
    ] {
        let out = ratios(args);
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn four_rounds_or_fewer_give_no_verdict() {
    let got = line(&[
        "bw", "a", "b", "GB/s", "higher", "--", "2", "2", "2", "2", "--", "1", "1", "1", "1",
    ]);
    assert!(
        got.contains("88% interval 2.000-2.000: too few rounds"),
        "{got}"
    );
}

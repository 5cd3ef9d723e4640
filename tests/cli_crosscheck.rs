//! `kvxfer crosscheck DIR` through the real binary: runs paired by file name, figures read by
//! name, medians over runs, ratios run by run, verdicts and reasons in `DIR/crosscheck.json`.

use assert_cmd::Command;
use kvxfer::report::{ResultDoc, SizeResult};
use kvxfer::stats::LatencySummary;
use serde_json::json;

/// Two runs of fi_pingpong's client as Debian's build prints them.
const FI_RUNS: [&str; 2] = [
    "\
bytes   #sent   #ack     total       time     MB/sec    usec/xfer   Mxfers/sec
64      1k      =1k      125k        0.01s     12.80       5.00       0.20
1k      1k      =1k      2m          0.02s    102.40      10.00       0.10
",
    "\
bytes   #sent   #ack     total       time     MB/sec    usec/xfer   Mxfers/sec
64      1k      =1k      125k        0.01s     13.47       4.75       0.21
1k      1k      =1k      2m          0.02s     97.52      10.50       0.10
",
];

/// kvxfer's document of one run: fabtests arithmetic in `extra`, the histogram's figures in
/// `latency_us`.
fn own(usec: [(u64, f64); 2]) -> ResultDoc {
    let mut d = ResultDoc::new("kvxfer", "pingpong", "L0");
    d.pattern_id = Some("pll-x".into());
    d.config.insert("warmup".into(), json!(0));
    for (size, u) in usec {
        let mut lat = LatencySummary::mean_only(u + 0.2);
        lat.p50 = u - 0.1;
        let mut r = SizeResult {
            message_size: size,
            iterations: 1000,
            latency_us: Some(lat),
            bandwidth_mbps: Some(size as f64 / u),
            bandwidth_gbps: Some(size as f64 / u / 1000.0),
            ..Default::default()
        };
        r.extra.insert("usec_per_xfer".into(), json!(u));
        d.results.push(r);
    }
    d
}

#[test]
fn pairs_runs_by_name_and_judges_them_run_by_run() {
    let dir = tempfile::tempdir().unwrap();
    for (i, text) in FI_RUNS.iter().enumerate() {
        Command::cargo_bin("kvxfer")
            .unwrap()
            .args([
                "parse",
                "--tool",
                "fi_pingpong",
                "-",
                "--pattern-id",
                "pll-x",
            ])
            .arg("--json")
            .arg(dir.path().join(format!("pll-x.run{}.ref.json", i + 1)))
            .write_stdin(*text)
            .assert()
            .success();
    }
    let runs = [[(64, 4.0), (1024, 10.3)], [(64, 4.2), (1024, 10.5)]];
    for (i, r) in runs.iter().enumerate() {
        let path = dir.path().join(format!("pll-x.run{}.json", i + 1));
        std::fs::write(path, own(*r).to_json()).unwrap();
    }
    std::fs::write(dir.path().join("pll-lonely.json"), own(runs[0]).to_json()).unwrap();
    let run = |strict: bool| {
        let mut c = Command::cargo_bin("kvxfer").unwrap();
        c.arg("crosscheck").arg(dir.path());
        if strict {
            c.arg("--strict");
        }
        c.assert()
    };
    run(false)
        .success()
        .stdout(predicates::str::contains("DIFFER"))
        .stderr(predicates::str::contains(
            "pll-lonely (kvxfer, 1 file(s)) not compared: no stock-tool result beside it",
        ));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("crosscheck.json")).unwrap())
            .unwrap();
    assert_eq!(report["tolerance"], 0.1);
    let rows = report["rows"].as_array().unwrap();
    let metrics: Vec<&str> = rows.iter().map(|r| r["metric"].as_str().unwrap()).collect();
    assert_eq!(
        metrics,
        [
            "extra.usec_per_xfer",
            "latency_us.p50",
            "bandwidth_mbps",
            "extra.usec_per_xfer",
            "latency_us.p50",
            "bandwidth_mbps"
        ]
    );
    let close = |v: &serde_json::Value, want: f64| {
        assert!((v.as_f64().unwrap() - want).abs() < 1e-9, "{v} != {want}")
    };
    // 64 B: kvxfer's median 4.1 us against fi_pingpong's, read at MB/sec's precision.
    let ref64 = (64.0 / 12.80 + 64.0 / 13.47) / 2.0;
    assert_eq!(rows[0]["pattern"], "pll-x");
    assert_eq!(rows[0]["tool"], "fi_pingpong");
    assert_eq!(rows[0]["unit"], "us");
    close(&rows[0]["kvxfer"], 4.1);
    close(&rows[0]["reference"], ref64);
    // The ratio pairs run k with run k: 4.0 against 5.00, 4.2 against 4.75.
    close(
        &rows[0]["ratio"],
        (4.0 / (64.0 / 12.80) + 4.2 / (64.0 / 13.47)) / 2.0,
    );
    assert_eq!(rows[0]["verdict"], "differ");
    assert_eq!(rows[0]["kvxfer_runs"], json!([4.0, 4.2]));
    // The histogram's median has no counterpart in fi_pingpong's output.
    close(&rows[1]["kvxfer"], 4.0);
    assert_eq!(rows[1]["reference"], serde_json::Value::Null);
    assert_eq!(rows[1]["verdict"], "not_comparable");
    assert!(rows[1]["reason"].as_str().unwrap().contains("no median"));
    // 1 KiB: 10.4 us against 10.25 us agree within 10 %, and so does the bandwidth.
    let ref1k: f64 = (1024.0 / 102.40 + 1024.0 / 97.52) / 2.0;
    close(
        &rows[3]["ratio"],
        (10.3 / (1024.0 / 102.40) + 10.5 / (1024.0 / 97.52)) / 2.0,
    );
    assert!((ref1k - 10.25).abs() < 0.01);
    assert_eq!(rows[3]["verdict"], "agree");
    assert_eq!(rows[5]["verdict"], "agree");
    close(&rows[5]["reference"], (102.40 + 97.52) / 2.0);
    assert_eq!(report["unpaired"][0]["pattern"], "pll-lonely");
    assert_eq!(report["unpaired"][0]["files"], json!(["pll-lonely.json"]));
    // A second run ignores its own report; --strict fails on a difference.
    run(true).failure();
}

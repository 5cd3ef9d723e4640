//! `kvxfer crosscheck DIR` through the real binary.

use assert_cmd::Command;
use kvxfer::report::{ResultDoc, SizeResult};
use kvxfer::stats::LatencySummary;

const FI_OUT: &str = "\
bytes   #sent   #ack     total       time     MB/sec    usec/xfer   Mxfers/sec
64      1k      =1k      125k        0.01s     12.80       5.00       0.20
1k      1k      =1k      2m          0.02s    102.40      10.00       0.10
";

#[test]
fn pairs_twins_writes_the_report_and_judges() {
    let dir = tempfile::tempdir().unwrap();
    Command::cargo_bin("kvxfer")
        .unwrap()
        .args([
            "parse",
            "--tool",
            "fi_pingpong",
            "-",
            "--pattern-id",
            "pll-x",
            "--json",
        ])
        .arg(dir.path().join("pll-x.ref.json"))
        .write_stdin(FI_OUT)
        .assert()
        .success();
    let mut own = ResultDoc::new("kvxfer", "pingpong", "L0");
    own.pattern_id = Some("pll-x".into());
    for (size, lat, mbps) in [(64u64, 4.0, 16.0), (1024, 10.5, 97.5)] {
        own.results.push(SizeResult {
            message_size: size,
            iterations: 1000,
            latency_us: Some(LatencySummary::mean_only(lat)),
            bandwidth_gbps: Some(mbps / 1000.0),
            bandwidth_mbps: Some(mbps),
            ..Default::default()
        });
    }
    std::fs::write(dir.path().join("pll-x.json"), own.to_json()).unwrap();
    std::fs::write(dir.path().join("pll-lonely.json"), own.to_json()).unwrap();
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
        .stderr(predicates::str::contains("pll-lonely.json has no twin"));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("crosscheck.json")).unwrap())
            .unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    // 64 B: kvxfer 4.0 us vs fi_pingpong 5.0 us, outside 10 %, first size flagged.
    assert_eq!(rows[0]["metric"], "latency_us.mean");
    assert_eq!(rows[0]["ratio"], 0.8);
    assert_eq!(rows[0]["verdict"], "differ");
    assert!(rows[0]["reason"].as_str().unwrap().contains("no warm-up"));
    // 1 KiB: 10.5 vs 10.0 us and 97.5 vs 102.4 MB/s agree within 10 %.
    assert_eq!(rows[2]["verdict"], "agree");
    assert_eq!(rows[3]["verdict"], "agree");
    assert!((rows[3]["ratio"].as_f64().unwrap() - 97.5 / 102.4).abs() < 1e-9);
    assert_eq!(report["unpaired"], serde_json::json!(["pll-lonely.json"]));
    // A second run ignores its own report; --strict fails on a difference.
    run(true).failure();
}

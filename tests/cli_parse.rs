//! `kvxfer parse` through the real binary: JSON written atomically, summary, exit codes.

use std::path::PathBuf;

use assert_cmd::Command;
use kvxfer::report::ResultDoc;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/nixlbench")
        .join(name)
}

#[test]
fn writes_the_document_with_pattern_id() {
    let raw = fixture("ucx-vram-pairwise-write-prep-post-tx.txt");
    if !raw.exists() {
        println!("SKIPPED writes_the_document_with_pattern_id: fixture absent");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pll-l1.ref.json");
    Command::cargo_bin("kvxfer")
        .unwrap()
        .args(["parse", "--tool", "nixlbench"])
        .arg(&raw)
        .arg("--json")
        .arg(&out)
        .args(["--pattern-id", "pll-l1-ucx"])
        .assert()
        .success()
        .stdout("");
    let doc = ResultDoc::from_json(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(doc.pattern_id.as_deref(), Some("pll-l1-ucx"));
    assert_eq!(doc.tool, "nixlbench");
    assert_eq!(doc.results.len(), 12);
    assert_eq!(doc.results[11].bandwidth_gbps, Some(0.975764));
    assert_eq!(doc.results[11].latency_us.unwrap().mean, 8597.0);
    assert!(doc.raw_output.unwrap().contains("NIXLBench Configuration"));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "temporary file left"
    );
}

#[test]
fn prints_a_summary_from_stdin() {
    let raw = "bytes   #sent   #ack     total       time     MB/sec    usec/xfer   Mxfers/sec\n\
               64      20      =20      2.5k        0.00s      2.77      23.10       0.04\n";
    Command::cargo_bin("kvxfer")
        .unwrap()
        .args(["parse", "--tool", "fi_pingpong", "-"])
        .write_stdin(raw)
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "fi_pingpong pingpong (L0): 1 sizes",
        ))
        .stdout(predicates::str::is_match(r"\n\s+64\s+20\s+23\.10\s+0\.0028\s+2\.77\n").unwrap());
}

#[test]
fn bad_input_is_one_clear_line_and_nonzero() {
    let out = Command::cargo_bin("kvxfer")
        .unwrap()
        .args(["parse", "--tool", "ucx_perftest", "-"])
        .write_stdin("Segmentation fault\n")
        .assert()
        .failure()
        .get_output()
        .clone();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no results table"), "{err}");
    Command::cargo_bin("kvxfer")
        .unwrap()
        .args(["parse", "--tool", "nixlbench", "/no/such/file"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("reading /no/such/file"));
}

#[test]
fn every_nixlbench_fixture_through_the_cli() {
    let dir = fixture("");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!(
            "SKIPPED every_nixlbench_fixture_through_the_cli: {} absent",
            dir.display()
        );
        return;
    };
    let mut n = 0;
    for e in entries {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "txt") {
            Command::cargo_bin("kvxfer")
                .unwrap()
                .args(["parse", "--tool", "nixlbench"])
                .arg(&p)
                .assert()
                .success()
                .stdout(predicates::str::contains("nixlbench xfer (L1)"));
            n += 1;
        }
    }
    assert!(n >= 4, "{n} fixtures");
}

//! `kvxfer run`: plans/loopback.json end to end with a real MLflow server (every result
//! recorded exactly once, the cross-check written), layers in the spec's order, and a server
//! that is down losing nothing (`kvxfer record` catches up).

mod common;
#[allow(dead_code)]
mod record_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kvxfer::mlflow::Client;
use kvxfer::report::ResultDoc;
use serde_json::Value;

use common::{fabric_lock, free_port, kvxfer};

const EXPERIMENT: &str = "low-level-network-loopback";
/// The catch-up test's experiment: its own, as it may share the suite's server.
const CATCH_UP: &str = "low-level-network-catch-up";

fn installed(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
}

/// The patterns of the loopback plan these tests run: one of each template and stock twin, so
/// every tool and layer still runs and is recorded; the plan in full runs in
/// tests/loopback_plan.rs (slow group).
const KEPT: &[&str] = &[
    "pll-lo-fi-pingpong-tcp-msg",
    "pll-lo-kvxfer-xfer-tcp",
    "pll-lo-xfer-nixl-tcp-55m",
    "pll-lo-kv-profile-tcp",
    "pll-lo-ucx-perftest-tcp-tag-lat",
    "pll-lo-ucx-perftest-tcp-tag-bw",
];

/// The shipped loopback plan with free ports, this kvxfer and a results folder of the test's.
fn plan(dir: &Path) -> (PathBuf, PathBuf) {
    common::loopback_plan(dir, |p| {
        for layer in p["layers"].as_array_mut().unwrap() {
            layer["patterns"]
                .as_array_mut()
                .unwrap()
                .retain(|pat| KEPT.contains(&pat["id"].as_str().unwrap()));
        }
        // Two rounds of each pattern are enough to show each result recorded once; the
        // loopback plan's seven rounds of latency are judged in tests/loopback_plan.rs. So is
        // its precision: the `auto` patterns take a few fixed iterations here.
        for layer in p["layers"].as_array_mut().unwrap() {
            for pat in layer["patterns"].as_array_mut().unwrap() {
                let params = pat["params"].as_object_mut().unwrap();
                if params.contains_key("runs") {
                    params.insert("runs".into(), 2.into());
                }
            }
        }
        common::fixed_iterations(p, 5);
    })
}

/// Runs `kvxfer run`; returns (success, stdout JSON, stderr).
fn run(plan: &Path, extra: &[&str]) -> (bool, Value, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let state = plan.with_file_name("state.json");
    let o = kvxfer()
        .args(["run", "--plan"])
        .arg(plan)
        .arg("--templates")
        .arg(root.join("templates"))
        .arg("--state")
        .arg(&state)
        .args(extra)
        .timeout(Duration::from_secs(600))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not the JSON summary ({e}):\n{err}"));
    (o.status.success(), v, err)
}

fn result_docs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| {
            let b = std::fs::read(&p).unwrap();
            ResultDoc::from_json(&b)
                .ok()
                .map(|_| (p.file_name().unwrap().to_string_lossy().into_owned(), b))
        })
        .collect();
    v.sort();
    v
}

fn hashes(c: &Client, experiment: &str) -> Vec<String> {
    let Some(exp) = c.experiment_id(experiment).unwrap() else {
        return Vec::new();
    };
    c.search_runs(&[exp], "")
        .unwrap()
        .iter()
        .map(|r| r.data.tag("kvxfer_content_hash").unwrap_or("").to_string())
        .collect()
}

#[test]
fn loopback_plan_runs_end_to_end_and_every_result_is_recorded_exactly_once() {
    let name = "loopback_plan_runs_end_to_end_and_every_result_is_recorded_exactly_once";
    if !installed("fi_pingpong") || !installed("ucx_perftest") {
        println!("SKIPPED {name}: fi_pingpong or ucx_perftest not installed");
        return;
    }
    let Some(server) = record_support::Server::shared(name) else {
        return;
    };
    let _turn = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let (plan, out) = plan(dir.path());
    let planned: usize = kvxfer::plan::load_plan(&plan).unwrap()["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["patterns"].as_array().unwrap().len())
        .sum();
    let uri = server.uri();
    let (ok, v, err) = run(&plan, &["--layer", "all", "--mlflow-uri", &uri]);
    assert!(ok, "{err}");
    let pats = v["patterns"].as_array().unwrap();
    assert_eq!(pats.len(), planned, "{v}");
    // Every layer of the spec runs, L2 (kvxfer kv profile) among them.
    let ran: BTreeSet<&str> = pats.iter().map(|p| p["layer"].as_str().unwrap()).collect();
    assert_eq!(ran, BTreeSet::from(["L0", "L1", "L2", "L3"]), "{v}");
    assert!(pats.iter().all(|p| p["outcome"]["status"] == "ok"), "{v}");
    let layers: Vec<&str> = pats.iter().map(|p| p["layer"].as_str().unwrap()).collect();
    let mut sorted = layers.clone();
    sorted.sort();
    assert_eq!(layers, sorted, "L0, L1, L2, L3 order");
    for (k, p) in pats.iter().enumerate() {
        println!(
            "{name}: {} {:.1} s",
            p["pattern"].as_str().unwrap(),
            p["seconds"].as_f64().unwrap()
        );
        let line = format!(
            "kvxfer run: [{}/{planned}] {} {}",
            k + 1,
            p["layer"].as_str().unwrap(),
            p["pattern"].as_str().unwrap()
        );
        assert!(
            err.contains(&line),
            "progress line {line:?} missing:\n{err}"
        );
    }

    // Every result document is in MLflow once, none twice.
    let docs = result_docs(&out);
    for id in KEPT {
        assert!(
            docs.iter().any(|(name, _)| name.starts_with(id)),
            "no result document of {id}"
        );
    }
    let c = server.client();
    let recorded = hashes(&c, EXPERIMENT);
    assert_eq!(recorded.len(), docs.len(), "one run per result document");
    let distinct: BTreeSet<&String> = recorded.iter().collect();
    assert_eq!(distinct.len(), recorded.len(), "no document recorded twice");
    assert_eq!(v["mlflow"]["recorded"], docs.len());
    assert_eq!(v["mlflow"]["not_recorded"], 0);

    // A later `kvxfer record` of the folder finds everything there already.
    let o = kvxfer()
        .args(["record", "--results"])
        .arg(&out)
        .args(["--experiment", EXPERIMENT, "--mlflow-uri", &uri])
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("recorded=0 "), "{text}");
    assert_eq!(hashes(&c, EXPERIMENT).len(), docs.len());

    // The cross-check ran over the whole folder, and every row it judged follows the
    // comparator's rules (tests/loopback_plan.rs checks the shipped plan in full, in the slow
    // group).
    let cc: Value =
        serde_json::from_slice(&std::fs::read(out.join("crosscheck.json")).unwrap()).unwrap();
    assert!(!cc["rows"].as_array().unwrap().is_empty());
    let tolerance = cc["tolerance"].as_f64().unwrap();
    let judged: Vec<&Value> = cc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["verdict"] == "agree" || r["verdict"] == "differ")
        .collect();
    let tools: BTreeSet<&str> = judged.iter().map(|r| r["tool"].as_str().unwrap()).collect();
    assert!(
        tools.contains("fi_pingpong") && tools.contains("ucx_perftest"),
        "rows judged against both L0 and L3 twins: {tools:?}"
    );
    for r in judged {
        common::assert_judged(r, tolerance);
    }
    assert_eq!(
        v["crosscheck"]["agree"].as_u64().unwrap()
            + v["crosscheck"]["differ"].as_u64().unwrap()
            + v["crosscheck"]["not_comparable"].as_u64().unwrap(),
        cc["rows"].as_array().unwrap().len() as u64
    );
}

#[test]
fn a_server_that_is_down_loses_nothing_and_record_catches_up() {
    let name = "a_server_that_is_down_loses_nothing_and_record_catches_up";
    let _turn = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let (plan, out) = plan(dir.path());
    let dead = format!("http://127.0.0.1:{}", free_port());
    let (ok, v, err) = run(
        &plan,
        &[
            "--layer",
            "L1",
            "--pattern",
            "pll-lo-kvxfer-xfer-tcp",
            "--mlflow-uri",
            &dead,
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(v["patterns"].as_array().unwrap().len(), 1);
    assert_eq!(v["mlflow"]["recorded"], 0);
    assert_eq!(v["mlflow"]["not_recorded"], 1);
    assert!(err.contains("kvxfer record"), "{err}");
    let docs = result_docs(&out);
    assert_eq!(docs.len(), 1, "the result is kept");
    assert!(docs[0].0.starts_with("pll-lo-kvxfer-xfer-tcp"));

    let Some(server) = record_support::Server::shared(name) else {
        return;
    };
    kvxfer()
        .args(["record", "--results"])
        .arg(&out)
        .args(["--experiment", CATCH_UP, "--mlflow-uri", &server.uri()])
        .timeout(Duration::from_secs(300))
        .assert()
        .success();
    assert_eq!(hashes(&server.client(), CATCH_UP).len(), 1);
}

#[test]
fn bad_choices_are_refused_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (plan, _) = plan(dir.path());
    for args in [
        vec!["--layer", "L7"],
        vec!["--pattern", "no-such-pattern"],
        vec!["--role", "server"],
    ] {
        let o = kvxfer()
            .args(["run", "--plan"])
            .arg(&plan)
            .args(&args)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{args:?}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!e.contains("panicked"), "{e}");
        assert!(o.stdout.is_empty());
    }
}

//! `kvxfer record` against a real MLflow tracking server on 127.0.0.1.
//!
//! The server comes from `scripts/mlflow-server.sh` (its cached virtual environment); where that
//! environment is absent, the tests that need it say SKIPPED with their name and return (or
//! fail, when KVXFER_REQUIRE_MLFLOW is set).

mod record_support;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use kvxfer::mlflow::{self, Client, RecordConfig, Run, CONTENT_HASH_TAG};
use kvxfer::report::{write_atomic, ResultDoc};
use record_support::{big_doc, quick_retry, realistic_docs, write_docs, Server};

/// The experiment of the folder test: its own, as it may share the suite's server.
const FOLDER_EXPERIMENT: &str = "record-a-folder-once";

fn record(uri: &str, dir: &Path) -> assert_cmd::assert::Assert {
    record_into(uri, dir, mlflow::DEFAULT_EXPERIMENT)
}

fn record_into(uri: &str, dir: &Path, experiment: &str) -> assert_cmd::assert::Assert {
    Command::cargo_bin("kvxfer")
        .unwrap()
        .args(["record", "--results"])
        .arg(dir)
        .args(["--experiment", experiment])
        .args(["--mlflow-uri", uri, "--instance-type", "p5.48xlarge"])
        .args(["--retries", "2", "--retry-backoff-ms", "20"])
        .timeout(Duration::from_secs(300))
        .assert()
}

fn all_runs(c: &Client) -> Vec<Run> {
    runs_of(c, mlflow::DEFAULT_EXPERIMENT)
}

fn runs_of(c: &Client, experiment: &str) -> Vec<Run> {
    let exp = c
        .experiment_id(experiment)
        .unwrap()
        .expect("experiment exists");
    c.search_runs(&[exp], "").unwrap()
}

/// The run holding `bytes`' content hash; there must be exactly one.
fn run_of<'a>(runs: &'a [Run], bytes: &[u8]) -> &'a Run {
    let hash = mlflow::content_hash(bytes);
    let found: Vec<&Run> = runs
        .iter()
        .filter(|r| r.data.tag(CONTENT_HASH_TAG) == Some(hash.as_str()))
        .collect();
    assert_eq!(found.len(), 1, "runs holding {hash}: {found:#?}");
    found[0]
}

/// Checks that the server holds exactly what the mapping plans for `name`, and that the
/// artifacts come back byte for byte.
fn assert_recorded(c: &Client, runs: &[Run], dir: &Path, name: &str) -> Run {
    let bytes = std::fs::read(dir.join(name)).unwrap();
    let doc = ResultDoc::from_json(&bytes).unwrap();
    let run = run_of(runs, &bytes).clone();
    let opts = mlflow::MapOptions {
        instance_type: Some("p5.48xlarge".into()),
        ..Default::default()
    };
    let plan = mlflow::plan_run(&doc, &bytes, name, &opts, chrono::Utc::now());
    assert_eq!(run.info.status, "FINISHED", "{name}");
    assert_eq!(run.info.run_name, plan.run_name);
    assert_eq!(run.info.start_time, Some(plan.start_time_ms));
    assert_eq!(run.info.end_time, Some(plan.end_time_ms));
    let user_tags: BTreeMap<&str, &str> = run
        .data
        .tags
        .iter()
        .filter(|t| !t.key.starts_with("mlflow."))
        .map(|t| (t.key.as_str(), t.value.as_str()))
        .collect();
    let want_tags: BTreeMap<&str, &str> = plan
        .tags
        .iter()
        .map(|t| (t.key.as_str(), t.value.as_str()))
        .collect();
    assert_eq!(user_tags, want_tags, "{name}: tags");
    let params: BTreeMap<&str, &str> = run
        .data
        .params
        .iter()
        .map(|t| (t.key.as_str(), t.value.as_str()))
        .collect();
    let want_params: BTreeMap<&str, &str> = plan
        .params
        .iter()
        .map(|t| (t.key.as_str(), t.value.as_str()))
        .collect();
    assert_eq!(params, want_params, "{name}: params");
    let metrics: BTreeMap<&str, f64> = run
        .data
        .metrics
        .iter()
        .map(|m| (m.key.as_str(), m.value))
        .collect();
    let want_metrics: BTreeMap<&str, f64> = plan
        .metrics
        .iter()
        .map(|m| (m.key.as_str(), m.value))
        .collect();
    assert_eq!(metrics, want_metrics, "{name}: metrics");
    for a in &plan.artifacts {
        assert_eq!(
            c.download_artifact(&run.info, &a.path).unwrap(),
            a.bytes,
            "{name}: {}",
            a.path
        );
    }
    assert_eq!(
        c.download_artifact(&run.info, name).unwrap(),
        bytes,
        "{name}: JSON artifact"
    );
    run
}

#[test]
fn records_a_folder_once_with_every_value_and_artifact() {
    let Some(server) = Server::shared("records_a_folder_once_with_every_value_and_artifact") else {
        return;
    };
    let results = tempfile::tempdir().unwrap();
    let docs = realistic_docs();
    write_docs(results.path(), &docs);
    write_docs(results.path(), &[("big-sweep.json", big_doc())]);
    std::fs::write(results.path().join("notes.json"), b"{\"hello\": 1}").unwrap();
    std::fs::write(results.path().join("README.txt"), b"not json").unwrap();

    let t = Instant::now();
    let out = record_into(&server.uri(), results.path(), FOLDER_EXPERIMENT).success();
    eprintln!(
        "first record of 5 files: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let out = out.get_output();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stdout.trim(),
        "recorded=5 already_recorded=0 skipped=1 experiment=record-a-folder-once"
    );
    assert!(
        stderr.contains("skipped notes.json: not a kvxfer.result/v1 document"),
        "{stderr}"
    );

    let c = server.client();
    let runs = runs_of(&c, FOLDER_EXPERIMENT);
    assert_eq!(runs.len(), 5);
    for (name, _) in &docs {
        assert_recorded(&c, &runs, results.path(), name);
    }
    let big = assert_recorded(&c, &runs, results.path(), "big-sweep.json");
    assert_eq!(big.data.metrics.len(), 1200, "log-batch split lost metrics");
    assert_eq!(big.data.params.len(), 150, "log-batch split lost params");

    // The spec's names and values, end to end.
    let l1 = run_of(
        &runs,
        &std::fs::read(results.path().join("l1-xfer.json")).unwrap(),
    );
    assert_eq!(l1.info.run_name, "pll-kvxfer-efa-672m-20261120T081000Z");
    assert_eq!(l1.data.tag("tool"), Some("kvxfer"));
    assert_eq!(l1.data.tag("layer"), Some("L1"));
    assert_eq!(l1.data.tag("phase"), Some("low-level"));
    assert_eq!(l1.data.tag("instance_type"), Some("p5.48xlarge"));
    assert_eq!(l1.data.tag("kv_cache_equivalent_tokens"), Some("12288"));
    assert_eq!(l1.data.param("backend"), Some("libfabric"));
    assert_eq!(l1.data.param("num_threads"), Some("16"));
    assert_eq!(l1.data.param("message_size"), Some("704643072"));
    assert_eq!(l1.data.metric("bandwidth_gbps"), Some(4.25));
    assert_eq!(l1.data.metric("transfer_time_ms"), Some(165.8));
    assert_eq!(l1.data.metric("latency_p99_us"), Some(160_000.0 * 1.7));
    let files: Vec<String> = c
        .list_artifacts(&l1.info.run_id, None)
        .unwrap()
        .into_iter()
        .map(|f| f.path)
        .collect();
    assert_eq!(files, ["histogram-704643072.hdr", "l1-xfer.json"]);
    let l0 = run_of(
        &runs,
        &std::fs::read(results.path().join("l0-fi-pingpong.json")).unwrap(),
    );
    assert_eq!(l0.data.metric("latency_us_1024"), Some(17.0 * 1.05));
    assert_eq!(l0.data.metric("bandwidth_mbps_1048576"), Some(9488.0));
    assert_eq!(l0.data.param("provider"), Some("efa"));
    assert_eq!(l0.data.tag("kv_cache_equivalent_tokens"), None);
    let l2 = run_of(
        &runs,
        &std::fs::read(results.path().join("pll-kvbench-ucx-4k.json")).unwrap(),
    );
    assert_eq!(
        l2.data.tag("pattern_id"),
        Some("pll-kvbench-ucx-4k"),
        "file stem"
    );
    assert_eq!(l2.data.tag("kv_cache_equivalent_tokens"), Some("4096"));
    assert_eq!(l2.data.metric("kv_transfer_time_ms"), Some(90.0));
    assert_eq!(l2.data.param("kv_cache_size_bytes"), Some("234881024"));

    // Twice: nothing doubled.
    let again = record_into(&server.uri(), results.path(), FOLDER_EXPERIMENT).success();
    let stdout = String::from_utf8_lossy(&again.get_output().stdout).into_owned();
    assert_eq!(
        stdout.trim(),
        "recorded=0 already_recorded=5 skipped=1 experiment=record-a-folder-once"
    );
    assert_eq!(runs_of(&c, FOLDER_EXPERIMENT).len(), 5);

    // The library entry point: a document recorded directly, then seen as recorded by the CLI.
    let mut direct = realistic_docs().remove(1).1;
    direct.pattern_id = Some("direct".into());
    let mut cfg = RecordConfig::new(&server.uri());
    cfg.experiment = FOLDER_EXPERIMENT.into();
    cfg.retry = quick_retry();
    let outcome = mlflow::record_doc(&cfg, &direct, "direct.json").unwrap();
    assert!(
        matches!(outcome, mlflow::Outcome::Recorded { ref run_name, .. } if run_name == "direct-20261120T081000Z"),
        "{outcome:?}"
    );
    write_atomic(&results.path().join("direct.json"), &direct.to_json()).unwrap();
    let third = record_into(&server.uri(), results.path(), FOLDER_EXPERIMENT).success();
    let stdout = String::from_utf8_lossy(&third.get_output().stdout).into_owned();
    assert!(
        stdout.starts_with("recorded=0 already_recorded=6 "),
        "{stdout}"
    );
    let runs = runs_of(&c, FOLDER_EXPERIMENT);
    assert_eq!(runs.len(), 6);

    // Paging: six runs two at a time are the same six runs.
    let exp = c.experiment_id(FOLDER_EXPERIMENT).unwrap().unwrap();
    let paged = c
        .search_runs_paged(std::slice::from_ref(&exp), "", 2)
        .unwrap();
    let ids = |rs: &[Run]| {
        let mut v: Vec<String> = rs.iter().map(|r| r.info.run_id.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(ids(&paged), ids(&runs));
    let l0 = c
        .search_runs_paged(&[exp], "tags.layer = 'L0' and tags.tool = 'kvxfer'", 1)
        .unwrap();
    assert_eq!(l0.len(), 1, "only big-sweep is a kvxfer L0 run");
    assert_eq!(l0[0].data.tag("pattern_id"), Some("big-sweep"));
}

#[test]
fn get_or_create_experiment_is_race_safe() {
    let Some(server) = Server::shared("get_or_create_experiment_is_race_safe") else {
        return;
    };
    let uri = server.uri();
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let uri = uri.clone();
                s.spawn(move || {
                    let c = Client::new(&uri, quick_retry()).unwrap();
                    c.get_or_create_experiment("raced").unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    assert_eq!(
        server.client().experiment_id("raced").unwrap(),
        Some(ids[0].clone())
    );
    assert_eq!(server.client().experiment_id("never-made").unwrap(), None);
}

#[test]
fn a_down_server_loses_nothing_and_a_later_record_completes_the_set() {
    let Some(server) =
        Server::start("a_down_server_loses_nothing_and_a_later_record_completes_the_set")
    else {
        return;
    };
    let results = tempfile::tempdir().unwrap();
    let docs = realistic_docs();
    write_docs(results.path(), &docs[..2]);
    let first = record(&server.uri(), results.path()).success();
    assert!(String::from_utf8_lossy(&first.get_output().stdout).starts_with("recorded=2 "));

    // A recorder that died mid-way: a run with the hash of a file, never finished.
    let c = server.client();
    let exp = c
        .experiment_id(mlflow::DEFAULT_EXPERIMENT)
        .unwrap()
        .unwrap();
    let l3_bytes = docs[3].1.to_json();
    let hash = mlflow::content_hash(&l3_bytes);
    let crashed = c
        .create_run(
            &exp,
            "crashed",
            0,
            &[mlflow::KeyValue {
                key: CONTENT_HASH_TAG.into(),
                value: hash,
            }],
        )
        .unwrap();

    server.down();
    write_docs(results.path(), &docs[2..]);
    let t = Instant::now();
    let failed = record(&server.uri(), results.path()).failure();
    let stderr = String::from_utf8_lossy(&failed.get_output().stderr).into_owned();
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one clear error line: {stderr}"
    );
    assert!(
        stderr.starts_with("kvxfer: error: cannot record"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("MLflow server at {} is unreachable", server.uri())),
        "{stderr}"
    );
    assert!(stderr.contains("after 2 attempt(s)"), "{stderr}");
    assert!(t.elapsed() < Duration::from_secs(30), "retries are bounded");
    for (name, doc) in &docs {
        assert_eq!(
            std::fs::read(results.path().join(name)).unwrap(),
            doc.to_json()
        );
    }

    server.up();
    let done = record(&server.uri(), results.path()).success();
    let out = done.get_output();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        "recorded=2 already_recorded=2 skipped=0 experiment=low-level-network"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("l3-tag-bw.json: removed 1 unfinished run"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs = all_runs(&c);
    assert_eq!(runs.len(), 4, "{runs:#?}");
    assert!(runs.iter().all(|r| r.info.run_id != crashed.run_id));
    for (name, _) in &docs {
        assert_recorded(&c, &runs, results.path(), name);
    }
}

#[test]
fn a_server_that_is_not_there_gives_one_clear_line() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let results = tempfile::tempdir().unwrap();
    write_docs(results.path(), &realistic_docs()[..1]);
    let t = Instant::now();
    let out = record(&format!("http://127.0.0.1:{port}"), results.path()).code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("unreachable"), "{stderr}");
    assert!(stderr.contains("after 2 attempt(s)"), "{stderr}");
    assert!(t.elapsed() < Duration::from_secs(20));
    assert!(results.path().join("l0-fi-pingpong.json").exists());
}

#[test]
fn dry_run_prints_the_runs_and_contacts_nothing() {
    let results = tempfile::tempdir().unwrap();
    write_docs(results.path(), &realistic_docs());
    std::fs::write(results.path().join("broken.json"), b"{ not json").unwrap();
    // A listener that must see no connection.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    let out = Command::cargo_bin("kvxfer")
        .unwrap()
        .args(["record", "--dry-run", "--results"])
        .arg(results.path())
        .args(["--mlflow-uri", &uri, "--bytes-per-token", "131072"])
        .assert()
        .success();
    assert!(
        listener.accept().is_err(),
        "dry run connected to the server"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["experiment"], "low-level-network");
    let runs = v["runs"].as_array().unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r["file"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "l0-fi-pingpong.json",
            "l1-xfer.json",
            "l3-tag-bw.json",
            "pll-kvbench-ucx-4k.json"
        ]
    );
    let l1 = &runs[1];
    assert_eq!(l1["run_name"], "pll-kvxfer-efa-672m-20261120T081000Z");
    assert_eq!(l1["tags"]["kv_cache_equivalent_tokens"], "5376");
    assert_eq!(l1["metrics"]["bandwidth_gbps"], 4.25);
    assert_eq!(l1["params"]["scheme"], "many_to_one");
    assert_eq!(l1["artifacts"][1]["path"], "histogram-704643072.hdr");
    assert_eq!(runs[2]["params"]["test_type"], "tag_bw");
    assert_eq!(runs[2]["metrics"]["latency_us"], 95.0 * 1.05);
    assert_eq!(v["skipped"][0]["file"], "broken.json");

    // No URI is needed to look.
    Command::cargo_bin("kvxfer")
        .unwrap()
        .env_remove("MLFLOW_TRACKING_URI")
        .args(["record", "--dry-run", "--results"])
        .arg(results.path())
        .assert()
        .success();
    // Without --dry-run it is.
    Command::cargo_bin("kvxfer")
        .unwrap()
        .env_remove("MLFLOW_TRACKING_URI")
        .args(["record", "--results"])
        .arg(results.path())
        .assert()
        .code(2);
}

#[test]
fn a_measurement_records_directly_and_record_does_not_double_it() {
    let Some(server) =
        Server::shared("a_measurement_records_directly_and_record_does_not_double_it")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("pp.json");
    Command::cargo_bin("kvxfer")
        .unwrap()
        .args(["pingpong", "-p", "tcp", "-S", "64,1K", "-I", "20", "--json"])
        .arg(&json)
        .args(["--mlflow-uri", &server.uri(), "--pattern-id", "pll-l0-tcp"])
        .timeout(Duration::from_secs(120))
        .assert()
        .success()
        .stderr(predicates::str::contains(
            "recorded in MLflow as run pll-l0-tcp-",
        ));
    // The file pingpong wrote is the content it recorded: `record` finds it already there.
    record(&server.uri(), dir.path()).success();
    let c = server.client();
    // The suite's shared server holds other tests' runs in the default experiment: the run of
    // this content must be there exactly once (a second one would carry the same hash).
    let runs = all_runs(&c);
    let bytes = std::fs::read(&json).unwrap();
    let run = run_of(&runs, &bytes);
    assert_eq!(run.data.tag("tool"), Some("kvxfer"));
    assert_eq!(run.data.tag("layer"), Some("L0"));
    assert_eq!(run.data.tag("pattern_id"), Some("pll-l0-tcp"));
    let doc = ResultDoc::from_json(&bytes).unwrap();
    let want = doc.results[0].latency_us.unwrap().mean;
    let got = run
        .data
        .metrics
        .iter()
        .find(|m| m.key == "latency_us_64")
        .expect("latency_us_64 recorded")
        .value;
    assert!((got - want).abs() <= want * 1e-9, "{got} vs {want}");
}

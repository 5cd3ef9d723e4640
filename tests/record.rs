//! `kvxfer record` against a real MLflow tracking server on 127.0.0.1.
//!
//! The server comes from `scripts/mlflow-server.sh` (its cached virtual environment); where that
//! environment is absent, the tests that need it say SKIPPED with their name and return (or
//! fail, when KVXFER_REQUIRE_MLFLOW is set).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use kvxfer::mlflow::{self, Client, RecordConfig, RetryPolicy, Run, CONTENT_HASH_TAG};
use kvxfer::report::{write_atomic, ResultDoc, SizeResult, Status};
use kvxfer::stats::{encode_histogram, new_histogram, LatencySummary};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn venv() -> PathBuf {
    std::env::var_os("KVXFER_MLFLOW_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(REPO).join(".cache/mlflow-venv"))
}

/// A server of our own, stopped when dropped.
struct Server {
    dir: tempfile::TempDir,
    port: u16,
}

impl Server {
    /// Starts a server, or prints SKIPPED for `test` and returns None when mlflow is missing.
    fn start(test: &str) -> Option<Server> {
        if !venv().join("bin/mlflow").exists() {
            let line = format!(
                "SKIPPED {test}: mlflow venv not installed (run scripts/mlflow-server.sh --install)"
            );
            assert!(
                std::env::var_os("KVXFER_REQUIRE_MLFLOW").is_none(),
                "{line}; KVXFER_REQUIRE_MLFLOW is set"
            );
            // Straight to the process's stderr, past the test harness's capture.
            let _ = writeln!(std::io::stderr(), "{line}");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let s = Server {
            dir: tempfile::tempdir().unwrap(),
            port,
        };
        s.up();
        Some(s)
    }

    fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn script(&self, args: &[&str]) -> String {
        let out = Process::new("bash")
            .arg(Path::new(REPO).join("scripts/mlflow-server.sh"))
            .args(args)
            .arg("--dir")
            .arg(self.dir.path())
            .output()
            .expect("bash runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "mlflow-server.sh {args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    fn up(&self) {
        let t = Instant::now();
        let port = self.port.to_string();
        let line = self.script(&["start", "--port", &port]);
        assert!(line.contains(&format!("port={port}")), "{line}");
        eprintln!(
            "mlflow server up in {:.1} s: {}",
            t.elapsed().as_secs_f64(),
            line.trim()
        );
    }

    fn down(&self) {
        self.script(&["stop"]);
    }

    fn client(&self) -> Client {
        Client::new(&self.uri(), quick_retry()).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Process::new("bash")
            .arg(Path::new(REPO).join("scripts/mlflow-server.sh"))
            .args(["stop", "--dir"])
            .arg(self.dir.path())
            .output();
    }
}

fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 2,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(50),
    }
}

fn lat(p50: f64) -> LatencySummary {
    LatencySummary {
        min: p50 * 0.8,
        p50,
        p95: p50 * 1.3,
        p99: p50 * 1.7,
        p999: p50 * 2.5,
        max: p50 * 3.0,
        mean: p50 * 1.05,
        stdev: p50 * 0.1,
    }
}

fn histogram_b64(base_ns: u64) -> String {
    let mut h = new_histogram();
    for i in 0..500u64 {
        h.record(base_ns + i * 37).unwrap();
    }
    encode_histogram(&h).unwrap()
}

/// Result documents as the measurement commands and parsers write them, by file name.
fn realistic_docs() -> Vec<(&'static str, ResultDoc)> {
    let mut l0 = ResultDoc::new("fi_pingpong", "pingpong", "L0");
    l0.pattern_id = Some("pll-fi-pingpong-efa-default".into());
    l0.status = Status::Complete;
    l0.started_at = "2026-11-20T08:00:00.000000Z".into();
    l0.finished_at = "2026-11-20T08:00:07.500000Z".into();
    l0.config.insert("provider".into(), "efa".into());
    l0.config.insert("endpoint".into(), "rdm".into());
    l0.config.insert("iterations".into(), 10.into());
    for (size, us, mbps) in [
        (64u64, 16.2, 7.9),
        (1024, 17.0, 120.4),
        (1_048_576, 110.5, 9488.0),
    ] {
        l0.results.push(SizeResult {
            message_size: size,
            iterations: 10,
            latency_us: Some(lat(us)),
            bandwidth_mbps: Some(mbps),
            ..Default::default()
        });
    }

    let mut l1 = ResultDoc::new("kvxfer", "xfer", "L1");
    l1.pattern_id = Some("pll-kvxfer-efa-672m".into());
    l1.status = Status::Complete;
    l1.started_at = "2026-11-20T08:10:00.000000Z".into();
    l1.finished_at = "2026-11-20T08:10:30.000000Z".into();
    for (k, v) in [
        ("backend", "libfabric"),
        ("scheme", "many_to_one"),
        ("mem", "vram"),
    ] {
        l1.config.insert(k.into(), v.into());
    }
    l1.config.insert("concurrency".into(), 16.into());
    l1.environment.host = "node1".into();
    l1.environment.kvxfer_version = "0.1.0".into();
    l1.results.push(SizeResult {
        message_size: 704_643_072,
        iterations: 30,
        latency_us: Some(lat(160_000.0)),
        bandwidth_gbps: Some(4.25),
        transfer_time_ms: Some(165.8),
        histogram: Some(histogram_b64(160_000_000)),
        ..Default::default()
    });

    let mut l2 = ResultDoc::new("kvbench", "kv_profile", "L2");
    l2.status = Status::Partial;
    l2.started_at = "2026-11-20T08:20:00Z".into();
    l2.finished_at = "2026-11-20T08:21:00Z".into();
    l2.config.insert("backend".into(), "UCX".into());
    l2.config
        .insert("model_config".into(), "Qwen2.5-7B-Instruct".into());
    l2.config.insert("prompt_tokens".into(), 4096.into());
    l2.results.push(SizeResult {
        message_size: 234_881_024,
        iterations: 5,
        bandwidth_gbps: Some(2.61),
        transfer_time_ms: Some(90.0),
        ..Default::default()
    });

    let mut l3 = ResultDoc::new("ucx_perftest", "tag_bw", "L3");
    l3.pattern_id = Some("pll-ucx-perftest-tag-bw-host".into());
    l3.status = Status::Complete;
    l3.started_at = "2026-11-20T08:30:00Z".into();
    l3.finished_at = "2026-11-20T08:30:10Z".into();
    l3.config.insert("test_type".into(), "tag_bw".into());
    l3.config.insert("memory_type".into(), "host".into());
    l3.config.insert("transport".into(), "tcp".into());
    l3.results.push(SizeResult {
        message_size: 1_048_576,
        iterations: 1000,
        latency_us: Some(lat(95.0)),
        bandwidth_gbps: Some(2.74),
        ..Default::default()
    });
    vec![
        ("l0-fi-pingpong.json", l0),
        ("l1-xfer.json", l1),
        ("pll-kvbench-ucx-4k.json", l2),
        ("l3-tag-bw.json", l3),
    ]
}

/// A document too big for one log-batch request: 1200 metrics and 150 params.
fn big_doc() -> ResultDoc {
    let mut d = ResultDoc::new("kvxfer", "pingpong", "L0");
    d.pattern_id = Some("big-sweep".into());
    d.started_at = "2026-11-20T09:00:00Z".into();
    d.finished_at = "2026-11-20T09:05:00Z".into();
    for i in 0..150 {
        d.config.insert(format!("knob_{i:03}"), (i * 3).into());
    }
    for i in 0..300u64 {
        d.results.push(SizeResult {
            message_size: 8 + i * 8,
            iterations: 100,
            latency_us: Some(lat(1.0 + i as f64 / 8.0)),
            bandwidth_mbps: Some(i as f64 * 2.5 + 0.5),
            ..Default::default()
        });
    }
    d
}

fn write_docs(dir: &Path, docs: &[(&str, ResultDoc)]) {
    for (name, doc) in docs {
        write_atomic(&dir.join(name), &doc.to_json()).unwrap();
    }
}

fn record(uri: &str, dir: &Path) -> assert_cmd::assert::Assert {
    Command::cargo_bin("kvxfer")
        .unwrap()
        .args(["record", "--results"])
        .arg(dir)
        .args(["--mlflow-uri", uri, "--instance-type", "p5.48xlarge"])
        .args(["--retries", "2", "--retry-backoff-ms", "20"])
        .timeout(Duration::from_secs(300))
        .assert()
}

fn all_runs(c: &Client) -> Vec<Run> {
    let exp = c
        .experiment_id(mlflow::DEFAULT_EXPERIMENT)
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
    let Some(server) = Server::start("records_a_folder_once_with_every_value_and_artifact") else {
        return;
    };
    let results = tempfile::tempdir().unwrap();
    let docs = realistic_docs();
    write_docs(results.path(), &docs);
    write_docs(results.path(), &[("big-sweep.json", big_doc())]);
    std::fs::write(results.path().join("notes.json"), b"{\"hello\": 1}").unwrap();
    std::fs::write(results.path().join("README.txt"), b"not json").unwrap();

    let t = Instant::now();
    let out = record(&server.uri(), results.path()).success();
    eprintln!(
        "first record of 5 files: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let out = out.get_output();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stdout.trim(),
        "recorded=5 already_recorded=0 skipped=1 experiment=low-level-network"
    );
    assert!(
        stderr.contains("skipped notes.json: not a kvxfer.result/v1 document"),
        "{stderr}"
    );

    let c = server.client();
    let runs = all_runs(&c);
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
    let again = record(&server.uri(), results.path()).success();
    let stdout = String::from_utf8_lossy(&again.get_output().stdout).into_owned();
    assert_eq!(
        stdout.trim(),
        "recorded=0 already_recorded=5 skipped=1 experiment=low-level-network"
    );
    assert_eq!(all_runs(&c).len(), 5);

    // The library entry point: a document recorded directly, then seen as recorded by the CLI.
    let mut direct = realistic_docs().remove(1).1;
    direct.pattern_id = Some("direct".into());
    let mut cfg = RecordConfig::new(&server.uri());
    cfg.retry = quick_retry();
    let outcome = mlflow::record_doc(&cfg, &direct, "direct.json").unwrap();
    assert!(
        matches!(outcome, mlflow::Outcome::Recorded { ref run_name, .. } if run_name == "direct-20261120T081000Z"),
        "{outcome:?}"
    );
    write_atomic(&results.path().join("direct.json"), &direct.to_json()).unwrap();
    let third = record(&server.uri(), results.path()).success();
    let stdout = String::from_utf8_lossy(&third.get_output().stdout).into_owned();
    assert!(
        stdout.starts_with("recorded=0 already_recorded=6 "),
        "{stdout}"
    );
    assert_eq!(all_runs(&c).len(), 6);
}

#[test]
fn get_or_create_experiment_is_race_safe() {
    let Some(server) = Server::start("get_or_create_experiment_is_race_safe") else {
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

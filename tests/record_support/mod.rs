//! Helpers of tests/record.rs: a real MLflow server of the test's own, and realistic result
//! documents.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::time::{Duration, Instant};

use kvxfer::mlflow::{Client, RetryPolicy};
use kvxfer::report::{write_atomic, ResultDoc, SizeResult, Status};
use kvxfer::stats::{encode_histogram, new_histogram, LatencySummary};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The mlflow virtual environment the server script uses.
pub fn venv() -> PathBuf {
    std::env::var_os("KVXFER_MLFLOW_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(REPO).join(".cache/mlflow-venv"))
}

/// The environment variable naming an MLflow server that `scripts/test.sh` started for the
/// whole suite (one start instead of one per test: a start costs 10-60 s of Python imports).
pub const SHARED_URI: &str = "KVXFER_TEST_MLFLOW_URI";

/// A server: the suite's shared one, or one of our own, stopped when dropped.
pub struct Server {
    /// Our own server's folder; None for the shared one.
    dir: Option<tempfile::TempDir>,
    port: u16,
}

impl Server {
    /// The suite's shared server (`KVXFER_TEST_MLFLOW_URI`), else one of our own (see
    /// [`Server::start`]). A test on it keeps to experiments of its own.
    pub fn shared(test: &str) -> Option<Server> {
        let port = std::env::var(SHARED_URI).ok().and_then(|u| {
            u.strip_prefix("http://127.0.0.1:")
                .and_then(|p| p.trim_end_matches('/').parse::<u16>().ok())
        });
        match port {
            Some(port) => Some(Server { dir: None, port }),
            None => Server::start(test),
        }
    }

    /// Starts a server of our own, or prints SKIPPED for `test` and returns None when mlflow
    /// is missing.
    pub fn start(test: &str) -> Option<Server> {
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
            dir: Some(tempfile::tempdir().unwrap()),
            port,
        };
        s.up();
        Some(s)
    }

    /// The server's URL.
    pub fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn script(&self, args: &[&str]) -> String {
        let dir = self
            .dir
            .as_ref()
            .expect("only a server of the test's own is started or stopped");
        let out = Process::new("bash")
            .arg(Path::new(REPO).join("scripts/mlflow-server.sh"))
            .args(args)
            .arg("--dir")
            .arg(dir.path())
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

    /// Starts the server (again, on the same port and store).
    pub fn up(&self) {
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

    /// Stops the server.
    pub fn down(&self) {
        self.script(&["stop"]);
    }

    /// A client of the server with short retries.
    pub fn client(&self) -> Client {
        Client::new(&self.uri(), quick_retry()).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let Some(dir) = &self.dir else { return };
        let _ = Process::new("bash")
            .arg(Path::new(REPO).join("scripts/mlflow-server.sh"))
            .args(["stop", "--dir"])
            .arg(dir.path())
            .output();
    }
}

/// Retries short enough for tests.
pub fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 2,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(50),
        ..RetryPolicy::default()
    }
}

/// A latency summary around `p50` microseconds.
pub fn lat(p50: f64) -> LatencySummary {
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

/// A real HDR histogram of 500 samples from `base_ns`, as the schema stores it.
pub fn histogram_b64(base_ns: u64) -> String {
    let mut h = new_histogram();
    for i in 0..500u64 {
        h.record(base_ns + i * 37).unwrap();
    }
    encode_histogram(&h).unwrap()
}

/// Result documents as the measurement commands and parsers write them, by file name.
pub fn realistic_docs() -> Vec<(&'static str, ResultDoc)> {
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
pub fn big_doc() -> ResultDoc {
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

/// Writes `docs` into `dir` as kvxfer does, under their names.
pub fn write_docs(dir: &Path, docs: &[(&str, ResultDoc)]) {
    for (name, doc) in docs {
        write_atomic(&dir.join(name), &doc.to_json()).unwrap();
    }
}

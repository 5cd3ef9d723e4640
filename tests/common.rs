//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use assert_cmd::Command;
use kvxfer::report::ResultDoc;

static FABRIC: Mutex<()> = Mutex::new(());

/// A turn of [`fabric_lock`]: this process's mutex and the lock file shared by every test
/// process, both held until dropped.
pub struct FabricTurn {
    _file: nix::fcntl::Flock<std::fs::File>,
    _here: MutexGuard<'static, ()>,
    asked: std::time::Instant,
    got: std::time::Instant,
}

/// With KVXFER_TEST_FABRIC_LOG=FILE (scripts/run-tests.py sets it), each turn appends a line
/// `TEST<TAB>HELD_S<TAB>WAITED_S` there: the suite's wall time cannot fall below the sum of
/// the turns, so this is where the time of the tests that busy-poll is found.
impl Drop for FabricTurn {
    fn drop(&mut self) {
        let Some(log) = std::env::var_os("KVXFER_TEST_FABRIC_LOG") else {
            return;
        };
        let test = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_string();
        let line = format!(
            "{}::{test}\t{:.2}\t{:.2}\n",
            env!("CARGO_CRATE_NAME"),
            self.got.elapsed().as_secs_f64(),
            (self.got - self.asked).as_secs_f64()
        );
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// Serialises tests that busy-poll, across test binaries too (scripts/run-tests.py runs
/// several at once): two cores cannot run several ping-pongs at once.
pub fn fabric_lock() -> FabricTurn {
    let asked = std::time::Instant::now();
    let here = FABRIC.lock().unwrap_or_else(|p| p.into_inner());
    let path = std::env::temp_dir().join("kvxfer-tests-fabric.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("lock {}: {e}", path.display()));
    FabricTurn {
        _file: file,
        _here: here,
        asked,
        got: std::time::Instant::now(),
    }
}

/// The kvxfer binary under test.
pub fn kvxfer() -> Command {
    Command::cargo_bin("kvxfer").expect("kvxfer binary built")
}

/// The path of the kvxfer binary, for spawning background processes.
pub fn kvxfer_path() -> std::path::PathBuf {
    assert_cmd::cargo::cargo_bin("kvxfer")
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `kvxfer ARGS --listen 127.0.0.1:PORT` started, its stderr kept for the test to read (a
/// target that will refuse, or wait for, the initiator the test starts next).
pub fn listening_target(args: &[&str], port: u16) -> std::process::Child {
    std::process::Command::new(kvxfer_path())
        .args(args)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Gives a plan's `iterations: "auto"` patterns `n` fixed iterations instead (up to 10 s a
/// round until +-1 %): for tests of what a run does, not of its precision, which the slow
/// group's full loopback plan judges.
pub fn fixed_iterations(plan: &mut serde_json::Value, n: u64) {
    let layers = plan["layers"].as_array_mut().into_iter().flatten();
    for pat in layers.flat_map(|l| l["patterns"].as_array_mut().into_iter().flatten()) {
        let Some(params) = pat["params"].as_object_mut() else {
            continue;
        };
        if params.get("iterations").is_some_and(|i| i == "auto") {
            params.insert("iterations".into(), n.into());
            params.remove("max_time_s");
            params.remove("precision_pct");
        }
    }
}

/// The shipped loopback plan with its results in `dir/results`, free control and reference
/// ports and this kvxfer, changed by `edit`, written to `dir/plan.json`: (plan, results).
pub fn loopback_plan(
    dir: &Path,
    edit: impl FnOnce(&mut serde_json::Value),
) -> (std::path::PathBuf, std::path::PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut p = kvxfer::plan::load_plan(&root.join("plans/loopback.json")).unwrap();
    edit(&mut p);
    let out = dir.join("results");
    p["common"]["output_dir"] = out.display().to_string().into();
    p["common"]["control_port"] = free_port().into();
    p["common"]["reference_port"] = free_port().into();
    p["infrastructure"]["tools"]["kvxfer"] = kvxfer_path().display().to_string().into();
    let f = dir.join("plan.json");
    std::fs::write(&f, serde_json::to_vec_pretty(&p).unwrap()).unwrap();
    (f, out)
}

/// Reads a result document.
pub fn read_doc(path: &Path) -> ResultDoc {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ResultDoc::from_json(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Checks that each result's `scheduling` spans all its timed iterations, every round's: each
/// side's thread was read over at least the time they took (`time_s`, summed over the rounds),
/// where a span of the first round alone would be a share of it.
pub fn assert_sched_spans_every_round(doc: &ResultDoc) {
    for r in &doc.results {
        let timed_ms = r.extra["time_s"].as_f64().expect("time_s") * 1e3;
        let s = &r.extra["scheduling"];
        for side in ["initiator", "target"] {
            let span = s[side]["span_ms"].as_f64();
            // The spans hold the timed iterations; 10 % spares the two clocks' readings.
            assert!(
                span.is_some_and(|ms| ms >= 0.9 * timed_ms),
                "{side}: {span:?} ms read over {timed_ms} ms of timed iterations: {s}"
            );
        }
    }
}

/// Whether a program is on PATH.
pub fn have(program: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The reference ucx_perftest of the UCX kvxfer links: the set-up's UCX 1.22 launcher
/// (`.cache/ucx/bin`) when ucx-sys built against that copy, else the one on PATH; None if absent.
pub fn ucx_perftest() -> Option<std::path::PathBuf> {
    let libdir = env!("KVXFER_UCX_LIBDIR");
    let copy = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/ucx/bin/ucx_perftest");
    if libdir.contains(".cache/ucx/") {
        return copy.is_file().then_some(copy);
    }
    have("ucx_perftest").then(|| "ucx_perftest".into())
}

/// Checks the figures of a ping-pong document against each other.
pub fn assert_pingpong_consistent(doc: &ResultDoc, sizes: &[u64], iterations: u64) {
    assert_eq!(doc.schema, "kvxfer.result/v1");
    assert_eq!(doc.bench, "pingpong");
    assert_eq!(doc.layer, "L0");
    assert_eq!(
        doc.status,
        kvxfer::report::Status::Complete,
        "errors: {:?}",
        doc.errors
    );
    assert!(doc.environment.libfabric_version.is_some());
    assert!(doc.environment.provider.is_some());
    assert!(!doc.environment.git_sha.is_empty());
    let got: Vec<u64> = doc.results.iter().map(|r| r.message_size).collect();
    assert_eq!(got, sizes);
    for r in &doc.results {
        assert_eq!(r.iterations, iterations);
        let l = r.latency_us.expect("latency measured");
        assert!(l.min > 0.0 && l.min <= l.p50, "{l:?}");
        assert!(l.p50 <= l.p95 && l.p95 <= l.p99 && l.p99 <= l.max, "{l:?}");
        let time_s = r.extra["time_s"].as_f64().unwrap();
        let usec = r.extra["usec_per_xfer"].as_f64().unwrap();
        // fi_pingpong's arithmetic: usec/xfer = time / iterations / 2.
        assert!((usec - time_s * 1e6 / iterations as f64 / 2.0).abs() <= usec * 1e-9);
        // bandwidth = bytes / time, bytes = iterations x size x 2.
        let bytes = (iterations * r.message_size * 2) as f64;
        let mbps = r.bandwidth_mbps.unwrap();
        assert!((mbps - bytes / time_s / 1e6).abs() <= mbps * 1e-9, "{mbps}");
        assert!((r.bandwidth_gbps.unwrap() * 1000.0 - mbps).abs() <= mbps * 1e-9);
        // The mean of the half round trips is the fi_pingpong figure.
        assert_samples_make_the_figure(l.mean, usec);
        let h = kvxfer::stats::decode_histogram(r.histogram.as_ref().unwrap()).unwrap();
        assert_eq!(h.len(), iterations);
    }
}

/// Checks that the mean of a run's samples is its whole-run figure (time over iterations),
/// less the loop's own time between samples (a clock read and a histogram record; on a loaded
/// 2-core host a preemption there took 4 % and 19 % of the figure). Never above it (within
/// histogram precision), and not half or double it: a round trip left unhalved, or halved
/// twice, fails either bound.
pub fn assert_samples_make_the_figure(mean: f64, figure: f64) {
    assert!(
        mean <= figure * 1.02 + 0.01 && mean >= figure * 0.6,
        "mean of the samples {mean} vs the run's figure {figure}"
    );
}

/// Reports a skipped test by name with its reason, past the harness's output capture.
pub fn skip(test: &str, reason: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
}

/// `chrt -f 1` where this machine allows real-time priority, else nothing: two busy-polling
/// processes on a loaded 2-core machine measure the scheduler, not the fabric, unless both run
/// above everything else.
pub fn realtime_prefix() -> Vec<String> {
    let ok = std::process::Command::new("chrt")
        .args(["-f", "1", "true"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        vec!["chrt".into(), "-f".into(), "1".into()]
    } else {
        Vec::new()
    }
}

/// A command for `program`, prefixed by `prefix` (e.g. [`realtime_prefix`]).
pub fn prefixed(prefix: &[String], program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = std::process::Command::new(first);
            c.args(rest).arg(program);
            c
        }
        None => std::process::Command::new(program),
    }
}

/// Runs a two-process measurement on the loopback: the target (`ARGS --listen`, JSON in
/// `dir/t.json`) in the background, the initiator (`ARGS --peer`, JSON in `dir/i.json`) in the
/// foreground; returns (initiator, target) outputs.
pub fn target_and_initiator(
    args: &[&str],
    dir: &Path,
) -> (std::process::Output, std::process::Output) {
    target_and_initiator_with(&[], args, dir)
}

/// [`target_and_initiator`] with `env` set on both sides (UCX_TLS and UCX_NET_DEVICES only as
/// `env` says; UCX logs to stderr, leaving stdout to the figures).
pub fn target_and_initiator_with(
    env: &[(&str, &str)],
    args: &[&str],
    dir: &Path,
) -> (std::process::Output, std::process::Output) {
    use std::process::Stdio;
    let port = free_port();
    let target = std::process::Command::new(kvxfer_path())
        .env_remove("UCX_TLS")
        .env_remove("UCX_NET_DEVICES")
        .env("UCX_LOG_FILE", "stderr")
        .envs(env.iter().copied())
        .args(args)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--json"])
        .arg(dir.join("t.json"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ini = kvxfer()
        .env_remove("UCX_TLS")
        .env_remove("UCX_NET_DEVICES")
        .env("UCX_LOG_FILE", "stderr")
        .envs(env.iter().copied())
        .args(args)
        .args(["--peer", &format!("127.0.0.1:{port}"), "--json"])
        .arg(dir.join("i.json"))
        .timeout(std::time::Duration::from_secs(300))
        .output()
        .unwrap();
    (ini, target.wait_with_output().unwrap())
}

/// A bound on a cross-check ratio that scheduling noise cannot cross, yet a unit slip
/// (nanoseconds for microseconds: 1000x) can. One run of each tool on this 2-core host has been
/// seen 0.45x to 2.1x apart with load beside it, and 64-byte latencies up to 40x apart under a
/// parallel compile: whether kvxfer matches the stock tools is judged by the compare scripts
/// (`scripts/compare-pingpong.sh`, `compare-ucx.sh`, `compare-nixl.sh`: interleaved rounds, the
/// median of per-round ratios with its interval), never by one run in a test.
pub const UNIT_SLIP: f64 = 100.0;

/// Checks a judged cross-check row by the comparator's own rules, none of which depends on how
/// fast either tool ran: the ratio is the median of per-run ratios (run k against run k), the
/// verdict follows from it and the report's tolerance, and the ratio is no unit slip.
pub fn assert_judged(r: &serde_json::Value, tolerance: f64) {
    let runs = |k: &str| -> Vec<f64> {
        r[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let median = |v: &[f64]| -> f64 {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    let (ours, theirs) = (runs("kvxfer_runs"), runs("reference_runs"));
    assert!(!ours.is_empty() && !theirs.is_empty(), "{r}");
    assert!(ours.iter().chain(&theirs).all(|v| *v > 0.0), "{r}");
    // Runs that pair up are compared run by run; otherwise the medians are.
    let median = if ours.len() == theirs.len() {
        let per_run: Vec<f64> = ours.iter().zip(&theirs).map(|(a, b)| a / b).collect();
        median(&per_run)
    } else {
        median(&ours) / median(&theirs)
    };
    let ratio = r["ratio"].as_f64().unwrap();
    assert!((ratio - median).abs() <= median * 1e-9, "{r}");
    let want = if (ratio - 1.0).abs() <= tolerance {
        "agree"
    } else {
        "differ"
    };
    assert_eq!(r["verdict"], want, "{r}");
    assert!(
        ratio > 1.0 / UNIT_SLIP && ratio < UNIT_SLIP,
        "unit slip: {r}"
    );
}

/// The libraries whose initialisers ran in `kvxfer ARGS`, with UCX's transports as `env` says
/// (the loader's own account).
pub fn initialised(env: &[(&str, &str)], args: &[&str]) -> Vec<String> {
    let out = kvxfer()
        .env_remove("UCX_TLS")
        .env_remove("UCX_NET_DEVICES")
        .envs(env.iter().copied())
        .env("LD_DEBUG", "libs")
        .args(args)
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    initialised_libraries(args, &out)
}

/// The libraries whose initialisers ran in a command run with `LD_DEBUG=libs` that ended
/// successfully (the loader's own account, on its stderr `err`), as the loader names them.
pub fn initialised_libraries(args: &[&str], out: &std::process::Output) -> Vec<String> {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kvxfer {args:?}: {err}");
    err.lines()
        .filter_map(|l| {
            l.split_once("calling init: ")
                .map(|(_, p)| p.trim().to_string())
        })
        .collect()
}

//! `kvxfer ucx-perf` on UCX's real tcp and shared-memory transports over the loopback, and
//! against the ucx_perftest of the same UCX (the set-up's 1.22).

mod common;

use std::process::{Command as Std, Stdio};
use std::time::{Duration, Instant};

use common::*;
use kvxfer::report::{ResultDoc, Status};
use predicates::prelude::*;

const TCP: [(&str, &str); 2] = [("UCX_TLS", "tcp"), ("UCX_NET_DEVICES", "lo")];
const SHM: [(&str, &str); 1] = [("UCX_TLS", "posix,cma")];

fn ucx_cmd(env: &[(&str, &str)]) -> assert_cmd::Command {
    let mut c = kvxfer();
    c.env_remove("UCX_TLS").env_remove("UCX_NET_DEVICES");
    c.envs(env.iter().copied());
    c
}

/// Checks a tag_lat document's figures against each other.
fn assert_lat_consistent(doc: &ResultDoc, sizes: &[u64], iterations: u64) {
    assert_eq!((doc.bench.as_str(), doc.layer.as_str()), ("tag_lat", "L3"));
    assert_eq!(doc.status, Status::Complete, "{:?}", doc.errors);
    assert_eq!(
        doc.environment.ucx_version.as_deref(),
        Some(kvxfer::ucx::version().as_str())
    );
    let lib = doc.environment.ucx_library.as_deref().unwrap();
    assert!(lib.starts_with(env!("KVXFER_UCX_LIBDIR")), "{lib}");
    let got: Vec<u64> = doc.results.iter().map(|r| r.message_size).collect();
    assert_eq!(got, sizes);
    for r in &doc.results {
        assert_eq!(r.iterations, iterations);
        let l = r.latency_us.expect("latency measured");
        assert!(
            l.min > 0.0 && l.min <= l.p50 && l.p50 <= l.p99 && l.p99 <= l.max,
            "{l:?}"
        );
        let time_s = r.extra["time_s"].as_f64().unwrap();
        let overall = r.extra["overall_latency_us"].as_f64().unwrap();
        // ucx_perftest's arithmetic: overall latency = time / iterations / 2.
        assert!((overall - time_s * 1e6 / iterations as f64 / 2.0).abs() <= overall * 1e-9);
        // Its bandwidth: one message per one-way latency; MB/s there is 2^20 bytes/s.
        let mib = r.extra["bandwidth_mib_s"].as_f64().unwrap();
        let bps = r.message_size as f64 / (overall / 1e6);
        assert!((mib * 1_048_576.0 - bps).abs() <= bps * 1e-9);
        assert!((r.bandwidth_gbps.unwrap() * 1e9 - bps).abs() <= bps * 1e-9);
        // The mean of the samples is the overall figure.
        assert_samples_make_the_figure(l.mean, overall);
        // The compatibility figure is a median of real samples: inside the observed range.
        let compat = r.extra["ucx_perftest_percentile_us"].as_f64().unwrap();
        assert!(
            compat >= l.min * 0.99 && compat <= l.max * 1.01,
            "{compat} {l:?}"
        );
        let window = r.extra["ucx_perftest_percentile_window"].as_u64().unwrap();
        assert_eq!(window, iterations.min(2048));
        let h = kvxfer::stats::decode_histogram(r.histogram.as_ref().unwrap()).unwrap();
        assert_eq!(h.len(), iterations);
    }
}

fn transports(doc: &ResultDoc) -> Vec<String> {
    serde_json::from_value(doc.environment.extra["ucx_transports"].clone()).unwrap()
}

/// Runs `ucx-perf ARGS --json` in one process under `env` and expects success; returns its
/// stdout and document.
fn one_process(env: &[(&str, &str)], args: &[&str]) -> (String, ResultDoc) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let out = ucx_cmd(env)
        .arg("ucx-perf")
        .args(args)
        .arg("--json")
        .arg(&json)
        .timeout(Duration::from_secs(120))
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    (stdout, read_doc(&json))
}

#[test]
fn tag_lat_tcp_one_process() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    ucx_cmd(&TCP)
        .args([
            "ucx-perf",
            "-t",
            "tag_lat",
            "-s",
            "64,8K,100K",
            "-n",
            "300",
            "-w",
            "20",
        ])
        .args(["--verify", "--timeout", "60", "--json"])
        .arg(&json)
        .timeout(Duration::from_secs(120))
        .assert()
        .success()
        .stdout(predicate::str::contains("Final: 64 "))
        .stdout(predicate::str::contains("Final: 102400 "));
    let doc = read_doc(&json);
    assert_lat_consistent(&doc, &[64, 8192, 102_400], 300);
    // UCX_TLS=tcp with UCX_NET_DEVICES=lo: every lane is tcp on the loopback.
    assert_eq!(transports(&doc), ["tcp/lo"]);
    assert_eq!(doc.environment.env["UCX_TLS"], "tcp");
    assert_eq!(doc.config["test_type"], "tag_lat");
}

#[test]
fn cpus_pin_both_sides_as_ucx_perftest_c_does() {
    let _g = fabric_lock();
    // Both sides on CPU 0: each thread waits while the other polls (unpinned: about 0 %).
    let (_, doc) = one_process(
        &SHM,
        &["-t", "tag_lat", "-s", "64", "-n", "50", "--cpus", "0"],
    );
    assert_eq!(doc.config["cpus"], serde_json::json!([0]));
    let s = &doc.results[0].extra["scheduling"];
    for side in ["initiator", "target"] {
        assert!(s[side]["waiting_pct"].as_f64().unwrap() > 20.0, "{s}");
        if !s[side]["migrations"].is_null() {
            assert_eq!(s[side]["migrations"], 0, "{s}");
        }
    }
}

#[test]
fn tag_lat_shared_memory_one_process() {
    let _g = fabric_lock();
    let args = ["-t", "tag_lat", "-s", "1,64,64K", "-n", "2500", "--verify"];
    let (_, doc) = one_process(&SHM, &args);
    assert_lat_consistent(&doc, &[1, 64, 65536], 2500);
    let t = transports(&doc);
    assert!(t.contains(&"posix/memory".to_string()), "{t:?}");
    assert!(
        t.iter().all(|x| x == "posix/memory" || x == "cma/memory"),
        "{t:?}"
    );
}

fn assert_bw_consistent(doc: &ResultDoc, sizes: &[u64], iterations: u64, outstanding: u64) {
    assert_eq!((doc.bench.as_str(), doc.layer.as_str()), ("tag_bw", "L3"));
    assert_eq!(doc.status, Status::Complete, "{:?}", doc.errors);
    assert_eq!(doc.config["outstanding"], outstanding);
    let got: Vec<u64> = doc.results.iter().map(|r| r.message_size).collect();
    assert_eq!(got, sizes);
    for r in &doc.results {
        assert_eq!(r.iterations, iterations);
        assert!(r.latency_us.is_none(), "tag_bw measures no latency");
        let time_s = r.extra["time_s"].as_f64().unwrap();
        let bps = (r.message_size * iterations) as f64 / time_s;
        assert!((r.bandwidth_gbps.unwrap() * 1e9 - bps).abs() <= bps * 1e-9);
        assert!((r.bandwidth_mbps.unwrap() * 1e6 - bps).abs() <= bps * 1e-9);
        let mib = r.extra["bandwidth_mib_s"].as_f64().unwrap();
        assert!((mib * 1_048_576.0 - bps).abs() <= bps * 1e-9);
        assert_eq!(r.extra["acknowledged"], true);
        // More than a message a second even on a busy machine; less than 1 TB/s.
        assert!(bps > r.message_size as f64 && bps < 1e12, "{bps}");
    }
}

#[test]
fn tag_bw_tcp_one_process() {
    let _g = fabric_lock();
    let args = [
        "-t", "tag_bw", "-s", "1M", "-n", "64", "-w", "8", "-O", "8", "--verify",
    ];
    let (out, doc) = one_process(&TCP, &args);
    assert!(out.contains("overhead (usec)"), "{out}");
    assert_bw_consistent(&doc, &[1 << 20], 64, 8);
    assert_eq!(transports(&doc), ["tcp/lo"]);
}

#[test]
fn tag_bw_small_messages_overtake_their_receives_and_still_verify() {
    // Eager messages complete at the sender at once, so the receiver finds many of them
    // already waiting (UCX's unexpected queue): their lengths and payloads must still be right.
    let _g = fabric_lock();
    let args = [
        "-t", "tag_bw", "-s", "1,64,8K", "-n", "3000", "-O", "16", "--verify",
    ];
    let (_, doc) = one_process(&SHM, &args);
    assert_bw_consistent(&doc, &[1, 64, 8192], 3000, 16);
}

fn two_processes(env: &[(&str, &str)], args: &[&str]) -> (ResultDoc, ResultDoc, String) {
    let dir = tempfile::tempdir().unwrap();
    let all: Vec<&str> = std::iter::once("ucx-perf")
        .chain(args.iter().copied())
        .collect();
    let (ini, t) = target_and_initiator_with(env, &all, dir.path());
    let ini_err = String::from_utf8_lossy(&ini.stderr);
    assert!(ini.status.success(), "initiator: {ini_err}");
    assert!(
        t.status.success(),
        "target: {}",
        String::from_utf8_lossy(&t.stderr)
    );
    // Only the initiator prints figures, as only ucx_perftest's client does.
    assert!(t.stdout.is_empty());
    assert!(!ini_err.contains("warning"), "{ini_err}");
    (
        read_doc(&dir.path().join("i.json")),
        read_doc(&dir.path().join("t.json")),
        String::from_utf8_lossy(&ini.stdout).into_owned(),
    )
}

#[test]
fn tag_lat_tcp_two_processes() {
    let _g = fabric_lock();
    let (doc, tdoc, out) = two_processes(
        &TCP,
        &["-t", "tag_lat", "-s", "64,64K", "-n", "200", "--verify"],
    );
    assert_lat_consistent(&doc, &[64, 65536], 200);
    assert_eq!(doc.config["role"], "initiator");
    assert_eq!(tdoc.config["role"], "target");
    assert_eq!(transports(&doc), ["tcp/lo"]);
    assert_eq!(transports(&tdoc), ["tcp/lo"]);
    assert!(out.contains("Final: 65536 "));
}

#[test]
fn tag_lat_rounds_merge_every_round_on_both_sides() {
    let _g = fabric_lock();
    let (doc, tdoc, out) = two_processes(
        &TCP,
        &[
            "-t", "tag_lat", "-s", "64,64K", "-n", "100", "--rounds", "3", "--verify",
        ],
    );
    // Every round's iterations, with ucx_perftest's arithmetic over all of them (the window:
    // the last samples over the rounds in order).
    assert_lat_consistent(&doc, &[64, 65536], 300);
    for r in &doc.results {
        let p = &r.extra["precision"];
        assert_eq!(p["rounds"]["p50_us"].as_array().unwrap().len(), 3, "{p}");
        assert_eq!(p["iterations"], 300, "{p}");
    }
    assert_sched_spans_every_round(&doc);
    // The target ran the same rounds (it times nothing: ucx_perftest's server prints nothing).
    assert_eq!(doc.config["rounds"], 3);
    assert_eq!(tdoc.config["rounds"], 3);
    let served: Vec<u64> = tdoc.results.iter().map(|r| r.iterations).collect();
    assert_eq!(served, [300, 300]);
    assert_eq!(transports(&doc), ["tcp/lo"]);
    assert!(out.contains("Final: 65536 "));
    // A fixed count keeps one round; auto runs six; tag_bw has no median to widen.
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("auto.json");
    ucx_cmd(&SHM)
        .args(["ucx-perf", "-t", "tag_lat", "-s", "64", "-n", "auto"])
        .args(["--precision", "0.01", "--max-time", "600ms", "--json"])
        .arg(&json)
        .timeout(Duration::from_secs(60))
        .assert()
        .success();
    let adoc = read_doc(&json);
    assert_eq!(adoc.config["rounds"], 6);
    let p = &adoc.results[0].extra["precision"];
    assert_eq!(p["rounds"]["p50_us"].as_array().unwrap().len(), 6, "{p}");
    assert_eq!(p["stopped_by"], "max-time", "{p}");
    ucx_cmd(&TCP)
        .args(["ucx-perf", "-t", "tag_bw", "--rounds", "2"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("--rounds applies to tag_lat"));
}

#[test]
fn tag_bw_shared_memory_two_processes() {
    let _g = fabric_lock();
    let (doc, tdoc, _) = two_processes(
        &SHM,
        &[
            "-t", "tag_bw", "-s", "4M", "-n", "40", "-O", "8", "--verify", "--prereg",
        ],
    );
    assert_bw_consistent(&doc, &[4 << 20], 40, 8);
    // With --prereg every rendezvous carries the slots' own memory handles.
    assert_eq!(doc.config["prereg"], true);
    assert_eq!(tdoc.config["prereg"], true);
    // The receiver times nothing: its figures are absent, not zero.
    let r = &tdoc.results[0];
    assert!(r.bandwidth_gbps.is_none() && r.transfer_time_ms.is_none());
    assert!(transports(&doc)
        .iter()
        .any(|t| t == "posix/memory" || t == "cma/memory"));
}

/// Runs ucx_perftest's server and client over tcp on the loopback; the client's output parsed
/// by kvxfer's own reader of it (MB/s converted from 2^20 bytes/s).
fn run_ucx_perftest(args: &[&str], size: u64) -> Option<ResultDoc> {
    let bin = ucx_perftest()?;
    for _attempt in 0..3 {
        let port = free_port().to_string();
        let server = Std::new("timeout")
            .args(["-k", "5", "60"])
            .arg(&bin)
            .args(["-p", &port])
            .envs(TCP)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let client = Std::new("timeout")
            .args(["-k", "5", "60"])
            .arg(&bin)
            .args(["127.0.0.1", "-p", &port])
            .args(args)
            .envs(TCP)
            .output()
            .unwrap();
        let _ = server.wait_with_output();
        let raw = String::from_utf8_lossy(&client.stdout);
        if let Ok(doc) = kvxfer::reference::ucx_perftest::parse(&raw, Some(size)) {
            return Some(doc);
        }
    }
    None
}

/// A bound on the ratio of two tools' timings of one shot that scheduling noise cannot cross, yet
/// a unit slip (nanoseconds for microseconds: 1000x) can. On this 2-core host one shot of each
/// tool has been seen 0.45x to 2.1x apart with load beside it, and up to 40x for 64-byte
/// latencies under a parallel compile; how close the tools are is judged by
/// `scripts/compare-ucx.sh`, in interleaved rounds with an interval, never by a test.
const UNIT_SLIP: f64 = 100.0;

/// Whether `ratio` is a finite ratio inside [`UNIT_SLIP`] either way.
fn within_unit_slip(ratio: f64) -> bool {
    ratio.is_finite() && ratio > 1.0 / UNIT_SLIP && ratio < UNIT_SLIP
}

#[test]
fn tag_lat_measures_what_ucx_perftest_measures() {
    const TEST: &str = "tag_lat_measures_what_ucx_perftest_measures";
    if ucx_perftest().is_none() {
        skip(
            TEST,
            "the reference ucx_perftest is not installed (scripts/setup.sh)",
        );
        return;
    }
    let _g = fabric_lock();
    let n = "5000";
    let theirs = run_ucx_perftest(&["-t", "tag_lat", "-s", "64", "-n", n], 64)
        .expect("ucx_perftest printed its table");
    let t = &theirs.results[0];
    assert_eq!((t.iterations, t.message_size), (5000, 64));
    let (ours, tdoc, _) = two_processes(&TCP, &["-t", "tag_lat", "-s", "64", "-n", n, "-w", "500"]);
    // The same experiment: the same message size and count, every one a timed half round trip,
    // the percentile over the same window of the last 2048.
    assert_lat_consistent(&ours, &[64], 5000);
    assert_eq!(
        tdoc.results[0].iterations, 5000,
        "the server answered each ping"
    );
    let r = &ours.results[0];
    assert_eq!(
        r.extra["ucx_perftest_percentile_window"].as_u64(),
        Some(2048)
    );
    // ucx_perftest's own arithmetic holds on its side too: overall MB/s (2^20 B/s) is 64 bytes
    // per overall one-way latency, the arithmetic kvxfer's bandwidth_gbps follows.
    let their_bps = t.bandwidth_gbps.unwrap() * 1e9;
    let their_lat = t.extra["latency_overall_us"].as_f64().unwrap();
    let from_latency = 64.0 / (their_lat / 1e6);
    assert!(
        (their_bps - from_latency).abs() / from_latency < 0.02,
        "{their_bps} vs {from_latency}"
    );
    // Compared: ucx_perftest's percentile column with kvxfer's figure computed the same way,
    // both in microseconds. Printed for the reader; held only to the unit-slip bound.
    let ours_p = r.extra["ucx_perftest_percentile_us"].as_f64().unwrap();
    let theirs_p = t.extra["latency_percentile_last2048_us"].as_f64().unwrap();
    let ratio = ours_p / theirs_p;
    eprintln!(
        "tag_lat 64 B tcp: kvxfer {ours_p:.3} us, ucx_perftest {theirs_p:.3} us, ratio {ratio:.2} (one shot: judged by scripts/compare-ucx.sh)"
    );
    assert!(within_unit_slip(ratio), "ratio {ratio}");
}

#[test]
fn tag_bw_measures_what_ucx_perftest_measures() {
    const TEST: &str = "tag_bw_measures_what_ucx_perftest_measures";
    if ucx_perftest().is_none() {
        skip(
            TEST,
            "the reference ucx_perftest is not installed (scripts/setup.sh)",
        );
        return;
    }
    let version = kvxfer::ucx::version();
    if !kvxfer::ucx::version_lacks(&version).is_empty() {
        skip(
            TEST,
            &format!("UCX {version}'s ucx_perftest does not acknowledge tag_bw's end"),
        );
        return;
    }
    let _g = fabric_lock();
    let size = 4 << 20;
    // ucx_perftest reads sizes as plain bytes (`4M` would be 4).
    let args = ["-t", "tag_bw", "-s", "4194304", "-n", "300", "-O", "32"];
    let theirs = run_ucx_perftest(&args, size).expect("ucx_perftest printed its table");
    let t = &theirs.results[0];
    assert_eq!((t.iterations, t.message_size), (300, size));
    let with_warmup: Vec<&str> = args.iter().copied().chain(["-w", "30"]).collect();
    let (ours, tdoc, _) = two_processes(&TCP, &with_warmup);
    // The same stream: 300 messages of 4 MiB, at most 32 outstanding, the end acknowledged by
    // the receiver (which counted every message), the bytes over the time to that
    // acknowledgement.
    assert_bw_consistent(&ours, &[size], 300, 32);
    let r = &ours.results[0];
    assert_eq!(r.extra["acknowledged"], true);
    assert_eq!(
        tdoc.results[0].iterations, 300,
        "the receiver took every message"
    );
    let (o, th) = (r.bandwidth_gbps.unwrap(), t.bandwidth_gbps.unwrap());
    let ratio = o / th;
    eprintln!(
        "tag_bw 4 MiB tcp: kvxfer {o:.3} GB/s, ucx_perftest {th:.3} GB/s, ratio {ratio:.2} (one shot: judged by scripts/compare-ucx.sh)"
    );
    assert!(within_unit_slip(ratio), "ratio {ratio}");
}

#[test]
fn unknown_transport_in_ucx_tls_is_reported() {
    let start = Instant::now();
    // UCX logs to stdout unless told otherwise; UCX_LOG_FILE=stderr keeps stdout for results.
    ucx_cmd(&[("UCX_TLS", "nosuchtl"), ("UCX_LOG_FILE", "stderr")])
        .args(["ucx-perf", "-t", "tag_lat", "-s", "64", "-n", "10"])
        .timeout(Duration::from_secs(30))
        .assert()
        .failure()
        .stderr(predicate::str::contains("ucp_init failed: No such device"))
        .stderr(predicate::str::contains("UCX_TLS=nosuchtl"))
        .stderr(predicate::str::contains(
            "transport 'nosuchtl' is not available",
        ))
        .stdout(predicate::str::is_empty());
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn unreachable_peer_fails_within_timeout() {
    let port = free_port();
    let start = Instant::now();
    ucx_cmd(&TCP)
        .args(["ucx-perf", "-t", "tag_lat", "--timeout", "1"])
        .args(["--peer", &format!("127.0.0.1:{port}")])
        .timeout(Duration::from_secs(20))
        .assert()
        .failure()
        .stderr(predicate::str::contains("no kvxfer target answered"));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn peer_with_other_parameters_is_refused_naming_the_parameter() {
    let port = free_port();
    let target = Std::new(kvxfer_path())
        .envs(TCP)
        .args([
            "ucx-perf",
            "-t",
            "tag_bw",
            "-s",
            "64K",
            "-O",
            "16",
            "--timeout",
            "20",
        ])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    ucx_cmd(&TCP)
        .args([
            "ucx-perf",
            "-t",
            "tag_bw",
            "-s",
            "64K",
            "-O",
            "32",
            "--timeout",
            "20",
        ])
        .args(["--peer", &format!("127.0.0.1:{port}")])
        .timeout(Duration::from_secs(30))
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "outstanding is 32 here but 16 on the peer",
        ));
    // The target refused it and waits on for a matching initiator.
    let mut target = target;
    assert!(target.try_wait().unwrap().is_none(), "the target ended");
    target.kill().unwrap();
    let t = target.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&t.stderr).contains("outstanding is 16 here but 32 on the peer")
    );
}

#[test]
fn bad_options_are_refused_before_any_connection() {
    let mut cases = vec![
        (
            vec!["-t", "tag_bw", "-O", "0"],
            "--outstanding must be at least 1",
        ),
        (vec!["-n", "0"], "--iterations must be at least 1"),
        (vec!["-s", "0"], "size 0 is not a message size"),
        (
            vec!["-t", "tag_bw", "-s", "672M", "--verify"],
            "lower --outstanding",
        ),
        (
            vec!["-m", "cuda", "--device=-1"],
            "invalid value '-1' for '--device <N>'",
        ),
    ];
    if !cfg!(feature = "cuda") {
        cases.push((
            vec!["-m", "cuda"],
            "--memory cuda is not available: kvxfer was built without the `cuda` feature \
             (cargo build --features cuda)",
        ));
    }
    for (args, what) in cases {
        let mut c = ucx_cmd(&TCP);
        c.arg("ucx-perf");
        if !args.contains(&"-t") {
            c.args(["-t", "tag_lat"]);
        }
        c.args(&args)
            .timeout(Duration::from_secs(20))
            .assert()
            .failure()
            .stderr(predicate::str::contains(what));
    }
    ucx_cmd(&TCP)
        .args(["ucx-perf", "-t", "tag_rma"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("tag_lat"));
}

/// The libraries whose initialisers ran in `kvxfer ARGS` over shared memory.
fn initialised(args: &[&str]) -> Vec<String> {
    common::initialised(&SHM, args)
}

#[test]
fn ucx_is_loaded_only_by_the_commands_that_use_it() {
    let _g = fabric_lock();
    // A libfabric run and a plain command: no UCX, none of its start-up.
    for args in [
        &["--version"][..],
        &["pingpong", "-p", "shm", "-S", "64", "-I", "20"],
    ] {
        let libs = initialised(args);
        assert!(
            !libs.is_empty(),
            "the loader's account of {args:?} is empty"
        );
        assert!(
            !libs
                .iter()
                .any(|l| l.contains("libucp") || l.contains("libucs")),
            "{args:?}: {libs:?}"
        );
    }
    // A UCX run loads the UCX the build found, through the rpath.
    let libs = initialised(&["ucx-perf", "-t", "tag_lat", "-s", "64", "-n", "20"]);
    let ucp = libs.iter().find(|l| l.ends_with("libucp.so.0"));
    let ucp = ucp.unwrap_or_else(|| panic!("no libucp in {libs:?}"));
    assert!(ucp.starts_with(env!("KVXFER_UCX_LIBDIR")), "{ucp}");
}

#[test]
fn info_lists_ucx_transports_and_devices() {
    // The UCX loaded is the one ucx-sys linked (the rpath, no LD_LIBRARY_PATH); the set-up's
    // copy is UCX 1.22.0, which lacks nothing info warns about.
    let libdir = env!("KVXFER_UCX_LIBDIR");
    let setup_copy = libdir.contains(".cache/ucx/");
    let want = if setup_copy { "UCX 1.22.0\n" } else { "UCX 1." };
    ucx_cmd(&TCP)
        .env_remove("LD_LIBRARY_PATH")
        .args(["info", "--ucx"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with(want))
        .stdout(predicate::str::contains(format!("library: {libdir}")))
        .stdout(predicate::str::contains("transport: tcp\n    device: lo"))
        .stdout(predicate::str::contains("posix").not());
    let out = ucx_cmd(&[])
        .env_remove("LD_LIBRARY_PATH")
        .args(["info", "--ucx", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let version = v["ucx_version"].as_str().unwrap();
    assert!(
        v["ucx_library"].as_str().unwrap().starts_with(libdir),
        "{v}"
    );
    if setup_copy {
        assert_eq!(version, "1.22.0");
        assert_eq!(v["ucx_headers"], "1.22");
    }
    assert_eq!(
        v["ucx_lacks"].as_array().unwrap().len(),
        kvxfer::ucx::version_lacks(version).len()
    );
    let names: Vec<String> = v["transports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            format!(
                "{}/{}",
                t["transport"].as_str().unwrap(),
                t["device"].as_str().unwrap()
            )
        })
        .collect();
    for want in ["tcp/lo", "posix/memory", "cma/memory"] {
        assert!(names.contains(&want.to_string()), "{names:?}");
    }
    // UCX 1.13 names self's device memory0, 1.22 memory.
    assert!(
        names.iter().any(|n| n.starts_with("self/memory")),
        "{names:?}"
    );
    // Without --ucx, info still lists libfabric's providers.
    kvxfer()
        .arg("info")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("libfabric "));
}

#[test]
fn sides_with_transports_that_cannot_meet_are_reported_on_both() {
    let port = free_port();
    let target = Std::new(kvxfer_path())
        .env_remove("UCX_NET_DEVICES")
        .env("UCX_TLS", "posix")
        .args(["ucx-perf", "-t", "tag_lat", "-n", "10", "--timeout", "10"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    ucx_cmd(&TCP)
        .args(["ucx-perf", "-t", "tag_lat", "-n", "10", "--timeout", "10"])
        .args(["--peer", &format!("127.0.0.1:{port}")])
        .timeout(Duration::from_secs(30))
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "ucp_ep_create failed: Destination is unreachable",
        ))
        .stderr(predicate::str::contains(
            "compare UCX_TLS and UCX_NET_DEVICES",
        ));
    let t = target.wait_with_output().unwrap();
    assert!(!t.status.success());
    assert!(String::from_utf8_lossy(&t.stderr).contains("Destination is unreachable"));
    assert!(start.elapsed() < Duration::from_secs(15));
}

/// Whether this UCX has a transport of that name (`kvxfer info --ucx --json`).
#[cfg(feature = "cuda")]
fn ucx_has_transport(name: &str) -> bool {
    let out = ucx_cmd(&[])
        .args(["info", "--ucx", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["transports"]
        .as_array()
        .is_some_and(|ts| ts.iter().any(|t| t["transport"] == name))
}

#[cfg(feature = "cuda")]
#[test]
fn cuda_memory_without_a_driver_or_device_fails_with_one_line() {
    const TEST: &str = "cuda_memory_without_a_driver_or_device_fails_with_one_line";
    if kvxfer::mem::cuda::CudaDevice::open(0).is_ok() {
        println!("SKIPPED {TEST}: this machine has CUDA device 0");
        return;
    }
    for test in ["tag_lat", "tag_bw"] {
        let out = ucx_cmd(&TCP)
            .args([
                "ucx-perf",
                "-t",
                test,
                "-m",
                "cuda",
                "--verify",
                "--timeout",
                "20",
            ])
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line, no panic: {err}");
        assert!(
            lines[0].starts_with("kvxfer: error: --memory cuda: no CUDA"),
            "{err}"
        );
        if !kvxfer::mem::cuda::driver_present() {
            assert!(
                lines[0].contains("no CUDA driver: libcuda.so.1 not found"),
                "{err}"
            );
        }
        assert!(out.stdout.is_empty());
    }
}

#[cfg(feature = "cuda")]
#[test]
fn tag_lat_and_tag_bw_verify_in_cuda_memory() {
    const TEST: &str = "tag_lat_and_tag_bw_verify_in_cuda_memory";
    let device = match kvxfer::mem::cuda::CudaDevice::open(0) {
        Ok(d) => d,
        Err(e) => {
            println!("SKIPPED {TEST}: no CUDA device ({e})");
            return;
        }
    };
    if !ucx_has_transport("cuda_copy") {
        println!("SKIPPED {TEST}: this UCX has no cuda_copy transport (built without CUDA)");
        return;
    }
    let _g = fabric_lock();
    let env = [("UCX_TLS", "tcp,cuda_copy"), ("UCX_NET_DEVICES", "lo")];
    let dir = tempfile::tempdir().unwrap();
    for (test, sizes, extra) in [
        ("tag_lat", "64,8K,1M", vec!["-n", "200", "-w", "20"]),
        ("tag_bw", "64,1M", vec!["-n", "64", "-w", "8", "-O", "8"]),
    ] {
        let json = dir.path().join(format!("{test}.json"));
        ucx_cmd(&env)
            .args([
                "ucx-perf", "-t", test, "-s", sizes, "-m", "cuda", "--device", "0",
            ])
            .args(&extra)
            .args(["--verify", "--timeout", "60", "--json"])
            .arg(&json)
            .timeout(Duration::from_secs(180))
            .assert()
            .success();
        let doc = read_doc(&json);
        assert_eq!(doc.status, Status::Complete, "{:?}", doc.errors);
        assert_eq!(doc.environment.gpu, [device.name().to_string()]);
        assert_eq!(doc.config["memory_type"], "cuda");
        assert_eq!(doc.config["verify"], true);
        assert_eq!(doc.results.len(), sizes.split(',').count());
        for r in &doc.results {
            assert!(r.bandwidth_gbps.is_some_and(|b| b > 0.0), "{r:?}");
        }
    }
    // A device the machine does not have is one clear line.
    ucx_cmd(&env)
        .args([
            "ucx-perf", "-t", "tag_lat", "-m", "cuda", "--device", "4096",
        ])
        .timeout(Duration::from_secs(60))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no CUDA device 4096"));
}

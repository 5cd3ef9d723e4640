//! `kvxfer pingpong` on the real tcp, udp and shm providers over the loopback.

mod common;

use std::process::{Command as Std, Stdio};
use std::time::{Duration, Instant};

use common::*;
use predicates::prelude::*;

fn one_process(provider: &str, endpoint: &str, mode: &str, sizes: &str, expect: &[u64]) {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    kvxfer()
        .args(["pingpong", "-p", provider, "-e", endpoint, "-m", mode])
        .args([
            "-S",
            sizes,
            "-I",
            "40",
            "-w",
            "3",
            "--verify",
            "--timeout",
            "60",
        ])
        .arg("--json")
        .arg(&json)
        .assert()
        .success()
        .stdout(predicate::str::starts_with("bytes   #sent   #ack"));
    let doc = read_doc(&json);
    assert_pingpong_consistent(&doc, expect, 40);
    assert_eq!(doc.config["mode"], mode);
    assert_eq!(doc.config["endpoint"], endpoint);
    let prov = doc.environment.provider.clone().unwrap();
    assert!(prov.starts_with(provider), "{prov}");
    if provider != "shm" {
        // Loopback runs select the lo domain, never the outward interface.
        assert_eq!(doc.environment.domain.as_deref(), Some("lo"));
    }
}

#[test]
fn tcp_rdm_msg_one_process() {
    one_process("tcp", "rdm", "msg", "64,4K,1M", &[64, 4096, 1 << 20]);
}

#[test]
fn tcp_msg_endpoint_one_process() {
    one_process("tcp", "msg", "msg", "1,64K", &[1, 65536]);
}

#[test]
fn udp_rdm_tagged_one_process() {
    one_process("udp", "rdm", "tagged", "64,8K", &[64, 8192]);
}

#[test]
fn shm_rdm_msg_one_process() {
    one_process("shm", "rdm", "msg", "64,5000,1M", &[64, 5000, 1 << 20]);
}

fn two_processes(provider: &str, endpoint: &str, mode: &str) {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "pingpong", "-p", provider, "-e", endpoint, "-m", mode, "-S", "64,64K", "-I", "30",
        "--verify",
    ];
    let (ini, t) = target_and_initiator(&args, dir.path());
    assert!(
        ini.status.success(),
        "initiator: {}",
        String::from_utf8_lossy(&ini.stderr)
    );
    assert!(
        t.status.success(),
        "target: {}",
        String::from_utf8_lossy(&t.stderr)
    );
    let doc = read_doc(&dir.path().join("i.json"));
    assert_pingpong_consistent(&doc, &[64, 65536], 30);
    assert_eq!(doc.config["role"], "initiator");
    // Both sides print a table, as fi_pingpong's client and server do.
    assert!(String::from_utf8_lossy(&t.stdout).starts_with("bytes"));
    let tdoc = read_doc(&dir.path().join("t.json"));
    assert_eq!(tdoc.config["role"], "target");
    assert_eq!(tdoc.results.len(), 2);
}

#[test]
fn tcp_rdm_two_processes() {
    two_processes("tcp", "rdm", "tagged");
}

#[test]
fn tcp_msg_two_processes() {
    two_processes("tcp", "msg", "msg");
}

#[test]
fn udp_two_processes() {
    two_processes("udp", "rdm", "msg");
}

#[test]
fn shm_two_processes() {
    two_processes("shm", "rdm", "tagged");
}

/// Checks a `--rounds` document: every round's samples in each result, and a stated interval
/// that holds every round's median.
fn assert_rounds(doc: &kvxfer::report::ResultDoc, sizes: &[u64], rounds: u64, iterations: u64) {
    assert_pingpong_consistent(doc, sizes, rounds * iterations);
    assert_eq!(doc.config["rounds"], rounds);
    for r in &doc.results {
        let p = &r.extra["precision"];
        let medians = p["rounds"]["p50_us"].as_array().unwrap();
        assert_eq!(medians.len() as u64, rounds, "{p}");
        let [lo, hi] = [0, 1].map(|i| p["p50_interval_us"][i].as_f64().unwrap());
        let p50 = r.latency_us.unwrap().p50;
        for m in medians.iter().map(|m| m.as_f64().unwrap()).chain([p50]) {
            assert!(lo <= m && m <= hi, "{m} outside [{lo}, {hi}]: {p}");
        }
    }
}

#[test]
fn rounds_run_on_fresh_endpoints_in_one_process_and_across_two() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    kvxfer()
        .args([
            "pingpong", "-p", "tcp", "-S", "64,64K", "-I", "40", "-w", "3",
        ])
        .args(["--verify", "--rounds", "3", "--timeout", "60", "--json"])
        .arg(&json)
        .assert()
        .success()
        .stdout(predicate::str::contains("(120 iterations in 3 rounds"));
    let doc = read_doc(&json);
    assert_rounds(&doc, &[64, 65536], 3, 40);
    assert_sched_spans_every_round(&doc);
    // The path is read over the first round's timed iterations: a span with its own time.
    for r in &doc.results {
        let side = &r.path.as_ref().expect("a path")["sides"][0];
        assert!(side["achieved_gbit_s"].as_f64().unwrap() > 0.0, "{side}");
    }
    let args = [
        "pingpong", "-p", "shm", "-S", "1K", "-I", "30", "--rounds", "2",
    ];
    let (ini, t) = target_and_initiator(&args, dir.path());
    assert!(
        ini.status.success(),
        "{}",
        String::from_utf8_lossy(&ini.stderr)
    );
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    let doc = read_doc(&dir.path().join("i.json"));
    assert_rounds(&doc, &[1024], 2, 30);
    // The target's figures of its later round crossed to the initiator's document.
    assert_sched_spans_every_round(&doc);
    assert_eq!(read_doc(&dir.path().join("t.json")).config["rounds"], 2);
}

#[test]
fn auto_runs_six_rounds_unless_told_and_they_share_its_limits() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    // A precision no round reaches: every round runs to its share of the time.
    let auto = [
        "pingpong",
        "-p",
        "shm",
        "-S",
        "64",
        "-I",
        "auto",
        "--precision",
        "0.01",
        "--max-time",
        "1200ms",
    ];
    let run = |extra: &[&str], name: &str| {
        let json = dir.path().join(name);
        kvxfer()
            .args(auto)
            .args(extra)
            .arg("--json")
            .arg(&json)
            .timeout(Duration::from_secs(120))
            .assert()
            .success();
        read_doc(&json)
    };
    let doc = run(&[], "six.json");
    assert_eq!(doc.config["rounds"], 6);
    let r = &doc.results[0];
    let p = &r.extra["precision"];
    assert_eq!(p["rounds"]["p50_us"].as_array().unwrap().len(), 6, "{p}");
    assert_eq!(p["stopped_by"], "max-time", "{p}");
    // 1.2 s is the size's: six rounds of 0.2 s of timed iterations (not six of 1.2 s).
    let timed = r.extra["time_s"].as_f64().unwrap();
    assert!((1.1..2.0).contains(&timed), "{timed} s timed in all");
    let one = run(&["--rounds", "1"], "one.json");
    assert_eq!(one.config["rounds"], 1);
    assert!(one.results[0].extra["precision"].get("rounds").is_none());
    // A fixed count keeps one round.
    let json = dir.path().join("fixed.json");
    kvxfer()
        .args(["pingpong", "-p", "shm", "-S", "64", "-I", "50", "--json"])
        .arg(&json)
        .assert()
        .success();
    assert_eq!(read_doc(&json).config["rounds"], 1);
}

#[test]
fn rounds_pass_over_every_size_in_turn() {
    use kvxfer::run::pingpong::PingPongConfig;
    let _g = fabric_lock();
    let cfg = PingPongConfig {
        provider: "shm".into(),
        endpoint: kvxfer::fabric::EndpointType::Rdm,
        mode: kvxfer::channel::MsgMode::Msg,
        domain: None,
        sizes: vec![64, 4096],
        iterations: Some(kvxfer::stats::Count::Fixed(20)),
        warmup: 2,
        verify: true,
        inject: true,
        timeout: Duration::from_secs(30),
        mem: Default::default(),
        rounds: 3,
        cpus: Default::default(),
    };
    let mut seen = Vec::new();
    let out = kvxfer::run::two_sided::run_local(&cfg, &mut |p| {
        seen.push((p.done, p.total, p.size));
    })
    .unwrap();
    // The initiator's progress: round by round, each size in turn.
    let sizes: Vec<u64> = seen.iter().map(|s| s.2).collect();
    assert_eq!(sizes, [64, 4096, 64, 4096, 64, 4096]);
    let done: Vec<usize> = seen.iter().map(|s| s.0).collect();
    assert_eq!(done, [1, 2, 3, 4, 5, 6]);
    assert!(seen.iter().all(|s| s.1 == 6), "{seen:?}");
    assert_rounds(&out.doc, &[64, 4096], 3, 20);
}

/// Busy loops on every CPU while it lives (killed on drop): the load under which a side
/// that closed its endpoint early crashed its peer.
struct Load(Vec<std::process::Child>);

impl Load {
    fn on_every_cpu() -> Load {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let spin = |_| {
            Std::new("sh")
                .args(["-c", "while :; do :; done"])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        };
        Load((0..cpus).map(spin).collect())
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn shm_rounds_under_load_end_each_round_on_both_sides_before_closing() {
    // An auto run's round ended for the initiator once the last reply arrived; it closed its
    // endpoint while the target still progressed that reply's send, which in one process
    // reaches the initiator's shared-memory region directly: a segfault in libfabric's shm
    // (`pthread_spin_trylock`) in 8 of 12 loaded runs before both sides met first.
    let _g = fabric_lock();
    let _load = Load::on_every_cpu();
    for run in 0..4 {
        let out = kvxfer()
            .args([
                "pingpong",
                "-p",
                "shm",
                "--sizes",
                "64,64K",
                "--iterations",
                "auto",
            ])
            .args(["--precision", "1", "--max-time", "1s"])
            .timeout(Duration::from_secs(120))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "run {run}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn rounds_out_of_range_or_unlike_the_peers_are_refused() {
    for bad in ["0", "1001", "x"] {
        kvxfer()
            .args(["pingpong", "-p", "tcp", "-S", "64", "--rounds", bad])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("--rounds"));
    }
    // Both sides must run the same rounds: the initiator is told which differs.
    let _g = fabric_lock();
    let port = free_port();
    let mut target = Std::new(kvxfer_path())
        .args([
            "pingpong", "-p", "tcp", "-S", "64", "-I", "20", "--rounds", "2",
        ])
        .args(["--timeout", "10", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    kvxfer()
        .args([
            "pingpong", "-p", "tcp", "-S", "64", "-I", "20", "--rounds", "3",
        ])
        .args(["--timeout", "10", "--peer", &format!("127.0.0.1:{port}")])
        .timeout(Duration::from_secs(30))
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "rounds is 3 here but 2 on the peer",
        ));
    let _ = target.kill();
    let _ = target.wait();
}

#[test]
fn unknown_provider_lists_available_ones() {
    kvxfer()
        .args(["pingpong", "-p", "nosuchfabric", "-S", "64"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("nosuchfabric"))
        .stderr(predicate::str::contains("available providers:"))
        .stderr(predicate::str::contains("tcp"))
        .stderr(predicate::str::contains("shm"));
}

#[test]
fn bad_sizes_are_refused() {
    for (sizes, what) in [
        ("0", "size 0 is not a message size"),
        ("10X", "unknown unit"),
        ("64,,1K", "empty size"),
    ] {
        kvxfer()
            .args(["pingpong", "-p", "tcp", "-S", sizes])
            .assert()
            .failure()
            .stderr(predicate::str::contains(what));
    }
}

#[test]
fn size_above_provider_maximum_is_refused_before_the_run() {
    // The sockets provider's maximum is 2^64 - 4097 bytes.
    let start = Instant::now();
    kvxfer()
        .args(["pingpong", "-p", "sockets", "-S", "64,18446744073709551615"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "exceeds provider sockets's maximum message size",
        ))
        .stdout(predicate::str::is_empty());
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn unreachable_peer_fails_within_timeout() {
    let port = free_port();
    let start = Instant::now();
    kvxfer()
        .args(["pingpong", "-p", "tcp", "-S", "64", "--timeout", "1"])
        .args(["--peer", &format!("127.0.0.1:{port}")])
        .timeout(Duration::from_secs(20))
        .assert()
        .failure()
        .stderr(predicate::str::contains("no kvxfer target answered"));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "gave up early: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "too slow: {took:?}");
}

#[test]
fn peer_with_other_parameters_is_refused_naming_the_parameter() {
    let port = free_port();
    let target = listening_target(
        &[
            "pingpong",
            "-p",
            "tcp",
            "-S",
            "64",
            "-I",
            "100",
            "--timeout",
            "20",
        ],
        port,
    );
    let start = Instant::now();
    kvxfer()
        .args([
            "pingpong",
            "-p",
            "tcp",
            "-S",
            "64",
            "-I",
            "200",
            "--timeout",
            "20",
        ])
        .args(["--peer", &format!("127.0.0.1:{port}")])
        .timeout(Duration::from_secs(30))
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "iterations is 200 here but 100 on the peer",
        ));
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "refusal was not immediate"
    );
    // The target told it why and waits on: a matching initiator then runs with it.
    kvxfer()
        .args(["pingpong", "-p", "tcp", "-S", "64", "-I", "100"])
        .args(["--timeout", "20", "--peer", &format!("127.0.0.1:{port}")])
        .timeout(Duration::from_secs(30))
        .assert()
        .success();
    let t = target.wait_with_output().unwrap();
    assert!(t.status.success());
    assert!(
        String::from_utf8_lossy(&t.stderr).contains("iterations is 100 here but 200 on the peer")
    );
}

#[test]
fn port_already_in_use_is_reported() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    kvxfer()
        .args(["pingpong", "-p", "tcp", "-S", "64"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .timeout(Duration::from_secs(10))
        .assert()
        .failure()
        .stderr(predicate::str::contains(format!(
            "cannot listen on 127.0.0.1:{port}"
        )))
        .stderr(predicate::str::contains("in use"));
}

#[test]
fn tagged_mode_on_an_endpoint_without_it_is_refused() {
    // tcp's MSG endpoints do not offer FI_TAGGED in libfabric 1.17.
    kvxfer()
        .args([
            "pingpong", "-p", "tcp", "-e", "msg", "-m", "tagged", "-S", "64",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("FI_EP_MSG"));
}

#[test]
fn json_write_failure_is_one_clear_error() {
    let _g = fabric_lock();
    kvxfer()
        .args(["pingpong", "-p", "tcp", "-S", "64", "-I", "5"])
        .args(["--json", "/nonexistent-dir/r.json"])
        .assert()
        .failure()
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains(
            "--json /nonexistent-dir/r.json: no directory",
        ));
}

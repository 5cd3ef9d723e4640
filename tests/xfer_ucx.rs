//! `kvxfer xfer --backend ucx` on UCX's tcp (lo) and shared-memory (posix, cma) transports:
//! put, get and tagged send with --verify, four workers into one target, transfers
//! outstanding on one worker, two processes, 672M, and bad input.

mod common;
mod xfer_support;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use kvxfer::report::ResultDoc;
use predicates::prelude::*;
use xfer_support::*;

const TCP: [(&str, &str); 2] = [("UCX_TLS", "tcp"), ("UCX_NET_DEVICES", "lo")];
const SHM: [(&str, &str); 1] = [("UCX_TLS", "posix,cma")];

fn ucx(env: &[(&str, &str)]) -> assert_cmd::Command {
    let mut c = kvxfer();
    c.env_remove("UCX_TLS").env_remove("UCX_NET_DEVICES");
    // UCX warns on stdout unless told otherwise; stdout is for the figures.
    c.env("UCX_LOG_FILE", "stderr");
    c.envs(env.iter().copied());
    c
}

/// Runs one local UCX xfer with `args` and returns its document.
fn local(env: &[(&str, &str)], args: &[&str], json: &Path) -> ResultDoc {
    ucx(env)
        .args(["xfer", "--backend", "ucx"])
        .args(args)
        .args(["--timeout", "120", "--json"])
        .arg(json)
        .timeout(Duration::from_secs(300))
        .assert()
        .success()
        .stdout(predicate::str::starts_with("Block Size (B)  Batch Size"));
    read_doc(json)
}

fn transports(doc: &ResultDoc) -> Vec<String> {
    serde_json::from_value(doc.environment.extra["ucx_transports"].clone()).unwrap()
}

#[test]
fn tcp_put_get_and_send_verify_one_process() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    for op in ["write", "read", "send"] {
        let doc = local(
            &TCP,
            &[
                "-s", "4M", "-b", "1M", "-W", "3", "-I", "3", "-w", "1", "--op", op, "--verify",
            ],
            &dir.path().join(format!("{op}.json")),
        );
        let e = Expect {
            size: 4 << 20,
            iterations: 3,
            warmup: 1,
            transfers: 1,
            verify: true,
            op,
        };
        assert_xfer_consistent(&doc, &e);
        assert_eq!(doc.config["backend"], "ucx");
        assert_eq!(doc.config["ucx_tls"], "tcp");
        assert_eq!(doc.config["ucx_net_devices"], "lo");
        assert_eq!(doc.config["chunks"], 4);
        // libfabric's fields have no meaning here and are absent.
        assert!(doc.config.get("provider").is_none());
        assert!(doc.environment.provider.is_none());
        assert_eq!(transports(&doc), ["tcp/lo"], "{op}");
        // The host's TCP counters over the timed iterations saw at least the data: 3 x 4 MiB
        // in segments of at most lo's 64 KiB.
        let tcp = &doc.results[0].extra["host_tcp"];
        assert_eq!(tcp["host"], doc.environment.host.as_str(), "{op}");
        let out = tcp["out_segs"].as_u64().unwrap();
        assert!(out >= 3 * (4 << 20) / 65536, "{op}: {out} segments");
        assert!(doc
            .environment
            .ucx_version
            .as_deref()
            .unwrap()
            .starts_with("1."));
    }
}

#[test]
fn both_thread_layouts_verify_and_close_cleanly_in_one_process() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    // pair (UCX's default): one thread drives both ends of each connection; side: the
    // target's workers in threads of their own. Four workers into parts of one target
    // allocation, every op checked byte for byte.
    for (layout, op) in [
        (None, "write"),
        (Some("pair"), "read"),
        (Some("pair"), "send"),
        (Some("side"), "write"),
        (Some("side"), "send"),
    ] {
        let json = dir.path().join(format!("{op}-{layout:?}.json"));
        let mut args = vec![
            "-s", "2M", "-b", "512K", "-c", "4", "--reuse", "-I", "2", "-w", "1", "--op", op,
            "--verify",
        ];
        args.extend(layout.iter().flat_map(|l| ["--local-threads", *l]));
        let out = ucx(&TCP)
            .args(["xfer", "--backend", "ucx"])
            .args(&args)
            .args(["--timeout", "60", "--json"])
            .arg(&json)
            .timeout(Duration::from_secs(180))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{layout:?} {op}: {stderr}");
        // Both ends of a pair close while the other's worker still progresses: no endpoint
        // close times out or meets a reset. (In the side layout the two threads end on their
        // own and one end's close now and then meets the other's reset: a warning.)
        if layout != Some("side") {
            assert!(
                !stderr.contains("closing a UCX endpoint") && !stderr.contains("UCX  ERROR"),
                "{layout:?} {op}: {stderr}"
            );
        }
        let doc = read_doc(&json);
        let e = Expect {
            size: 2 << 20,
            iterations: 2,
            warmup: 1,
            transfers: 4,
            verify: true,
            op,
        };
        assert_xfer_consistent(&doc, &e);
        assert_eq!(
            doc.config["local_threads"],
            layout.unwrap_or("pair"),
            "{op}"
        );
        // Every worker has its own pair (its target worker index is its own).
        let workers = doc.results[0].extra["workers"].as_array().unwrap();
        assert_eq!(workers.len(), 4, "{layout:?} {op}");
    }
}

#[test]
fn pair_layout_is_ucx_only_and_one_process_only() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("lf.json");
    kvxfer()
        .args([
            "xfer", "-p", "tcp", "-d", "lo", "-s", "64K", "-I", "1", "-w", "0",
        ])
        .args(["--local-threads", "pair", "--json"])
        .arg(&json)
        .timeout(Duration::from_secs(60))
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "libfabric's connection set-up does not allow: use --local-threads side",
        ));
    assert!(!json.exists());
    ucx(&TCP)
        .args(["xfer", "--backend", "ucx", "--local-threads", "pair"])
        .args(["--peer", "127.0.0.1:1"])
        .timeout(Duration::from_secs(30))
        .assert()
        .failure()
        .stderr(predicate::str::contains("--local-threads"));
}

#[test]
fn shared_memory_four_workers_into_one_target() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let doc = local(
        &SHM,
        &[
            "-s",
            "8M",
            "-c",
            "4",
            "--scheme",
            "many-to-one",
            "-I",
            "2",
            "-w",
            "1",
            "--verify",
        ],
        &dir.path().join("r.json"),
    );
    let e = Expect {
        size: 8 << 20,
        iterations: 2,
        warmup: 1,
        transfers: 4,
        verify: true,
        op: "write",
    };
    assert_xfer_consistent(&doc, &e);
    assert_eq!(doc.config["scheme"], "many_to_one");
    let t = transports(&doc);
    assert!(
        t.iter().any(|t| t == "posix/memory" || t == "cma/memory"),
        "{t:?}"
    );
}

#[test]
fn transfers_outstanding_on_one_worker_with_reuse() {
    // Three transfers on one endpoint: a flush for one waits for the others' puts too, and
    // each transfer must still be confirmed on its own.
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    for op in ["write", "send"] {
        let doc = local(
            &SHM,
            &[
                "-s",
                "2M",
                "-b",
                "512K",
                "-c",
                "3",
                "--concurrency-mode",
                "outstanding",
                "--reuse",
                "-I",
                "3",
                "-w",
                "1",
                "--op",
                op,
                "--verify",
            ],
            &dir.path().join(format!("{op}.json")),
        );
        let e = Expect {
            size: 2 << 20,
            iterations: 3,
            warmup: 1,
            transfers: 3,
            verify: true,
            op,
        };
        assert_xfer_consistent(&doc, &e);
        assert_eq!(doc.config["workers"], 1);
    }
}

#[test]
fn tcp_two_processes_verify() {
    let _g = fabric_lock();
    let e = Expect {
        size: 8 << 20,
        iterations: 3,
        warmup: 1,
        transfers: 1,
        verify: true,
        op: "write",
    };
    let (idoc, _) = two_processes_consistent(
        &TCP,
        &[
            "xfer",
            "--backend",
            "ucx",
            "-s",
            "8M",
            "-I",
            "3",
            "-w",
            "1",
            "--verify",
        ],
        &e,
    );
    assert_eq!(transports(&idoc), ["tcp/lo"]);
}

#[test]
fn shared_memory_672m_two_processes() {
    let _g = fabric_lock();
    let e = Expect {
        size: 672 << 20,
        iterations: 1,
        warmup: 1,
        transfers: 1,
        verify: false,
        op: "write",
    };
    let (idoc, _) = two_processes_consistent(
        &SHM,
        &[
            "xfer",
            "--backend",
            "ucx",
            "-s",
            "672M",
            "-I",
            "1",
            "-w",
            "1",
        ],
        &e,
    );
    assert_eq!(idoc.config["chunks"], 168);
}

#[test]
fn libfabric_options_are_refused_with_the_ucx_backend() {
    for (opt, val) in [
        ("--provider", "efa"),
        ("--endpoint", "msg"),
        ("--domain", "lo"),
    ] {
        let start = Instant::now();
        ucx(&TCP)
            .args(["xfer", "--backend", "ucx", "-s", "1M", opt, val])
            .timeout(Duration::from_secs(20))
            .assert()
            .failure()
            .stderr(predicate::str::contains(format!(
                "{opt} chooses a libfabric fabric"
            )))
            .stderr(predicate::str::contains("UCX_TLS"))
            .stdout(predicate::str::is_empty());
        assert!(start.elapsed() < Duration::from_secs(10));
    }
}

#[test]
fn unknown_transport_in_ucx_tls_is_reported() {
    let _g = fabric_lock();
    ucx(&[("UCX_TLS", "nosuchtl")])
        .args([
            "xfer",
            "--backend",
            "ucx",
            "-s",
            "1M",
            "-I",
            "1",
            "--timeout",
            "10",
        ])
        .timeout(Duration::from_secs(60))
        .assert()
        .failure()
        .stderr(predicate::str::contains("ucp_init failed"))
        .stderr(predicate::str::contains("UCX_TLS=nosuchtl"))
        .stdout(predicate::str::is_empty());
}

#[test]
fn a_libfabric_initiator_is_refused_by_a_ucx_target() {
    let _g = fabric_lock();
    let port = free_port();
    let common = ["xfer", "-s", "1M", "-I", "1"];
    // The target refuses the initiator and waits on for another until its --timeout: a short
    // one, since none comes.
    let target = std::process::Command::new(kvxfer_path())
        .envs(TCP)
        .args(common)
        .args(["--timeout", "3", "--backend", "ucx"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ini = kvxfer()
        .args(common)
        .args(["--timeout", "10", "-p", "tcp"])
        .args(["--peer", &format!("127.0.0.1:{port}")])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let t = target.wait_with_output().unwrap();
    assert!(!ini.status.success() && !t.status.success());
    let both = format!(
        "{}{}",
        String::from_utf8_lossy(&ini.stderr),
        String::from_utf8_lossy(&t.stderr)
    );
    assert!(both.contains("backend"), "{both}");
}

#[test]
fn a_target_whose_initiator_dies_mid_run_fails_within_its_timeout() {
    let _g = fabric_lock();
    let port = free_port();
    let args = [
        "xfer",
        "--backend",
        "ucx",
        "-s",
        "64M",
        "-I",
        "100000",
        "-w",
        "0",
        "--timeout",
        "3",
        // Tagged sends: with RMA writes over UCX 1.22's tcp, the target's UCX itself aborts
        // ("Fatal: unexpected error: Endpoint timeout" in ucp_put_handler, acknowledging a put
        // of the dead peer) before kvxfer sees any error, whatever the endpoint's error mode.
        "--op",
        "send",
    ];
    // The target runs under `timeout`, which bounds a hang: the test then fails on the elapsed
    // time instead of waiting. The initiator is the process itself, so that killing it kills it.
    let spawn = |wrap: bool, side: &[&str]| {
        let mut c = if wrap {
            let mut c = std::process::Command::new("timeout");
            c.args(["-k", "5", "30"]).arg(kvxfer_path());
            c
        } else {
            std::process::Command::new(kvxfer_path())
        };
        c.envs(TCP)
            .env("UCX_LOG_FILE", "stderr")
            .args(args)
            .args(side)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let target = spawn(true, &["--listen", &format!("127.0.0.1:{port}")]);
    std::thread::sleep(Duration::from_millis(500));
    let mut ini = spawn(false, &["--peer", &format!("127.0.0.1:{port}")]);
    std::thread::sleep(Duration::from_millis(1500));
    ini.kill().unwrap();
    ini.wait().unwrap();
    let killed = Instant::now();
    let t = target.wait_with_output().unwrap();
    assert!(!t.status.success());
    // Three seconds of time-out, then the report: not a hang.
    assert!(
        killed.elapsed() < Duration::from_secs(20),
        "{:?}",
        killed.elapsed()
    );
    let err = String::from_utf8_lossy(&t.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("kvxfer: error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

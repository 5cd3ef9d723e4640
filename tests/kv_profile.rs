//! `kvxfer kv profile` on the loopback: libfabric tcp and shm and UCX tcp with --verify, one
//! process and two, the idle gap of xfer, a failure part-way, and mismatched peers.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use kvxfer::report::ResultDoc;
use predicates::prelude::*;

/// Checks a kv_profile document: every part present, descriptor counts from the model, the
/// decomposition adding up, every byte verified.
fn assert_profile(doc: &ResultDoc, tokens: &[u64], io: u64, gaps: &[u64], iterations: u64) {
    assert_eq!(doc.bench, "kv_profile");
    assert_eq!(doc.layer, "L2");
    assert_eq!(
        doc.status,
        kvxfer::report::Status::Complete,
        "{:?}",
        doc.errors
    );
    assert_eq!(doc.config["kv_bytes_per_token"], 57_344);
    assert_eq!(doc.config["io_size"], io);
    let ss = &doc.environment.extra["tcp_slow_start_after_idle"];
    let on_linux = Path::new("/proc/sys/net/ipv4/tcp_slow_start_after_idle").exists();
    assert_eq!(ss.is_i64(), on_linux, "{ss}");
    assert_eq!(doc.results.len(), tokens.len());
    for (r, &t) in doc.results.iter().zip(tokens) {
        // The cache, and what a transfer moves: KVBench's batch of whole descriptors.
        let cache = 57_344 * t;
        let bytes = cache.div_ceil(io) * io;
        assert_eq!(r.message_size, bytes);
        assert_eq!(r.extra["kv_cache_size_bytes"], cache);
        assert_eq!(r.iterations, iterations);
        let e = &r.extra;
        // Its precision: the back-to-back run's median interval, of the same iterations.
        assert_eq!(e["precision"]["iterations"], iterations, "{e:?}");
        assert_eq!(e["precision"]["stopped_by"], "fixed", "{e:?}");
        let iv = &e["precision"]["p50_interval_us"];
        let l50 = r.latency_us.unwrap().p50;
        assert!(
            iv[0].as_f64().unwrap() <= l50 && l50 <= iv[1].as_f64().unwrap(),
            "{e:?}"
        );
        assert_eq!(
            e["per_descriptor"]["contiguous_precision"]["iterations"], iterations,
            "{e:?}"
        );
        assert_eq!(e["tokens"], t);
        assert_eq!(e["descriptors"], bytes.div_ceil(io));
        let l = r.latency_us.unwrap();
        assert!(l.p50 > 0.0 && l.p50 <= l.p99);
        assert_eq!(e["transfer_us"]["p50"], l.p50);
        assert!(e["cold_warm"]["cold_us"].as_f64().unwrap() > 0.0);
        for k in ["cold_us", "cached_us", "target_cold_us", "per_request_us"] {
            assert!(e["registration"][k].as_f64().unwrap() >= 0.0, "{k}");
        }
        // The back-to-back run's threads: at least the initiator's read.
        let ws = &e["scheduling"]["initiator"]["waiting_pct"];
        assert!(
            ws.as_f64().is_some_and(|w| (0.0..=100.0).contains(&w)),
            "{e:?}"
        );
        // Its payload against the CPU caches: what one side moves per transfer.
        assert_eq!(e["cache"]["host_payload_bytes"], bytes, "{e:?}");
        // Host memory on both ends: each states its huge-page share.
        for k in ["huge_page_pct", "target_huge_page_pct"] {
            let pct = e["registration"][k].as_f64().unwrap();
            assert!((0.0..=100.0).contains(&pct), "{k}: {pct}");
        }
        let pd = &e["per_descriptor"];
        assert_eq!(pd["descriptors"], e["descriptors"]);
        assert!(pd["contiguous_chunks"].as_u64().unwrap() < pd["descriptors"].as_u64().unwrap());
        let diff = pd["descriptor_list_p50_us"].as_f64().unwrap()
            - pd["contiguous_p50_us"].as_f64().unwrap();
        let n = (pd["descriptors"].as_u64().unwrap() - pd["contiguous_chunks"].as_u64().unwrap())
            as f64;
        // The difference with its interval; a cost only where the interval lies above 0.
        let dd = &pd["difference"];
        assert!((dd["us"].as_f64().unwrap() - diff).abs() < 1e-6, "{dd}");
        let above = dd["interval_us"][0].as_f64().is_some_and(|lo| lo > 0.0);
        let cost = dd["cost_us"].as_f64().unwrap();
        assert_eq!(
            cost,
            if above {
                dd["us"].as_f64().unwrap()
            } else {
                0.0
            },
            "{dd}"
        );
        assert_eq!(
            dd["verdict"].as_str().unwrap().starts_with("none measured"),
            !above,
            "{dd}"
        );
        assert!((pd["per_descriptor_us"].as_f64().unwrap() - cost / n).abs() < 1e-6);
        let got: Vec<u64> = e["slow_start"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["idle_ms"].as_u64().unwrap())
            .collect();
        assert_eq!(got, gaps);
        let d = &e["decomposition"];
        let x = |k: &str| d[k].as_f64().unwrap_or_else(|| panic!("{k}: {d}"));
        let sum = x("theoretical_ms")
            + x("registration_ms")
            + x("slow_start_ms")
            + x("per_descriptor_ms")
            + x("remainder_ms");
        assert!((sum - x("measured_ms")).abs() < 1e-6, "{d}");
        // bytes / 2.9e9 B/s (tcp's default link rate), in ms
        assert!((x("theoretical_ms") - bytes as f64 / 2.9e6).abs() < 1e-9);
        if let Some(&g) = gaps.last() {
            // Slow start counts only where its interval lies above 0, and never negative.
            let over = &e["slow_start"][gaps.len() - 1]["over_back_to_back"];
            let cost = over["cost_us"].as_f64().unwrap();
            assert!((x("slow_start_ms") - cost / 1e3).abs() < 1e-9);
            assert!(x("slow_start_ms") >= 0.0);
            let iv = over["interval_us"].as_array().unwrap();
            let lo = iv[0].as_f64().unwrap();
            assert_eq!(cost > 0.0, lo > 0.0, "{over}");
            assert!(d["measured_is"]
                .as_str()
                .unwrap()
                .contains(&format!("{g} ms idle")));
        }
        // Every run of this prompt length checked every byte of every transfer: warm-up and
        // timed, the descriptor list, the contiguous transfer and each gap's.
        let runs = 2 + gaps.len() as u64;
        assert_eq!(e["verified_bytes"], bytes * (iterations + 1) * runs);
    }
}

fn profile(env: &[(&str, &str)], args: &[&str], json: &Path) -> String {
    let out = kvxfer()
        .env_remove("UCX_TLS")
        .env_remove("UCX_NET_DEVICES")
        .env("UCX_LOG_FILE", "stderr")
        .envs(env.iter().copied())
        .args([
            "kv",
            "profile",
            "--model",
            "qwen2.5-7b",
            "--tokens",
            "32,100",
            "--idle-ms",
            "0,250",
            "-I",
            "3",
            "-w",
            "1",
            "--verify",
            "--timeout",
            "60",
            "--json",
        ])
        .arg(json)
        .args(args)
        .timeout(Duration::from_secs(300))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    String::from_utf8(out).unwrap()
}

#[test]
fn profile_libfabric_tcp_and_shm_verify() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("tcp.json");
    // page 16, layer pattern: 28 layers' 2,048 B x 16 = 32 KiB descriptors
    let table = profile(&[], &["--provider", "tcp", "--domain", "lo"], &j);
    assert!(table.contains("idle250(ms)"), "{table}");
    assert!(
        table.lines().any(|l| l.trim_start().starts_with("100 ")),
        "{table}"
    );
    let doc = read_doc(&j);
    assert_profile(&doc, &[32, 100], 32_768, &[250], 3);
    assert_eq!(doc.config["provider"], "tcp");
    assert_eq!(doc.results[0].extra["cache"]["evicted_before_each"], false);
    let j = dir.path().join("shm.json");
    let table = profile(
        &[],
        &[
            "--provider",
            "shm",
            "--access-pattern",
            "block",
            "--pp",
            "4",
            "--page-size",
            "4",
            "--cold-cache",
        ],
        &j,
    );
    // block: 2,048 x 28 / 4 layers x 4 tokens
    let doc = read_doc(&j);
    assert_profile(&doc, &[32, 100], 57_344, &[250], 3);
    for r in &doc.results {
        assert_eq!(
            r.extra["cache"]["evicted_before_each"], true,
            "{:?}",
            r.extra
        );
    }
    assert!(
        table.contains("32: cache: each side evicted its host payload"),
        "{table}"
    );
}

#[test]
fn profile_ucx_tcp_verify() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("ucx.json");
    profile(
        &[("UCX_TLS", "tcp"), ("UCX_NET_DEVICES", "lo")],
        &["--backend", "ucx", "--page-size", "64"],
        &j,
    );
    let doc = read_doc(&j);
    assert_profile(&doc, &[32, 100], 131_072, &[250], 3);
    assert_eq!(doc.config["backend"], "ucx");
}

#[test]
fn profile_two_processes() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "kv",
        "profile",
        "--model",
        "qwen2.5-7b",
        "--tokens",
        "32",
        "--idle-ms",
        "0,100",
        "-I",
        "2",
        "--verify",
        "--provider",
        "tcp",
        "--timeout",
        "60",
    ];
    let (ini, tgt) = target_and_initiator(&args, dir.path());
    assert!(
        ini.status.success(),
        "{}",
        String::from_utf8_lossy(&ini.stderr)
    );
    assert!(
        tgt.status.success(),
        "{}",
        String::from_utf8_lossy(&tgt.stderr)
    );
    let i = read_doc(&dir.path().join("i.json"));
    assert_profile(&i, &[32], 32_768, &[100], 2);
    let t = read_doc(&dir.path().join("t.json"));
    assert_eq!(t.bench, "kv_profile");
    assert_eq!(
        t.results[0].extra["descriptors"],
        i.results[0].extra["descriptors"]
    );
}

#[test]
fn a_failure_keeps_the_prompt_lengths_done() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let common = [
        "kv",
        "profile",
        "--model",
        "qwen2.5-7b",
        "--idle-ms",
        "0",
        "-I",
        "2",
        "--provider",
        "tcp",
        "--timeout",
        "3",
    ];
    // The target serves the 32-token runs only; the initiator then finds no one for 64.
    let target = std::process::Command::new(kvxfer_path())
        .args(common)
        .args(["--tokens", "32", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let json = dir.path().join("i.json");
    kvxfer()
        .args(common)
        .args([
            "--tokens",
            "32,64",
            "--peer",
            &format!("127.0.0.1:{port}"),
            "--json",
        ])
        .arg(&json)
        .timeout(Duration::from_secs(120))
        .assert()
        .failure()
        .stdout("")
        .stderr(predicate::str::contains(
            "the prompt lengths finished before the failure are in",
        ));
    let t = target.wait_with_output().unwrap();
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    let doc = read_doc(&json);
    assert_eq!(doc.status, kvxfer::report::Status::Partial);
    assert_eq!(doc.results.len(), 1);
    assert_eq!(doc.results[0].extra["tokens"], 32);
    assert_eq!(doc.results[0].message_size, 32 * 57_344);
}

#[test]
fn xfer_idles_before_each_timed_iteration() {
    use kvxfer::fabric::EndpointType;
    use kvxfer::run::xfer::{
        run_local, ConcurrencyMode, LocalThreads, Scheme, XferBackend, XferConfig, XferProgress,
    };
    use kvxfer::xfer::XferOp;
    let _g = fabric_lock();
    let cfg = XferConfig {
        backend: XferBackend::Libfabric,
        provider: "tcp".into(),
        endpoint: EndpointType::Rdm,
        domain: Some("lo".into()),
        op: XferOp::Write,
        size: 64 << 10,
        block: None,
        window: 4,
        concurrency: 1,
        mode: ConcurrencyMode::Endpoints,
        scheme: Scheme::Pairwise,
        iterations: kvxfer::stats::Count::Fixed(3),
        warmup: 1,
        verify: false,
        reuse: false,
        cold_cache: false,
        timeout: Duration::from_secs(30),
        idle_before_timed: Duration::from_millis(600),
        rails: None,
        stripe_threshold: kvxfer::run::xfer::DEFAULT_STRIPE_THRESHOLD,
        mem: Default::default(),
        open: None,
        rounds: 1,
        cpus: Default::default(),
    };
    let t = std::time::Instant::now();
    let doc = run_local(&cfg, LocalThreads::Side, &XferProgress::default()).unwrap();
    // Three timed iterations, each after 600 ms of idle; the gap is not in the samples.
    assert!(
        t.elapsed() >= Duration::from_millis(1800),
        "{:?}",
        t.elapsed()
    );
    let p50_ms = doc.results[0].latency_us.unwrap().p50 / 1e3;
    assert!(p50_ms < 600.0, "{p50_ms}");
}

#[test]
fn peers_with_different_idle_gaps_are_refused() {
    let _g = fabric_lock();
    let port = free_port().to_string();
    let args = |idle: &str| {
        [
            "kv",
            "profile",
            "--model",
            "qwen2.5-7b",
            "--tokens",
            "8",
            "-I",
            "1",
            "--provider",
            "tcp",
            "--idle-ms",
        ]
        .into_iter()
        .map(String::from)
        .chain([idle.to_string()])
        .collect::<Vec<_>>()
    };
    // The target refuses the idle run and goes on waiting for a matching initiator until its
    // --timeout: a short one, since none comes.
    let target = std::process::Command::new(kvxfer_path())
        .args(args("0,100"))
        .args(["--timeout", "3", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The back-to-back and contiguous runs agree; the idle run's parameters do not.
    kvxfer()
        .args(args("0,200"))
        .args(["--timeout", "20", "--peer", &format!("127.0.0.1:{port}")])
        .timeout(Duration::from_secs(120))
        .assert()
        .failure()
        .stderr(predicate::str::contains("idle_ms"));
    let t = target.wait_with_output().unwrap();
    assert!(!t.status.success());
    let err = String::from_utf8_lossy(&t.stderr);
    assert!(
        err.contains("refused one initiator") && err.contains("idle_ms is 100 here but 200"),
        "{err}"
    );
}

#[test]
fn kvbench_and_the_profile_pair_in_the_crosscheck() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    // KVBench's printed output for Qwen2.5-7B, 100 tokens, layer pattern, page 16: 175 blocks
    // of 32,768 B (the older six-column nixlbench table).
    let raw = "Model Config: layer.yaml\nISL: 100 tokens\nPage Size: 16\nRequests: 1\nTP: 1\n\
        PP: 1\n================================================================================\n\
        Loaded plugin UCX\n\
        Block Size (B)      Batch Size     Avg Lat. (us)  B/W (MiB/Sec)  B/W (GiB/Sec)  B/W (GB/Sec)\n\
        --------------------------------------------------------------------------------\n\
        32768               175            12.5           2500.0         2.441406       2.621440\n";
    let txt = dir.path().join("kvb.txt");
    std::fs::write(&txt, raw).unwrap();
    kvxfer()
        .args(["parse", "--tool", "kvbench"])
        .arg(&txt)
        .arg("--json")
        .arg(dir.path().join("pll-kvbench-lo-100.ref.json"))
        .assert()
        .success();
    let own = dir.path().join("pll-kvbench-lo-100.json");
    kvxfer()
        .args([
            "kv",
            "profile",
            "--model",
            "qwen2.5-7b",
            "--tokens",
            "100",
            "--idle-ms",
            "0",
            "-I",
            "3",
            "--provider",
            "tcp",
            "--domain",
            "lo",
            "--pattern-id",
            "pll-kvbench-lo-100",
            "--json",
        ])
        .arg(&own)
        .timeout(Duration::from_secs(120))
        .assert()
        .success();
    kvxfer()
        .arg("crosscheck")
        .arg(dir.path())
        .assert()
        .success();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("crosscheck.json")).unwrap())
            .unwrap();
    let rows = report["rows"].as_array().unwrap();
    let row = |m: &str| {
        rows.iter()
            .find(|r| r["metric"] == m)
            .unwrap_or_else(|| panic!("{m}: {report}"))
    };
    // 100 tokens x 57,344 B = 175 x 32,768: both sides moved the same bytes.
    let bw = row("bandwidth_mbps");
    assert_eq!(bw["message_size"], 5_734_400);
    assert_eq!(bw["reference"], 2621.44);
    let kv = bw["kvxfer"].as_f64().unwrap();
    assert!((bw["ratio"].as_f64().unwrap() - kv / 2621.44).abs() < 1e-9);
    assert_ne!(bw["verdict"], "not_comparable");
    let lat = row("latency_us.mean");
    assert_eq!(lat["verdict"], "not_comparable");
    assert!(
        lat["reason"].as_str().unwrap().contains("per block"),
        "{lat}"
    );
    assert!(
        report["unpaired"].as_array().unwrap().is_empty(),
        "{report}"
    );
}

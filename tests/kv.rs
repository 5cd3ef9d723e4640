//! `kvxfer kv size|plan|profile`: the arithmetic against hand-computed values for every input
//! form, KVBench's plan example, profiles over libfabric tcp and shm and UCX tcp on the
//! loopback with --verify (one process and two), and bad input.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use kvxfer::report::ResultDoc;
use predicates::prelude::*;
use serde_json::Value;

const LLAMA_8B_YAML: &str = "model_name: 'LLAMA3.1_8B'\nnum_layers: 32\n\
    num_query_heads_with_mha: 32\nquery_head_dimension: 128\ngqa_num_queries_in_group: 4\n\
    num_model_params: 8000000000\n";
const BLOCK_TP1_PP8: &str =
    "strategy:\n  tp_size: 1\n  pp_size: 8\n  model_quant_mode: \"fp8\"\n  \
    kvcache_quant_mode: \"fp8\"\nruntime:\n  isl: 1000\n  osl: 100\n  num_requests: 10\n\
    system:\n  hardware: \"H100\"\n  backend: \"SGLANG\"\n  access_pattern: \"block\"\n  \
    page_size: 16\n";
const QWEN_HF: &str = r#"{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 3584,
    "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4,
    "torch_dtype": "bfloat16"}"#;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn json_out(args: &[&str]) -> Value {
    let out = kvxfer()
        .args(args)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
}

#[test]
fn size_qwen_12k_is_672_mib() {
    let v = json_out(&[
        "kv",
        "size",
        "--model",
        "qwen2.5-7b",
        "--tokens",
        "12288",
        "--json",
    ]);
    assert_eq!(v["kv_bytes_per_token"], 57_344);
    let r = &v["rows"][0];
    assert_eq!(r["kv_bytes"], 704_643_072u64);
    // 704,643,072 B at 4.4e9 and 2.9e9 B/s
    let ms: Vec<f64> = r["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["theoretical_ms"].as_f64().unwrap())
        .collect();
    assert!((ms[0] - 160.146_152_7).abs() < 1e-6, "{ms:?}");
    assert!((ms[1] - 242.980_369_7).abs() < 1e-6, "{ms:?}");
    // The spec's own figures (149 and 226 ms) read the rates as GiB/s.
    let spec: Vec<f64> = r["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["spec_gib_ms"].as_f64().unwrap().round())
        .collect();
    assert_eq!(spec, [149.0, 226.0]);
    kvxfer()
        .args(["kv", "size", "--model", "qwen2.5-7b"])
        .assert()
        .success()
        .stdout(predicate::str::contains("57344 bytes per token"))
        .stdout(predicate::str::contains("    1000        57344000"))
        .stdout(predicate::str::contains("   20000      1146880000"));
}

#[test]
fn size_from_every_input_form() {
    let dir = tempfile::tempdir().unwrap();
    let hf = write(dir.path(), "config.json", QWEN_HF);
    let v = json_out(&["kv", "size", "--model", &hf, "--tokens", "1000", "--json"]);
    assert_eq!(v["rows"][0]["kv_bytes"], 57_344_000u64);
    // --kv-dtype fp8 halves bf16.
    let v = json_out(&[
        "kv",
        "size",
        "--model",
        &hf,
        "--tokens",
        "1000",
        "--kv-dtype",
        "fp8",
        "--json",
    ]);
    assert_eq!(v["rows"][0]["kv_bytes"], 28_672_000u64);
    // KVBench's model YAML has no element type: KVBench's default fp8, or --kv-dtype.
    let y = write(dir.path(), "llama.yaml", LLAMA_8B_YAML);
    let v = json_out(&["kv", "size", "--model", &y, "--tokens", "1", "--json"]);
    assert_eq!(v["kv_bytes_per_token"], 32 * 8 * 128 * 2);
    let v = json_out(&[
        "kv",
        "size",
        "--model",
        &y,
        "--tokens",
        "1",
        "--kv-dtype",
        "bf16",
        "--json",
    ]);
    assert_eq!(v["kv_bytes_per_token"], 32 * 8 * 128 * 2 * 2);
    // MLA preset: (512 + 64) x 2 bytes x 61 layers.
    let v = json_out(&[
        "kv",
        "size",
        "--model",
        "deepseek-r1",
        "--tokens",
        "1",
        "--link-gbps",
        "4.4",
        "--json",
    ]);
    assert_eq!(v["kv_bytes_per_token"], 70_272);
    assert!(v["rows"][0]["difference_ms"].is_null());
}

#[test]
fn plan_reproduces_kvbench_example() {
    let dir = tempfile::tempdir().unwrap();
    let m = write(dir.path(), "model_llama_3_1_8b.yaml", LLAMA_8B_YAML);
    let c = write(dir.path(), "block-tp1-pp8.yaml", BLOCK_TP1_PP8);
    let want = format!(
        "{rule}\nModel Config: {c}\nISL: 1000 tokens\nPage Size: 16\nRequests: 10\nTP: 1\nPP: 8\n\
         {rule}\nnixlbench \\\n    --max_batch_size 5000 \\\n    --max_block_size 131072 \\\n    \
         --start_batch_size 5000 \\\n    --start_block_size 131072 \\\n    \
         --total_buffer_size 655360000\n\n",
        rule = "=".repeat(80)
    );
    kvxfer()
        .args(["kv", "plan", "--model", &m, "--model-config", &c])
        .assert()
        .success()
        .stdout(want);
    let v = json_out(&[
        "kv",
        "plan",
        "--model",
        &m,
        "--model-config",
        &c,
        "--format",
        "json",
    ]);
    let p = &v[0];
    assert_eq!(p["start_block_size"], 131_072);
    assert_eq!(p["max_batch_size"], 5_000);
    assert_eq!(p["total_buffer_size"], 655_360_000u64);
    assert_eq!(p["backend"], "UCX");
    assert_eq!(p["config_file"], c.as_str());
    assert_eq!(p["kvxfer"]["kv_bytes_per_token"], 65_536);
    // The same example from the preset, with the config given as overrides.
    let v = json_out(&[
        "kv",
        "plan",
        "--model",
        "llama-3.1-8b",
        "--kv-dtype",
        "fp8",
        "--tp",
        "1",
        "--pp",
        "8",
        "--access-pattern",
        "block",
        "--page-size",
        "16",
        "--isl",
        "1000",
        "--num-requests",
        "10",
        "--format",
        "json",
    ]);
    assert_eq!(v[0]["start_block_size"], 131_072);
    assert_eq!(v[0]["start_batch_size"], 5_000);
    let out = kvxfer()
        .args([
            "kv",
            "plan",
            "--model",
            &m,
            "--model-config",
            &c,
            "--format",
            "csv",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |k: &str| {
        row[head
            .iter()
            .position(|h| *h == k)
            .unwrap_or_else(|| panic!("{k}"))]
    };
    assert_eq!(col("max_block_size"), "131072");
    assert_eq!(col("model_strategy_pp_size"), "8");
    assert_eq!(col("model_system_access_pattern"), "block");
    let mut sorted = head.clone();
    sorted.sort();
    assert_eq!(head, sorted);
}

#[test]
fn plan_overrides_change_the_arithmetic() {
    let dir = tempfile::tempdir().unwrap();
    let m = write(dir.path(), "m.yaml", LLAMA_8B_YAML);
    let c = write(dir.path(), "c.yaml", BLOCK_TP1_PP8);
    // layer pattern, tp 2: 2,048 / 2 x 16 = 16,384-byte blocks; 65,536 x 4096 x 10 / 16,384.
    let v = json_out(&[
        "kv",
        "plan",
        "--model",
        &m,
        "--model-config",
        &c,
        "--tp",
        "2",
        "--access-pattern",
        "layer",
        "--isl",
        "4096",
        "--backend",
        "LIBFABRIC",
        "--initiator-seg-type",
        "VRAM",
        "--format",
        "json",
    ]);
    assert_eq!(v[0]["max_block_size"], 16_384);
    assert_eq!(v[0]["max_batch_size"], 163_840);
    assert_eq!(v[0]["backend"], "LIBFABRIC");
    kvxfer()
        .args([
            "kv",
            "plan",
            "--model",
            &m,
            "--model-config",
            &c,
            "--target-seg-type",
            "VRAM",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("--target_seg_type VRAM"))
        .stdout(predicate::str::contains("--backend").not());
}

#[test]
fn bad_input_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let fail = |args: &[&str], want: &str| {
        kvxfer()
            .args(args)
            .assert()
            .failure()
            .stdout("")
            .stderr(predicate::str::contains(want));
    };
    fail(
        &["kv", "size", "--model", "qwen9-1b"],
        "qwen2.5-7b, llama-3.1-8b, llama-3.1-70b, qwen3-8b, deepseek-r1, gpt-oss-20b",
    );
    let hf = write(
        dir.path(),
        "c.json",
        r#"{"hidden_size": 4096, "num_attention_heads": 32, "torch_dtype": "bf16"}"#,
    );
    fail(&["kv", "size", "--model", &hf], "num_hidden_layers");
    let y = write(
        dir.path(),
        "m.yaml",
        "model_name: x\nnum_layers: 4\nnum_kv_heads: 2\n",
    );
    fail(&["kv", "size", "--model", &y], "query_head_dimension");
    let bad = write(dir.path(), "bad.yaml", "num_layers: [1, 2\n");
    fail(&["kv", "size", "--model", &bad], "not a valid YAML file");
    fail(
        &["kv", "size", "--model", "qwen2.5-7b", "--tokens", "0"],
        "--tokens",
    );
    fail(
        &["kv", "size", "--model", "qwen2.5-7b", "--kv-dtype", "fp4"],
        "fp4",
    );
    fail(
        &["kv", "plan", "--model", "qwen2.5-7b", "--page-size", "0"],
        "--page-size",
    );
    fail(
        &["kv", "plan", "--model", "qwen2.5-7b", "--pp", "29"],
        "above the layer count",
    );
    fail(
        &["kv", "plan", "--model", "qwen2.5-7b", "--isl", "0"],
        "--isl",
    );
    fail(
        &[
            "kv",
            "profile",
            "--model",
            "qwen2.5-7b",
            "--tokens",
            "0",
            "--provider",
            "tcp",
        ],
        "--tokens",
    );
    fail(
        &["kv", "profile", "--model", "qwen2.5-7b", "--pp", "40"],
        "above the layer count",
    );
    fail(
        &[
            "kv",
            "profile",
            "--model",
            "qwen2.5-7b",
            "--backend",
            "ucx",
            "--provider",
            "tcp",
        ],
        "UCX_TLS",
    );
    fail(
        &[
            "kv",
            "profile",
            "--model",
            "deepseek-r1",
            "--kv-split",
            "--provider",
            "tcp",
        ],
        "MLA",
    );
    let cfg = write(
        dir.path(),
        "cfg.yaml",
        "system:\n  access_pattern: diagonal\n",
    );
    fail(
        &[
            "kv",
            "plan",
            "--model",
            "qwen2.5-7b",
            "--model-config",
            &cfg,
        ],
        "block or layer",
    );
}

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
        let bytes = 57_344 * t;
        assert_eq!(r.message_size, bytes);
        assert_eq!(r.iterations, iterations);
        let e = &r.extra;
        assert_eq!(e["tokens"], t);
        assert_eq!(e["descriptors"], bytes.div_ceil(io));
        let l = r.latency_us.unwrap();
        assert!(l.p50 > 0.0 && l.p50 <= l.p99);
        assert_eq!(e["transfer_us"]["p50"], l.p50);
        assert!(e["cold_warm"]["cold_us"].as_f64().unwrap() > 0.0);
        for k in ["cold_us", "cached_us", "target_cold_us", "per_request_us"] {
            assert!(e["registration"][k].as_f64().unwrap() >= 0.0, "{k}");
        }
        let pd = &e["per_descriptor"];
        assert_eq!(pd["descriptors"], e["descriptors"]);
        assert!(pd["contiguous_chunks"].as_u64().unwrap() < pd["descriptors"].as_u64().unwrap());
        let diff = pd["descriptor_list_p50_us"].as_f64().unwrap()
            - pd["contiguous_p50_us"].as_f64().unwrap();
        let n = (pd["descriptors"].as_u64().unwrap() - pd["contiguous_chunks"].as_u64().unwrap())
            as f64;
        assert!((pd["per_descriptor_us"].as_f64().unwrap() - diff / n).abs() < 1e-6);
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
            let after = e["slow_start"][gaps.len() - 1]["p50_us"].as_f64().unwrap();
            assert!((x("slow_start_ms") - (after - l.p50) / 1e3).abs() < 1e-9);
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
    let j = dir.path().join("shm.json");
    profile(
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
        ],
        &j,
    );
    // block: 2,048 x 28 / 4 layers x 4 tokens
    assert_profile(&read_doc(&j), &[32, 100], 57_344, &[250], 3);
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
    use kvxfer::fabric::{EndpointType, XferOp};
    use kvxfer::run::xfer::{run_local, ConcurrencyMode, Scheme, XferBackend, XferConfig};
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
        iterations: 3,
        warmup: 1,
        verify: false,
        reuse: false,
        timeout: Duration::from_secs(30),
        idle_before_timed: Duration::from_millis(600),
    };
    let t = std::time::Instant::now();
    let doc = run_local(&cfg).unwrap();
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
            "--timeout",
            "20",
            "--idle-ms",
        ]
        .into_iter()
        .map(String::from)
        .chain([idle.to_string()])
        .collect::<Vec<_>>()
    };
    let target = std::process::Command::new(kvxfer_path())
        .args(args("0,100"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The back-to-back and contiguous runs agree; the idle run's parameters do not.
    kvxfer()
        .args(args("0,200"))
        .args(["--peer", &format!("127.0.0.1:{port}")])
        .timeout(Duration::from_secs(120))
        .assert()
        .failure()
        .stderr(predicate::str::contains("idle_ms"));
    let t = target.wait_with_output().unwrap();
    assert!(!t.status.success());
}

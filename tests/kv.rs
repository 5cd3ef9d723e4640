//! `kvxfer kv size|plan`: the arithmetic against hand-computed values for every input form,
//! KVBench's plan example, and bad input (tests/kv_profile.rs runs the profile).

mod common;

use std::path::Path;

use common::*;
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
    // kvxfer's first line names the class KVBench loads the file as; then KVBench's own form.
    let want = format!(
        "KVBench class: Llama3_1 (model_name llama3.1_8b)\n\
         {rule}\nModel Config: {c}\nISL: 1000 tokens\nPage Size: 16\nRequests: 10\nTP: 1\nPP: 8\n\
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
    assert_eq!(p["kvxfer"]["kvbench"]["class"], "Llama3_1");
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
    // The preset's name routes to no class: it runs as Qwen3 (KV heads as given), renamed.
    assert_eq!(v[0]["kvxfer"]["kvbench"]["class"], "Qwen3");
    assert_eq!(
        v[0]["kvxfer"]["kvbench"]["model_name"],
        "qwen3-arch-llama-3.1-8b"
    );
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
    assert_eq!(col("kvbench_class"), "Llama3_1");
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

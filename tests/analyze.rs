//! `kvxfer analyze` end to end: E2E files in the team's nested layout and the flat one, real
//! kvxfer loopback results from short runs, the four assessments, every plot a valid PNG and
//! SVG with its series, missing data answered with the runs that would settle it, and E2E and
//! low-level runs read back from a real MLflow server.

mod common;
#[allow(dead_code)]
mod record_support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use kvxfer::mlflow::{KeyValue, Metric};
use serde_json::{json, Value};

use common::{fabric_lock, kvxfer};

const KV12K: f64 = 12288.0 * 57344.0;

/// TTFT (ms) the built E2E data holds: prefill grows with the prompt, the network part is
/// `factor` x the theoretical transfer, concurrency multiplies it.
fn ttft(backend: &str, tokens: u64, c: u64) -> f64 {
    let prefill = 0.1 * tokens as f64;
    let (net, growth) = match backend {
        "tcp" => (
            3.0 * tokens as f64 * 57344.0 / 2.9e6,
            1.0 + 1.72 * (c - 1) as f64 / 15.0,
        ),
        "efa" => (
            3.0 * tokens as f64 * 57344.0 / 4.4e6,
            1.0 + 0.5 * (c - 1) as f64 / 15.0,
        ),
        _ => (0.0, 1.0),
    };
    (prefill + net) * growth
}

fn tpot(backend: &str, c: u64) -> f64 {
    12.0 + 0.05 * c as f64 + if backend == "efa" { 0.1 } else { 0.0 }
}

/// The team's nested layout, one file per pattern, in per-phase folders; phase 14 in the flat
/// layout (one array). Returns the number of records written.
fn write_e2e(dir: &Path) -> usize {
    let mut n = 0;
    for backend in ["none", "tcp", "efa"] {
        let mode = if backend == "none" {
            "unified"
        } else {
            "disaggregated"
        };
        for tokens in [4096u64, 12288] {
            for c in [1u64, 4, 8, 16] {
                let t = ttft(backend, tokens, c);
                // Four waves of requests at c=16 over efa.
                let raw: Vec<f64> = if backend == "efa" && c == 16 {
                    (0..32).map(|k| t * (0.7 + 0.2 * (k % 4) as f64)).collect()
                } else {
                    Vec::new()
                };
                let mut results = json!({
                    "ttft": {"mean": t, "p50": t, "p95": t * 1.2, "raw": raw},
                    "tpot": {"mean": tpot(backend, c), "p50": tpot(backend, c)},
                    "e2e_latency": {"mean": t + 128.0 * tpot(backend, c)},
                    "throughput_rps": c as f64 / (t / 1e3),
                });
                if c == 1 {
                    results["proxy_prefill_time"] = json!(0.1 * tokens as f64);
                }
                let doc = json!({
                    "metadata": {"phase": 15, "mode": mode, "backend": backend,
                                 "prefix_cache": false, "prompt_tokens": tokens,
                                 "max_tokens": 128, "concurrency": c,
                                 "model": "Qwen/Qwen2.5-7B-Instruct"},
                    "results": results,
                });
                let sub = dir.join(format!("phase-15/{mode}-{backend}"));
                std::fs::create_dir_all(&sub).unwrap();
                let f = sub.join(format!("p15-{backend}-{tokens}-c{c}.json"));
                std::fs::write(f, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
                n += 1;
            }
        }
    }
    // Phase 14, flat: 1000-token runs (never mixed with the 12K ones by tcp-incast).
    let flat: Vec<Value> = ["tcp", "efa"]
        .iter()
        .flat_map(|b| {
            [1u64, 16].map(|c| {
                json!({"phase": 14, "backend": b, "prompt_tokens": 1000, "concurrency": c,
                       "ttft_mean": 100.0 * c as f64, "tpot_mean": tpot(b, c),
                       "throughput_rps": 1.0})
            })
        })
        .collect();
    n += flat.len();
    std::fs::write(
        dir.join("phase14-flat.json"),
        serde_json::to_vec(&flat).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("notes.json"), b"{\"not\": \"a result\"}").unwrap();
    n
}

/// Real loopback results from short kvxfer runs, made once for the whole file.
fn loopback() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let _turn = fabric_lock();
        let dir = tempfile::tempdir().unwrap();
        let out = |n: &str| dir.path().join(n).display().to_string();
        let m2o = "xfer --provider tcp --domain lo --size 1M --scheme many-to-one --iterations 8";
        let runs = [
            "pingpong --provider shm --sizes 64,1K,64K --iterations 300".to_string(),
            "xfer --provider shm --size 4M --iterations 8".to_string(),
            format!("{m2o} --concurrency 1"),
            format!("{m2o} --concurrency 16"),
        ];
        for (i, args) in runs.iter().enumerate() {
            kvxfer()
                .args(args.split_whitespace())
                .args(["--json", &out(&format!("r{i}.json"))])
                .timeout(Duration::from_secs(120))
                .assert()
                .success();
        }
        dir
    })
    .path()
}

fn analyze(args: &[&str]) -> (std::process::Output, Value, PathBuf, tempfile::TempDir) {
    let res = tempfile::tempdir().unwrap();
    let out = res.path().join("correlation-analysis.json");
    let plots = res.path().join("plots");
    let o = kvxfer()
        .arg("analyze")
        .args(args)
        .arg("--out")
        .arg(&out)
        .arg("--plots-dir")
        .arg(&plots)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    (o, v, plots, res)
}

fn assessment<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["assessments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["analysis"] == name)
        .unwrap_or_else(|| panic!("no {name} assessment"))
}

fn needed_ids(a: &Value) -> Vec<String> {
    a["needed"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| n["pattern_ids"].as_array().unwrap().iter())
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// A PNG's signature and IHDR size; an SVG that names every series.
fn check_plot(p: &Value) {
    let png = std::fs::read(p["png"].as_str().unwrap()).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{}", p["name"]);
    assert_eq!(&png[12..16], b"IHDR");
    let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((w, h), (1100, 680));
    assert!(
        png.len() > 10_000,
        "{} is too small to hold a chart",
        p["name"]
    );
    let svg = std::fs::read_to_string(p["svg"].as_str().unwrap()).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for s in p["series"].as_array().unwrap() {
        assert!(svg.contains(s.as_str().unwrap()), "{} lacks {s}", p["name"]);
    }
}

fn series(v: &Value, plot: &str) -> Vec<String> {
    let p = v["plots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == plot)
        .unwrap();
    p["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn team_layout_e2e_and_loopback_results_give_four_assessments_five_plots_and_a_report() {
    let e2e = tempfile::tempdir().unwrap();
    let records = write_e2e(e2e.path());
    let low = loopback();
    let (o, v, plots, res) = analyze(&[
        "--e2e-dir",
        e2e.path().to_str().unwrap(),
        "--low-level-dir",
        low.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(v["e2e_records"], records);
    assert!(v["low_level_points"].as_u64().unwrap() >= 6);
    assert!(stderr.contains("skipped notes.json"), "{stderr}");
    let names: Vec<&str> = v["assessments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["analysis"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["tpot-independence", "tcp-incast", "token-gap", "staircase"]
    );
    for n in &names {
        assert!(stdout.contains(&format!("[{n}]")), "{stdout}");
    }

    // tpot: 0.1 ms apart on ~12.4 ms, efa's transfer not measured on a loopback.
    let a = assessment(&v, "tpot-independence");
    assert_eq!(a["verdict"], "supported");
    assert_eq!(a["confidence_after"], "medium");
    assert!(needed_ids(a).contains(&"pll-nixlbench-efa-672m".to_string()));

    // incast: 12K tokens only, c=16 over c=1 = 2.72 exactly as built; the network measured.
    let a = assessment(&v, "tcp-incast");
    let r = a["key_metrics"]["e2e_ttft_c16_over_c1_tcp_12288tok"]
        .as_f64()
        .unwrap();
    assert!((r - 2.72).abs() < 1e-9, "{r}");
    let bw = a["key_metrics"]["net_bandwidth_c16_over_c1_tcp_1048576B"]
        .as_f64()
        .unwrap();
    assert!(bw.is_finite() && bw > 0.0);
    assert_ne!(a["verdict"], "insufficient_data");

    // token-gap: TTFT over theoretical as the data holds it; no transfer of 672 MiB measured.
    let a = assessment(&v, "token-gap");
    let want = ttft("tcp", 12288, 1) / (KV12K / 2.9e9 * 1e3);
    let got = a["key_metrics"]["ttft_over_theoretical_tcp"]
        .as_f64()
        .unwrap();
    assert!((got - want).abs() < 1e-9, "{got} vs {want}");
    let gap = a["key_metrics"]["gap_ms_tcp"].as_f64().unwrap();
    assert!((gap - (ttft("tcp", 12288, 1) - ttft("none", 12288, 1))).abs() < 1e-6);
    assert!(needed_ids(a).contains(&"pll-kvbench-ucx-tcp-12k".to_string()));

    // staircase: four waves in the raw E2E samples; efa's network tiers are missing.
    let a = assessment(&v, "staircase");
    assert_eq!(a["key_metrics"]["e2e_ttft_tiers_efa_c16"], 4.0);
    assert_eq!(a["verdict"], "inconclusive");
    assert!(needed_ids(a).contains(&"pll-nixlbench-efa-672m-c16".to_string()));

    let ps = v["plots"].as_array().unwrap();
    assert_eq!(ps.len(), 5);
    for p in ps {
        check_plot(p);
    }
    assert!(series(&v, "l0-latency-vs-size").contains(&"kvxfer libfabric shm".to_string()));
    let bw = series(&v, "l1-bandwidth-vs-size");
    assert!(bw.contains(&"kvxfer libfabric shm".to_string()), "{bw:?}");
    let deg = series(&v, "degradation-vs-concurrency");
    for s in [
        "E2E TTFT tcp (12288 tokens)",
        "E2E TTFT efa (12288 tokens)",
        "network many-to-one tcp (1M)",
    ] {
        assert!(deg.contains(&s.to_string()), "{deg:?}");
    }
    let parts = series(&v, "token-gap-12k");
    assert!(parts.contains(&"prefill".to_string()), "{parts:?}");
    assert_eq!(series(&v, "tpot-per-backend"), ["TPOT median over runs"]);

    check_score_and_sentences(&v, low);

    let md = std::fs::read_to_string(res.path().join("correlation-report.md")).unwrap();
    assert!(md.contains("| tcp-incast |"));
    assert!(md.starts_with("# E2E against low-level measurements"));
    let said = md.find("## What the measurements say").unwrap();
    assert!(said < md.find("## Measurement validity score").unwrap());
    assert!(md.contains("| stock-twin | 5 |"), "the rubric is printed");
    assert!(
        md.contains("![token-gap-12k](plots/token-gap-12k.png)"),
        "{md}"
    );
    assert!(plots.join("tpot-per-backend.svg").is_file());
}

/// The p50 latency (us) at `size` of the loopback ping-pong result file.
fn pingpong_p50(low: &Path, size: u64) -> f64 {
    let doc: Value = serde_json::from_slice(&std::fs::read(low.join("r0.json")).unwrap()).unwrap();
    doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["message_size"] == size)
        .unwrap()["latency_us"]["p50"]
        .as_f64()
        .unwrap()
}

/// The score of the loopback data by the rubric, and the three sentences against the files.
fn check_score_and_sentences(v: &Value, low: &Path) {
    let val = &v["validity"];
    let measured = val["measured"]["score"].as_u64().unwrap();
    let baseline = val["baseline"]["score"].as_u64().unwrap();
    assert!(measured > baseline, "{measured} vs {baseline}");
    assert_eq!(val["rubric"].as_array().unwrap().len(), 5);
    let claims = val["measured"]["claims"].as_array().unwrap();
    assert_eq!(claims.len(), 4);
    let sum: u64 = claims.iter().map(|c| c["score"].as_u64().unwrap()).sum();
    assert_eq!(measured, sum);
    let incast = claims
        .iter()
        .find(|c| c["analysis"] == "tcp-incast")
        .unwrap();
    let award = |c: &Value, id: &str| {
        c["awards"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["criterion"] == id)
            .unwrap()
            .clone()
    };
    // One host's loopback: 3 of 8; its figures traced to the result files.
    let w = award(incast, "measured-where");
    assert_eq!(w["points"], 3);
    assert!(
        w["sources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "r3.json"),
        "{w}"
    );
    // No path record in today's results: not confirmed.
    assert_eq!(award(incast, "path-confirmed")["points"], 0);
    // Eight iterations: fewer than the 10 a median needs.
    assert_eq!(award(incast, "samples")["points"], 0);
    let sentences = v["sentences"].as_array().unwrap();
    assert_eq!(sentences.len(), 3);
    let l1 = sentences[0]["text"].as_str().unwrap();
    assert!(
        l1.contains("not measured directly yet") && l1.contains("pll-nixlbench-efa-672m"),
        "{l1}"
    );
    // L0: shared memory on this host; its figure is the file's p50 at 64 B.
    let l0 = &sentences[2];
    let want = pingpong_p50(low, 64);
    assert_eq!(l0["figures"]["latency_us_shm"].as_f64().unwrap(), want);
    let text = l0["text"].as_str().unwrap();
    assert!(text.contains(&format!("{want:.1} µs")), "{text}");
    assert!(text.contains("not the nodes' EFA"), "{text}");
    assert_eq!(l0["on_nodes"], false);
}

#[test]
fn two_reports_compare_side_by_side() {
    let e2e = tempfile::tempdir().unwrap();
    write_e2e(e2e.path());
    let (_, a, _, ra) = analyze(&["--e2e-dir", e2e.path().to_str().unwrap(), "--no-plots"]);
    let (_, b, _, rb) = analyze(&[
        "--e2e-dir",
        e2e.path().to_str().unwrap(),
        "--low-level-dir",
        loopback().to_str().unwrap(),
        "--no-plots",
    ]);
    let pa = ra.path().join("correlation-analysis.json");
    let pb = rb.path().join("correlation-analysis.json");
    let o = kvxfer()
        .args(["analyze", "--compare"])
        .arg(&pa)
        .arg(&pb)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = String::from_utf8(o.stdout).unwrap();
    let overall = format!(
        "| overall | {} | {} |",
        a["validity"]["measured"]["score"], b["validity"]["measured"]["score"]
    );
    assert!(md.contains(&overall), "{overall} missing from\n{md}");
    let tg = |r: &Value| {
        r["assessments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["analysis"] == "token-gap")
            .unwrap()["key_metrics"]["ttft_ms_tcp"]
            .as_f64()
            .unwrap()
    };
    assert!(
        md.contains(&format!(
            "| ttft_ms_tcp | {:.4} | {:.4} | 1.000 |",
            tg(&a),
            tg(&b)
        )),
        "{md}"
    );
    assert!(md.contains("| tcp-incast | "), "{md}");
    // Not a report: one clear line.
    let o = kvxfer()
        .args(["analyze", "--compare"])
        .arg(&pa)
        .arg(e2e.path().join("phase14-flat.json"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not a kvxfer.correlation/v1 report"), "{err}");
}

#[test]
fn missing_data_is_answered_with_the_runs_that_would_settle_it() {
    let empty = tempfile::tempdir().unwrap();
    let low = loopback();
    let (_, v, _, _res) = analyze(&[
        "--e2e-dir",
        empty.path().to_str().unwrap(),
        "--low-level-dir",
        low.to_str().unwrap(),
        "--analysis",
        "tpot-independence,token-gap",
    ]);
    assert_eq!(v["assessments"].as_array().unwrap().len(), 2);
    for name in ["tpot-independence", "token-gap"] {
        let a = assessment(&v, name);
        assert_eq!(a["verdict"], "insufficient_data", "{name}");
        let tools: Vec<&str> = a["needed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["tool"].as_str().unwrap())
            .collect();
        assert!(
            tools.iter().any(|t| t.starts_with("e2e benchmark")),
            "{tools:?}"
        );
        assert!(a["key_metrics"]
            .as_object()
            .unwrap()
            .keys()
            .all(|k| !k.starts_with("tpot_ms")));
    }
    for p in v["plots"].as_array().unwrap() {
        check_plot(p);
    }
    // --prefill-ms stands in for the missing unified run.
    let e2e = tempfile::tempdir().unwrap();
    std::fs::write(
        e2e.path().join("one.json"),
        serde_json::to_vec(
            &json!({"metadata": {"mode": "disaggregated", "backend": "tcp",
            "prompt_tokens": 12288, "concurrency": 1}, "results": {"ttft": {"mean": 2000.0}}}),
        )
        .unwrap(),
    )
    .unwrap();
    let (_, v, _, _) = analyze(&[
        "--e2e-dir",
        e2e.path().to_str().unwrap(),
        "--analysis",
        "token-gap",
        "--prefill-ms",
        "500",
        "--no-plots",
    ]);
    let a = assessment(&v, "token-gap");
    assert_eq!(a["key_metrics"]["gap_ms_tcp"], 1500.0);
}

#[test]
fn bad_input_gives_one_clear_line() {
    let o = kvxfer()
        .args(["analyze", "--e2e-dir", "/nonexistent/kvxfer-e2e"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("/nonexistent/kvxfer-e2e"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let o = kvxfer()
        .args(["analyze", "--low-level-dir", ".", "--analysis", "nonsense"])
        .output()
        .unwrap();
    assert!(!o.status.success());
}

#[test]
fn e2e_and_low_level_runs_are_read_from_a_real_mlflow_server() {
    let Some(server) =
        record_support::Server::shared("e2e_and_low_level_runs_are_read_from_a_real_mlflow_server")
    else {
        return;
    };
    let c = server.client();
    let exp = c.get_or_create_experiment("nixl-efa-tai-phase-15").unwrap();
    let kv = |k: &str, v: String| KeyValue {
        key: k.into(),
        value: v,
    };
    let mut n = 0;
    for backend in ["none", "tcp"] {
        for conc in [1u64, 16] {
            let name = format!("p15-{backend}-12k-c{conc}-20250102-030405");
            let run = c.create_run(&exp, &name, 1_700_000_000_000, &[]).unwrap();
            let mode = if backend == "none" {
                "unified"
            } else {
                "disaggregated"
            };
            let params = [
                kv("mode", mode.into()),
                kv("backend", backend.into()),
                kv("prompt_tokens", "12288".into()),
                kv("concurrency", conc.to_string()),
            ];
            let metric = |k: &str, value: f64| Metric {
                key: k.into(),
                value,
                timestamp: 1_700_000_000_000,
                step: 0,
            };
            let metrics = [
                metric("ttft_mean", ttft(backend, 12288, conc)),
                metric("tpot_mean", tpot(backend, conc)),
            ];
            c.log_batch(&run.run_id, &metrics, &params, &[]).unwrap();
            c.update_run(&run.run_id, "FINISHED", 1_700_000_001_000)
                .unwrap();
            n += 1;
        }
    }
    // An efa run whose params say little and whose artifact, the team's JSON, holds raw TTFT
    // samples in two waves: the staircase reads them.
    let run = c
        .create_run(
            &exp,
            "p15-efa-12k-c16-20250102-030405",
            1_700_000_000_000,
            &[],
        )
        .unwrap();
    c.log_batch(&run.run_id, &[], &[kv("backend", "efa".into())], &[])
        .unwrap();
    let raw: Vec<f64> = (0..16).map(|k| [100.0, 200.0][k % 2]).collect();
    let doc = json!({"metadata": {"mode": "disaggregated", "prompt_tokens": 12288,
        "concurrency": 16}, "results": {"ttft": {"mean": 150.0, "raw": raw}}});
    c.upload_artifact(
        &run,
        "p15-efa-12k-c16.json",
        &serde_json::to_vec(&doc).unwrap(),
    )
    .unwrap();
    c.update_run(&run.run_id, "FINISHED", 1_700_000_001_000)
        .unwrap();
    n += 1;
    let low = loopback();
    kvxfer()
        .args([
            "record",
            "--results",
            low.to_str().unwrap(),
            "--mlflow-uri",
            &server.uri(),
        ])
        .timeout(Duration::from_secs(300))
        .assert()
        .success();
    let uri = server.uri();
    let (_, v, _, _) = analyze(&[
        "--e2e-mlflow",
        &uri,
        "--low-level-mlflow",
        &uri,
        "--no-plots",
    ]);
    assert_eq!(v["e2e_records"], n);
    assert!(v["low_level_points"].as_u64().unwrap() >= 6);
    let skipped = v["skipped"].as_array().unwrap();
    assert!(
        skipped
            .iter()
            .any(|s| s["file"] == "mlflow:nixl-efa-tai-phase-14"),
        "the missing experiment is named: {skipped:?}"
    );
    let a = assessment(&v, "tcp-incast");
    let r = a["key_metrics"]["e2e_ttft_c16_over_c1_tcp_12288tok"]
        .as_f64()
        .unwrap();
    assert!((r - 2.72).abs() < 1e-9, "{r}");
    assert!(a["key_metrics"]["net_bandwidth_c16_over_c1_tcp_1048576B"].is_number());
    let s = assessment(&v, "staircase");
    assert_eq!(s["key_metrics"]["e2e_ttft_tiers_efa_c16"], 2.0, "{s}");
    let g = assessment(&v, "token-gap");
    let gap = g["key_metrics"]["gap_ms_tcp"].as_f64().unwrap();
    assert!((gap - (ttft("tcp", 12288, 1) - ttft("none", 12288, 1))).abs() < 1e-6);
}

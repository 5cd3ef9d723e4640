//! Unit tests of the document -> MLflow mapping.

use super::*;
use crate::report::{ResultDoc, SizeResult, Status};
use crate::stats::LatencySummary;
use chrono::TimeZone;

fn lat(p50: f64) -> LatencySummary {
    LatencySummary {
        min: p50 * 0.5,
        p50,
        p95: p50 * 1.5,
        p99: p50 * 2.0,
        p999: p50 * 3.0,
        max: p50 * 4.0,
        mean: p50 * 1.1,
        stdev: 0.25,
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
}

fn doc(tool: &str, bench: &str, layer: &str) -> ResultDoc {
    let mut d = ResultDoc::new(tool, bench, layer);
    d.status = Status::Complete;
    d.started_at = "2026-11-29T10:00:01.250+01:00".into();
    d.finished_at = "2026-11-29T09:00:09.000Z".into();
    d
}

fn tag<'a>(p: &'a RunPlan, k: &str) -> Option<&'a str> {
    p.tags.iter().find(|t| t.key == k).map(|t| t.value.as_str())
}
fn param<'a>(p: &'a RunPlan, k: &str) -> Option<&'a str> {
    p.params
        .iter()
        .find(|t| t.key == k)
        .map(|t| t.value.as_str())
}
fn metric(p: &RunPlan, k: &str) -> Option<f64> {
    p.metrics.iter().find(|m| m.key == k).map(|m| m.value)
}
fn keys(p: &RunPlan) -> Vec<&str> {
    p.metrics.iter().map(|m| m.key.as_str()).collect()
}

#[test]
fn pingpong_metrics_carry_the_size() {
    let mut d = doc("fi_pingpong", "pingpong", "L0");
    d.config.insert("provider".into(), "tcp".into());
    d.config.insert("iterations".into(), 10.into());
    d.results.push(SizeResult {
        message_size: 64,
        iterations: 10,
        latency_us: Some(lat(20.0)),
        bandwidth_mbps: Some(3.2),
        ..Default::default()
    });
    d.results.push(SizeResult {
        message_size: 1048576,
        iterations: 10,
        bandwidth_gbps: Some(1.5),
        ..Default::default()
    });
    let bytes = d.to_json();
    let p = plan_run(&d, &bytes, "l0.json", &MapOptions::default(), now());
    assert_eq!(p.run_name, "l0-20261129T090001Z");
    assert_eq!(p.start_time_ms, 1_795_942_801_250);
    assert_eq!(p.end_time_ms, 1_795_942_809_000);
    assert_eq!(
        keys(&p),
        [
            "latency_us_64",
            "latency_p50_us_64",
            "latency_p99_us_64",
            "bandwidth_mbps_64",
            "bandwidth_mbps_1048576"
        ]
    );
    assert_eq!(metric(&p, "latency_us_64"), Some(22.0));
    assert_eq!(metric(&p, "latency_p99_us_64"), Some(40.0));
    assert_eq!(metric(&p, "bandwidth_mbps_64"), Some(3.2));
    assert_eq!(metric(&p, "bandwidth_mbps_1048576"), Some(1500.0));
    assert!(p
        .metrics
        .iter()
        .all(|m| m.timestamp == p.end_time_ms && m.step == 0));
    assert_eq!(param(&p, "provider"), Some("tcp"));
    assert_eq!(param(&p, "iterations"), Some("10"));
    assert_eq!(tag(&p, "tool"), Some("fi_pingpong"));
    assert_eq!(tag(&p, "layer"), Some("L0"));
    assert_eq!(tag(&p, "pattern_id"), Some("l0"));
    assert_eq!(tag(&p, "phase"), Some("low-level"));
    assert_eq!(tag(&p, "status"), Some("complete"));
    assert_eq!(
        tag(&p, "kv_cache_equivalent_tokens"),
        None,
        "L0 has no token figure"
    );
    assert_eq!(tag(&p, "instance_type"), None);
    assert_eq!(
        tag(&p, CONTENT_HASH_TAG),
        Some(content_hash(&bytes).as_str())
    );
    assert_eq!(p.artifacts.len(), 1);
    assert_eq!(p.artifacts[0].path, "l0.json");
    assert_eq!(p.artifacts[0].bytes, bytes);
}

#[test]
fn xfer_single_size_uses_plain_names_and_token_tag() {
    let mut d = doc("nixlbench", "xfer", "L1");
    d.pattern_id = Some("pll-nixlbench-efa-672m".into());
    d.config.insert("backend".into(), "LIBFABRIC".into());
    d.config.insert("concurrency".into(), 16.into());
    d.config.insert("scheme".into(), "many_to_one".into());
    d.results.push(SizeResult {
        message_size: 704_643_072,
        iterations: 30,
        latency_us: Some(lat(100.0)),
        bandwidth_gbps: Some(4.25),
        transfer_time_ms: Some(165.8),
        histogram: Some("aGVsbG8=".into()),
        ..Default::default()
    });
    let opts = MapOptions {
        instance_type: Some("p5.48xlarge".into()),
        ..Default::default()
    };
    let p = plan_run(&d, &d.to_json(), "x.json", &opts, now());
    assert_eq!(p.run_name, "pll-nixlbench-efa-672m-20261129T090001Z");
    assert_eq!(tag(&p, "kv_cache_equivalent_tokens"), Some("12288"));
    assert_eq!(tag(&p, "instance_type"), Some("p5.48xlarge"));
    assert_eq!(param(&p, "backend"), Some("LIBFABRIC"));
    assert_eq!(param(&p, "message_size"), Some("704643072"));
    assert_eq!(param(&p, "num_threads"), Some("16"));
    assert_eq!(param(&p, "concurrency"), Some("16"));
    assert_eq!(param(&p, "scheme"), Some("many_to_one"));
    assert_eq!(
        keys(&p),
        [
            "latency_p50_us",
            "latency_p95_us",
            "latency_p99_us",
            "bandwidth_gbps",
            "transfer_time_ms"
        ]
    );
    assert_eq!(metric(&p, "latency_p95_us"), Some(150.0));
    assert_eq!(metric(&p, "bandwidth_gbps"), Some(4.25));
    assert_eq!(metric(&p, "transfer_time_ms"), Some(165.8));
    assert_eq!(p.artifacts[1].path, "histogram-704643072.hdr");
    assert_eq!(p.artifacts[1].bytes, b"hello");
}

#[test]
fn xfer_many_sizes_are_suffixed_and_absent_figures_stay_absent() {
    let mut d = doc("kvxfer", "xfer", "L1");
    for (size, gb) in [(57_344_000u64, Some(2.0)), (234_881_024, None)] {
        d.results.push(SizeResult {
            message_size: size,
            iterations: 5,
            bandwidth_gbps: gb,
            ..Default::default()
        });
    }
    let p = plan_run(&d, b"{}", "m.json", &MapOptions::default(), now());
    assert_eq!(keys(&p), ["bandwidth_gbps_57344000"]);
    assert_eq!(param(&p, "message_size"), Some("57344000,234881024"));
    assert_eq!(param(&p, "backend"), None);
    assert_eq!(tag(&p, "kv_cache_equivalent_tokens"), Some("1000,4096"));
}

#[test]
fn kv_profile_and_bytes_per_token_override() {
    let mut d = doc("kvbench", "kv_profile", "L2");
    d.config.insert("backend".into(), "UCX".into());
    d.config
        .insert("model".into(), "Qwen2.5-7B-Instruct".into());
    d.config.insert("prompt_tokens".into(), 4096.into());
    d.results.push(SizeResult {
        message_size: 234_881_024,
        iterations: 3,
        bandwidth_gbps: Some(2.5),
        transfer_time_ms: Some(93.9),
        latency_us: Some(lat(1.0)),
        ..Default::default()
    });
    let opts = MapOptions {
        bytes_per_token: 131_072,
        ..Default::default()
    };
    let p = plan_run(&d, b"x", "k.json", &opts, now());
    assert_eq!(keys(&p), ["kv_transfer_time_ms", "bandwidth_gbps"]);
    assert_eq!(metric(&p, "kv_transfer_time_ms"), Some(93.9));
    assert_eq!(param(&p, "model_config"), Some("Qwen2.5-7B-Instruct"));
    assert_eq!(param(&p, "prompt_tokens"), Some("4096"));
    assert_eq!(param(&p, "kv_cache_size_bytes"), Some("234881024"));
    assert_eq!(tag(&p, "kv_cache_equivalent_tokens"), Some("1792"));
}

#[test]
fn kvxfer_kv_profile_records_the_decomposition_per_prompt_length() {
    let mut d = doc("kvxfer", "kv_profile", "L2");
    d.config.insert("backend".into(), "libfabric".into());
    d.config.insert("model".into(), "qwen2.5-7b".into());
    d.config
        .insert("tokens".into(), serde_json::json!([1000, 4096]));
    d.config.insert("prompt_tokens".into(), "1000,4096".into());
    for (tokens, ms) in [(1000u64, 20.0), (4096, 80.0)] {
        let mut r = SizeResult {
            message_size: 57_344 * tokens,
            iterations: 10,
            transfer_time_ms: Some(ms),
            bandwidth_gbps: Some(2.0),
            ..Default::default()
        };
        r.extra.insert("tokens".into(), tokens.into());
        r.extra.insert(
            "decomposition".into(),
            serde_json::json!({"theoretical_ms": ms / 2.0, "measured_ms": ms * 1.5,
                "registration_ms": 0.1, "slow_start_ms": 3.0, "per_descriptor_ms": 4.0,
                "remainder_ms": 1.0, "cold_connection_extra_ms": null}),
        );
        r.extra.insert(
            "per_descriptor".into(),
            serde_json::json!({"per_descriptor_us": 2.5}),
        );
        d.results.push(r);
    }
    let p = plan_run(&d, b"x", "k.json", &MapOptions::default(), now());
    assert_eq!(metric(&p, "kv_transfer_time_ms_57344000"), Some(20.0));
    assert_eq!(metric(&p, "kv_theoretical_ms_234881024"), Some(40.0));
    assert_eq!(metric(&p, "kv_measured_ms_57344000"), Some(30.0));
    assert_eq!(metric(&p, "kv_slow_start_ms_57344000"), Some(3.0));
    assert_eq!(metric(&p, "kv_per_descriptor_us_234881024"), Some(2.5));
    // Absent (null) figures are absent metrics, never zeros.
    assert_eq!(metric(&p, "kv_cold_connection_extra_ms_57344000"), None);
    assert_eq!(metric(&p, "kv_registration_cached_us_57344000"), None);
    assert_eq!(param(&p, "prompt_tokens"), Some("1000,4096"));
    assert_eq!(param(&p, "model_config"), Some("qwen2.5-7b"));
    assert_eq!(tag(&p, "kv_cache_equivalent_tokens"), Some("1000,4096"));
    assert_eq!(tag(&p, "layer"), Some("L2"));
}

#[test]
fn ucx_takes_test_type_from_bench_and_transport_from_env() {
    let mut d = doc("kvxfer", "tag_lat", "L3");
    d.config.insert("mem".into(), "host".into());
    d.environment.env.insert("UCX_TLS".into(), "tcp".into());
    d.results.push(SizeResult {
        message_size: 8,
        iterations: 1000,
        latency_us: Some(lat(10.0)),
        ..Default::default()
    });
    let p = plan_run(&d, b"x", "u.json", &MapOptions::default(), now());
    assert_eq!(param(&p, "test_type"), Some("tag_lat"));
    assert_eq!(param(&p, "message_size"), Some("8"));
    assert_eq!(param(&p, "memory_type"), Some("host"));
    assert_eq!(param(&p, "transport"), Some("tcp"));
    assert_eq!(keys(&p), ["latency_us", "latency_p50_us", "latency_p99_us"]);
    assert_eq!(metric(&p, "latency_us"), Some(11.0));
    assert_eq!(tag(&p, "kv_cache_equivalent_tokens"), None);
}

#[test]
fn non_finite_values_are_named_not_sent() {
    let mut d = doc("kvxfer", "xfer", "L1");
    d.results.push(SizeResult {
        message_size: 1024,
        iterations: 1,
        bandwidth_gbps: Some(f64::INFINITY),
        transfer_time_ms: Some(f64::NAN),
        latency_us: Some(lat(3.0)),
        ..Default::default()
    });
    let p = plan_run(&d, b"x", "n.json", &MapOptions::default(), now());
    assert_eq!(
        keys(&p),
        ["latency_p50_us", "latency_p95_us", "latency_p99_us"]
    );
    assert_eq!(
        tag(&p, NONFINITE_TAG),
        Some("bandwidth_gbps,transfer_time_ms")
    );
    assert_eq!(p.notes.iter().filter(|n| n.contains("not sent")).count(), 2);
}

#[test]
fn repeated_sizes_and_odd_keys_do_not_collide() {
    let mut d = doc("kvxfer", "pingpong", "L0");
    d.config
        .insert("FI_EFA:USE/../DEVICE_RDMA".into(), true.into());
    d.config.insert("big".into(), "x".repeat(7000).into());
    d.config.insert("nothing".into(), Value::Null);
    d.config
        .insert("sizes".into(), serde_json::json!([64, 1024]));
    for i in 0..2 {
        d.results.push(SizeResult {
            message_size: 64,
            iterations: 1,
            bandwidth_mbps: Some(i as f64 + 1.0),
            histogram: Some("aGk=".into()),
            ..Default::default()
        });
    }
    d.results[1].histogram = Some("%%%".into());
    let p = plan_run(&d, b"x", "r.json", &MapOptions::default(), now());
    assert_eq!(keys(&p), ["bandwidth_mbps_64", "bandwidth_mbps_64_r1"]);
    assert_eq!(metric(&p, "bandwidth_mbps_64_r1"), Some(2.0));
    assert_eq!(param(&p, "FI_EFA_USE/__/DEVICE_RDMA"), Some("true"));
    assert_eq!(param(&p, "sizes"), Some("[64,1024]"));
    assert_eq!(param(&p, "big"), None);
    assert_eq!(param(&p, "nothing"), None);
    let paths: Vec<&str> = p.artifacts.iter().map(|a| a.path.as_str()).collect();
    assert_eq!(paths, ["r.json", "histogram-64-0.hdr"]);
    assert!(
        p.notes.iter().any(|n| n.contains("not base64")),
        "{:?}",
        p.notes
    );
    assert!(
        p.notes.iter().any(|n| n.contains("\"big\" left out")),
        "{:?}",
        p.notes
    );
}

#[test]
fn keys_are_sanitised() {
    assert_eq!(sanitize_key("latency_us_64"), "latency_us_64");
    assert_eq!(sanitize_key("a b/c.d-e"), "a b/c.d-e");
    assert_eq!(sanitize_key("x:y=z"), "x_y_z");
    assert_eq!(sanitize_key("/a//./b/"), "a/b");
    assert_eq!(sanitize_key("../etc"), "__/etc");
    assert_eq!(sanitize_key("ü"), "_");
    assert_eq!(sanitize_key(""), "_");
    assert_eq!(sanitize_key(&"k".repeat(300)).len(), 250);
}

#[test]
fn unparsable_times_fall_back_to_now() {
    let mut d = doc("kvxfer", "mystery", "L9");
    d.started_at = "yesterday".into();
    d.finished_at = String::new();
    d.pattern_id = Some(String::new());
    d.environment
        .extra
        .insert("instance_type".into(), "g6e.xlarge".into());
    d.results.push(SizeResult {
        message_size: 10,
        iterations: 1,
        transfer_time_ms: Some(1.0),
        ..Default::default()
    });
    let p = plan_run(&d, b"x", "odd", &MapOptions::default(), now());
    assert_eq!(p.run_name, "odd-20260102T030405Z");
    assert_eq!(p.start_time_ms, now().timestamp_millis());
    assert_eq!(keys(&p), ["transfer_time_ms_10"]);
    assert_eq!(tag(&p, "instance_type"), Some("g6e.xlarge"));
}

#[test]
fn hash_is_sha256_hex() {
    assert_eq!(
        content_hash(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn the_path_and_the_cpu_waits_become_metrics_and_the_verdict_a_tag() {
    let mut d = doc("kvxfer", "xfer", "L1");
    let mut extra = serde_json::Map::new();
    // The initiator's threads waited a third of the span; the target's were not read.
    extra.insert(
        "scheduling".into(),
        serde_json::json!({"initiator": {"waiting_pct": 33.5}, "host_cpus": 2}),
    );
    d.results.push(SizeResult {
        message_size: 1 << 20,
        bandwidth_gbps: Some(40.0),
        path: Some(
            serde_json::json!({"verdict": "efa0 50% efa1 50%, 1.01x, 80% of 200 Gb/s",
            "kind": "network", "bytes_ratio": 1.01, "line_rate_fraction": 0.8}),
        ),
        extra,
        ..Default::default()
    });
    let p = plan_run(&d, &d.to_json(), "x.json", &MapOptions::default(), now());
    assert_eq!(metric(&p, "path_bytes_ratio"), Some(1.01));
    assert_eq!(metric(&p, "initiator_cpu_wait_pct"), Some(33.5));
    assert_eq!(metric(&p, "target_cpu_wait_pct"), None);
    assert_eq!(metric(&p, "line_rate_fraction"), Some(0.8));
    assert_eq!(
        tag(&p, "path"),
        Some("efa0 50% efa1 50%, 1.01x, 80% of 200 Gb/s")
    );
    assert_eq!(tag(&p, "path_kind"), Some("network"));
    // A pingpong's sizes: suffixed metrics; one verdict for sizes alike, a wrong-path status.
    let mut d = doc("kvxfer", "pingpong", "L0");
    d.status = Status::WrongPath;
    for size in [64u64, 4096] {
        d.results.push(SizeResult {
            message_size: size,
            path: Some(
                serde_json::json!({"verdict": "lo carried it, not the requested network",
                "kind": "local", "bytes_ratio": 2.5, "line_rate_fraction": null}),
            ),
            ..Default::default()
        });
    }
    let p = plan_run(&d, &d.to_json(), "x.json", &MapOptions::default(), now());
    assert_eq!(metric(&p, "path_bytes_ratio_64"), Some(2.5));
    assert_eq!(metric(&p, "line_rate_fraction_64"), None);
    assert_eq!(
        tag(&p, "path"),
        Some("lo carried it, not the requested network")
    );
    assert_eq!(tag(&p, "status"), Some("wrong-path"));
}

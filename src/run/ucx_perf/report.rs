//! A ucx-perf run's document: each size's result as ucx_perftest reports it, and the
//! configuration block.

use serde_json::{json, Map, Value};

use super::{MemoryKind, UcxPerfConfig, UcxTest};
use crate::bench::pingpong as pp;
use crate::bench::tag_bw::{self, BwFigures};
use crate::peer::Side;
use crate::report::SizeResult;
use crate::stats::{encode_histogram, Count, LatencySummary, UCX_PERFTEST_WINDOW};

pub(super) fn lat_result(size: u64, warmup: u64, s: &pp::SizeSamples) -> SizeResult {
    let iters = s.iterations;
    let overall_us = s.elapsed_ns as f64 / 1000.0 / iters as f64 / 2.0;
    let mut extra = Map::new();
    extra.insert("warmup".into(), json!(warmup));
    extra.insert("time_s".into(), json!(s.elapsed_ns as f64 / 1e9));
    extra.insert("overall_latency_us".into(), json!(overall_us));
    if let Some(p) = s.recent_ns.percentile(50.0) {
        extra.insert(
            "ucx_perftest_percentile_us".into(),
            json!(p as f64 / 1000.0),
        );
        extra.insert(
            "ucx_perftest_percentile_window".into(),
            json!(s.recent_ns.len()),
        );
    }
    // ucx_perftest's bandwidth of a ping-pong: one message per one-way latency.
    let bytes_per_sec = size as f64 / (overall_us / 1e6);
    extra.insert(
        "bandwidth_mib_s".into(),
        json!(bytes_per_sec / (1u64 << 20) as f64),
    );
    extra.insert("msg_per_sec".into(), json!(1e6 / overall_us));
    SizeResult {
        message_size: size,
        iterations: iters,
        latency_us: LatencySummary::from_histogram(&s.latency_ns),
        bandwidth_gbps: Some(bytes_per_sec / 1e9),
        bandwidth_mbps: Some(bytes_per_sec / 1e6),
        transfer_time_ms: Some(s.elapsed_ns as f64 / 1e6),
        histogram: encode_histogram(&s.latency_ns).ok(),
        path: None,
        extra,
    }
}

pub(super) fn bw_result(
    size: u64,
    iterations: u64,
    warmup: u64,
    s: Option<&tag_bw::BwSamples>,
) -> SizeResult {
    let mut extra = Map::new();
    extra.insert("warmup".into(), json!(warmup));
    let Some(s) = s else {
        // The receiver times nothing: its figures are absent, not zero.
        return SizeResult {
            message_size: size,
            iterations,
            extra,
            ..Default::default()
        };
    };
    let f = BwFigures::new(size, s.iterations, s.elapsed_ns);
    extra.insert("time_s".into(), json!(s.elapsed_ns as f64 / 1e9));
    extra.insert("bandwidth_mib_s".into(), json!(f.mib_per_sec));
    extra.insert("msg_per_sec".into(), json!(f.msg_per_sec));
    extra.insert("overall_overhead_us".into(), json!(f.usec_per_msg));
    if let Some(o) = LatencySummary::from_histogram(&s.post_interval_ns) {
        extra.insert("overhead_us".into(), json!(o));
    }
    if let Ok(h) = encode_histogram(&s.post_interval_ns) {
        extra.insert("overhead_histogram".into(), json!(h));
    }
    extra.insert("acknowledged".into(), json!(true));
    SizeResult {
        message_size: size,
        iterations: s.iterations,
        latency_us: None,
        bandwidth_gbps: Some(f.gb_per_sec),
        bandwidth_mbps: Some(f.bytes_per_sec / 1e6),
        transfer_time_ms: Some(s.elapsed_ns as f64 / 1e6),
        histogram: None,
        path: None,
        extra,
    }
}

pub(super) fn config_map(cfg: &UcxPerfConfig, role: Side) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("backend".into(), json!("ucx"));
    m.insert("test_type".into(), json!(cfg.test.name()));
    m.insert("sizes".into(), json!(cfg.sizes));
    m.insert(
        "iterations".into(),
        match cfg.iterations {
            Some(Count::Fixed(n)) => json!(n),
            Some(c) => json!(c.name()),
            None => json!("by size"),
        },
    );
    m.insert(
        "warmup".into(),
        json!(cfg.warmup.map(Value::from).unwrap_or_else(|| "auto".into())),
    );
    if cfg.test == UcxTest::TagBw {
        m.insert("outstanding".into(), json!(cfg.outstanding));
    }
    m.insert("memory_type".into(), json!(cfg.memory.name()));
    if cfg.memory == MemoryKind::Cuda {
        m.insert("cuda_device".into(), json!(cfg.device));
    }
    m.insert("verify".into(), json!(cfg.verify));
    m.insert("prereg".into(), json!(cfg.prereg));
    m.insert("rounds".into(), json!(cfg.rounds));
    if !cfg.cpus.list.is_empty() {
        m.insert("cpus".into(), json!(cfg.cpus.list));
    }
    m.insert("timeout_s".into(), json!(cfg.timeout.as_secs_f64()));
    m.insert(
        "role".into(),
        json!(match role {
            Side::Initiator => "initiator",
            Side::Target => "target",
        }),
    );
    m.insert(
        "latency".into(),
        json!(match cfg.test {
            UcxTest::TagLat => format!(
                "half round trip per iteration; ucx_perftest_percentile_us is its figure: the \
                 median of the last {UCX_PERFTEST_WINDOW} iterations"
            ),
            UcxTest::TagBw => "none: overhead_us is the time between posts (ucx_perftest's \
                               overhead); bandwidth runs to the receiver's acknowledgement"
                .to_string(),
        }),
    );
    m
}

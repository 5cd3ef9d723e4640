//! A ping-pong size's result: fabtests' figures, the precision block and the path's payload,
//! shared by pingpong and rma-pingpong.

use serde_json::{json, Map};

use crate::bench::pingpong::{FabtestsFigures, SizeSamples};
use crate::peer::Side;
use crate::report::SizeResult;
use crate::run::path::Payload;
use crate::stats::{encode_histogram, Count, LatencySummary, Precision};

/// A ping-pong's payload on either side: a message of `size` each way per timed iteration.
pub(crate) fn both_ways(size: u64, s: &SizeSamples) -> Payload {
    let bytes = size * s.iterations;
    Payload {
        sent: bytes,
        received: bytes,
        timed_ns: Some(s.elapsed_ns),
    }
}

/// Leaves a channel whose loop failed open and allocated until the process ends: operations
/// may still be in flight on it (a peer stopped mid-message), libfabric 1.17's rxm can crash
/// closing such an endpoint (seen on tcp;ofi_rxm, about one run in six), and the buffers must
/// outlive what the provider still holds of them.
pub(crate) fn abandon<T>(channel: T) {
    std::mem::forget(channel);
}

/// One size's figures, fabtests' arithmetic with `xfers` transfers per iteration.
pub(crate) fn size_result(
    size: u64,
    s: &SizeSamples,
    injected: Option<bool>,
    xfers: u64,
) -> SizeResult {
    let f = FabtestsFigures::with_xfers(size, s.iterations, s.elapsed_ns, xfers);
    let mut extra = Map::new();
    extra.insert("time_s".into(), json!(s.elapsed_ns as f64 / 1e9));
    extra.insert("usec_per_xfer".into(), json!(f.usec_per_xfer));
    extra.insert("mb_per_sec".into(), json!(f.mb_per_sec));
    extra.insert("mxfers_per_sec".into(), json!(f.mxfers_per_sec));
    extra.insert("bytes_counted".into(), json!(f.bytes));
    if let Some(injected) = injected {
        extra.insert("injected".into(), json!(injected));
    }
    SizeResult {
        message_size: size,
        iterations: s.iterations,
        latency_us: LatencySummary::from_histogram(&s.latency_ns),
        bandwidth_gbps: Some(f.mb_per_sec / 1000.0),
        bandwidth_mbps: Some(f.mb_per_sec),
        transfer_time_ms: Some(s.elapsed_ns as f64 / 1e6),
        histogram: encode_histogram(&s.latency_ns).ok(),
        path: None,
        extra,
    }
}

/// The result's `extra.precision` from the samples of the side that measured them.
pub(crate) fn add_precision(r: &mut SizeResult, s: &SizeSamples, count: &Count, role: Side) {
    if role == Side::Target && s.latency_ns.is_empty() {
        return;
    }
    let p = Precision::of(
        &s.latency_ns,
        s.stopped_by,
        Precision::target_of(count),
        s.blocks.as_ref(),
        s.rounds.as_ref(),
    );
    if let Ok(v) = serde_json::to_value(p) {
        r.extra.insert("precision".into(), v);
    }
}

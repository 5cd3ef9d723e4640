//! Looking figures up in the inputs: E2E by backend, prompt length and concurrency; low-level
//! transfers by transport, size and concurrency.

use std::collections::BTreeSet;

use super::e2e::{Dist, E2eRecord};
use super::lowlevel::{LowPoint, Transport};

/// The E2E backends compared (disaggregated runs).
pub const BACKENDS: [&str; 2] = ["tcp", "efa"];

/// The transport an E2E backend name stands for.
pub fn transport(backend: &str) -> Transport {
    match backend {
        "efa" => Transport::Efa,
        "tcp" => Transport::Tcp,
        _ => Transport::Other,
    }
}

/// Mean of the central figures (mean, else p50) of `pick` over matching records.
fn central_of<'a>(
    recs: impl Iterator<Item = &'a E2eRecord>,
    pick: impl Fn(&E2eRecord) -> &Dist,
) -> Option<f64> {
    let v: Vec<f64> = recs
        .filter_map(|r| pick(r).central().map(|c| c.0))
        .collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// TTFT (ms) of disaggregated `backend` (or unified when `backend` is `none`) at exactly
/// `tokens` and `concurrency`.
pub fn ttft(e2e: &[E2eRecord], backend: &str, tokens: u64, concurrency: u64) -> Option<f64> {
    central_of(
        matching(e2e, backend, Some(tokens), Some(concurrency)),
        |r| &r.ttft,
    )
}

/// TPOT (ms) as [`ttft`] does.
pub fn tpot(e2e: &[E2eRecord], backend: &str, tokens: u64, concurrency: u64) -> Option<f64> {
    central_of(
        matching(e2e, backend, Some(tokens), Some(concurrency)),
        |r| &r.tpot,
    )
}

/// Records of `backend` (`none` selects unified runs) at `tokens` and `concurrency` when given.
pub fn matching<'a>(
    e2e: &'a [E2eRecord],
    backend: &'a str,
    tokens: Option<u64>,
    concurrency: Option<u64>,
) -> impl Iterator<Item = &'a E2eRecord> + 'a {
    e2e.iter().filter(move |r| {
        let b = if backend == "none" {
            r.is_unified()
        } else {
            r.is_disagg(backend)
        };
        b && tokens.map_or(true, |t| r.prompt_tokens == Some(t))
            && concurrency.map_or(true, |c| r.concurrency == Some(c))
    })
}

/// Prompt lengths present for `backend`, ascending.
pub fn prompt_lengths(e2e: &[E2eRecord], backend: &str) -> BTreeSet<u64> {
    matching(e2e, backend, None, None)
        .filter_map(|r| r.prompt_tokens)
        .collect()
}

pub use crate::reference::crosscheck::median;

/// L1/L2 transfer points over `t` (many-to-one or single-stream shapes when `incast`).
pub fn transfers(low: &[LowPoint], t: Transport, incast: bool) -> impl Iterator<Item = &LowPoint> {
    low.iter().filter(move |p| {
        p.transport == t
            && (p.layer == "L1" || p.layer == "L2")
            && (p.transfer_time_ms.is_some() || p.bandwidth_gbps.is_some())
            && (!incast || p.is_incast_shape())
    })
}

/// Median transfer time (ms) of single-stream (or unspecified concurrency) transfers of
/// `size` bytes over `t`.
pub fn transfer_ms(low: &[LowPoint], t: Transport, size: u64) -> Option<f64> {
    median(
        &transfers(low, t, false)
            .filter(|p| p.size == size && p.concurrency.unwrap_or(1) == 1)
            .filter_map(|p| p.transfer_time_ms)
            .collect::<Vec<_>>(),
    )
}

/// The largest transfer measured over `t` with its median time (ms), any concurrency.
pub fn largest_transfer(low: &[LowPoint], t: Transport) -> Option<(u64, f64)> {
    let size = transfers(low, t, false)
        .filter(|p| p.transfer_time_ms.is_some())
        .map(|p| p.size)
        .max()?;
    let ms = median(
        &transfers(low, t, false)
            .filter(|p| p.size == size)
            .filter_map(|p| p.transfer_time_ms)
            .collect::<Vec<_>>(),
    )?;
    Some((size, ms))
}

/// Incast-shaped points over `t` at `size` and `concurrency`.
pub fn incast_at(
    low: &[LowPoint],
    t: Transport,
    size: u64,
    concurrency: u64,
) -> impl Iterator<Item = &LowPoint> {
    transfers(low, t, true)
        .filter(move |p| p.size == size && p.concurrency.unwrap_or(1) == concurrency)
}

//! Where the payload stood against the CPU caches: a host payload that fits in the last-level
//! cache can be served from it when transfers run back to back, which a request arriving after
//! a pause does not find (`--cold-cache` evicts it before every iteration).

use serde::Serialize;

use crate::run::segments::SegKind;

use super::super::config::XferConfig;

/// The payload against this host's last-level cache.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct CacheState {
    /// This host's last-level cache in bytes; None where the kernel does not say.
    pub llc_bytes: Option<u64>,
    /// Host bytes each side moves per iteration (every transfer of the iteration).
    pub host_payload_bytes: u64,
    /// Whether one side's host payload fits in the last-level cache; None when unknown.
    pub fits_llc: Option<bool>,
    /// Whether each side evicted its host payload before every iteration (`--cold-cache`).
    pub evicted_before_each: bool,
}

/// The state of `transfers` transfers per iteration of `cfg`, against `llc_bytes`; None when
/// neither side's payload is host memory.
pub(super) fn cache_state(
    cfg: &XferConfig,
    transfers: u64,
    llc_bytes: Option<u64>,
) -> Option<CacheState> {
    if cfg.mem.initiator != SegKind::Dram && cfg.mem.target != SegKind::Dram {
        return None;
    }
    let host_payload_bytes = cfg.size.saturating_mul(transfers);
    Some(CacheState {
        llc_bytes,
        host_payload_bytes,
        fits_llc: llc_bytes.map(|l| host_payload_bytes <= l),
        evicted_before_each: cfg.cold_cache,
    })
}

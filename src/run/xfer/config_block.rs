//! The configuration block of an xfer result document: what the run was asked for, and the
//! block and chunks it ran with.

use serde_json::{json, Map, Value};

use super::config::{endpoint_name, XferBackend, XferConfig, XferPlan};
use super::worker::WorkerReport;
use crate::peer::Side;
use crate::stats::Count;

/// The configuration block of side `side` whose workers reported `reports`.
pub(super) fn config_map(
    cfg: &XferConfig,
    plan: &XferPlan,
    side: Side,
    reports: &[&WorkerReport],
) -> Map<String, Value> {
    let workers = reports.len();
    let mut m = Map::new();
    m.insert("backend".into(), json!(cfg.backend.name()));
    match cfg.backend {
        XferBackend::Libfabric => {
            m.insert("provider".into(), json!(cfg.provider));
            m.insert("endpoint".into(), json!(endpoint_name(cfg.endpoint)));
            m.insert("domain".into(), json!(cfg.domain));
        }
        XferBackend::Ucx => {
            // What UCX was asked for; what it chose is in environment.ucx_transports.
            for var in ["UCX_TLS", "UCX_NET_DEVICES"] {
                let v = std::env::var(var).ok();
                m.insert(var.to_ascii_lowercase(), json!(v));
            }
        }
    }
    m.insert("op".into(), json!(cfg.op.name()));
    crate::run::segments::config_keys(&mut m, &cfg.mem, side, cfg.verify);
    if cfg.mem.any_vram() {
        let reg = reports.iter().find_map(|r| r.registration.clone());
        m.insert("mem_registration".into(), json!(reg));
    }
    m.insert("scheme".into(), json!(cfg.scheme.name()));
    m.insert("concurrency".into(), json!(cfg.concurrency));
    m.insert("concurrency_mode".into(), json!(cfg.mode_name()));
    m.insert("workers".into(), json!(workers));
    m.insert("size".into(), json!(cfg.size));
    m.insert("block".into(), json!(plan.block));
    m.insert("block_asked".into(), json!(cfg.block));
    m.insert("chunks".into(), json!(plan.chunks));
    m.insert("window".into(), json!(cfg.window));
    m.insert(
        "iterations".into(),
        match cfg.iterations {
            Count::Fixed(n) => json!(n),
            c => json!(c.name()),
        },
    );
    m.insert("rounds".into(), json!(cfg.rounds));
    m.insert("warmup".into(), json!(cfg.warmup));
    m.insert("verify".into(), json!(cfg.verify));
    m.insert("reuse".into(), json!(cfg.reuse));
    m.insert("cold_cache".into(), json!(cfg.cold_cache));
    m.insert("timeout_s".into(), json!(cfg.timeout.as_secs_f64()));
    if !cfg.cpus.list.is_empty() {
        // Workers take them in turn; a one-process run's target goes on after the initiator.
        m.insert("cpus".into(), json!(cfg.cpus.list));
    }
    if let Some(r) = &cfg.rails {
        m.insert("rails".into(), json!(r.name()));
        m.insert("stripe_threshold".into(), json!(cfg.stripe_threshold));
    }
    m.insert("role".into(), json!(side.name()));
    m.insert("host_bytes".into(), json!(plan.bytes));
    m
}

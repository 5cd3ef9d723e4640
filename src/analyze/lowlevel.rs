//! Low-level results (`kvxfer.result/v1`, kvxfer's and the parsed stock tools') as plain
//! points: one per document and message size.

use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use super::e2e::num;
use super::files::{json_files, Skipped};
use super::AnalyzeError;
use crate::report::{ResultDoc, SizeResult};

/// The network a low-level figure was measured on, in the E2E backends' terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// AWS EFA (libfabric efa, UCX srd).
    Efa,
    /// TCP sockets (libfabric tcp/udp, UCX tcp).
    Tcp,
    /// Shared memory on one host (libfabric shm, UCX posix/cma/sysv).
    Shm,
    /// Not recognised.
    #[default]
    Other,
}

impl Transport {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Efa => "efa",
            Transport::Tcp => "tcp",
            Transport::Shm => "shm",
            Transport::Other => "other",
        }
    }

    /// The transport a free-form name (provider, UCX_TLS, pattern id word) denotes.
    fn from_word(w: &str) -> Option<Transport> {
        let w = w.to_ascii_lowercase();
        let words: Vec<&str> = w
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|s| !s.is_empty())
            .collect();
        let has = |names: &[&str]| words.iter().any(|x| names.contains(x));
        if has(&["efa", "srd"]) {
            Some(Transport::Efa)
        } else if has(&["tcp", "udp", "sockets"]) {
            Some(Transport::Tcp)
        } else if has(&["shm", "posix", "cma", "sysv", "sm", "xpmem", "knem"]) {
            Some(Transport::Shm)
        } else {
            None
        }
    }
}

/// L2 profile figures (`kv_profile` documents, or an xfer run's cost breakdown), in ms.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KvProfile {
    /// TCP slow start: the transfer after an idle gap over one back to back.
    pub slow_start_ms: Option<f64>,
    /// Memory registration on first use (MR cache cold).
    pub registration_ms: Option<f64>,
    /// The descriptor list over the same bytes moved as one contiguous transfer.
    pub descriptors_ms: Option<f64>,
    /// The contiguous transfer over the theoretical time: protocol, copies, the path's rate.
    pub protocol_ms: Option<f64>,
    /// The first transfer's excess over the steady state, slow start and MR warm-up together.
    pub cold_excess_ms: Option<f64>,
}

impl KvProfile {
    fn is_empty(&self) -> bool {
        *self == KvProfile::default()
    }
}

/// Whether the payload went over the devices the run intended (a result's `path`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum PathCheck {
    /// The result says its payload crossed the intended devices.
    Confirmed {
        /// The devices that carried it, as the result names them.
        devices: Vec<String>,
    },
    /// The result says its payload crossed other devices than intended.
    WrongPath {
        /// The devices that carried it.
        devices: Vec<String>,
    },
    /// The result does not say (no `path`, or a status this reader does not know).
    #[default]
    NotConfirmed,
}

impl PathCheck {
    /// A result's `path` report: confirmed where its payload took the path it was asked to
    /// take (`as_expected` true), wrong-path where not, not confirmed where nothing was asked.
    pub fn from_value(v: Option<&Value>) -> PathCheck {
        let Some(o) = v.and_then(Value::as_object) else {
            return PathCheck::NotConfirmed;
        };
        let devices: Vec<String> = o
            .get("devices")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.get("name").unwrap_or(d).as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        match o.get("as_expected").and_then(Value::as_bool) {
            Some(true) => PathCheck::Confirmed { devices },
            Some(false) => PathCheck::WrongPath { devices },
            None => PathCheck::NotConfirmed,
        }
    }
}

/// One measured figure set: a document's result at one message size.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LowPoint {
    /// File (or MLflow run) it came from.
    pub source: String,
    /// `kvxfer` or the stock tool.
    pub tool: String,
    /// `pingpong`, `xfer`, `tag_bw`, `kv_profile`, ...
    pub bench: String,
    /// L0..L3.
    pub layer: String,
    /// Plan pattern.
    pub pattern_id: Option<String>,
    /// `libfabric` or `ucx`, when said.
    pub backend: Option<String>,
    /// The network it ran on.
    pub transport: Transport,
    /// Measured over the loopback interface (or shared memory), or its payload crossed no
    /// network device but the loopback: one host, not the nodes' network.
    pub loopback: bool,
    /// `pairwise`, `manytoone`, ... (separators removed), when said.
    pub scheme: Option<String>,
    /// Concurrent streams, when said.
    pub concurrency: Option<u64>,
    /// Bytes per message or transfer.
    pub size: u64,
    /// Median latency (us).
    pub latency_p50_us: Option<f64>,
    /// Mean latency (us).
    pub latency_mean_us: Option<f64>,
    /// Aggregate bandwidth, 10^9 B/s.
    pub bandwidth_gbps: Option<f64>,
    /// Time of one transfer (ms).
    pub transfer_time_ms: Option<f64>,
    /// Staircase tier centres (ms), lowest first, when the run found tiers.
    pub tier_centres_ms: Vec<f64>,
    /// L2 profile figures, when present.
    pub profile: Option<KvProfile>,
    /// Timed iterations behind the figures (0 when the tool does not say).
    pub samples: u64,
    /// Whether the payload's path was confirmed on the intended devices.
    pub path: PathCheck,
    /// The larger of the sides' shares of the timed span spent waiting for a CPU, %, when the
    /// result says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_wait_pct: Option<f64>,
    /// Whether the host payload fit in the last-level cache and was not evicted before each
    /// transfer (`--cold-cache`), so transfers back to back may have run from the cache; None
    /// where the result does not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_warm: Option<bool>,
}

impl LowPoint {
    /// A label for plots and tables: tool, backend and transport.
    pub fn series(&self) -> String {
        match &self.backend {
            Some(b) if self.tool == "kvxfer" => {
                format!("kvxfer {} {}", b, self.transport.name())
            }
            _ => format!("{} {}", self.tool, self.transport.name()),
        }
    }
    /// True for a many-to-one run, or a single stream (c=1, the incast baseline).
    pub fn is_incast_shape(&self) -> bool {
        self.scheme.as_deref() == Some("manytoone") || self.concurrency == Some(1)
    }
}

fn text(m: &Map<String, Value>, k: &str) -> Option<String> {
    m.get(k).and_then(Value::as_str).map(str::to_string)
}

/// The transport of a document: provider, transport, UCX_TLS (config or environment),
/// then the pattern id's words.
fn transport_of(doc: &ResultDoc) -> Transport {
    let c = &doc.config;
    let mut words: Vec<String> = ["provider", "transport", "ucx_tls", "tls"]
        .iter()
        .filter_map(|k| text(c, k))
        .collect();
    words.extend(doc.environment.provider.clone());
    words.extend(doc.environment.env.get("UCX_TLS").cloned());
    words.extend(
        doc.environment
            .extra
            .get("ucx_transports")
            .map(Value::to_string),
    );
    words.extend(doc.pattern_id.clone());
    words
        .iter()
        .find_map(|w| Transport::from_word(w))
        .unwrap_or(Transport::Other)
}

/// True when the document ran on one host: the `lo` domain or device, shared memory, or a
/// loopback plan's pattern (`pll-lo-...`).
fn loopback_of(doc: &ResultDoc, t: Transport) -> bool {
    let c = &doc.config;
    let lo = |v: Option<&str>| v.is_some_and(|v| v.split(',').any(|d| d.trim() == "lo"));
    t == Transport::Shm
        || lo(c.get("domain").and_then(Value::as_str))
        || lo(c.get("ucx_net_devices").and_then(Value::as_str))
        || lo(doc.environment.domain.as_deref())
        || lo(doc
            .environment
            .env
            .get("UCX_NET_DEVICES")
            .map(String::as_str))
        || doc
            .pattern_id
            .as_deref()
            .is_some_and(|p| p.starts_with("pll-lo-"))
}

/// True when a result's counters saw its payload cross no network device but the loopback
/// (`path.kind` none or local).
fn one_host_path(r: &SizeResult) -> bool {
    let kind = r
        .path
        .as_ref()
        .and_then(|p| p.get("kind"))
        .and_then(Value::as_str);
    matches!(kind, Some("none" | "local"))
}

/// Why a document is no evidence at all: a failed run, or one whose payload took another path
/// than it asked for (`wrong-path`).
pub(super) fn refused(doc: &ResultDoc) -> Option<&'static str> {
    use crate::report::Status;
    match doc.status {
        Status::Failed => Some("a failed run"),
        Status::WrongPath => {
            Some("a wrong-path run: its payload did not take the path it asked for")
        }
        Status::Complete | Status::Partial => None,
    }
}

fn concurrency_of(c: &Map<String, Value>) -> Option<u64> {
    ["concurrency", "num_threads", "workers"]
        .iter()
        .find_map(|k| num(c.get(*k)))
        .filter(|x| *x >= 1.0)
        .map(|x| x as u64)
}

/// A number under `path` (dot-separated) in a result's `extra`.
fn extra_num(extra: &Map<String, Value>, path: &str) -> Option<f64> {
    let mut cur = extra.get(path.split('.').next()?)?;
    for k in path.split('.').skip(1) {
        cur = cur.get(k)?;
    }
    num(Some(cur))
}

/// The L2 figures of one result, read defensively: `kvxfer kv profile`'s `decomposition`
/// (registration, slow start after the longest idle gap, per-descriptor cost, the remainder
/// beyond the theoretical time, the cold connection's extra), else an xfer run's `costs`
/// (first registration, the cold first transfer against the steady state).
fn profile_of(r: &SizeResult) -> Option<KvProfile> {
    let x = &r.extra;
    let first = |keys: &[&str]| keys.iter().find_map(|k| extra_num(x, k));
    let p = KvProfile {
        slow_start_ms: first(&["decomposition.slow_start_ms"]),
        registration_ms: first(&["decomposition.registration_ms"])
            .or_else(|| first(&["costs.registration_first_us"]).map(|us| us / 1e3)),
        descriptors_ms: first(&["decomposition.per_descriptor_ms"]),
        protocol_ms: first(&["decomposition.remainder_ms"]),
        cold_excess_ms: first(&["decomposition.cold_connection_extra_ms"]).or_else(|| {
            first(&["costs.first_transfer_us"])
                .zip(first(&["costs.steady_state_p50_us"]))
                .map(|(f, s)| (f - s) / 1e3)
        }),
    };
    (!p.is_empty()).then_some(p)
}

/// The points of one document (one per message size).
pub fn points(source: &str, doc: &ResultDoc) -> Vec<LowPoint> {
    let c = &doc.config;
    let transport = transport_of(doc);
    let scheme = text(c, "scheme").map(|s| s.replace(['_', '-'], "").to_ascii_lowercase());
    let backend = text(c, "backend").map(|b| b.to_ascii_lowercase());
    doc.results
        .iter()
        .map(|r| {
            let lat = r.latency_us.as_ref();
            let finite = |v: f64| v.is_finite().then_some(v);
            LowPoint {
                source: source.to_string(),
                tool: doc.tool.clone(),
                bench: doc.bench.clone(),
                layer: doc.layer.clone(),
                pattern_id: doc.pattern_id.clone(),
                backend: backend.clone(),
                transport,
                loopback: loopback_of(doc, transport) || one_host_path(r),
                scheme: scheme.clone(),
                concurrency: concurrency_of(c),
                // A profile moves whole pages; the cache's exact bytes name its size.
                size: extra_num(&r.extra, "kv_cache_size_bytes")
                    .filter(|b| *b >= 1.0)
                    .map_or(r.message_size, |b| b as u64),
                latency_p50_us: lat.and_then(|l| finite(l.p50)),
                latency_mean_us: lat.and_then(|l| finite(l.mean)),
                bandwidth_gbps: r.bandwidth_gbps.filter(|b| b.is_finite()),
                transfer_time_ms: r.transfer_time_ms.filter(|t| t.is_finite()),
                tier_centres_ms: r
                    .extra
                    .get("tiers")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|t| num(t.get("centre_ms"))).collect())
                    .unwrap_or_default(),
                profile: profile_of(r),
                samples: r.iterations,
                path: PathCheck::from_value(r.path.as_ref()),
                cpu_wait_pct: ["initiator", "target"]
                    .iter()
                    .filter_map(|s| extra_num(&r.extra, &format!("scheduling.{s}.waiting_pct")))
                    .reduce(f64::max),
                cache_warm: cache_warm(&r.extra),
            }
        })
        .collect()
}

/// Whether a result's `cache` block says its payload fit in the last-level cache and stayed
/// there between transfers.
fn cache_warm(extra: &serde_json::Map<String, Value>) -> Option<bool> {
    let c = extra.get("cache")?;
    let fits = c.get("fits_llc")?.as_bool()?;
    let evicted = c.get("evicted_before_each")?.as_bool()?;
    Some(fits && !evicted)
}

/// The points of one result document's bytes. Refused, with the reason: bytes that are no
/// `kvxfer.result/v1` document, a failed run, or a wrong-path run (see [`refused`]).
pub fn points_from_json(source: &str, bytes: &[u8]) -> Result<Vec<LowPoint>, String> {
    let doc = ResultDoc::from_json(bytes)
        .map_err(|why| format!("not a kvxfer.result/v1 document: {why}"))?;
    match refused(&doc) {
        Some(why) => Err(why.into()),
        None => Ok(points(source, &doc)),
    }
}

/// Every point of the result documents under `dir` (recursively). Files that are not result
/// documents (crosscheck.json, state files) or failed runs are returned as skipped.
pub fn load_dir(dir: &Path) -> Result<(Vec<LowPoint>, Vec<Skipped>), AnalyzeError> {
    let mut pts = Vec::new();
    let mut skipped = Vec::new();
    let mut files = json_files(dir)?;
    for (name, bytes) in &mut files {
        match points_from_json(&name, &bytes) {
            Ok(p) => pts.extend(p),
            Err(reason) => skipped.push(Skipped { file: name, reason }),
        }
    }
    skipped.append(&mut files.skipped);
    Ok((pts, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn transport_scheme_tiers_and_costs_are_read() {
        let mut d = ResultDoc::new("kvxfer", "xfer", "L1");
        d.config.insert("provider".into(), json!("tcp"));
        d.config.insert("domain".into(), json!("lo"));
        d.config.insert("backend".into(), json!("libfabric"));
        d.config.insert("scheme".into(), json!("many_to_one"));
        d.config.insert("concurrency".into(), json!(4));
        d.results.push(SizeResult {
            message_size: 1 << 20,
            transfer_time_ms: Some(2.0),
            extra: json!({"tiers": [{"centre_ms": 1.0}, {"centre_ms": 3.5}],
                          "costs": {"registration_first_us": 1500.0,
                                    "first_transfer_us": 5000.0, "steady_state_p50_us": 2000.0},
                          "scheduling": {"initiator": {"waiting_pct": 12.5},
                                         "target": {"waiting_pct": 40.0}, "host_cpus": 2}})
            .as_object()
            .unwrap()
            .clone(),
            ..Default::default()
        });
        let p = &points("x.json", &d)[0];
        assert_eq!(p.transport, Transport::Tcp);
        assert!(p.loopback);
        assert_eq!(p.cpu_wait_pct, Some(40.0));
        // No cache block: nothing said either way.
        assert_eq!(p.cache_warm, None);
        assert_eq!(p.scheme.as_deref(), Some("manytoone"));
        assert_eq!(p.concurrency, Some(4));
        assert_eq!(p.tier_centres_ms, vec![1.0, 3.5]);
        let prof = p.profile.as_ref().unwrap();
        assert_eq!(prof.registration_ms, Some(1.5));
        assert_eq!(prof.cold_excess_ms, Some(3.0));
        assert_eq!(prof.slow_start_ms, None);
        assert_eq!(p.series(), "kvxfer libfabric tcp");
    }

    #[test]
    fn a_kv_profile_gives_its_decomposition_and_the_caches_exact_size() {
        let mut d = ResultDoc::new("kvxfer", "kv_profile", "L2");
        d.config.insert("provider".into(), json!("efa"));
        d.results.push(SizeResult {
            message_size: 704_643_072 + 4096,
            transfer_time_ms: Some(200.0),
            extra: json!({"tokens": 12288, "kv_cache_size_bytes": 704_643_072u64,
                "decomposition": {"theoretical_ms": 160.1, "registration_ms": 12.0,
                    "slow_start_ms": 3.0, "per_descriptor_ms": 9.0, "remainder_ms": 30.9,
                    "cold_connection_extra_ms": 40.0},
                "cache": {"fits_llc": true, "evicted_before_each": false}})
            .as_object()
            .unwrap()
            .clone(),
            ..Default::default()
        });
        let p = &points("k.json", &d)[0];
        assert_eq!((p.size, p.transport), (704_643_072, Transport::Efa));
        let prof = p.profile.as_ref().unwrap();
        assert_eq!(prof.registration_ms, Some(12.0));
        assert_eq!(prof.slow_start_ms, Some(3.0));
        assert_eq!(prof.descriptors_ms, Some(9.0));
        assert_eq!(prof.protocol_ms, Some(30.9));
        assert_eq!(prof.cold_excess_ms, Some(40.0));
        assert_eq!(p.cache_warm, Some(true));
        // Evicted before each transfer, or too large to fit: not warm.
        for cache in [
            json!({"fits_llc": true, "evicted_before_each": true}),
            json!({"fits_llc": false, "evicted_before_each": false}),
        ] {
            d.results[0].extra.insert("cache".into(), cache);
            assert_eq!(points("k.json", &d)[0].cache_warm, Some(false));
        }
        // A block without the answer (the cache's size unknown) says nothing.
        d.results[0].extra.insert(
            "cache".into(),
            json!({"fits_llc": null, "evicted_before_each": false}),
        );
        assert_eq!(points("k.json", &d)[0].cache_warm, None);
    }

    #[test]
    fn stock_tool_transport_comes_from_the_pattern_id() {
        let mut d = ResultDoc::new("nixlbench", "xfer", "L1");
        d.pattern_id = Some("pll-nixlbench-efa-672m-c16".into());
        d.results.push(SizeResult {
            message_size: 704643072,
            ..Default::default()
        });
        assert_eq!(points("n.json", &d)[0].transport, Transport::Efa);
        assert!(!points("n.json", &d)[0].loopback);
        d.pattern_id = Some("pll-lo-ucx-perftest-shm-tag-lat".into());
        assert_eq!(points("n.json", &d)[0].transport, Transport::Shm);
        d.pattern_id = None;
        assert_eq!(points("n.json", &d)[0].transport, Transport::Other);
    }

    #[test]
    fn a_payload_that_crossed_no_network_device_is_one_host_and_a_wrong_path_no_evidence() {
        let mut d = ResultDoc::new("kvxfer", "xfer", "L1");
        d.status = crate::report::Status::Complete;
        d.config.insert("provider".into(), json!("efa"));
        for kind in ["network", "none", "local"] {
            d.results.push(SizeResult {
                message_size: 1 << 20,
                path: Some(json!({"kind": kind, "verdict": "-"})),
                ..Default::default()
            });
        }
        let p = points("x.json", &d);
        let one_host: Vec<bool> = p.iter().map(|x| x.loopback).collect();
        assert_eq!(one_host, [false, true, true]);
        assert_eq!(p[1].transport, Transport::Efa);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ok.json"), d.to_json()).unwrap();
        d.status = crate::report::Status::WrongPath;
        std::fs::write(dir.path().join("wrong.json"), d.to_json()).unwrap();
        let (pts, skipped) = load_dir(dir.path()).unwrap();
        assert_eq!(pts.len(), 3);
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].file.ends_with("wrong.json"));
        assert!(
            skipped[0].reason.starts_with("a wrong-path run"),
            "{}",
            skipped[0].reason
        );
    }
}

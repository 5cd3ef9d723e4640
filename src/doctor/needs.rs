//! What a plan's patterns need of a node: fabrics, memory, GPUs, etcd, reference tools; read
//! from the plan's JSON as the templates read it.

use std::collections::BTreeMap;

use serde_json::Value;

/// What one pattern needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatternNeed {
    /// The pattern's id.
    pub id: String,
    /// Its stock tool (`fi_pingpong`, `nixlbench`, ...).
    pub tool: String,
    /// libfabric providers it opens (`efa`, `tcp`, `shm`).
    pub providers: Vec<String>,
    /// UCX transports it asks for (UCX_TLS split at commas); None when it does not use UCX,
    /// empty when UCX chooses.
    pub ucx: Option<Vec<String>>,
    /// Its buffers are GPU memory (VRAM, `mem: cuda`).
    pub vram: bool,
    /// Buffer bytes one side of it holds (the registration: size x concurrency).
    pub bytes: u64,
    /// It meets its peers through etcd.
    pub etcd: bool,
    /// Idle gaps it leaves between transfers, milliseconds (the slow-start measurement).
    pub idle_ms: Vec<u64>,
    /// Keys of `infrastructure.tools` it runs besides kvxfer.
    pub tools: Vec<String>,
    /// Its environment: `common.env`, then its own `env`.
    pub env: BTreeMap<String, String>,
}

/// UCX transports that go through an RDMA device (and pin what they register).
const UCX_RDMA: &[&str] = &[
    "srd", "rc", "rc_v", "rc_x", "rc_mlx5", "ud", "ud_v", "ud_x", "ud_mlx5", "dc", "dc_x",
    "dc_mlx5", "ib",
];

impl PatternNeed {
    /// It goes over EFA (the efa provider, or UCX's srd).
    pub fn efa(&self) -> bool {
        self.providers.iter().any(|p| p == "efa")
            || self
                .ucx
                .as_ref()
                .is_some_and(|t| t.iter().any(|x| x == "srd"))
    }

    /// It goes through an RDMA device (efa, verbs, UCX's InfiniBand/EFA transports).
    pub fn rdma(&self) -> bool {
        self.providers.iter().any(|p| p == "efa" || p == "verbs")
            || self
                .ucx
                .as_ref()
                .is_some_and(|t| t.iter().any(|x| UCX_RDMA.contains(&x.as_str())))
    }

    /// It goes over TCP (the tcp or sockets provider, UCX's tcp).
    pub fn tcp(&self) -> bool {
        self.providers.iter().any(|p| p == "tcp" || p == "sockets")
            || self
                .ucx
                .as_ref()
                .is_some_and(|t| t.iter().any(|x| x == "tcp"))
    }

    /// Its host buffers are pinned by registration (RDMA over host memory).
    pub fn pins(&self) -> bool {
        self.rdma() && !self.vram
    }

    /// It measures after idle gaps over TCP (what TCP's slow start after idle changes).
    pub fn slow_start(&self) -> bool {
        self.tcp() && self.idle_ms.iter().any(|&ms| ms > 0)
    }
}

/// What the chosen patterns of a plan need, with the plan's shared settings.
#[derive(Debug, Clone, Default)]
pub struct PlanNeeds {
    /// The plan's name.
    pub name: String,
    /// The chosen patterns, in plan order.
    pub patterns: Vec<PatternNeed>,
    /// Sides of a transfer this node holds: 2 for a one-host plan, else 1.
    pub sides: u64,
    /// `common.env`.
    pub env: BTreeMap<String, String>,
    /// `infrastructure.tools`.
    pub tools: BTreeMap<String, String>,
    /// `infrastructure.etcd.port`.
    pub etcd_port: Option<u16>,
    /// `common.control_port`.
    pub control_port: Option<u16>,
}

impl PlanNeeds {
    /// The needs of `plan`'s patterns `ids` (all when empty).
    pub fn of(plan: &Value, ids: &[String]) -> PlanNeeds {
        let env = strings(plan.pointer("/common/env"));
        let bytes_per_token = plan
            .pointer("/kv_cache_reference/bytes_per_token")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let mut patterns = Vec::new();
        for layer in plan["layers"].as_array().into_iter().flatten() {
            let layer_etcd = layer["needs_etcd"].as_bool().unwrap_or(false);
            for p in layer["patterns"].as_array().into_iter().flatten() {
                let id = p["id"].as_str().unwrap_or_default();
                if !ids.is_empty() && !ids.iter().any(|i| i == id) {
                    continue;
                }
                let mut need = pattern_need(p, &env, bytes_per_token);
                need.etcd |= layer_etcd;
                patterns.push(need);
            }
        }
        let one_host = plan.pointer("/infrastructure/topology") == Some(&Value::from("one-host"));
        let port = |ptr: &str| {
            plan.pointer(ptr)
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
        };
        PlanNeeds {
            name: plan["name"].as_str().unwrap_or_default().to_string(),
            patterns,
            sides: if one_host { 2 } else { 1 },
            env,
            tools: strings(plan.pointer("/infrastructure/tools")),
            etcd_port: port("/infrastructure/etcd/port"),
            control_port: port("/common/control_port"),
        }
    }

    /// The ids of the patterns for which `f` holds.
    pub fn ids(&self, f: impl Fn(&PatternNeed) -> bool) -> Vec<String> {
        self.patterns
            .iter()
            .filter(|p| f(p))
            .map(|p| p.id.clone())
            .collect()
    }

    /// The pattern for which `f` holds with the most bytes on this node (bytes x sides), the
    /// first in plan order of equals.
    pub fn largest(&self, f: impl Fn(&PatternNeed) -> bool) -> Option<(&PatternNeed, u64)> {
        self.patterns
            .iter()
            .filter(|p| f(p))
            .map(|p| (p, p.bytes.saturating_mul(self.sides)))
            .fold(None, |best, (p, b)| match best {
                Some((_, most)) if most >= b => best,
                _ => Some((p, b)),
            })
    }
}

/// A JSON object of strings as a map (other values left out).
fn strings(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// A number parameter, or `default`.
fn num(p: &Value, name: &str, default: u64) -> u64 {
    p[name].as_u64().unwrap_or(default)
}

fn transports(tls: &str) -> Vec<String> {
    tls.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// One pattern's needs: its tool and parameters as the templates turn them into commands.
fn pattern_need(p: &Value, common: &BTreeMap<String, String>, bytes_per_token: u64) -> PatternNeed {
    let params = &p["params"];
    let mut env = common.clone();
    env.extend(strings(p.get("env")));
    let tool = p["tool"].as_str().unwrap_or_default().to_string();
    let tls = params["ucx_tls"]
        .as_str()
        .map(str::to_string)
        .or_else(|| env.get("UCX_TLS").cloned());
    let max_size = params["sizes"]
        .as_array()
        .and_then(|s| s.iter().filter_map(Value::as_u64).max())
        .unwrap_or(0);
    let mut need = PatternNeed {
        id: p["id"].as_str().unwrap_or_default().to_string(),
        providers: params["provider"]
            .as_str()
            .map(str::to_string)
            .into_iter()
            .collect(),
        idle_ms: params["idle_ms"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default(),
        vram: params["mem"].as_str() == Some("cuda")
            || params["initiator_seg_type"].as_str() == Some("VRAM")
            || params["target_seg_type"].as_str() == Some("VRAM"),
        env,
        ..PatternNeed::default()
    };
    let ucx = || Some(tls.as_deref().map(transports).unwrap_or_default());
    match tool.as_str() {
        "fi_pingpong" | "fi_rma_pingpong" => {
            need.bytes = max_size;
            need.tools = vec![tool.clone()];
        }
        "ucx_perftest" => {
            need.bytes = max_size;
            need.ucx = ucx();
            need.tools = vec![tool.clone()];
        }
        "kvxfer_xfer" => {
            need.bytes = num(params, "size", 0).saturating_mul(num(params, "concurrency", 1));
            if params["backend"].as_str() == Some("ucx") {
                need.ucx = ucx();
            }
            if params["twin"].as_str() == Some("nixl") {
                need.tools = vec!["nixl_python".into(), "nixl_xfer".into()];
            }
            need.etcd = params.get("etcd").is_some();
        }
        "nixlbench" => nixlbench_need(&mut need, params),
        "kvbench" => {
            need.bytes = params["kv_bytes"]
                .as_u64()
                .unwrap_or_else(|| num(params, "isl", 0).saturating_mul(bytes_per_token));
            need.ucx = ucx();
            // KVBench's command moves VRAM to VRAM.
            need.vram = true;
            need.tools = vec!["kvbench_dir".into(), "python".into()];
            need.etcd = true;
        }
        "kvxfer_kv" => {
            need.bytes = num(params, "tokens", 0).saturating_mul(bytes_per_token);
            if params["backend"].as_str() == Some("ucx") {
                need.ucx = ucx();
            }
        }
        _ => {}
    }
    need.tool = tool;
    need
}

/// What a nixlbench pattern needs: its bytes, its UCX transports or libfabric provider, the
/// tool and etcd.
fn nixlbench_need(need: &mut PatternNeed, params: &Value) {
    need.bytes = num(params, "block_size", 0)
        .saturating_mul(num(params, "batch_size", 1))
        .saturating_mul(num(params, "concurrency", 1));
    match params["backend"].as_str() {
        Some("UCX") => {
            need.ucx = Some(
                params["transport"]
                    .as_str()
                    .map(transports)
                    .unwrap_or_default(),
            )
        }
        _ => {
            need.providers = params["transport"]
                .as_str()
                .map(str::to_string)
                .into_iter()
                .collect()
        }
    }
    need.tools = vec!["nixlbench".into()];
    need.etcd = true;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(name: &str) -> Value {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        crate::plan::load_plan(&root.join("plans").join(name)).unwrap()
    }

    #[test]
    fn the_low_level_plan_needs_efa_vram_etcd_and_its_largest_pinned_pattern_is_672_mib() {
        let n = PlanNeeds::of(&plan("phase-low-level.json"), &[]);
        assert_eq!(n.sides, 1);
        assert_eq!(n.etcd_port, Some(2379));
        assert_eq!(n.env["FI_EFA_USE_DEVICE_RDMA"], "1");
        let get = |id: &str| n.patterns.iter().find(|p| p.id == id).unwrap();
        let nb = get("pll-nixlbench-efa-672m-c4");
        assert!(nb.efa() && nb.vram && nb.etcd && !nb.pins());
        assert_eq!(nb.bytes, 4 * 704_643_072);
        assert_eq!(nb.tools, ["nixlbench"]);
        let nt = get("pll-nixlbench-tcp-55m");
        assert_eq!(nt.ucx.as_deref(), Some(&["tcp".to_string()][..]));
        assert!(nt.tcp() && !nt.rdma());
        let kv = get("pll-kvbench-efa-12k");
        assert_eq!(kv.bytes, 12288 * 57344);
        assert!(kv.pins() && !kv.slow_start(), "EFA is not TCP");
        let srd = get("pll-ucx-perftest-srd-host-tag-bw");
        assert!(srd.efa() && srd.pins());
        let (big, bytes) = n.largest(PatternNeed::pins).unwrap();
        assert_eq!(
            (big.id.as_str(), bytes),
            ("pll-kvbench-efa-12k", 704_643_072)
        );
        assert!(get("pll-kvbench-ucx-srd-1k").vram);
        assert!(get("pll-ucx-perftest-tcp-cuda-tag-lat").vram);
    }

    #[test]
    fn the_loopback_plan_holds_both_sides_and_its_slow_start_pattern_is_the_tcp_profile() {
        let n = PlanNeeds::of(&plan("loopback.json"), &[]);
        assert_eq!(n.sides, 2);
        assert_eq!(n.ids(PatternNeed::slow_start), ["pll-lo-kv-profile-tcp"]);
        assert!(
            n.ids(PatternNeed::pins).is_empty(),
            "tcp, shm and cma pin nothing"
        );
        assert!(n.ids(|p| p.etcd).is_empty());
        let (p, bytes) = n.largest(|p| !p.vram).unwrap();
        assert_eq!(
            (p.id.as_str(), bytes),
            ("pll-lo-xfer-nixl-tcp-672m", 2 * 704_643_072)
        );
        assert_eq!(p.tools, ["nixl_python", "nixl_xfer"]);
        let only = PlanNeeds::of(&plan("loopback.json"), &["pll-lo-kvxfer-xfer-tcp".into()]);
        assert_eq!(only.patterns.len(), 1);
        assert_eq!(only.patterns[0].bytes, 2 * 1_048_576);
        assert_eq!(only.patterns[0].providers, ["tcp"]);
    }
}

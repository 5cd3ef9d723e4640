//! KVBench (NIXL's benchmark/kvbench): its model YAML, its model-config YAML, and the
//! arithmetic of its `plan` (IO size and batch of the nixlbench command it prints).

use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{Attention, KvDtype, KvGeometry, ModelError};

/// How a request's cache is cut into descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessPattern {
    /// One descriptor per page per layer.
    Layer,
    /// One descriptor per page across the layers of a pipeline stage.
    Block,
}

impl AccessPattern {
    /// `layer` or `block`.
    pub fn name(self) -> &'static str {
        match self {
            AccessPattern::Layer => "layer",
            AccessPattern::Block => "block",
        }
    }
}

/// Parallelism and paging: what decides the size of one descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct KvLayout {
    /// Tensor-parallel ranks (each holds 1/tp of every layer's heads).
    pub tp: u64,
    /// Pipeline stages (each holds layers / pp layers).
    pub pp: u64,
    /// Tokens per page.
    pub page_size: u64,
    /// Layer or block descriptors.
    pub access: AccessPattern,
}

impl Default for KvLayout {
    fn default() -> Self {
        KvLayout {
            tp: 1,
            pp: 1,
            page_size: 1,
            access: AccessPattern::Layer,
        }
    }
}

impl KvLayout {
    /// Checks the layout against the model: tp, pp, page size at least 1, pp at most the
    /// layer count.
    pub fn validate(&self, g: &KvGeometry) -> Result<(), ModelError> {
        for (what, v) in [
            ("--tp", self.tp),
            ("--pp", self.pp),
            ("--page-size", self.page_size),
        ] {
            if v == 0 {
                return Err(ModelError::Invalid(format!("{what} must be at least 1")));
            }
        }
        if self.pp > g.layers {
            return Err(ModelError::Invalid(format!(
                "--pp {} is above the layer count of {} ({}): a pipeline stage needs a layer",
                self.pp, g.name, g.layers
            )));
        }
        Ok(())
    }

    /// Bytes of one descriptor, by KVBench's arithmetic: the per-layer bytes of a token over
    /// tp, times the stage's layers for the block pattern (layers / pp, truncated; ceil for
    /// MLA models, as KVBench has it), times the page size.
    pub fn io_size(&self, g: &KvGeometry) -> Result<u64, ModelError> {
        self.validate(g)?;
        let per_layer = g.bytes_per_token_per_layer();
        let io = match (g.attention, self.access) {
            (Attention::Gqa { .. }, AccessPattern::Layer) => per_layer / self.tp,
            (Attention::Gqa { .. }, AccessPattern::Block) => {
                (per_layer / self.tp) * g.layers / self.pp
            }
            (Attention::Mla { .. }, AccessPattern::Layer) => {
                return nonzero(per_layer * self.page_size / self.tp, g, self)
            }
            (Attention::Mla { .. }, AccessPattern::Block) => {
                return nonzero(
                    per_layer * g.layers.div_ceil(self.pp) * self.page_size / self.tp,
                    g,
                    self,
                )
            }
        };
        nonzero(io * self.page_size, g, self)
    }
}

fn nonzero(io: u64, g: &KvGeometry, l: &KvLayout) -> Result<u64, ModelError> {
    if io == 0 {
        return Err(ModelError::Invalid(format!(
            "--tp {} leaves less than one byte of {}'s per-layer cache per rank",
            l.tp, g.name
        )));
    }
    Ok(io)
}

/// KVBench's `runtime` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Workload {
    /// Input sequence length (prompt tokens).
    pub isl: u64,
    /// Output sequence length (recorded; the plan does not use it).
    pub osl: u64,
    /// Requests per nixlbench iteration.
    pub num_requests: u64,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            isl: 1,
            osl: 1,
            num_requests: 1,
        }
    }
}

/// A KVBench model-config YAML, with KVBench's defaults for what it leaves out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModelConfig {
    /// tp, pp, page size, access pattern.
    pub layout: KvLayout,
    /// isl, osl, requests.
    pub workload: Workload,
    /// strategy.model_quant_mode.
    pub model_quant_mode: String,
    /// strategy.kvcache_quant_mode: the cache's element type.
    pub kvcache_quant_mode: KvDtype,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            layout: KvLayout::default(),
            workload: Workload::default(),
            model_quant_mode: "fp8".into(),
            kvcache_quant_mode: KvDtype::Fp8,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawConfig {
    strategy: RawStrategy,
    runtime: RawRuntime,
    system: RawSystem,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawStrategy {
    tp_size: Option<u64>,
    pp_size: Option<u64>,
    model_quant_mode: Option<String>,
    kvcache_quant_mode: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawRuntime {
    isl: Option<u64>,
    osl: Option<u64>,
    num_requests: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawSystem {
    access_pattern: Option<String>,
    page_size: Option<u64>,
}

fn yaml<T: for<'de> Deserialize<'de>>(text: &str, path: &str) -> Result<T, ModelError> {
    serde_saphyr::from_str(text).map_err(|e| ModelError::Syntax {
        path: path.to_string(),
        format: "YAML",
        message: e.to_string().lines().next().unwrap_or_default().to_string(),
    })
}

/// Parses an access pattern (`block` or `layer`).
pub fn parse_access(s: &str) -> Result<AccessPattern, ModelError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "block" => Ok(AccessPattern::Block),
        "layer" => Ok(AccessPattern::Layer),
        _ => Err(ModelError::Invalid(format!(
            "access pattern {s:?}: use block or layer"
        ))),
    }
}

/// Reads a KVBench model-config YAML.
pub fn load_config(path: &Path) -> Result<ModelConfig, ModelError> {
    parse_config(&super::read(path)?, &path.display().to_string())
}

/// Parses the text of a KVBench model-config YAML.
pub fn parse_config(text: &str, path: &str) -> Result<ModelConfig, ModelError> {
    let raw: RawConfig = yaml(text, path)?;
    let d = ModelConfig::default();
    Ok(ModelConfig {
        layout: KvLayout {
            tp: raw.strategy.tp_size.unwrap_or(d.layout.tp),
            pp: raw.strategy.pp_size.unwrap_or(d.layout.pp),
            page_size: raw.system.page_size.unwrap_or(d.layout.page_size),
            // KVBench leaves it unset by default, which its arithmetic treats as `layer`.
            access: match raw.system.access_pattern {
                Some(a) => parse_access(&a)?,
                None => d.layout.access,
            },
        },
        workload: Workload {
            isl: raw.runtime.isl.unwrap_or(d.workload.isl),
            osl: raw.runtime.osl.unwrap_or(d.workload.osl),
            num_requests: raw.runtime.num_requests.unwrap_or(d.workload.num_requests),
        },
        model_quant_mode: raw.strategy.model_quant_mode.unwrap_or(d.model_quant_mode),
        kvcache_quant_mode: match raw.strategy.kvcache_quant_mode {
            Some(q) => q.parse()?,
            None => d.kvcache_quant_mode,
        },
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawModel {
    model_name: Option<String>,
    num_layers: Option<u64>,
    num_query_heads_with_mha: Option<u64>,
    gqa_num_queries_in_group: Option<u64>,
    num_kv_heads: Option<u64>,
    query_head_dimension: Option<u64>,
    rope_mla_dimension: Option<u64>,
    mla_latent_vector_dimension: Option<u64>,
}

/// Reads a KVBench model YAML. It names no element type: `dtype` (`--kv-dtype` or the
/// model-config's kvcache_quant_mode) or else KVBench's default, fp8.
pub fn load_model(path: &Path, dtype: Option<KvDtype>) -> Result<KvGeometry, ModelError> {
    parse_model(&super::read(path)?, &path.display().to_string(), dtype)
}

/// Parses the text of a KVBench model YAML (Llama, Qwen3 / GPT-OSS or DeepSeek MLA form).
pub fn parse_model(
    text: &str,
    path: &str,
    dtype: Option<KvDtype>,
) -> Result<KvGeometry, ModelError> {
    let m: RawModel = yaml(text, path)?;
    let missing = |field: &'static str, why: &'static str| ModelError::MissingField {
        path: path.to_string(),
        field,
        why,
    };
    let layers = m
        .num_layers
        .ok_or_else(|| missing("num_layers", "the layer count"))?;
    let attention = if m.rope_mla_dimension.is_some() || m.mla_latent_vector_dimension.is_some() {
        Attention::Mla {
            rope_dim: m
                .rope_mla_dimension
                .ok_or_else(|| missing("rope_mla_dimension", "an MLA model's RoPE key"))?,
            latent_dim: m.mla_latent_vector_dimension.ok_or_else(|| {
                missing(
                    "mla_latent_vector_dimension",
                    "an MLA model's latent vector",
                )
            })?,
        }
    } else {
        let head_dim = m
            .query_head_dimension
            .ok_or_else(|| missing("query_head_dimension", "the head dimension"))?;
        let kv_heads = match (m.num_kv_heads, m.num_query_heads_with_mha) {
            (Some(k), _) => k,
            (None, Some(q)) => {
                let g = m.gqa_num_queries_in_group.ok_or_else(|| {
                    missing("gqa_num_queries_in_group", "the KV heads of a Llama model")
                })?;
                if g == 0 || q % g != 0 {
                    return Err(ModelError::Invalid(format!(
                        "{path}: num_query_heads_with_mha {q} is not a multiple of \
                         gqa_num_queries_in_group {g}"
                    )));
                }
                q / g
            }
            (None, None) => return Err(missing("num_kv_heads", "the KV head count")),
        };
        Attention::Gqa { kv_heads, head_dim }
    };
    Ok(KvGeometry {
        name: m
            .model_name
            .map(|n| n.to_ascii_lowercase())
            .unwrap_or_else(|| path.to_string()),
        layers,
        attention,
        dtype: dtype.unwrap_or(KvDtype::Fp8),
    })
}

/// What `kvxfer kv plan` computes: KVBench's numbers and the nixlbench command they make.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    /// The model.
    pub model: KvGeometry,
    /// Parallelism and paging.
    pub layout: KvLayout,
    /// isl, osl, requests.
    pub workload: Workload,
    /// Bytes per token, whole model.
    pub kv_bytes_per_token: u64,
    /// Bytes of one request's cache (per token x isl).
    pub kv_bytes_per_request: u64,
    /// Bytes of one descriptor (nixlbench's block size).
    pub io_size: u64,
    /// Descriptors per iteration (nixlbench's batch size).
    pub batch_size: u64,
    /// nixlbench's parameters, KVBench's defaults overridden, in KVBench's order.
    pub nixlbench: Vec<(&'static str, Value)>,
    /// nixlbench's defaults for the same parameters (what the text form leaves out).
    #[serde(skip)]
    pub defaults: Vec<(&'static str, Value)>,
}

/// Options of the nixlbench command that the model does not decide.
#[derive(Debug, Clone)]
pub struct NixlbenchOptions {
    /// `UCX` or `LIBFABRIC`.
    pub backend: String,
    /// `DRAM` or `VRAM`.
    pub initiator_seg_type: String,
    /// `DRAM` or `VRAM`.
    pub target_seg_type: String,
    /// `WRITE` or `READ`.
    pub op_type: String,
    /// etcd endpoints.
    pub etcd_endpoints: String,
    /// Timed iterations.
    pub num_iter: u64,
    /// Warm-up iterations.
    pub warmup_iter: u64,
}

impl Default for NixlbenchOptions {
    fn default() -> Self {
        NixlbenchOptions {
            backend: "UCX".into(),
            initiator_seg_type: "DRAM".into(),
            target_seg_type: "DRAM".into(),
            op_type: "WRITE".into(),
            etcd_endpoints: "http://localhost:2379".into(),
            num_iter: 1000,
            warmup_iter: 100,
        }
    }
}

fn nixlbench_params(
    o: &NixlbenchOptions,
    io_size: Option<u64>,
    batch: Option<u64>,
) -> Vec<(&'static str, Value)> {
    // KVBench's order; defaults are nixlbench's (block 4 KiB .. 64 MiB, batch 1, 8 GiB).
    let total = match (io_size, batch) {
        (Some(i), Some(b)) => json!(i.saturating_mul(b)),
        _ => json!(8_589_934_592u64),
    };
    vec![
        ("benchmark_group", json!("default")),
        ("backend", json!(o.backend)),
        ("check_consistency", json!(false)),
        ("device_list", json!("all")),
        ("enable_pt", json!(false)),
        ("progress_threads", json!(0)),
        ("etcd_endpoints", json!(o.etcd_endpoints)),
        ("initiator_seg_type", json!(o.initiator_seg_type)),
        ("max_batch_size", json!(batch.unwrap_or(1))),
        ("max_block_size", json!(io_size.unwrap_or(67_108_864))),
        ("mode", json!("SG")),
        ("num_initiator_dev", json!(1)),
        ("num_iter", json!(o.num_iter)),
        ("num_target_dev", json!(1)),
        ("num_threads", json!(1)),
        ("op_type", json!(o.op_type)),
        ("runtime_type", json!("ETCD")),
        ("scheme", json!("pairwise")),
        ("start_batch_size", json!(batch.unwrap_or(1))),
        ("start_block_size", json!(io_size.unwrap_or(4096))),
        ("target_seg_type", json!(o.target_seg_type)),
        ("total_buffer_size", total),
        ("warmup_iter", json!(o.warmup_iter)),
        ("worker_type", json!("nixl")),
        ("large_blk_iter_ftr", json!(16)),
        ("recreate_xfer", json!(false)),
    ]
}

/// KVBench's `plan`: IO size, batch (ceil(request bytes / IO size x requests)) and the
/// nixlbench parameters.
pub fn plan(
    model: &KvGeometry,
    layout: KvLayout,
    workload: Workload,
    opts: &NixlbenchOptions,
) -> Result<Plan, ModelError> {
    if workload.isl == 0 {
        return Err(ModelError::Invalid("--isl must be at least 1 token".into()));
    }
    if workload.num_requests == 0 {
        return Err(ModelError::Invalid(
            "--num-requests must be at least 1".into(),
        ));
    }
    let io_size = layout.io_size(model)?;
    let overflow = || ModelError::Invalid("the plan's byte counts do not fit in 64 bits".into());
    let per_request = model.bytes(workload.isl).ok_or_else(overflow)?;
    let all = per_request
        .checked_mul(workload.num_requests)
        .ok_or_else(overflow)?;
    let batch = all.div_ceil(io_size);
    let defaults = nixlbench_params(&NixlbenchOptions::default(), None, None);
    Ok(Plan {
        model: model.clone(),
        layout,
        workload,
        kv_bytes_per_token: model.bytes_per_token(),
        kv_bytes_per_request: per_request,
        io_size,
        batch_size: batch,
        nixlbench: nixlbench_params(opts, Some(io_size), Some(batch)),
        defaults,
    })
}

impl Plan {
    /// The nixlbench command as KVBench prints it: only parameters that differ from the
    /// defaults, one `--name value` per line.
    pub fn command_text(&self) -> String {
        let mut parts = vec!["nixlbench".to_string()];
        for ((name, v), (_, d)) in self.nixlbench.iter().zip(&self.defaults) {
            if v != d {
                parts.push(format!("--{name} {}", plain(v)));
            }
        }
        parts.join(" \\\n    ")
    }

    /// The same command as an argument vector.
    pub fn command_args(&self) -> Vec<String> {
        let mut args = vec!["nixlbench".to_string()];
        for ((name, v), (_, d)) in self.nixlbench.iter().zip(&self.defaults) {
            if v != d {
                args.push(format!("--{name}"));
                args.push(plain(v));
            }
        }
        args
    }
}

/// A JSON scalar as KVBench's f-strings print it (strings bare, booleans as Python's).
pub fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;

//! KVBench's model classes: which class its loader picks for a `model_name`, what each class's
//! file must hold, and which class kvxfer writes a model's geometry for when KVBench has no
//! class of that model's own (the name then keeps the real model: `qwen3-arch-qwen2.5-7b`).

use serde::Serialize;

use super::{Attention, KvDtype, KvGeometry, ModelError};

/// A model class of KVBench's loader (`models/models.py`, `BaseModelArch.from_yaml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum KvbenchClass {
    /// `Llama3_1`: GQA, KV heads given as query heads over the group size.
    #[serde(rename = "Llama3_1")]
    Llama3_1,
    /// `DeepSeekR1`: MLA, latent vector plus RoPE key.
    DeepSeekR1,
    /// `GptOss`: GQA, KV heads given directly.
    GptOss,
    /// `Qwen3`: GQA, KV heads given directly.
    Qwen3,
}

impl KvbenchClass {
    /// Every class, in the order KVBench's loader tests the name.
    pub const ALL: [KvbenchClass; 4] = [
        KvbenchClass::Llama3_1,
        KvbenchClass::DeepSeekR1,
        KvbenchClass::GptOss,
        KvbenchClass::Qwen3,
    ];

    /// The class's Python name.
    pub fn name(self) -> &'static str {
        match self {
            KvbenchClass::Llama3_1 => "Llama3_1",
            KvbenchClass::DeepSeekR1 => "DeepSeekR1",
            KvbenchClass::GptOss => "GptOss",
            KvbenchClass::Qwen3 => "Qwen3",
        }
    }

    /// The substring of the lower-cased `model_name` that routes to the class.
    pub fn key(self) -> &'static str {
        match self {
            KvbenchClass::Llama3_1 => "llama3.1",
            KvbenchClass::DeepSeekR1 => "deepseek_r1",
            KvbenchClass::GptOss => "gpt_oss",
            KvbenchClass::Qwen3 => "qwen3",
        }
    }

    /// Whether the class computes an MLA cache (else GQA).
    pub fn is_mla(self) -> bool {
        self == KvbenchClass::DeepSeekR1
    }

    /// The constructor's arguments: the model file's keys, all required, no others accepted.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            KvbenchClass::Llama3_1 => &[
                "model_name",
                "num_layers",
                "num_query_heads_with_mha",
                "query_head_dimension",
                "gqa_num_queries_in_group",
                "num_model_params",
            ],
            KvbenchClass::DeepSeekR1 => &[
                "model_name",
                "num_layers",
                "num_query_heads",
                "query_head_dimension",
                "embedding_dimension",
                "rope_mla_dimension",
                "mla_latent_vector_dimension",
                "num_model_params",
            ],
            KvbenchClass::GptOss | KvbenchClass::Qwen3 => &[
                "model_name",
                "num_layers",
                "num_query_heads",
                "num_kv_heads",
                "query_head_dimension",
                "num_model_params",
            ],
        }
    }

    /// The model-config `strategy` key whose precision sizes the class's cache elements.
    pub fn quant_field(self) -> &'static str {
        if self.is_mla() {
            "kvcache_quant_mode"
        } else {
            "model_quant_mode"
        }
    }

    /// The class KVBench's loader picks for `model_name`; None where it raises.
    pub fn route(model_name: &str) -> Option<KvbenchClass> {
        let lower = model_name.to_ascii_lowercase();
        Self::ALL.into_iter().find(|c| lower.contains(c.key()))
    }

    /// `Llama3_1 (llama3.1), DeepSeekR1 (deepseek_r1), ...`: every class with its key.
    pub fn list() -> String {
        Self::ALL
            .iter()
            .map(|c| format!("{} ({})", c.name(), c.key()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Bytes per element of a KVBench precision name (`models/utils.py`); None where it raises.
pub fn precision_bytes(mode: &str) -> Option<u64> {
    match mode {
        "fp8" | "int8" => Some(1),
        "fp16" | "bfloat16" => Some(2),
        _ => None,
    }
}

/// The KVBench precision name of an element type; None for one KVBench cannot size (fp32).
pub fn precision_name(dtype: KvDtype) -> Option<&'static str> {
    match dtype {
        KvDtype::Fp8 => Some("fp8"),
        KvDtype::Int8 => Some("int8"),
        KvDtype::Fp16 => Some("fp16"),
        KvDtype::Bf16 => Some("bfloat16"),
        KvDtype::Fp32 => None,
    }
}

/// The class a model runs as in KVBench, the `model_name` that routes to it, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassChoice {
    /// The class.
    pub class: KvbenchClass,
    /// The name written into the model file (it routes to `class`).
    pub model_name: String,
    /// One sentence: why this class.
    pub why: String,
}

/// The model's name as a file name part: lower case, characters other than `a-z 0-9 . _ -`
/// made `-`, an organisation prefix (`Qwen/`) dropped.
fn slug(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    last.to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The slug with every routing key spelled so that it no longer routes (`gpt_oss` ->
/// `gpt-oss`, `llama3.1` -> `llama-3.1`, `qwen3` -> `qwen-3`).
fn defused(slug: &str) -> String {
    let mut s = slug.to_string();
    for (key, plain) in [
        ("llama3.1", "llama-3.1"),
        ("deepseek_r1", "deepseek-r1"),
        ("gpt_oss", "gpt-oss"),
        ("qwen3", "qwen-3"),
    ] {
        s = s.replace(key, plain);
    }
    s
}

fn geometry_text(g: &KvGeometry) -> String {
    match g.attention {
        Attention::Gqa { kv_heads, head_dim } => {
            format!("GQA, {kv_heads} KV heads x {head_dim}, {} layers", g.layers)
        }
        Attention::Mla {
            rope_dim,
            latent_dim,
        } => format!(
            "MLA, latent {latent_dim} + RoPE {rope_dim}, {} layers",
            g.layers
        ),
    }
}

/// Whether `class` computes `g`'s cache exactly: the same kind of attention and, for
/// `Llama3_1` (KV heads = query heads / group), query heads a multiple of the KV heads.
fn expresses(class: KvbenchClass, g: &KvGeometry, query_heads: Option<u64>) -> bool {
    match (class, g.attention) {
        (KvbenchClass::DeepSeekR1, Attention::Mla { .. }) => true,
        (KvbenchClass::Llama3_1, Attention::Gqa { kv_heads, .. }) => match query_heads {
            Some(q) => q >= kv_heads && q % kv_heads == 0,
            None => true,
        },
        (KvbenchClass::GptOss | KvbenchClass::Qwen3, Attention::Gqa { .. }) => true,
        _ => false,
    }
}

/// The KVBench class for a model, by its geometry: a name KVBench already routes to a class
/// that computes this geometry keeps that class and name; any other model is written for
/// `Qwen3` (GQA: it takes the KV head count as given, so every GQA geometry is exact; Llama3_1
/// takes it as a quotient) or `DeepSeekR1` (MLA, the only MLA class), named
/// `<key>-arch-<model>`. `query_heads` (when known) decides whether Llama3_1 can hold the
/// geometry. Refused: an element type KVBench has no precision for.
pub fn choose(g: &KvGeometry, query_heads: Option<u64>) -> Result<ClassChoice, ModelError> {
    if precision_name(g.dtype).is_none() {
        return Err(ModelError::Invalid(format!(
            "{} has a {} cache ({} bytes per element): no KVBench class can express it ({} \
             size elements of 1 or 2 bytes: fp8, int8, fp16, bfloat16)",
            g.name,
            g.dtype.name(),
            g.dtype.bytes(),
            KvbenchClass::list()
        )));
    }
    let own = slug(&g.name);
    let geometry = geometry_text(g);
    if let Some(class) = KvbenchClass::route(&own).filter(|&c| expresses(c, g, query_heads)) {
        let why = match own.split_once("-arch-") {
            Some((_, real)) => format!(
                "{own} names KVBench's {} class ({} in the name), written for {real}, a model \
                 KVBench has no class for, whose geometry ({geometry}) the class computes exactly",
                class.name(),
                class.key()
            ),
            None => format!(
                "{own} contains {}: KVBench's own {} class, which computes its geometry ({geometry})",
                class.key(),
                class.name()
            ),
        };
        return Ok(ClassChoice {
            class,
            model_name: own,
            why,
        });
    }
    let class = match g.attention {
        Attention::Gqa { .. } => KvbenchClass::Qwen3,
        Attention::Mla { .. } => KvbenchClass::DeepSeekR1,
    };
    let model_name = format!("{}-arch-{}", class.key(), defused(&own));
    let how = if class.is_mla() {
        "its only MLA class"
    } else {
        "it takes the KV head count as given, exact for any GQA geometry"
    };
    let why = format!(
        "KVBench has no class for {own}; its geometry ({geometry}) runs as KVBench's {} class \
         ({how}), named {model_name}",
        class.name()
    );
    Ok(ClassChoice {
        class,
        model_name,
        why,
    })
}

/// The class KVBench's loader runs a model file as (its geometry as kvxfer reads the file):
/// the file's own name routed by KVBench's rule. Refused, with the reason: a name that routes
/// to no class, or to a class whose constructor does not take this geometry's fields.
pub fn loaded_class(g: &KvGeometry) -> Result<ClassChoice, ModelError> {
    match KvbenchClass::route(&g.name) {
        Some(c) if expresses(c, g, None) => choose(g, None),
        Some(c) => Err(ModelError::Invalid(format!(
            "model_name {} routes to KVBench's {} class, which does not take a {} model's fields",
            g.name,
            c.name(),
            if c.is_mla() { "GQA" } else { "MLA" }
        ))),
        None => Err(ModelError::Invalid(format!(
            "KVBench raises on model_name {}: it routes to none of its classes ({})",
            g.name,
            KvbenchClass::list()
        ))),
    }
}

/// What a KVBench model file holds beside the geometry: values KVBench's constructors require
/// but its cache arithmetic does not use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Descriptive {
    /// Query heads (all classes).
    pub query_heads: Option<u64>,
    /// Query head dimension of an MLA model (DeepSeekR1).
    pub query_head_dim: Option<u64>,
    /// Embedding (hidden) dimension of an MLA model (DeepSeekR1).
    pub embedding_dim: Option<u64>,
    /// Parameter count (all classes).
    pub params: Option<u64>,
}

/// A KVBench model file: the class, why, and its keys with their values in the class's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelFile {
    /// The class, the routing name, why.
    #[serde(flatten)]
    pub choice: ClassChoice,
    /// `(key, value)` in the class's argument order; the name is a string, the rest integers.
    pub fields: Vec<(&'static str, serde_json::Value)>,
}

/// The model file KVBench loads as the class [`choose`] picks for `g`. Refused: a value the
/// class requires that `d` lacks (named by its KVBench key).
pub fn model_file(g: &KvGeometry, d: &Descriptive) -> Result<ModelFile, ModelError> {
    let choice = choose(g, d.query_heads)?;
    let need = |v: Option<u64>, key: &'static str| {
        v.ok_or_else(|| {
            ModelError::Invalid(format!(
                "KVBench's {} class requires {key}, which the model does not give",
                choice.class.name()
            ))
        })
    };
    let mut fields: Vec<(&'static str, serde_json::Value)> =
        vec![("model_name", choice.model_name.clone().into())];
    for &key in &choice.class.fields()[1..] {
        let v = match (key, g.attention) {
            ("num_layers", _) => g.layers,
            ("num_kv_heads", Attention::Gqa { kv_heads, .. }) => kv_heads,
            ("query_head_dimension", Attention::Gqa { head_dim, .. }) => head_dim,
            ("query_head_dimension", Attention::Mla { .. }) => need(d.query_head_dim, key)?,
            ("num_query_heads" | "num_query_heads_with_mha", _) => need(d.query_heads, key)?,
            ("gqa_num_queries_in_group", Attention::Gqa { kv_heads, .. }) => {
                need(d.query_heads, key)? / kv_heads
            }
            ("embedding_dimension", _) => need(d.embedding_dim, key)?,
            ("rope_mla_dimension", Attention::Mla { rope_dim, .. }) => rope_dim,
            ("mla_latent_vector_dimension", Attention::Mla { latent_dim, .. }) => latent_dim,
            ("num_model_params", _) => need(d.params, key)?,
            _ => {
                return Err(ModelError::Invalid(format!(
                    "KVBench's {} class: no value for {key}",
                    choice.class.name()
                )))
            }
        };
        fields.push((key, v.into()));
    }
    Ok(ModelFile { choice, fields })
}

/// KV bytes per token as KVBench's class computes them from a model file's fields and the
/// precision its `quant_field` names (None where a field is missing or KVBench would raise).
pub fn class_bytes_per_token(
    class: KvbenchClass,
    fields: &serde_json::Map<String, serde_json::Value>,
    precision: &str,
) -> Option<u64> {
    let get = |k: &str| fields.get(k).and_then(serde_json::Value::as_u64);
    let width = precision_bytes(precision)?;
    let layers = get("num_layers")?;
    let per_layer = match class {
        KvbenchClass::DeepSeekR1 => {
            get("rope_mla_dimension")? + get("mla_latent_vector_dimension")?
        }
        KvbenchClass::Llama3_1 => {
            let (q, group) = (
                get("num_query_heads_with_mha")?,
                get("gqa_num_queries_in_group")?,
            );
            // KVBench divides in floating point; exact only for a whole quotient.
            if group == 0 || q % group != 0 {
                return None;
            }
            q / group * get("query_head_dimension")? * 2
        }
        KvbenchClass::GptOss | KvbenchClass::Qwen3 => {
            get("num_kv_heads")? * get("query_head_dimension")? * 2
        }
    };
    Some(layers * per_layer * width)
}

#[cfg(test)]
#[path = "kvbench_class_tests.rs"]
mod tests;

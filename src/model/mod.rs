//! KV-cache geometry of real models: layers, KV heads, head dimension, element type, MLA;
//! from built-in presets, a HuggingFace `config.json`, or KVBench's model YAML.

mod hf;
pub mod kvbench;
pub mod kvbench_class;
mod presets;
pub mod size;

use std::path::Path;

pub use presets::{preset, PRESETS};

/// Errors of model geometry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// Neither a preset nor a file.
    #[error("unknown model {name:?}: give a preset ({}) or a config.json / KVBench model YAML", presets.join(", "))]
    UnknownModel {
        /// What was asked for.
        name: String,
        /// The preset names.
        presets: Vec<&'static str>,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not valid JSON or YAML.
    #[error("{path} is not a valid {format} file: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// JSON or YAML.
        format: &'static str,
        /// The parser's message.
        message: String,
    },
    /// A field the geometry needs is absent.
    #[error("{path}: field {field} is missing ({why})")]
    MissingField {
        /// The file.
        path: String,
        /// The field name, as the file spells it.
        field: &'static str,
        /// What it is needed for.
        why: &'static str,
    },
    /// A value is out of range.
    #[error("{0}")]
    Invalid(String),
    /// An element type kvxfer does not know.
    #[error("unknown KV element type {0:?}: use fp8, int8, fp16, bf16 or fp32")]
    UnknownDtype(String),
}

/// The element type of the KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KvDtype {
    /// 8-bit float.
    Fp8,
    /// 8-bit integer.
    Int8,
    /// IEEE half.
    Fp16,
    /// bfloat16.
    Bf16,
    /// IEEE single.
    Fp32,
}

impl KvDtype {
    /// Bytes per element.
    pub fn bytes(self) -> u64 {
        match self {
            KvDtype::Fp8 | KvDtype::Int8 => 1,
            KvDtype::Fp16 | KvDtype::Bf16 => 2,
            KvDtype::Fp32 => 4,
        }
    }

    /// The short name (fp8, bf16, ...).
    pub fn name(self) -> &'static str {
        match self {
            KvDtype::Fp8 => "fp8",
            KvDtype::Int8 => "int8",
            KvDtype::Fp16 => "fp16",
            KvDtype::Bf16 => "bf16",
            KvDtype::Fp32 => "fp32",
        }
    }
}

impl std::str::FromStr for KvDtype {
    type Err = ModelError;

    /// Accepts kvxfer's names, KVBench's (`bfloat16`) and HuggingFace's `torch_dtype`s.
    fn from_str(s: &str) -> Result<Self, ModelError> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "fp8" | "fp8_e4m3" | "fp8_e5m2" | "float8_e4m3fn" | "float8_e5m2" => KvDtype::Fp8,
            "int8" => KvDtype::Int8,
            "fp16" | "float16" | "half" => KvDtype::Fp16,
            "bf16" | "bfloat16" => KvDtype::Bf16,
            "fp32" | "float32" | "float" => KvDtype::Fp32,
            _ => return Err(ModelError::UnknownDtype(s.to_string())),
        })
    }
}

/// How one layer caches a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Attention {
    /// Grouped-query (or multi-head) attention: a K and a V vector per KV head.
    Gqa {
        /// KV heads.
        kv_heads: u64,
        /// Elements per head.
        head_dim: u64,
    },
    /// Multi-head latent attention: one compressed latent vector plus the decoupled RoPE key.
    Mla {
        /// RoPE key dimension (qk_rope_head_dim).
        rope_dim: u64,
        /// Latent dimension (kv_lora_rank).
        latent_dim: u64,
    },
}

/// The KV-cache geometry of a model.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KvGeometry {
    /// The model's name.
    pub name: String,
    /// Transformer layers.
    pub layers: u64,
    /// What a layer caches per token.
    pub attention: Attention,
    /// Element type of the cache.
    pub dtype: KvDtype,
}

impl KvGeometry {
    /// Elements one layer caches per token (K and V together; MLA: latent + rope).
    pub fn elements_per_layer(&self) -> u64 {
        match self.attention {
            Attention::Gqa { kv_heads, head_dim } => 2 * kv_heads * head_dim,
            Attention::Mla {
                rope_dim,
                latent_dim,
            } => rope_dim + latent_dim,
        }
    }

    /// Bytes one layer caches per token.
    pub fn bytes_per_token_per_layer(&self) -> u64 {
        self.elements_per_layer() * self.dtype.bytes()
    }

    /// Bytes the whole model caches per token.
    pub fn bytes_per_token(&self) -> u64 {
        self.layers * self.bytes_per_token_per_layer()
    }

    /// Bytes the cache of `tokens` tokens holds; None on overflow.
    pub fn bytes(&self, tokens: u64) -> Option<u64> {
        self.bytes_per_token().checked_mul(tokens)
    }

    /// The same geometry with another element type.
    pub fn with_dtype(mut self, dtype: KvDtype) -> Self {
        self.dtype = dtype;
        self
    }

    /// Checks that every dimension is at least 1.
    pub fn validate(&self) -> Result<(), ModelError> {
        let dims: &[(&str, u64)] = match self.attention {
            Attention::Gqa { kv_heads, head_dim } => &[
                ("layers", self.layers),
                ("kv heads", kv_heads),
                ("head dim", head_dim),
            ],
            Attention::Mla {
                rope_dim,
                latent_dim,
            } => &[
                ("layers", self.layers),
                ("rope dim", rope_dim),
                ("latent dim", latent_dim),
            ],
        };
        match dims.iter().find(|(_, v)| *v == 0) {
            Some((what, _)) => Err(ModelError::Invalid(format!(
                "model {}: {what} is 0",
                self.name
            ))),
            None => Ok(()),
        }
    }
}

/// Resolves `--model`: a preset name, or a file (`.json`: HuggingFace config; `.yaml`/`.yml`:
/// KVBench model YAML); `dtype` (`--kv-dtype`) replaces the element type the model gives.
pub fn load(spec: &str, dtype: Option<KvDtype>) -> Result<KvGeometry, ModelError> {
    let g = load_as_given(spec, dtype)?;
    let g = match dtype {
        Some(d) => g.with_dtype(d),
        None => g,
    };
    g.validate()?;
    Ok(g)
}

fn load_as_given(spec: &str, dtype: Option<KvDtype>) -> Result<KvGeometry, ModelError> {
    if let Some(g) = preset(spec) {
        return Ok(g);
    }
    let path = Path::new(spec);
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let is_file = path.is_file();
    match ext.as_deref() {
        Some("json") if is_file => hf::load(path, dtype),
        Some("yaml" | "yml") if is_file => kvbench::load_model(path, dtype),
        _ => Err(ModelError::UnknownModel {
            name: spec.to_string(),
            presets: PRESETS.iter().map(|p| p.0).collect(),
        }),
    }
}

pub(crate) fn read(path: &Path) -> Result<String, ModelError> {
    std::fs::read_to_string(path).map_err(|source| ModelError::Read {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qwen_bytes_per_token_is_the_missions_figure() {
        let q = preset("qwen2.5-7b").unwrap();
        // 2 x 28 layers x 4 KV heads x 128 x 2 bytes
        assert_eq!(q.bytes_per_token(), 57_344);
        assert_eq!(q.bytes(12_288), Some(704_643_072));
        assert_eq!(q.bytes(20_000), Some(1_146_880_000));
        assert_eq!(q.clone().with_dtype(KvDtype::Fp8).bytes_per_token(), 28_672);
    }

    #[test]
    fn mla_counts_latent_and_rope_once() {
        let d = preset("deepseek-r1").unwrap();
        // (512 + 64) x 2 bytes x 61 layers
        assert_eq!(d.bytes_per_token(), 70_272);
    }

    #[test]
    fn dtypes_parse_every_spelling() {
        assert_eq!("bfloat16".parse::<KvDtype>().unwrap(), KvDtype::Bf16);
        assert_eq!("FP8".parse::<KvDtype>().unwrap(), KvDtype::Fp8);
        assert_eq!("float16".parse::<KvDtype>().unwrap(), KvDtype::Fp16);
        assert!(matches!(
            "fp4".parse::<KvDtype>(),
            Err(ModelError::UnknownDtype(_))
        ));
    }

    #[test]
    fn an_unknown_model_lists_the_presets() {
        let e = load("qwen9-1b", None).unwrap_err();
        match &e {
            ModelError::UnknownModel { presets, .. } => assert_eq!(presets.len(), PRESETS.len()),
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().contains("qwen2.5-7b, llama-3.1-8b"), "{e}");
    }

    #[test]
    fn zero_dimensions_are_refused() {
        let mut g = preset("qwen2.5-7b").unwrap();
        g.layers = 0;
        assert!(g.validate().is_err());
    }
}

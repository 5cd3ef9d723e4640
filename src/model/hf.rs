//! A HuggingFace `config.json`: num_hidden_layers, num_key_value_heads, head_dim (or
//! hidden_size / num_attention_heads), torch_dtype; MLA models kv_lora_rank + qk_rope_head_dim.

use std::path::Path;

use serde_json::{Map, Value};

use super::{Attention, KvDtype, KvGeometry, ModelError};

/// Reads a HuggingFace config; `dtype` stands in for an absent `torch_dtype`.
pub fn load(path: &Path, dtype: Option<KvDtype>) -> Result<KvGeometry, ModelError> {
    let text = super::read(path)?;
    parse(&text, &path.display().to_string(), dtype)
}

/// Parses the text of a HuggingFace config (`path` names it in errors).
pub fn parse(text: &str, path: &str, dtype: Option<KvDtype>) -> Result<KvGeometry, ModelError> {
    let root: Value = serde_json::from_str(text).map_err(|e| ModelError::Syntax {
        path: path.to_string(),
        format: "JSON",
        message: e.to_string(),
    })?;
    let top = root.as_object().ok_or_else(|| ModelError::Syntax {
        path: path.to_string(),
        format: "JSON",
        message: "the top level is not an object".into(),
    })?;
    // Multimodal configs keep the language model's numbers under text_config.
    let cfg = match top.get("text_config").and_then(Value::as_object) {
        Some(t) if !top.contains_key("num_hidden_layers") => t,
        _ => top,
    };
    let f = Fields { cfg, path };
    let layers = f.req("num_hidden_layers", "the layer count")?;
    let attention = match (f.opt("kv_lora_rank")?, f.opt("qk_rope_head_dim")?) {
        (Some(latent_dim), Some(rope_dim)) => Attention::Mla {
            rope_dim,
            latent_dim,
        },
        (Some(_), None) => return Err(f.missing("qk_rope_head_dim", "an MLA model's RoPE key")),
        _ => gqa(&f, path)?,
    };
    let given = cfg
        .get("torch_dtype")
        .or_else(|| cfg.get("dtype"))
        .or_else(|| top.get("torch_dtype"))
        .and_then(Value::as_str);
    let dtype = match (given, dtype) {
        (Some(s), _) => s.parse()?,
        (None, Some(d)) => d,
        (None, None) => {
            return Err(f.missing(
                "torch_dtype",
                "the cache's element type; or give --kv-dtype",
            ))
        }
    };
    let name = top
        .get("_name_or_path")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            Path::new(path)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
    Ok(KvGeometry {
        name,
        layers,
        attention,
        dtype,
    })
}

/// A GQA (or MHA) model's attention: its KV heads and head dimension, checked against its
/// query heads.
fn gqa(f: &Fields<'_>, path: &str) -> Result<Attention, ModelError> {
    // Without num_key_value_heads a model has one KV head per query head (MHA).
    let kv_heads = match f.opt("num_key_value_heads")? {
        Some(k) => k,
        None => f.req(
            "num_attention_heads",
            "the KV head count (no num_key_value_heads)",
        )?,
    };
    if let Some(heads) = f.opt("num_attention_heads")? {
        super::check_heads(
            path,
            ("num_attention_heads", heads),
            ("num_key_value_heads", kv_heads),
        )?;
    }
    let head_dim = match f.opt("head_dim")? {
        Some(d) => d,
        None => {
            let hidden = f.req("hidden_size", "the head dimension (no head_dim)")?;
            let heads = f.req("num_attention_heads", "the head dimension (no head_dim)")?;
            if heads == 0 || hidden % heads != 0 {
                return Err(ModelError::Invalid(format!(
                    "{path}: hidden_size {hidden} is not a whole multiple of \
                     num_attention_heads {heads}, so the head dimension is not \
                     hidden_size / num_attention_heads: give head_dim"
                )));
            }
            hidden / heads
        }
    };
    Ok(Attention::Gqa { kv_heads, head_dim })
}

struct Fields<'a> {
    cfg: &'a Map<String, Value>,
    path: &'a str,
}

impl Fields<'_> {
    fn missing(&self, field: &'static str, why: &'static str) -> ModelError {
        ModelError::MissingField {
            path: self.path.to_string(),
            field,
            why,
        }
    }

    fn opt(&self, field: &'static str) -> Result<Option<u64>, ModelError> {
        match self.cfg.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                ModelError::Invalid(format!("{}: {field} is {v}, not a whole number", self.path))
            }),
        }
    }

    fn req(&self, field: &'static str, why: &'static str) -> Result<u64, ModelError> {
        self.opt(field)?.ok_or_else(|| self.missing(field, why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The attention part of Qwen/Qwen2.5-7B-Instruct's config.json.
    const QWEN: &str = r#"{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 3584,
        "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4,
        "torch_dtype": "bfloat16"}"#;

    #[test]
    fn qwen_head_dim_from_hidden_size() {
        let g = parse(QWEN, "qwen.json", None).unwrap();
        assert_eq!(
            g.attention,
            Attention::Gqa {
                kv_heads: 4,
                head_dim: 128
            }
        );
        assert_eq!(g.bytes_per_token(), 57_344);
        assert_eq!(g.name, "qwen");
    }

    #[test]
    fn explicit_head_dim_wins() {
        // Qwen3-8B: hidden 4096 / 32 heads would be 128 too; gpt-oss-20b: 2880 / 64 = 45,
        // but head_dim 64.
        let t = r#"{"_name_or_path": "gpt-oss-20b", "hidden_size": 2880, "head_dim": 64,
            "num_attention_heads": 64, "num_hidden_layers": 24, "num_key_value_heads": 8,
            "torch_dtype": "bfloat16"}"#;
        let g = parse(t, "c.json", None).unwrap();
        assert_eq!(g.bytes_per_token(), 24 * 2 * 8 * 64 * 2);
        assert_eq!(g.name, "gpt-oss-20b");
    }

    #[test]
    fn mla_from_lora_rank_and_rope_dim() {
        let t = r#"{"num_hidden_layers": 61, "num_attention_heads": 128,
            "num_key_value_heads": 128, "kv_lora_rank": 512, "qk_rope_head_dim": 64,
            "qk_nope_head_dim": 128, "v_head_dim": 128, "torch_dtype": "bfloat16"}"#;
        let g = parse(t, "r1.json", None).unwrap();
        assert_eq!(g.bytes_per_token(), 61 * 576 * 2);
    }

    #[test]
    fn missing_fields_are_named() {
        let t = r#"{"hidden_size": 4096, "num_attention_heads": 32, "torch_dtype": "bf16"}"#;
        let e = parse(t, "x.json", None).unwrap_err();
        assert!(
            matches!(
                e,
                ModelError::MissingField {
                    field: "num_hidden_layers",
                    ..
                }
            ),
            "{e:?}"
        );
        let t = r#"{"num_hidden_layers": 2, "num_key_value_heads": 2, "head_dim": 8}"#;
        let e = parse(t, "x.json", None).unwrap_err();
        assert!(matches!(
            e,
            ModelError::MissingField {
                field: "torch_dtype",
                ..
            }
        ));
        assert!(e.to_string().contains("--kv-dtype"));
        let g = parse(t, "x.json", Some(KvDtype::Fp8)).unwrap();
        assert_eq!(g.bytes_per_token(), 2 * 2 * 2 * 8);
        let t = r#"{"num_hidden_layers": 2, "kv_lora_rank": 512, "torch_dtype": "bf16"}"#;
        let e = parse(t, "x.json", None).unwrap_err();
        assert!(matches!(
            e,
            ModelError::MissingField {
                field: "qk_rope_head_dim",
                ..
            }
        ));
    }

    #[test]
    fn mha_without_kv_heads_and_bad_values() {
        let t = r#"{"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
            "torch_dtype": "float32"}"#;
        // 2 layers x 2 x 4 heads x 16 x 4 bytes
        assert_eq!(parse(t, "x.json", None).unwrap().bytes_per_token(), 1024);
        let t = r#"{"num_hidden_layers": -2}"#;
        assert!(matches!(
            parse(t, "x.json", None),
            Err(ModelError::Invalid(_))
        ));
        assert!(matches!(
            parse("[1]", "x.json", None),
            Err(ModelError::Syntax { .. })
        ));
    }
}

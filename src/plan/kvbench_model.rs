//! The KVBench model file of a plan's `kv_cache_reference` (the class chosen by the model's
//! geometry, see `model::kvbench_class`), and the checks that keep KVBench's arithmetic on it
//! equal to kvxfer's for every `kvbench` pattern.
//!
//! `kv_cache_reference` gives `model_name` (the model's short name, kvxfer's preset name where
//! it has one), `num_layers`, `kv_dtype`, `num_query_heads`, `num_model_params`, and either
//! `num_kv_heads` + `head_dim` (GQA) or `rope_mla_dimension` + `mla_latent_vector_dimension`
//! with `head_dim` (the query head dimension) and `embedding_dimension` (MLA).

use serde_json::Value;

use crate::model::kvbench_class::{
    class_bytes_per_token, model_file, precision_bytes, Descriptive, KvbenchClass, ModelFile,
};
use crate::model::{Attention, KvDtype, KvGeometry};

/// A problem of the reference model: the key it concerns (under `kv_cache_reference`) and what.
type RefProblem = (&'static str, String);

fn int(kv: &Value, key: &'static str) -> Result<u64, RefProblem> {
    kv.get(key)
        .and_then(Value::as_u64)
        .filter(|&n| n >= 1)
        .ok_or((key, "missing or not an integer >= 1".to_string()))
}

/// The reference model's KV geometry.
fn geometry(kv: &Value) -> Result<KvGeometry, RefProblem> {
    let name = kv
        .get("model_name")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or((
            "model_name",
            "missing or not a non-empty string".to_string(),
        ))?;
    let dtype: KvDtype = kv
        .get("kv_dtype")
        .and_then(Value::as_str)
        .ok_or(("kv_dtype", "missing or not a string".to_string()))?
        .parse()
        .map_err(|e: crate::model::ModelError| ("kv_dtype", e.to_string()))?;
    let mla =
        kv.get("rope_mla_dimension").is_some() || kv.get("mla_latent_vector_dimension").is_some();
    let attention = if mla {
        Attention::Mla {
            rope_dim: int(kv, "rope_mla_dimension")?,
            latent_dim: int(kv, "mla_latent_vector_dimension")?,
        }
    } else if kv.get("num_kv_heads").is_some() {
        Attention::Gqa {
            kv_heads: int(kv, "num_kv_heads")?,
            head_dim: int(kv, "head_dim")?,
        }
    } else {
        return Err((
            "num_kv_heads",
            format!(
                "missing: the model is neither GQA (num_kv_heads, head_dim) nor MLA \
                 (rope_mla_dimension, mla_latent_vector_dimension), so no KVBench class can \
                 express it ({})",
                KvbenchClass::list()
            ),
        ));
    };
    Ok(KvGeometry {
        name: name.to_string(),
        layers: int(kv, "num_layers")?,
        attention,
        dtype,
    })
}

/// The KVBench model file for the plan's reference model.
pub fn reference_model(kv: &Value) -> Result<ModelFile, String> {
    reference(kv).map_err(|(key, m)| format!("kv_cache_reference.{key}: {m}"))
}

fn reference(kv: &Value) -> Result<ModelFile, RefProblem> {
    let g = geometry(kv)?;
    let opt = |k: &str| kv.get(k).and_then(Value::as_u64);
    let d = Descriptive {
        query_heads: opt("num_query_heads"),
        query_head_dim: opt("head_dim"),
        embedding_dim: opt("embedding_dimension"),
        params: opt("num_model_params"),
    };
    let f = model_file(&g, &d).map_err(|e| ("model_name", e.to_string()))?;
    if let Some(want) = kv.get("bytes_per_token").and_then(Value::as_u64) {
        if want != g.bytes_per_token() {
            return Err((
                "bytes_per_token",
                format!(
                    "{want} is not the geometry's {} bytes per token",
                    g.bytes_per_token()
                ),
            ));
        }
    }
    Ok(f)
}

/// Every problem (JSON path, what) that would stop KVBench from loading the plan's model file
/// or make its bytes differ from kvxfer's: checked only when the plan has a `kvbench` pattern.
pub fn problems(plan: &Value) -> Vec<(String, String)> {
    let patterns: Vec<(String, &Value)> = kvbench_patterns(plan);
    if patterns.is_empty() {
        return Vec::new();
    }
    let kv = plan.get("kv_cache_reference").unwrap_or(&Value::Null);
    let file = match reference(kv) {
        Ok(f) => f,
        Err((key, message)) => return vec![(format!("$.kv_cache_reference.{key}"), message)],
    };
    let width = geometry(kv).map(|g| g.dtype.bytes()).unwrap_or(0);
    let fields: serde_json::Map<String, Value> = file
        .fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let mut out = Vec::new();
    for (path, params) in patterns {
        for (key, message) in pattern_problems(&file, &fields, width, params) {
            out.push((format!("{path}.params.{key}"), message));
        }
    }
    out
}

/// The `kvbench` patterns with their JSON paths.
fn kvbench_patterns(plan: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    let layers = plan.get("layers").and_then(Value::as_array);
    for (li, layer) in layers.into_iter().flatten().enumerate() {
        let patterns = layer.get("patterns").and_then(Value::as_array);
        for (pi, p) in patterns.into_iter().flatten().enumerate() {
            if p.get("tool").and_then(Value::as_str) == Some("kvbench") {
                if let Some(params) = p.get("params") {
                    out.push((format!("$.layers[{li}].patterns[{pi}]"), params));
                }
            }
        }
    }
    out
}

/// One pattern's precisions and byte count against the class KVBench runs.
fn pattern_problems(
    file: &ModelFile,
    fields: &serde_json::Map<String, Value>,
    width: u64,
    params: &Value,
) -> Vec<(&'static str, String)> {
    let class = file.choice.class;
    let mut out = Vec::new();
    for key in ["model_quant_mode", "kvcache_quant_mode"] {
        let Some(mode) = params.get(key).and_then(Value::as_str) else {
            continue; // reported by the parameter check
        };
        match precision_bytes(mode) {
            None => out.push((
                key,
                format!(
                    "{mode:?} is not a KVBench precision (fp8, int8, fp16, bfloat16): it raises"
                ),
            )),
            Some(w)
                if w != width && (key == class.quant_field() || key == "kvcache_quant_mode") =>
            {
                let who = if key == class.quant_field() {
                    format!("KVBench's {} class sizes the cache by {key}", class.name())
                } else {
                    "kvxfer's twin (kv profile) sizes the cache by kvcache_quant_mode".to_string()
                };
                out.push((
                    key,
                    format!("{who}: {mode} is {w} bytes, the reference's kv_dtype {width}"),
                ));
            }
            Some(_) => {}
        }
    }
    let quant = params.get(class.quant_field()).and_then(Value::as_str);
    let (Some(per_token), Some(isl), Some(kv_bytes)) = (
        quant.and_then(|q| class_bytes_per_token(class, fields, q)),
        params.get("isl").and_then(Value::as_u64),
        params.get("kv_bytes").and_then(Value::as_u64),
    ) else {
        return out;
    };
    if per_token.checked_mul(isl) != Some(kv_bytes) {
        out.push((
            "kv_bytes",
            format!(
                "{kv_bytes} is not KVBench's {} x isl {isl} = {}",
                per_token,
                per_token.saturating_mul(isl)
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan(kv: Value, params: Value) -> Value {
        json!({"kv_cache_reference": kv, "layers": [{"id": "L2", "patterns": [
            {"id": "pll-kvbench-x", "tool": "kvbench", "params": params}]}]})
    }

    fn qwen() -> Value {
        json!({"model_name": "qwen2.5-7b", "num_layers": 28, "num_kv_heads": 4,
               "num_query_heads": 28, "head_dim": 128, "kv_dtype": "bf16",
               "bytes_per_token": 57344, "num_model_params": 7615616512u64})
    }

    fn params() -> Value {
        json!({"isl": 12288, "kv_bytes": 704643072, "model_quant_mode": "fp16",
               "kvcache_quant_mode": "fp16"})
    }

    #[test]
    fn the_phase_plan_reference_is_written_for_qwen3() {
        let f = reference_model(&qwen()).unwrap();
        assert_eq!(f.choice.class, KvbenchClass::Qwen3);
        assert_eq!(f.choice.model_name, "qwen3-arch-qwen2.5-7b");
        assert!(problems(&plan(qwen(), params())).is_empty());
    }

    #[test]
    fn precisions_and_bytes_that_differ_from_kvxfer_are_refused() {
        let mut p = params();
        p["model_quant_mode"] = "fp8".into();
        let pr = problems(&plan(qwen(), p));
        assert_eq!(pr.len(), 2, "{pr:?}");
        assert!(pr[0].0.ends_with("params.model_quant_mode"));
        assert!(pr[0]
            .1
            .contains("Qwen3 class sizes the cache by model_quant_mode"));
        assert!(pr[1].0.ends_with("params.kv_bytes"), "{pr:?}");
        let mut p = params();
        p["kvcache_quant_mode"] = "bf16".into();
        let pr = problems(&plan(qwen(), p));
        assert!(pr[0].1.contains("not a KVBench precision"), "{pr:?}");
        let mut p = params();
        p["kv_bytes"] = 1.into();
        assert_eq!(
            problems(&plan(qwen(), p))[0].0,
            "$.layers[0].patterns[0].params.kv_bytes"
        );
    }

    #[test]
    fn a_geometry_no_class_expresses_is_one_line_naming_the_classes() {
        let mut kv = qwen();
        kv["kv_dtype"] = "fp32".into();
        kv["bytes_per_token"] = 114688.into();
        let pr = problems(&plan(kv, params()));
        assert_eq!(pr.len(), 1);
        assert_eq!(pr[0].0, "$.kv_cache_reference.model_name");
        for c in KvbenchClass::ALL {
            assert!(pr[0].1.contains(c.name()), "{}", pr[0].1);
        }
        assert!(!pr[0].1.contains('\n'));
        let mut kv = qwen();
        kv.as_object_mut().unwrap().remove("num_kv_heads");
        let pr = problems(&plan(kv, params()));
        assert!(pr[0].1.contains("neither GQA"), "{pr:?}");
        // No kvbench pattern: the reference is not KVBench's business.
        assert!(problems(&json!({"kv_cache_reference": {}, "layers": []})).is_empty());
    }
}

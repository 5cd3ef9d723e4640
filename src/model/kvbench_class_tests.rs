//! Unit tests of KVBench's class routing and the model files written for it.

use super::*;
use crate::model::preset;

fn gqa(name: &str, layers: u64, kv_heads: u64, head_dim: u64) -> KvGeometry {
    KvGeometry {
        name: name.into(),
        layers,
        attention: Attention::Gqa { kv_heads, head_dim },
        dtype: KvDtype::Bf16,
    }
}

fn map(f: &ModelFile) -> serde_json::Map<String, serde_json::Value> {
    f.fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

#[test]
fn kvbench_routes_its_example_names_in_its_order() {
    let r = |n: &str| KvbenchClass::route(n).map(KvbenchClass::name);
    assert_eq!(r("LLAMA3.1_8B"), Some("Llama3_1"));
    assert_eq!(r("DEEPSEEK_R1"), Some("DeepSeekR1"));
    assert_eq!(r("GPT_OSS_20B"), Some("GptOss"));
    assert_eq!(r("QWEN3_8B"), Some("Qwen3"));
    // The phase plan's old name: KVBench raises "Model name QWEN2_5_7B not supported".
    assert_eq!(r("QWEN2_5_7B"), None);
    assert_eq!(r("llama-3.1-8b"), None, "the hyphen does not route");
    // llama3.1 is tested first.
    assert_eq!(r("qwen3-llama3.1"), Some("Llama3_1"));
}

#[test]
fn qwen25_runs_as_qwen3_and_the_name_round_trips() {
    let g = preset("qwen2.5-7b").unwrap();
    let c = choose(&g, Some(28)).unwrap();
    assert_eq!(c.class, KvbenchClass::Qwen3);
    assert_eq!(c.model_name, "qwen3-arch-qwen2.5-7b");
    assert!(c.why.contains("no class for qwen2.5-7b"), "{}", c.why);
    // The file's name read back (kv plan on the written file) names the same class.
    let back = choose(&gqa(&c.model_name, 28, 4, 128), None).unwrap();
    assert_eq!(back.class, KvbenchClass::Qwen3);
    assert_eq!(back.model_name, c.model_name);
    assert!(back.why.contains("written for qwen2.5-7b"), "{}", back.why);
}

#[test]
fn a_model_of_kvbench_keeps_its_class_and_an_mla_model_runs_as_deepseek() {
    let q = choose(&gqa("QWEN3_8B", 36, 8, 128), Some(32)).unwrap();
    assert_eq!(
        (q.class, q.model_name.as_str()),
        (KvbenchClass::Qwen3, "qwen3_8b")
    );
    let l = choose(&gqa("LLAMA3.1_8B", 32, 8, 128), Some(32)).unwrap();
    assert_eq!(l.class, KvbenchClass::Llama3_1);
    let d = choose(&preset("deepseek-r1").unwrap(), None).unwrap();
    assert_eq!(d.class, KvbenchClass::DeepSeekR1);
    assert_eq!(d.model_name, "deepseek_r1-arch-deepseek-r1");
    assert_eq!(KvbenchClass::route(&d.model_name), Some(d.class));
}

#[test]
fn a_name_that_routes_to_the_wrong_class_is_renamed() {
    // A GQA model whose name routes to the MLA class: written for Qwen3, the key defused.
    let c = choose(&gqa("deepseek_r1-distill-qwen-7b", 28, 4, 128), Some(28)).unwrap();
    assert_eq!(c.class, KvbenchClass::Qwen3);
    assert_eq!(c.model_name, "qwen3-arch-deepseek-r1-distill-qwen-7b");
    assert_eq!(
        KvbenchClass::route(&c.model_name),
        Some(KvbenchClass::Qwen3)
    );
    // Llama3_1 cannot hold 30 query heads over 4 KV heads (its KV heads are a quotient).
    let c = choose(&gqa("llama3.1-odd", 16, 4, 64), Some(30)).unwrap();
    assert_eq!(c.model_name, "qwen3-arch-llama-3.1-odd");
    assert_eq!(
        KvbenchClass::route(&c.model_name),
        Some(KvbenchClass::Qwen3)
    );
}

#[test]
fn an_fp32_cache_is_refused_naming_every_class() {
    let g = preset("qwen2.5-7b").unwrap().with_dtype(KvDtype::Fp32);
    let e = choose(&g, None).unwrap_err().to_string();
    for c in KvbenchClass::ALL {
        assert!(e.contains(c.name()), "{e}");
    }
    assert!(e.contains("fp32"), "{e}");
    assert_eq!(e.lines().count(), 1);
}

#[test]
fn the_written_file_holds_the_class_fields_and_kvbench_bytes() {
    let g = preset("qwen2.5-7b").unwrap();
    let d = Descriptive {
        query_heads: Some(28),
        params: Some(7_615_616_512),
        ..Descriptive::default()
    };
    let f = model_file(&g, &d).unwrap();
    let keys: Vec<&str> = f.fields.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, KvbenchClass::Qwen3.fields());
    let m = map(&f);
    assert_eq!(m["num_kv_heads"], 4);
    assert_eq!(m["num_query_heads"], 28);
    // KVBench's Qwen3 at model_quant_mode fp16: 28 x 4 x 128 x 2 x 2 = 57,344, as kvxfer.
    assert_eq!(
        class_bytes_per_token(KvbenchClass::Qwen3, &m, "fp16"),
        Some(57_344)
    );
    assert_eq!(g.bytes_per_token(), 57_344);
    // KVBench has no "bf16": it raises, so no figure.
    assert_eq!(class_bytes_per_token(KvbenchClass::Qwen3, &m, "bf16"), None);
}

#[test]
fn llama_and_deepseek_files() {
    let l = model_file(
        &gqa("LLAMA3.1_8B", 32, 8, 128),
        &Descriptive {
            query_heads: Some(32),
            params: Some(8_000_000_000),
            ..Descriptive::default()
        },
    )
    .unwrap();
    let m = map(&l);
    assert_eq!(m["gqa_num_queries_in_group"], 4);
    assert_eq!(m["num_query_heads_with_mha"], 32);
    // 32 x 8 x 128 x 2 x 1 (fp8): KVBench's example, 65,536.
    assert_eq!(
        class_bytes_per_token(KvbenchClass::Llama3_1, &m, "fp8"),
        Some(65_536)
    );
    let g = preset("deepseek-r1").unwrap();
    let e = model_file(
        &g,
        &Descriptive {
            query_heads: Some(128),
            query_head_dim: Some(128),
            params: Some(671_000_000_000),
            ..Descriptive::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("embedding_dimension"), "{e}");
    let f = model_file(
        &g,
        &Descriptive {
            query_heads: Some(128),
            query_head_dim: Some(128),
            embedding_dim: Some(7168),
            params: Some(671_000_000_000),
        },
    )
    .unwrap();
    // (64 + 512) x 2 x 61 = 70,272 at kvcache_quant_mode bfloat16.
    assert_eq!(
        class_bytes_per_token(KvbenchClass::DeepSeekR1, &map(&f), "bfloat16"),
        Some(g.bytes_per_token())
    );
    assert_eq!(KvbenchClass::DeepSeekR1.quant_field(), "kvcache_quant_mode");
    assert_eq!(KvbenchClass::Qwen3.quant_field(), "model_quant_mode");
}

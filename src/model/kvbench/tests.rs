//! Unit tests of KVBench's files and arithmetic, against hand-computed values.

use super::*;

const LLAMA_8B: &str = "model_name: 'LLAMA3.1_8B'\nnum_layers: 32\n\
    num_query_heads_with_mha: 32\nquery_head_dimension: 128\n\
    gqa_num_queries_in_group: 4\nnum_model_params: 8000000000\n";
const BLOCK_TP1_PP8: &str = "strategy:\n  tp_size: 1\n  pp_size: 8\n  \
    model_quant_mode: \"fp8\"\n  kvcache_quant_mode: \"fp8\"\nruntime:\n  isl: 1000\n  \
    osl: 100\n  num_requests: 10\nsystem:\n  hardware: \"H100\"\n  backend: \"SGLANG\"\n  \
    access_pattern: \"block\"\n  page_size: 16\n";
const DEEPSEEK: &str = "model_name: 'DEEPSEEK_R1'\nnum_layers: 61\nnum_query_heads: 128\n\
    query_head_dimension: 128\nembedding_dimension: 7168\nrope_mla_dimension: 64\n\
    mla_latent_vector_dimension: 512\nnum_model_params: 671000000000\n";
const QWEN3: &str = "model_name: 'QWEN3_8B'\nnum_layers: 36\nnum_query_heads: 32\n\
    num_kv_heads: 8\nquery_head_dimension: 128\nnum_model_params: 8200000000\n";

#[test]
fn kvbench_example_llama_block_tp1_pp8() {
    let cfg = parse_config(BLOCK_TP1_PP8, "block-tp1-pp8.yaml").unwrap();
    let m = parse_model(LLAMA_8B, "m.yaml", Some(cfg.kvcache_quant_mode)).unwrap();
    // 32 layers x 8 KV heads x 128 x 2 x 1 byte = 65,536 B/token; per layer 2,048;
    // block: x 32/8 = 8,192; page 16: 131,072.
    assert_eq!(m.bytes_per_token(), 65_536);
    let p = plan(&m, cfg.layout, cfg.workload, &NixlbenchOptions::default()).unwrap();
    assert_eq!(p.io_size, 131_072);
    // 65,536 x 1000 / 131,072 x 10 requests
    assert_eq!(p.batch_size, 5_000);
    assert_eq!(
        p.command_text(),
        "nixlbench \\\n    --max_batch_size 5000 \\\n    --max_block_size 131072 \\\n    \
         --start_batch_size 5000 \\\n    --start_block_size 131072 \\\n    \
         --total_buffer_size 655360000"
    );
}

#[test]
fn layer_pattern_and_tp() {
    let m = parse_model(QWEN3, "q.yaml", Some(KvDtype::Bf16)).unwrap();
    assert_eq!(m.bytes_per_token(), 36 * 8 * 128 * 2 * 2);
    let l = KvLayout {
        tp: 2,
        pp: 1,
        page_size: 16,
        access: AccessPattern::Layer,
    };
    // per layer 4,096 / tp 2 = 2,048, x page 16
    assert_eq!(l.io_size(&m).unwrap(), 32_768);
    let l = KvLayout {
        pp: 5,
        access: AccessPattern::Block,
        ..l
    };
    // 2,048 x 36 / 5 = 14,745 (truncated, as KVBench's int()), x 16
    assert_eq!(l.io_size(&m).unwrap(), 14_745 * 16);
}

#[test]
fn mla_block_rounds_the_stage_up() {
    let m = parse_model(DEEPSEEK, "d.yaml", None).unwrap();
    assert_eq!(m.dtype, KvDtype::Fp8);
    // (64 + 512) x 1 byte x 61 layers
    assert_eq!(m.bytes_per_token(), 35_136);
    let l = KvLayout {
        tp: 1,
        pp: 8,
        page_size: 1,
        access: AccessPattern::Block,
    };
    // 576 x ceil(61 / 8) = 576 x 8
    assert_eq!(l.io_size(&m).unwrap(), 4_608);
}

#[test]
fn bad_inputs_are_named() {
    let m = parse_model(QWEN3, "q.yaml", None).unwrap();
    let l = KvLayout {
        pp: 37,
        ..KvLayout::default()
    };
    let e = l.io_size(&m).unwrap_err();
    assert!(e.to_string().contains("above the layer count"), "{e}");
    let l = KvLayout {
        page_size: 0,
        ..KvLayout::default()
    };
    assert!(l
        .io_size(&m)
        .unwrap_err()
        .to_string()
        .contains("--page-size"));
    let w = Workload {
        isl: 0,
        ..Workload::default()
    };
    assert!(plan(&m, KvLayout::default(), w, &NixlbenchOptions::default()).is_err());
    let e = parse_model("num_layers: 4\nnum_kv_heads: 2\n", "x.yaml", None).unwrap_err();
    assert!(matches!(
        e,
        ModelError::MissingField {
            field: "query_head_dimension",
            ..
        }
    ));
    let e = parse_model("num_layers: 4\nrope_mla_dimension: 64\n", "x.yaml", None).unwrap_err();
    assert!(matches!(
        e,
        ModelError::MissingField {
            field: "mla_latent_vector_dimension",
            ..
        }
    ));
    let e = parse_config("strategy: [1, 2\n", "c.yaml").unwrap_err();
    assert!(matches!(e, ModelError::Syntax { .. }), "{e:?}");
    let e = parse_config("system:\n  access_pattern: diagonal\n", "c.yaml").unwrap_err();
    assert!(e.to_string().contains("block or layer"));
}

#[test]
fn config_defaults_are_kvbenchs() {
    let c = parse_config("runtime:\n  isl: 4096\n", "c.yaml").unwrap();
    assert_eq!(
        c.workload,
        Workload {
            isl: 4096,
            osl: 1,
            num_requests: 1
        }
    );
    assert_eq!(c.layout, KvLayout::default());
    assert_eq!(c.kvcache_quant_mode, KvDtype::Fp8);
}

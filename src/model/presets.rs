//! Built-in models: the attention dimensions of their published HuggingFace configs.

use super::{Attention, KvDtype, KvGeometry};

/// (name, layers, attention, cache element type as the model ships it).
type Preset = (&'static str, u64, Attention, KvDtype);

const fn gqa(kv_heads: u64, head_dim: u64) -> Attention {
    Attention::Gqa { kv_heads, head_dim }
}

/// The built-in models.
pub const PRESETS: &[Preset] = &[
    // Qwen/Qwen2.5-7B-Instruct: 28 layers, 4 KV heads, hidden 3584 / 28 heads = 128.
    ("qwen2.5-7b", 28, gqa(4, 128), KvDtype::Bf16),
    // meta-llama/Llama-3.1-8B: 32 layers, 8 KV heads, 4096 / 32 = 128.
    ("llama-3.1-8b", 32, gqa(8, 128), KvDtype::Bf16),
    // meta-llama/Llama-3.1-70B: 80 layers, 8 KV heads, 8192 / 64 = 128.
    ("llama-3.1-70b", 80, gqa(8, 128), KvDtype::Bf16),
    // Qwen/Qwen3-8B: 36 layers, 8 KV heads, head_dim 128.
    ("qwen3-8b", 36, gqa(8, 128), KvDtype::Bf16),
    // deepseek-ai/DeepSeek-R1: 61 layers, MLA kv_lora_rank 512 + qk_rope_head_dim 64.
    (
        "deepseek-r1",
        61,
        Attention::Mla {
            rope_dim: 64,
            latent_dim: 512,
        },
        KvDtype::Bf16,
    ),
    // openai/gpt-oss-20b: 24 layers, 8 KV heads, head_dim 64 (every layer counted in full,
    // as KVBench does, although half of them attend to a 128-token window).
    ("gpt-oss-20b", 24, gqa(8, 64), KvDtype::Bf16),
];

/// The preset of that name (case-insensitive; `_` and `-` alike).
pub fn preset(name: &str) -> Option<KvGeometry> {
    let want = name.trim().to_ascii_lowercase().replace('_', "-");
    PRESETS
        .iter()
        .find(|p| p.0 == want)
        .map(|&(name, layers, attention, dtype)| KvGeometry {
            name: name.to_string(),
            layers,
            attention,
            dtype,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_by_hand() {
        // layers x 2 x kv_heads x head_dim x 2 bytes (MLA: layers x (512 + 64) x 2)
        let want = [
            ("qwen2.5-7b", 28 * 2 * 4 * 128 * 2),
            ("llama-3.1-8b", 32 * 2 * 8 * 128 * 2),
            ("llama-3.1-70b", 80 * 2 * 8 * 128 * 2),
            ("qwen3-8b", 36 * 2 * 8 * 128 * 2),
            ("deepseek-r1", 61 * 576 * 2),
            ("gpt-oss-20b", 24 * 2 * 8 * 64 * 2),
        ];
        assert_eq!(want.len(), PRESETS.len());
        for (name, bytes) in want {
            assert_eq!(preset(name).unwrap().bytes_per_token(), bytes, "{name}");
        }
        assert_eq!(preset("Llama_3.1_8B").unwrap().name, "llama-3.1-8b");
    }
}

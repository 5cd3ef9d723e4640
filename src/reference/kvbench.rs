//! KVBench (NIXL's benchmark/kvbench) `profile`: its own preamble (`Model Config: ...`,
//! `ISL: 1000 tokens`, `TP: 1`, ...) ended by a rule of `=`, then nixlbench's output.

use serde_json::Value;

use super::table::{self, Line};
use super::{nixlbench, ParseError, Tool};
use crate::report::ResultDoc;

/// Parses KVBench's output into a `kv_profile` document; the preamble goes into `config`.
/// A row's message size is the bytes of one iteration, block x batch (the requests' KV
/// caches, what `kvxfer kv profile` moves per transfer); the block stays in `block_size`.
pub fn parse(raw: &str) -> Result<ResultDoc, ParseError> {
    let lines = table::lines(raw);
    let mut doc = nixlbench::parse_lines(Tool::Kvbench, "kv_profile", &lines)?;
    for (k, v) in preamble(&lines) {
        doc.config.insert(format!("kvbench_{k}"), v);
    }
    for r in &mut doc.results {
        let batch = r.extra.get("batch_size").and_then(Value::as_u64);
        if let Some(bytes) = batch.and_then(|b| b.checked_mul(r.message_size)) {
            r.extra
                .insert("block_size".into(), Value::from(r.message_size));
            r.extra.insert(
                "message_size_is".into(),
                Value::from("block_size x batch_size: the bytes of one iteration"),
            );
            r.message_size = bytes;
        }
    }
    Ok(doc)
}

/// The `Key: value` lines before the first `=` rule (none when there is no such rule).
fn preamble(lines: &[Line<'_>]) -> Vec<(String, Value)> {
    let Some(end) = lines
        .iter()
        .position(|l| table::is_rule(l.text) && l.text.trim().starts_with('='))
    else {
        return Vec::new();
    };
    lines[..end]
        .iter()
        .filter_map(|l| {
            let (k, v) = l.text.split_once(':')?;
            let key = k
                .split_whitespace()
                .collect::<Vec<_>>()
                .join("_")
                .to_ascii_lowercase();
            let v = v.trim();
            // `ISL: 1000 tokens` keeps its number; a unit word goes into the key.
            let value = match v.split_once(' ') {
                Some((n, unit)) if n.parse::<u64>().is_ok() && !unit.contains(' ') => {
                    return Some((format!("{key}_{unit}"), Value::from(n.parse::<u64>().ok()?)))
                }
                _ => v
                    .parse::<u64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::from(v)),
            };
            (!key.is_empty()).then_some((key, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written for kvxfer's tests after the layout REFERENCE.md describes: a KVBench preamble,
    // then the older six-column nixlbench table with no configuration block.
    const OLD_LAYOUT: &str = "\
Model Config: examples/block-tp1-pp8.yaml
ISL: 4096 tokens
Page Size: 16
Requests: 2
TP: 1
PP: 8
================================================================================
Loaded plugin UCX
Block Size (B)      Batch Size     Avg Lat. (us)  B/W (MiB/Sec)  B/W (GiB/Sec)  B/W (GB/Sec)
--------------------------------------------------------------------------------
131072              5000           40.5           3086.419753    3.014082       3.236345
";

    #[test]
    fn preamble_and_old_table() {
        let d = parse(OLD_LAYOUT).unwrap();
        assert_eq!(d.tool, "kvbench");
        assert_eq!(d.bench, "kv_profile");
        assert_eq!(d.layer, "L2");
        assert_eq!(d.config["kvbench_isl_tokens"], 4096);
        assert_eq!(d.config["kvbench_pp"], 8);
        assert_eq!(
            d.config["kvbench_model_config"],
            "examples/block-tp1-pp8.yaml"
        );
        let r = &d.results[0];
        // 131,072-byte blocks x 5,000: the iteration's bytes.
        assert_eq!(r.message_size, 655_360_000);
        assert_eq!(r.extra["block_size"], 131_072);
        assert_eq!(r.extra["batch_size"], 5000);
        assert_eq!(r.latency_us.unwrap().mean, 40.5);
        assert_eq!(r.bandwidth_gbps, Some(3.236345));
        assert_eq!(r.extra["bw_mib_sec"], 3086.419753);
        assert_eq!(r.extra["bw_gib_sec"], 3.014082);
        assert_eq!(
            r.iterations, 0,
            "no configuration block: iterations unknown"
        );
    }
}

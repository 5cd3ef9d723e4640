//! The spec's section-7 table: KV bytes per prompt length and the theoretical transfer time at
//! each link rate.

use serde::Serialize;

use super::{KvGeometry, ModelError};

/// One link's theoretical time for a row.
#[derive(Debug, Clone, Serialize)]
pub struct LinkTime {
    /// Link rate, 10^9 bytes/s.
    pub link_gbps: f64,
    /// bytes / rate, ms.
    pub theoretical_ms: f64,
    /// bytes / (rate x 2^30), ms: the spec's section-7 figures read the rate as GiB/s
    /// (704,643,072 B at 4.4 gives its 149 ms).
    pub spec_gib_ms: f64,
}

/// One prompt length.
#[derive(Debug, Clone, Serialize)]
pub struct SizeRow {
    /// Prompt tokens.
    pub tokens: u64,
    /// Bytes of the cache.
    pub kv_bytes: u64,
    /// Bytes in MiB.
    pub kv_mib: f64,
    /// Per link rate, in the order given.
    pub links: Vec<LinkTime>,
    /// Slowest link's time minus the fastest's, ms (absent with one link).
    pub difference_ms: Option<f64>,
}

/// The whole table.
#[derive(Debug, Clone, Serialize)]
pub struct SizeTable {
    /// The model.
    pub model: KvGeometry,
    /// Bytes per token.
    pub kv_bytes_per_token: u64,
    /// One row per prompt length.
    pub rows: Vec<SizeRow>,
}

/// Theoretical time in ms of `bytes` at `gbps` (10^9 bytes/s).
pub fn theoretical_ms(bytes: u64, gbps: f64) -> f64 {
    bytes as f64 / (gbps * 1e9) * 1e3
}

/// Builds the table; tokens and link rates must be positive.
pub fn table(model: &KvGeometry, tokens: &[u64], links: &[f64]) -> Result<SizeTable, ModelError> {
    if tokens.is_empty() || tokens.contains(&0) {
        return Err(ModelError::Invalid(
            "--tokens must be positive counts".into(),
        ));
    }
    if links.iter().any(|g| !(g.is_finite() && *g > 0.0)) {
        return Err(ModelError::Invalid(
            "--link-gbps must be positive rates".into(),
        ));
    }
    let rows = tokens
        .iter()
        .map(|&t| {
            let bytes = model.bytes(t).ok_or_else(|| {
                ModelError::Invalid(format!("{t} tokens: the cache does not fit in 64 bits"))
            })?;
            let times: Vec<LinkTime> = links
                .iter()
                .map(|&g| LinkTime {
                    link_gbps: g,
                    theoretical_ms: theoretical_ms(bytes, g),
                    spec_gib_ms: theoretical_ms(bytes, g * (1u64 << 30) as f64 / 1e9),
                })
                .collect();
            let difference_ms = (times.len() > 1).then(|| {
                let (lo, hi) = times.iter().fold((f64::MAX, f64::MIN), |(lo, hi), l| {
                    (lo.min(l.theoretical_ms), hi.max(l.theoretical_ms))
                });
                hi - lo
            });
            Ok(SizeRow {
                tokens: t,
                kv_bytes: bytes,
                kv_mib: bytes as f64 / (1u64 << 20) as f64,
                links: times,
                difference_ms,
            })
        })
        .collect::<Result<_, ModelError>>()?;
    Ok(SizeTable {
        model: model.clone(),
        kv_bytes_per_token: model.bytes_per_token(),
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::preset;

    #[test]
    fn qwen_12k_at_the_teams_rates() {
        let t = table(&preset("qwen2.5-7b").unwrap(), &[12_288], &[4.4, 2.9]).unwrap();
        let r = &t.rows[0];
        assert_eq!(r.kv_bytes, 704_643_072);
        assert_eq!(r.kv_mib, 672.0);
        // 704,643,072 / 4.4e9 s = 160.146 ms; / 2.9e9 = 242.980 ms
        assert!((r.links[0].theoretical_ms - 160.1461527).abs() < 1e-6);
        assert!((r.links[1].theoretical_ms - 242.9803697).abs() < 1e-6);
        assert!((r.difference_ms.unwrap() - 82.834217).abs() < 1e-5);
        // The spec's table: 149 ms and 226 ms (the rate read as GiB/s).
        assert_eq!(r.links[0].spec_gib_ms.round(), 149.0);
        assert_eq!(r.links[1].spec_gib_ms.round(), 226.0);
    }

    #[test]
    fn zero_tokens_and_rates_are_refused() {
        let q = preset("qwen2.5-7b").unwrap();
        assert!(table(&q, &[0], &[4.4]).is_err());
        assert!(table(&q, &[1], &[0.0]).is_err());
        assert!(table(&q, &[1], &[4.4]).unwrap().rows[0]
            .difference_ms
            .is_none());
    }
}

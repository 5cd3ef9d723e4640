//! Statistics over samples: HDR histograms, their summaries, sliding windows, tiers of
//! completion times.

mod recent;
mod summary;
mod tiers;

pub use recent::{Recent, UCX_PERFTEST_WINDOW};
pub use summary::{decode_histogram, encode_histogram, new_histogram, LatencySummary, StatsError};
pub use tiers::{detect_tiers, Tier};

/// The median of the finite values; None when there is none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

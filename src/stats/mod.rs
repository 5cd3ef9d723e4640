//! Statistics over samples: HDR histograms, their summaries, sliding windows, tiers of
//! completion times, order-statistic intervals, and the precision a run reached.

mod blocks;
mod interval;
mod pacer;
mod precision;
mod recent;
mod rounds;
mod summary;
mod tiers;

pub use blocks::{BlockInterval, Blocks, MIN_BLOCKS};
pub use interval::{
    median_interval, median_ranks, nth_smallest, quantile_ranks, values_at, Ranks, LEVEL,
};
pub use pacer::{Pacer, FIRST_AUTO_BATCH, FIRST_DURATION_BATCH};
pub use precision::{
    median_half_width, stated_interval, AutoLimits, Count, P99Interval, Precision, Stated,
    StoppedBy, DEFAULT_MAX_ITERATIONS, DEFAULT_MAX_TIME, DEFAULT_PRECISION_PCT,
};
pub use recent::{Recent, UCX_PERFTEST_WINDOW};
pub use rounds::{check_rounds, RoundsInterval, AUTO_ROUNDS, MAX_ROUNDS};
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

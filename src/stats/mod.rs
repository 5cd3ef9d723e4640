//! Statistics over samples: HDR histograms, their summaries, and sliding windows.

mod recent;
mod summary;

pub use recent::{Recent, UCX_PERFTEST_WINDOW};
pub use summary::{decode_histogram, encode_histogram, new_histogram, LatencySummary, StatsError};

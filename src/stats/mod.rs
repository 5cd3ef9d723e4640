//! Statistics over samples: HDR histograms, their summaries, sliding windows, tiers of
//! completion times.

mod recent;
mod summary;
mod tiers;

pub use recent::{Recent, UCX_PERFTEST_WINDOW};
pub use summary::{decode_histogram, encode_histogram, new_histogram, LatencySummary, StatsError};
pub use tiers::{detect_tiers, Tier};

//! Statistics over samples: HDR histograms and their summaries, tiers of completion times.

mod summary;
mod tiers;

pub use summary::{decode_histogram, encode_histogram, new_histogram, LatencySummary, StatsError};
pub use tiers::{detect_tiers, Tier};

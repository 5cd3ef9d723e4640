//! Statistics over samples: HDR histograms and their summaries.

mod summary;

pub use summary::{decode_histogram, encode_histogram, new_histogram, LatencySummary, StatsError};

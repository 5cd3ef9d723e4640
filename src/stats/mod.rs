//! Statistics over samples: HDR histograms and their summaries.

mod summary;

pub use summary::{encode_histogram, decode_histogram, new_histogram, LatencySummary, StatsError};

//! kvxfer: a benchmark harness for the network under disaggregated LLM inference.

pub mod fabric;
pub mod mem;
pub mod plan;
pub mod reference;
pub mod report;
pub mod stats;

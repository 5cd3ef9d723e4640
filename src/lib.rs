//! kvxfer: a benchmark harness for the network under disaggregated LLM inference.

pub mod analyze;
pub mod bench;
pub mod bootstrap;
pub mod channel;
pub mod doctor;
pub mod fabric;
pub mod mem;
pub mod mlflow;
pub mod model;
pub mod peer;
pub mod plan;
pub mod reference;
pub mod report;
pub mod run;
pub mod stats;
pub mod stop;
pub mod teardown;
pub mod topo;
pub mod ucx;
pub mod units;
pub mod xfer;

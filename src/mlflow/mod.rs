//! Recording results to an MLflow tracking server: a thin REST client (tracking API 2.0 and
//! the artifact proxy), the pure mapping from a result document to a run, and the
//! record-exactly-once logic.

mod client;
mod error;
mod export;
mod mapping;
mod record;

pub use client::{Client, FileInfo, KeyValue, Metric, RetryPolicy, Run, RunData, RunInfo};
pub use error::MlflowError;
pub use export::Mlflow;
pub use mapping::{
    content_hash, plan_run, sanitize_key, Artifact, MapOptions, RunPlan, CONTENT_HASH_TAG,
    DEFAULT_BYTES_PER_TOKEN, NONFINITE_TAG,
};
pub use record::{record_doc, Outcome, RecordConfig, Recorder, DEFAULT_EXPERIMENT};

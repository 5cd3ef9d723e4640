//! Recording result documents as MLflow runs, each exactly once.
//!
//! A run carries the tag [`CONTENT_HASH_TAG`] (sha256 of the file bytes) from its creation on,
//! and is marked FINISHED only after its params, metrics and artifacts are all in. Before
//! creating a run, the experiment is searched for the hash:
//!
//! - a FINISHED run holds it: the result is already recorded; nothing is sent;
//! - only unfinished runs hold it (a recorder died mid-way): they are deleted and the result is
//!   recorded afresh, so a half-logged run never stands beside a whole one.
//!
//! Two recorders working on the same files at the same moment are not guarded against.

use chrono::{DateTime, Utc};

use super::client::{Client, RetryPolicy, Run, RunInfo};
use super::error::MlflowError;
use super::mapping::{plan_run, MapOptions, RunPlan, CONTENT_HASH_TAG};
use crate::report::ResultDoc;

/// The experiment the spec records low-level measurements into.
pub const DEFAULT_EXPERIMENT: &str = "low-level-network";

/// Where and how to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordConfig {
    /// Tracking server URL, e.g. `http://127.0.0.1:5000`.
    pub tracking_uri: String,
    /// Experiment name (created when missing).
    pub experiment: String,
    /// Tags and naming choices.
    pub map: MapOptions,
    /// Retrying of transient failures.
    pub retry: RetryPolicy,
}

impl RecordConfig {
    /// Defaults for `tracking_uri`: experiment `low-level-network`, Qwen2.5-7B token size.
    pub fn new(tracking_uri: &str) -> RecordConfig {
        RecordConfig {
            tracking_uri: tracking_uri.to_string(),
            experiment: DEFAULT_EXPERIMENT.to_string(),
            map: MapOptions::default(),
            retry: RetryPolicy::default(),
        }
    }
}

/// What recording one result did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new run was created and finished.
    Recorded {
        /// The new run.
        run_id: String,
        /// Its name.
        run_name: String,
        /// Unfinished runs of the same content that were deleted.
        replaced: usize,
    },
    /// A finished run already holds this content; nothing was sent.
    AlreadyRecorded {
        /// The existing run.
        run_id: String,
        /// Unfinished duplicates that were deleted.
        replaced: usize,
    },
}

/// A connection to one experiment of one tracking server.
#[derive(Debug, Clone)]
pub struct Recorder {
    client: Client,
    experiment_id: String,
    map: MapOptions,
}

impl Recorder {
    /// Connects and gets (or creates) the experiment.
    pub fn connect(cfg: &RecordConfig) -> Result<Recorder, MlflowError> {
        let client = Client::new(&cfg.tracking_uri, cfg.retry)?;
        let experiment_id = client.get_or_create_experiment(&cfg.experiment)?;
        Ok(Recorder {
            client,
            experiment_id,
            map: cfg.map.clone(),
        })
    }

    /// The client, for reading back.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The experiment's id.
    pub fn experiment_id(&self) -> &str {
        &self.experiment_id
    }

    /// The run plan for `doc`, read from `bytes` in a file named `file_name`.
    pub fn plan(
        &self,
        doc: &ResultDoc,
        bytes: &[u8],
        file_name: &str,
        now: DateTime<Utc>,
    ) -> RunPlan {
        plan_run(doc, bytes, file_name, &self.map, now)
    }

    /// Records `plan` unless a finished run already holds its content hash.
    pub fn record(&self, plan: &RunPlan) -> Result<Outcome, MlflowError> {
        let (finished, unfinished) = self.holders(&plan.content_hash)?;
        for r in &unfinished {
            self.client.delete_run(&r.info.run_id)?;
        }
        let mut replaced = unfinished.len();
        if let Some(done) = finished.first() {
            return Ok(Outcome::AlreadyRecorded {
                run_id: done.info.run_id.clone(),
                replaced,
            });
        }
        let run = self.client.create_run(
            &self.experiment_id,
            &plan.run_name,
            plan.start_time_ms,
            &plan.tags,
        )?;
        self.fill(&run, plan)?;
        self.client
            .update_run(&run.run_id, "FINISHED", plan.end_time_ms)?;
        // A runs/create retried after a lost answer may have left a twin behind.
        let (_, twins) = self.holders(&plan.content_hash)?;
        for r in twins.iter().filter(|r| r.info.run_id != run.run_id) {
            self.client.delete_run(&r.info.run_id)?;
            replaced += 1;
        }
        Ok(Outcome::Recorded {
            run_id: run.run_id,
            run_name: plan.run_name.clone(),
            replaced,
        })
    }

    /// The active runs holding content hash `hash`: (finished, not finished).
    fn holders(&self, hash: &str) -> Result<(Vec<Run>, Vec<Run>), MlflowError> {
        let filter = format!("tags.{CONTENT_HASH_TAG} = '{hash}'");
        let found = self
            .client
            .search_runs(std::slice::from_ref(&self.experiment_id), &filter)?;
        Ok(found.into_iter().partition(|r| r.info.status == "FINISHED"))
    }

    fn fill(&self, run: &RunInfo, plan: &RunPlan) -> Result<(), MlflowError> {
        self.client
            .log_batch(&run.run_id, &plan.metrics, &plan.params, &[])?;
        for a in &plan.artifacts {
            self.client.upload_artifact(run, &a.path, &a.bytes)?;
        }
        Ok(())
    }
}

/// Records one document (as `doc.to_json()` bytes, the form kvxfer writes result files in,
/// so a later `kvxfer record` of that file sees it as recorded) under `file_name`.
pub fn record_doc(
    cfg: &RecordConfig,
    doc: &ResultDoc,
    file_name: &str,
) -> Result<Outcome, MlflowError> {
    let recorder = Recorder::connect(cfg)?;
    let bytes = doc.to_json();
    let plan = recorder.plan(doc, &bytes, file_name, Utc::now());
    recorder.record(&plan)
}

//! `kvxfer record`: one MLflow run per result file of a folder, each recorded exactly once.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use kvxfer::mlflow::{
    MapOptions, Outcome, RecordConfig, Recorder, RetryPolicy, RunPlan, DEFAULT_BYTES_PER_TOKEN,
    DEFAULT_EXPERIMENT,
};
use kvxfer::report::folder::{read_folder, ResultFile, Skipped};
use serde_json::{json, Map, Value};

/// Options of `kvxfer record`.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Folder of kvxfer.result/v1 JSON files (*.json, not recursive).
    #[arg(long)]
    results: PathBuf,
    /// MLflow tracking server, e.g. http://127.0.0.1:5000.
    #[arg(long, env = "MLFLOW_TRACKING_URI", required_unless_present = "dry_run")]
    mlflow_uri: Option<String>,
    /// Experiment to record into (created when missing).
    #[arg(long, default_value = DEFAULT_EXPERIMENT)]
    experiment: String,
    /// Print what would be sent as JSON on stdout; contact no server.
    #[arg(long)]
    dry_run: bool,
    /// Instance type tag (e.g. p5.48xlarge).
    #[arg(long)]
    instance_type: Option<String>,
    /// KV-cache bytes per token for the kv_cache_equivalent_tokens tag (Qwen2.5-7B: 57344).
    #[arg(long, default_value_t = DEFAULT_BYTES_PER_TOKEN, value_parser = clap::value_parser!(u64).range(1..))]
    bytes_per_token: u64,
    /// Requests tried in all when the server is down or answers 5xx/429.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=20))]
    retries: u32,
    /// Wait before the first retry in milliseconds; doubled each retry, at most 8 s.
    #[arg(long, default_value_t = 500)]
    retry_backoff_ms: u64,
    /// Seconds one request to the server may take, its retries included.
    #[arg(long, default_value = "30", value_parser = super::common::parse_timeout)]
    timeout: Duration,
}

/// Records every result file of the folder, or prints the plan with `--dry-run`.
pub fn run(a: RecordArgs) -> anyhow::Result<ExitCode> {
    let (loaded, skipped) = load_folder(&a.results)?;
    for (name, why) in &skipped {
        eprintln!("kvxfer record: skipped {name}: {why}");
    }
    let cfg = record_config(&a);
    let now = chrono::Utc::now();
    if a.dry_run {
        return dry_run(&cfg, &loaded, &skipped);
    }

    let recorder = Recorder::connect(&cfg).with_context(|| {
        format!(
            "cannot record into experiment {:?}; nothing recorded, local results kept",
            cfg.experiment
        )
    })?;
    let (mut recorded, mut present) = (0usize, 0usize);
    for (i, l) in loaded.iter().enumerate() {
        let plan = recorder.plan(&l.doc, &l.bytes, &l.name, now);
        for n in &plan.notes {
            eprintln!("kvxfer record: note: {}: {n}", l.name);
        }
        let outcome = recorder.record(&plan).with_context(|| {
            format!(
                "recording {} failed after {recorded} new and {present} already recorded of {} files; \
                 local results kept, run `kvxfer record` again to complete the set",
                l.name,
                loaded.len()
            )
        })?;
        let replaced = match outcome {
            Outcome::Recorded {
                run_id,
                run_name,
                replaced,
            } => {
                recorded += 1;
                progress(
                    i,
                    loaded.len(),
                    &l.name,
                    &format!("-> run {run_name} ({run_id})"),
                );
                replaced
            }
            Outcome::AlreadyRecorded { run_id, replaced } => {
                present += 1;
                progress(
                    i,
                    loaded.len(),
                    &l.name,
                    &format!("already recorded (run {run_id})"),
                );
                replaced
            }
        };
        if replaced > 0 {
            eprintln!(
                "kvxfer record: {}: removed {replaced} unfinished run(s) of the same content",
                l.name
            );
        }
    }
    kvxfer::outln!(
        "recorded={recorded} already_recorded={present} skipped={} experiment={}",
        skipped.len(),
        cfg.experiment
    );
    Ok(ExitCode::SUCCESS)
}

/// Where and how `kvxfer record` records, from its options.
fn record_config(a: &RecordArgs) -> RecordConfig {
    RecordConfig {
        tracking_uri: a.mlflow_uri.clone().unwrap_or_default(),
        experiment: a.experiment.clone(),
        map: MapOptions {
            instance_type: a.instance_type.clone(),
            bytes_per_token: a.bytes_per_token,
        },
        retry: RetryPolicy {
            attempts: a.retries,
            initial_backoff: Duration::from_millis(a.retry_backoff_ms),
            max_backoff: Duration::from_secs(8).max(Duration::from_millis(a.retry_backoff_ms)),
            deadline: a.timeout,
        },
    }
}

/// Prints the runs `record` would make, contacting nothing.
fn dry_run(
    cfg: &RecordConfig,
    loaded: &[ResultFile],
    skipped: &[Skipped],
) -> anyhow::Result<ExitCode> {
    let now = chrono::Utc::now();
    let runs: Vec<Value> = loaded
        .iter()
        .map(|l| {
            let plan = kvxfer::mlflow::plan_run(&l.doc, &l.bytes, &l.name, &cfg.map, now);
            plan_json(&l.name, &plan)
        })
        .collect();
    let skipped: Vec<Value> = skipped
        .iter()
        .map(|(f, why)| json!({ "file": f, "reason": why }))
        .collect();
    let out =
        json!({ "experiment": cfg.experiment, "dry_run": true, "runs": runs, "skipped": skipped });
    kvxfer::outln!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

/// One line of progress: file `i` of `n`, and what became of it.
fn progress(i: usize, n: usize, name: &str, what: &str) {
    eprintln!("kvxfer record: [{}/{n}] {name} {what}", i + 1);
}

/// Reads every result document of `dir`, saying so when it holds none.
fn load_folder(dir: &Path) -> anyhow::Result<(Vec<ResultFile>, Vec<Skipped>)> {
    let (loaded, skipped) =
        read_folder(dir).with_context(|| format!("reading results folder {}", dir.display()))?;
    if loaded.is_empty() && skipped.is_empty() {
        eprintln!("kvxfer record: no *.json file in {}", dir.display());
    }
    Ok((loaded, skipped))
}

/// What `--dry-run` prints for one run.
fn plan_json(file: &str, p: &RunPlan) -> Value {
    let kv = |items: &[kvxfer::mlflow::KeyValue]| -> Map<String, Value> {
        items
            .iter()
            .map(|t| (t.key.clone(), Value::String(t.value.clone())))
            .collect()
    };
    let metrics: Map<String, Value> = p
        .metrics
        .iter()
        .map(|m| (m.key.clone(), json!(m.value)))
        .collect();
    let artifacts: Vec<Value> = p
        .artifacts
        .iter()
        .map(|a| json!({ "path": a.path, "bytes": a.bytes.len() }))
        .collect();
    json!({
        "file": file, "run_name": p.run_name, "start_time_ms": p.start_time_ms,
        "end_time_ms": p.end_time_ms, "tags": kv(&p.tags), "params": kv(&p.params),
        "metrics": metrics, "artifacts": artifacts, "notes": p.notes,
    })
}

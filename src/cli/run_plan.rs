//! `kvxfer run`: a plan's patterns on this node in the spec's order (L0, L1, L2, L3) with the
//! task runner's contract, each result recorded to MLflow as its pattern finishes, then the
//! cross-check of the whole results folder.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use kvxfer::mlflow::{Outcome, RecordConfig, Recorder, RetryPolicy, DEFAULT_EXPERIMENT};
use kvxfer::plan::runner::{self, RunOptions};
use kvxfer::plan::select::{self, Role};
use kvxfer::reference::crosscheck::{self, Verdict};
use kvxfer::report::write_atomic;
use serde_json::{json, Value};

use super::record::load_folder;

/// Options of `kvxfer run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The experiment plan.
    #[arg(long)]
    plan: PathBuf,
    /// Layers to run: L0, L1, L2, L3 or all (repeatable; default all).
    #[arg(long, value_delimiter = ',')]
    layer: Vec<String>,
    /// Only these pattern ids (repeatable).
    #[arg(long, value_delimiter = ',')]
    pattern: Vec<String>,
    /// This node's side: server (node 1), client (node 2, PEER_IP set) or one-host (default
    /// for a one-host plan).
    #[arg(long, value_enum)]
    role: Option<RoleArg>,
    /// Record each result to this MLflow server as its pattern finishes.
    #[arg(long, env = "MLFLOW_TRACKING_URI")]
    mlflow_uri: Option<String>,
    /// MLflow experiment (default: the plan's common.mlflow_experiment).
    #[arg(long)]
    experiment: Option<String>,
    /// Results folder (default: the plan's common.output_dir).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Template folder; default: templates/ beside the plan's folder, else ./templates.
    #[arg(long)]
    templates: Option<PathBuf>,
    /// Keep the task state of earlier runs (tasks done are not run again); default: every
    /// pattern runs afresh and its result files are overwritten.
    #[arg(long)]
    resume: bool,
    /// Task state file (default /tmp/task-state-<hostname>.json).
    #[arg(long)]
    state: Option<PathBuf>,
}

/// The `--role` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// Node 1 of a two-node plan.
    Server,
    /// Node 2 of a two-node plan.
    Client,
    /// Both sides on this host.
    OneHost,
}

/// Records result files to MLflow, connecting again after a failure; nothing is lost while
/// the server is down (`kvxfer record` catches up later), nothing is recorded twice.
struct Recording {
    cfg: RecordConfig,
    recorder: Option<Recorder>,
    recorded: usize,
    already: usize,
    failed: usize,
}

impl Recording {
    fn new(uri: &str, experiment: &str) -> Recording {
        let mut cfg = RecordConfig::new(uri);
        cfg.experiment = experiment.to_string();
        cfg.retry = RetryPolicy {
            attempts: 3,
            initial_backoff: Duration::from_millis(300),
            max_backoff: Duration::from_secs(2),
            ..RetryPolicy::default()
        };
        Recording {
            cfg,
            recorder: None,
            recorded: 0,
            already: 0,
            failed: 0,
        }
    }

    /// Records the result documents of `dir` whose pattern is `id`.
    fn pattern(&mut self, dir: &Path, id: &str) {
        let Ok((loaded, _)) = load_folder(dir) else {
            return;
        };
        let mine: Vec<_> = loaded
            .iter()
            .filter(|l| l.doc.pattern_id.as_deref() == Some(id))
            .collect();
        if mine.is_empty() {
            return;
        }
        if self.recorder.is_none() {
            match Recorder::connect(&self.cfg) {
                Ok(r) => self.recorder = Some(r),
                Err(e) => {
                    self.failed += mine.len();
                    eprintln!(
                        "kvxfer run: MLflow unreachable ({e}); {} result(s) of {id} kept in {}, \
                         `kvxfer record --results {}` records them later",
                        mine.len(),
                        dir.display(),
                        dir.display()
                    );
                    return;
                }
            }
        }
        let now = chrono::Utc::now();
        for l in mine {
            let Some(rec) = &self.recorder else { return };
            let plan = rec.plan(&l.doc, &l.bytes, &l.name, now);
            match rec.record(&plan) {
                Ok(Outcome::Recorded { run_id, .. }) => {
                    self.recorded += 1;
                    eprintln!("kvxfer run:   recorded {} (run {run_id})", l.name);
                }
                Ok(Outcome::AlreadyRecorded { run_id, .. }) => {
                    self.already += 1;
                    eprintln!("kvxfer run:   {} already recorded (run {run_id})", l.name);
                }
                Err(e) => {
                    self.failed += 1;
                    self.recorder = None;
                    eprintln!(
                        "kvxfer run:   recording {} failed ({e}); kept in {}, `kvxfer record` \
                         records it later",
                        l.name,
                        dir.display()
                    );
                }
            }
        }
    }
}

/// The plan, with the results folder and this kvxfer as the plan's kvxfer tool.
fn load(a: &RunArgs) -> anyhow::Result<(Value, PathBuf)> {
    let mut plan = kvxfer::plan::load_plan(&a.plan)
        .with_context(|| format!("reading plan {}", a.plan.display()))?;
    if let Some(out) = &a.out {
        let abs = std::path::absolute(out).with_context(|| format!("{}", out.display()))?;
        plan["common"]["output_dir"] = Value::String(abs.display().to_string());
    }
    // The kvxfer running the plan runs its tasks, unless the plan names another binary.
    if plan.pointer("/infrastructure/tools/kvxfer") == Some(&json!("kvxfer")) {
        if let Ok(me) = std::env::current_exe() {
            plan["infrastructure"]["tools"]["kvxfer"] = json!(me.display().to_string());
        }
    }
    let out = plan
        .pointer("/common/output_dir")
        .and_then(Value::as_str)
        .map(PathBuf::from)
        .context("the plan has no common.output_dir; give --out")?;
    Ok((plan, out))
}

/// Runs the plan's chosen patterns.
pub fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let layers: Vec<String> = if a.layer.iter().any(|l| l.eq_ignore_ascii_case("all")) {
        Vec::new()
    } else {
        a.layer.iter().map(|l| l.to_ascii_uppercase()).collect()
    };
    if let Some(bad) = layers
        .iter()
        .find(|l| !["L0", "L1", "L2", "L3"].contains(&l.as_str()))
    {
        anyhow::bail!("--layer {bad}: one of L0, L1, L2, L3, all");
    }
    let (plan, out) = load(&a)?;
    let role = match a.role {
        Some(RoleArg::Server) => Role::Server,
        Some(RoleArg::Client) => Role::Client,
        Some(RoleArg::OneHost) => Role::OneHost,
        None => select::default_role(&plan).context(
            "the plan is two-node: give --role server (node 1) or --role client (node 2)",
        )?,
    };
    let templates = a
        .templates
        .clone()
        .unwrap_or_else(|| super::plan::default_templates(&a.plan));
    let chosen = select::select(&plan, &templates, role, &layers, &a.pattern)
        .with_context(|| format!("plan {}", a.plan.display()))?;
    anyhow::ensure!(
        !chosen.is_empty(),
        "no pattern of the plan matches --layer/--pattern"
    );
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let experiment = a
        .experiment
        .clone()
        .or_else(|| {
            plan.pointer("/common/mlflow_experiment")?
                .as_str()
                .map(String::from)
        })
        .unwrap_or_else(|| DEFAULT_EXPERIMENT.to_string());
    let mut rec = a
        .mlflow_uri
        .as_deref()
        .map(|u| Recording::new(u, &experiment));
    let opts = RunOptions {
        from: None,
        reset: !a.resume,
        state: a.state.clone(),
        output_to_stderr: true,
    };
    let mut summary = Vec::new();
    let mut failures = BTreeSet::new();
    let started = Instant::now();
    for (k, s) in chosen.iter().enumerate() {
        eprintln!(
            "kvxfer run: [{}/{}] {} {} ({}) {:.0} s in",
            k + 1,
            chosen.len(),
            s.layer,
            s.id,
            s.tool,
            started.elapsed().as_secs_f64()
        );
        let t = Instant::now();
        let outcome = match runner::run(&s.definition, &opts) {
            Ok(r) => {
                let ran = r.outcomes.iter().filter(|o| o.1 == "ran").count();
                let skipped = r.outcomes.iter().filter(|o| o.1 == "skipped").count();
                json!({"status": "ok", "tasks_ran": ran, "tasks_skipped": skipped})
            }
            Err(e) => {
                eprintln!("kvxfer run: {} failed: {e}", s.id);
                failures.insert(s.id.clone());
                json!({"status": "failed", "error": e.to_string()})
            }
        };
        // Whatever the pattern left (a failed pattern may have partial results) is recorded.
        if let Some(r) = rec.as_mut() {
            r.pattern(&out, &s.id);
        }
        summary.push(json!({"layer": s.layer, "pattern": s.id, "tool": s.tool,
                            "seconds": t.elapsed().as_secs_f64(), "outcome": outcome}));
    }
    let tolerance = plan
        .pointer("/validation_targets/crosscheck_tolerance")
        .and_then(Value::as_f64)
        .unwrap_or(0.1);
    let report = crosscheck::crosscheck_dir(&out, tolerance)
        .with_context(|| format!("cross-checking {}", out.display()))?;
    let mut bytes = serde_json::to_vec_pretty(&report)?;
    bytes.push(b'\n');
    let cc = out.join("crosscheck.json");
    write_atomic(&cc, &bytes).with_context(|| format!("writing {}", cc.display()))?;
    let count = |v: Verdict| report.rows.iter().filter(|r| r.verdict == v).count();
    let result = json!({
        "plan": a.plan.display().to_string(),
        "results_dir": out.display().to_string(),
        "patterns": summary,
        "failed": failures,
        "mlflow": rec.as_ref().map(|r| json!({
            "experiment": experiment, "recorded": r.recorded,
            "already_recorded": r.already, "not_recorded": r.failed})),
        "crosscheck": {"file": cc.display().to_string(), "agree": count(Verdict::Agree),
                       "differ": count(Verdict::Differ),
                       "not_comparable": count(Verdict::NotComparable),
                       "unpaired": report.unpaired.len()},
    });
    kvxfer::outln!("{}", serde_json::to_string_pretty(&result)?);
    if let Some(r) = rec.as_ref().filter(|r| r.failed > 0) {
        eprintln!(
            "kvxfer run: {} result(s) not recorded; `kvxfer record --results {} --experiment {experiment}` records them",
            r.failed,
            out.display()
        );
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

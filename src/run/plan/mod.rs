//! `kvxfer run`: a plan's patterns on this node in the spec's order (L0, L1, L2, L3) with the
//! task runner's contract, each result recorded to MLflow as its pattern finishes, then the
//! cross-check of the whole results folder. Prints nothing: what happens reaches the caller as
//! [`PlanEvent`]s, and the outcome as a [`PlanRunReport`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use crate::doctor::DoctorReport;
use crate::mlflow::{Outcome, RecordConfig, Recorder, RetryPolicy, DEFAULT_EXPERIMENT};
use crate::plan::runner::{self, RunOptions};
use crate::plan::select::{self, Role, Selected};
use crate::plan::PlanError;
use crate::reference::crosscheck::{self, Verdict};
use crate::report::folder::read_folder;
use crate::report::write_atomic;

mod doctor;

/// Errors of a plan run that stop it before or after its patterns (a failing pattern does not:
/// it is named in the report).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanRunError {
    /// The plan, a template or a task definition failed.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The options cannot run.
    #[error("{0}")]
    Config(String),
    /// The doctor failed checks the chosen patterns need (each named with its patterns).
    #[error("the doctor failed check(s) the plan's patterns need: {0}; fix them (the table above says how), leave those patterns out (--pattern, --layer), or run with --no-doctor")]
    Doctor(String),
    /// A file or folder of the run could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A signal stopped the run during pattern `pattern` (its tasks were passed the signal,
    /// waited for and marked failed); nothing after it ran, was recorded or cross-checked.
    #[error("pattern {pattern} ({done} of {of}) was stopped; the results so far are in {results}")]
    Stopped {
        /// The pattern that was running.
        pattern: String,
        /// Its position, 1-based.
        done: usize,
        /// Patterns in all.
        of: usize,
        /// The results folder.
        results: String,
    },
}

/// What `kvxfer run` was asked for.
#[derive(Debug, Clone, Default)]
pub struct PlanRunOptions {
    /// The experiment plan.
    pub plan: PathBuf,
    /// Layers to run (L0..L3, upper case); empty: all.
    pub layers: Vec<String>,
    /// Only these pattern ids; empty: all.
    pub patterns: Vec<String>,
    /// This node's side; None: the plan's default (one-host plans only).
    pub role: Option<Role>,
    /// Record each result to this MLflow server as its pattern finishes.
    pub mlflow_uri: Option<String>,
    /// MLflow experiment; None: the plan's `common.mlflow_experiment`.
    pub experiment: Option<String>,
    /// Results folder; None: the plan's `common.output_dir`.
    pub out: Option<PathBuf>,
    /// Template folder; None: `templates/` beside the plan's folder, else ./templates.
    pub templates: Option<PathBuf>,
    /// Keep the task state of earlier runs instead of running every pattern afresh.
    pub resume: bool,
    /// Task state file; None: the task runner's default.
    pub state: Option<PathBuf>,
    /// Where the kvxfer running the plan lives: the plan's `kvxfer` tool when it names
    /// plain `kvxfer`.
    pub kvxfer: Option<PathBuf>,
    /// Run no doctor before the patterns (and refuse nothing).
    pub no_doctor: bool,
}

/// What happens during a plan run, for the caller to show.
#[derive(Debug)]
#[non_exhaustive]
pub enum PlanEvent<'a> {
    /// The doctor checked the node before any pattern.
    Doctor {
        /// Its findings.
        report: &'a DoctorReport,
    },
    /// Pattern `index` (0-based) of `of` starts, `elapsed` into the run.
    Pattern {
        /// Its position.
        index: usize,
        /// Patterns in all.
        of: usize,
        /// The pattern.
        pattern: &'a Selected,
        /// Time since the run started.
        elapsed: Duration,
    },
    /// Pattern `id` ended (whatever its outcome) after `seconds` of wall time.
    Finished {
        /// The pattern's id.
        id: &'a str,
        /// Its wall time.
        seconds: f64,
    },
    /// A pattern failed (the run goes on).
    Failed {
        /// The pattern's id.
        id: &'a str,
        /// Why.
        error: &'a str,
    },
    /// A result file was recorded to MLflow (or had been already).
    Recorded {
        /// The file.
        file: &'a str,
        /// The MLflow run.
        run_id: &'a str,
        /// It was there from an earlier recording.
        already: bool,
    },
    /// Recording failed; the files stay in the results folder for `kvxfer record`.
    NotRecorded {
        /// The pattern whose results these are.
        pattern: &'a str,
        /// The results folder that keeps them.
        folder: &'a Path,
        /// The file, or None when the server was unreachable for a whole pattern.
        file: Option<&'a str>,
        /// How many files this concerns.
        count: usize,
        /// Why.
        error: &'a str,
    },
}

/// One pattern's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct PatternOutcome {
    /// Its layer.
    pub layer: String,
    /// Its id.
    pub pattern: String,
    /// Its stock tool.
    pub tool: String,
    /// Wall time of the pattern, seconds.
    pub seconds: f64,
    /// `{"status": "ok", "tasks_ran", "tasks_skipped"}` or `{"status": "failed", "error"}`.
    pub outcome: Value,
}

/// What was recorded to MLflow.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecordingSummary {
    /// The experiment.
    pub experiment: String,
    /// Files recorded by this run.
    pub recorded: usize,
    /// Files an earlier recording had already.
    pub already_recorded: usize,
    /// Files left for `kvxfer record`.
    pub not_recorded: usize,
}

/// The cross-check's verdicts over the results folder.
#[derive(Debug, Clone, Serialize)]
pub struct CrosscheckSummary {
    /// The report's file.
    pub file: String,
    /// Rows within the plan's tolerance.
    pub agree: usize,
    /// Rows outside it.
    pub differ: usize,
    /// Rows that cannot be compared.
    pub not_comparable: usize,
    /// kvxfer results without a stock twin.
    pub unpaired: usize,
}

/// The doctor's verdicts before the run.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorSummary {
    /// Checks ok.
    pub ok: usize,
    /// Checks that warned (named with their patterns in the result documents).
    pub warn: usize,
    /// Checks that failed (none the chosen patterns need, or the run was refused).
    pub fail: usize,
    /// Checks that cannot apply here.
    pub skip: usize,
    /// Its wall time, seconds.
    pub seconds: f64,
}

/// What a plan run did.
#[derive(Debug, Clone, Serialize)]
pub struct PlanRunReport {
    /// The plan file.
    pub plan: String,
    /// The results folder.
    pub results_dir: String,
    /// Each pattern run, in order.
    pub patterns: Vec<PatternOutcome>,
    /// The ids of the patterns that failed.
    pub failed: BTreeSet<String>,
    /// Wall time of the whole run (its patterns and the cross-check), seconds.
    pub total_seconds: f64,
    /// The MLflow recording, when asked for.
    pub mlflow: Option<RecordingSummary>,
    /// The cross-check of the results folder.
    pub crosscheck: CrosscheckSummary,
    /// The doctor's run before the patterns; None with `--no-doctor`.
    pub doctor: Option<DoctorSummary>,
}

/// Records result files to MLflow, connecting again after a failure; nothing is lost while
/// the server is down (`kvxfer record` catches up later), nothing is recorded twice.
struct Recording {
    cfg: RecordConfig,
    recorder: Option<Recorder>,
    summary: RecordingSummary,
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
            summary: RecordingSummary {
                experiment: experiment.to_string(),
                ..RecordingSummary::default()
            },
        }
    }

    /// Records the result documents of `dir` whose pattern is `id`.
    fn pattern(&mut self, dir: &Path, id: &str, events: &mut dyn FnMut(PlanEvent<'_>)) {
        let Ok((loaded, _)) = read_folder(dir) else {
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
                    self.summary.not_recorded += mine.len();
                    events(PlanEvent::NotRecorded {
                        pattern: id,
                        folder: dir,
                        file: None,
                        count: mine.len(),
                        error: &e.to_string(),
                    });
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
                    self.summary.recorded += 1;
                    events(PlanEvent::Recorded {
                        file: &l.name,
                        run_id: &run_id,
                        already: false,
                    });
                }
                Ok(Outcome::AlreadyRecorded { run_id, .. }) => {
                    self.summary.already_recorded += 1;
                    events(PlanEvent::Recorded {
                        file: &l.name,
                        run_id: &run_id,
                        already: true,
                    });
                }
                Err(e) => {
                    self.summary.not_recorded += 1;
                    self.recorder = None;
                    events(PlanEvent::NotRecorded {
                        pattern: id,
                        folder: dir,
                        file: Some(&l.name),
                        count: 1,
                        error: &e.to_string(),
                    });
                }
            }
        }
    }
}

/// The plan of `o`, with its results folder and this kvxfer as the plan's kvxfer tool.
fn load(o: &PlanRunOptions) -> Result<(Value, PathBuf), PlanRunError> {
    let mut plan = crate::plan::load_plan(&o.plan)?;
    if let Some(out) = &o.out {
        let abs = std::path::absolute(out).map_err(|source| PlanRunError::Io {
            what: out.display().to_string(),
            source,
        })?;
        plan["common"]["output_dir"] = Value::String(abs.display().to_string());
    }
    // The kvxfer running the plan runs its tasks, unless the plan names another binary.
    if plan.pointer("/infrastructure/tools/kvxfer") == Some(&json!("kvxfer")) {
        if let Some(me) = &o.kvxfer {
            plan["infrastructure"]["tools"]["kvxfer"] = json!(me.display().to_string());
        }
    }
    let out = plan
        .pointer("/common/output_dir")
        .and_then(Value::as_str)
        .map(PathBuf::from)
        .ok_or_else(|| {
            PlanRunError::Config("the plan has no common.output_dir; give --out".into())
        })?;
    Ok((plan, out))
}

/// The layers of `o` checked and upper-cased; empty for all.
fn layers(o: &PlanRunOptions) -> Result<Vec<String>, PlanRunError> {
    if o.layers.iter().any(|l| l.eq_ignore_ascii_case("all")) {
        return Ok(Vec::new());
    }
    let layers: Vec<String> = o.layers.iter().map(|l| l.to_ascii_uppercase()).collect();
    match layers
        .iter()
        .find(|l| !["L0", "L1", "L2", "L3"].contains(&l.as_str()))
    {
        Some(bad) => Err(PlanRunError::Config(format!(
            "--layer {bad}: one of L0, L1, L2, L3, all"
        ))),
        None => Ok(layers),
    }
}

/// The patterns of `o` this node runs, with the plan and its results folder.
fn chosen(o: &PlanRunOptions) -> Result<(Value, PathBuf, Vec<Selected>), PlanRunError> {
    let layers = layers(o)?;
    let (plan, out) = load(o)?;
    let role = match o.role {
        Some(r) => r,
        None => select::default_role(&plan).ok_or_else(|| {
            PlanRunError::Config(
                "the plan is two-node: give --role server (node 1) or --role client (node 2)"
                    .into(),
            )
        })?,
    };
    let templates = o
        .templates
        .clone()
        .unwrap_or_else(|| crate::plan::default_templates(&o.plan));
    let chosen = select::select(&plan, &templates, role, &layers, &o.patterns)?;
    if chosen.is_empty() {
        return Err(PlanRunError::Config(
            "no pattern of the plan matches --layer/--pattern".into(),
        ));
    }
    Ok((plan, out, chosen))
}

/// Runs one pattern's task definition; its outcome as the report shows it.
fn run_pattern(
    s: &Selected,
    opts: &RunOptions,
    failures: &mut BTreeSet<String>,
    events: &mut dyn FnMut(PlanEvent<'_>),
) -> Value {
    match runner::run(&s.definition, opts) {
        Ok(r) => {
            let ran = r.outcomes.iter().filter(|o| o.1 == "ran").count();
            let skipped = r.outcomes.iter().filter(|o| o.1 == "skipped").count();
            json!({"status": "ok", "tasks_ran": ran, "tasks_skipped": skipped})
        }
        Err(e) => {
            let error = e.to_string();
            // A stopped run says so once, as it ends.
            if !matches!(e, PlanError::Stopped { .. }) {
                events(PlanEvent::Failed {
                    id: &s.id,
                    error: &error,
                });
            }
            failures.insert(s.id.clone());
            json!({"status": "failed", "error": error})
        }
    }
}

/// Cross-checks the results folder `out` at the plan's tolerance and writes the report beside
/// the results.
fn crosscheck_folder(plan: &Value, out: &Path) -> Result<CrosscheckSummary, PlanRunError> {
    let tolerance = plan
        .pointer("/validation_targets/crosscheck_tolerance")
        .and_then(Value::as_f64)
        .unwrap_or(0.1);
    let report = crosscheck::crosscheck_dir(out, tolerance).map_err(|source| PlanRunError::Io {
        what: format!("cross-checking {}", out.display()),
        source,
    })?;
    let cc = out.join("crosscheck.json");
    let mut bytes = serde_json::to_vec_pretty(&report).unwrap_or_default();
    bytes.push(b'\n');
    write_atomic(&cc, &bytes).map_err(|source| PlanRunError::Io {
        what: format!("writing {}", cc.display()),
        source,
    })?;
    let count = |v: Verdict| report.rows.iter().filter(|r| r.verdict == v).count();
    Ok(CrosscheckSummary {
        file: cc.display().to_string(),
        agree: count(Verdict::Agree),
        differ: count(Verdict::Differ),
        not_comparable: count(Verdict::NotComparable),
        unpaired: report.unpaired.len(),
    })
}

/// Runs the patterns `o` chooses, recording and cross-checking their results; `events` hears
/// of each step.
pub fn run_plan(
    o: &PlanRunOptions,
    events: &mut dyn FnMut(PlanEvent<'_>),
) -> Result<PlanRunReport, PlanRunError> {
    let (plan, out, chosen) = chosen(o)?;
    let checked = check_node(&plan, &chosen, o, events)?;
    std::fs::create_dir_all(&out).map_err(|source| PlanRunError::Io {
        what: format!("creating {}", out.display()),
        source,
    })?;
    let experiment = experiment_of(o, &plan);
    let mut rec = o
        .mlflow_uri
        .as_deref()
        .map(|u| Recording::new(u, &experiment));
    let opts = RunOptions {
        from: None,
        reset: !o.resume,
        state: o.state.clone(),
        output_to_stderr: true,
    };
    let mut patterns = Vec::new();
    let mut failed = BTreeSet::new();
    let started = Instant::now();
    for (index, s) in chosen.iter().enumerate() {
        events(PlanEvent::Pattern {
            index,
            of: chosen.len(),
            pattern: s,
            elapsed: started.elapsed(),
        });
        let t = Instant::now();
        let outcome = run_pattern(s, &opts, &mut failed, events);
        if let Some(d) = &checked {
            doctor::attach(&out, &s.id, d);
        }
        if crate::stop::requested().is_some() {
            return Err(PlanRunError::Stopped {
                pattern: s.id.clone(),
                done: index + 1,
                of: chosen.len(),
                results: out.display().to_string(),
            });
        }
        // Whatever the pattern left (a failed pattern may have partial results) is recorded.
        if let Some(r) = rec.as_mut() {
            r.pattern(&out, &s.id, events);
        }
        let seconds = t.elapsed().as_secs_f64();
        events(PlanEvent::Finished { id: &s.id, seconds });
        patterns.push(PatternOutcome {
            layer: s.layer.clone(),
            pattern: s.id.clone(),
            tool: s.tool.clone(),
            seconds,
            outcome,
        });
    }
    let crosscheck = crosscheck_folder(&plan, &out)?;
    let report = PlanRunReport {
        plan: o.plan.display().to_string(),
        results_dir: out.display().to_string(),
        patterns,
        failed,
        total_seconds: started.elapsed().as_secs_f64(),
        mlflow: rec.map(|r| r.summary),
        crosscheck,
        doctor: checked.as_ref().map(doctor::summary),
    };
    write_report(&out, &report)?;
    Ok(report)
}

/// The doctor's report on the node for the chosen patterns, or a refusal where a pattern
/// needs a check that failed; None with `--no-doctor`.
fn check_node(
    plan: &Value,
    chosen: &[Selected],
    o: &PlanRunOptions,
    events: &mut dyn FnMut(PlanEvent<'_>),
) -> Result<Option<DoctorReport>, PlanRunError> {
    if o.no_doctor {
        return Ok(None);
    }
    let report = doctor::check(plan, chosen, o);
    events(PlanEvent::Doctor { report: &report });
    match doctor::refusal(&report, chosen) {
        Some(refused) => Err(refused),
        None => Ok(Some(report)),
    }
}

/// The MLflow experiment: the option's, the plan's `common.mlflow_experiment`, or the default.
fn experiment_of(o: &PlanRunOptions, plan: &Value) -> String {
    o.experiment
        .clone()
        .or_else(|| {
            plan.pointer("/common/mlflow_experiment")?
                .as_str()
                .map(String::from)
        })
        .unwrap_or_else(|| DEFAULT_EXPERIMENT.to_string())
}

/// Writes the run's report beside the results, for `kvxfer plan estimate` to learn each
/// pattern's wall time. The patterns an earlier report of the folder holds and this run did
/// not run (a `--pattern` run) are kept under `earlier_patterns`, so no wall time is lost.
fn write_report(out: &Path, report: &PlanRunReport) -> Result<(), PlanRunError> {
    let file = out.join(RUN_REPORT);
    let mut doc = serde_json::to_value(report).unwrap_or_default();
    let ran: BTreeSet<&str> = report.patterns.iter().map(|p| p.pattern.as_str()).collect();
    let earlier = earlier_patterns(&file, &ran);
    if !earlier.is_empty() {
        doc[EARLIER] = Value::Array(earlier);
    }
    let mut bytes = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    bytes.push(b'\n');
    write_atomic(&file, &bytes).map_err(|source| PlanRunError::Io {
        what: format!("writing {}", file.display()),
        source,
    })
}

/// The run's report in its results folder.
pub const RUN_REPORT: &str = "plan-run.json";

/// The key of a report's patterns kept from earlier runs of the same folder.
pub const EARLIER: &str = "earlier_patterns";

/// The pattern entries of the report `file` already holds (its own and those it kept), the
/// newest of each id, but for the patterns in `ran`; none where it is missing or unreadable.
fn earlier_patterns(file: &Path, ran: &BTreeSet<&str>) -> Vec<Value> {
    let Some(old) = std::fs::read(file)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        return Vec::new();
    };
    let mut seen = BTreeSet::new();
    let mut kept = Vec::new();
    for p in ["patterns", EARLIER]
        .into_iter()
        .flat_map(|k| old[k].as_array().into_iter().flatten())
    {
        let Some(id) = p["pattern"].as_str() else {
            continue;
        };
        if !ran.contains(id) && seen.insert(id.to_string()) {
            kept.push(p.clone());
        }
    }
    kept
}

pub mod estimate;

#[cfg(test)]
mod tests;

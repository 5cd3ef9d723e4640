//! `kvxfer run`: its options, and the lines it prints while the library's plan runner
//! (`kvxfer::run::plan`) runs a plan's patterns.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use kvxfer::plan::select::Role;
use kvxfer::run::plan::{run_plan, PlanEvent, PlanRunOptions};

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
    /// Task state file (default /tmp/task-state-<hostname>.json, shared by every run and user
    /// of this host: give each concurrent run its own).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Start without `kvxfer doctor`'s checks (which otherwise refuse a plan whose patterns
    /// need a failed check, and go into each result document).
    #[arg(long)]
    no_doctor: bool,
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

/// Prints one line of the run's progress on stderr.
fn show(e: PlanEvent<'_>) {
    match e {
        PlanEvent::Doctor { report } => {
            eprint!(
                "kvxfer run: the doctor's checks of this node\n{}",
                super::doctor::table(report)
            )
        }
        PlanEvent::Pattern {
            index,
            of,
            pattern: s,
            elapsed,
        } => eprintln!(
            "kvxfer run: [{}/{of}] {} {} ({}) {:.0} s in",
            index + 1,
            s.layer,
            s.id,
            s.tool,
            elapsed.as_secs_f64()
        ),
        PlanEvent::Finished { id, seconds } => {
            eprintln!("kvxfer run:   {id} took {seconds:.1} s")
        }
        PlanEvent::Failed { id, error } => eprintln!("kvxfer run: {id} failed: {error}"),
        PlanEvent::Recorded {
            file,
            run_id,
            already: false,
        } => eprintln!("kvxfer run:   recorded {file} (run {run_id})"),
        PlanEvent::Recorded { file, run_id, .. } => {
            eprintln!("kvxfer run:   {file} already recorded (run {run_id})")
        }
        PlanEvent::NotRecorded {
            pattern,
            folder,
            file: None,
            count,
            error,
        } => eprintln!(
            "kvxfer run: MLflow unreachable ({error}); {count} result(s) of {pattern} kept in {}, \
             `kvxfer record --results {}` records them later",
            folder.display(),
            folder.display()
        ),
        PlanEvent::NotRecorded {
            folder,
            file: Some(file),
            error,
            ..
        } => eprintln!(
            "kvxfer run:   recording {file} failed ({error}); kept in {}, `kvxfer record` \
             records it later",
            folder.display()
        ),
        _ => {}
    }
}

/// Runs the plan's chosen patterns.
pub fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let opts = PlanRunOptions {
        plan: a.plan.clone(),
        layers: a.layer,
        patterns: a.pattern,
        role: a.role.map(|r| match r {
            RoleArg::Server => Role::Server,
            RoleArg::Client => Role::Client,
            RoleArg::OneHost => Role::OneHost,
        }),
        mlflow_uri: a.mlflow_uri,
        experiment: a.experiment,
        out: a.out,
        templates: a.templates,
        resume: a.resume,
        state: a.state,
        kvxfer: std::env::current_exe().ok(),
        no_doctor: a.no_doctor,
    };
    let report =
        run_plan(&opts, &mut show).with_context(|| format!("plan {}", a.plan.display()))?;
    kvxfer::outln!("{}", serde_json::to_string_pretty(&report)?);
    eprintln!(
        "kvxfer run: {} pattern(s) in {:.1} s ({:.1} s of them in patterns)",
        report.patterns.len(),
        report.total_seconds,
        report.patterns.iter().map(|p| p.seconds).sum::<f64>()
    );
    if let Some(r) = report.mlflow.as_ref().filter(|r| r.not_recorded > 0) {
        eprintln!(
            "kvxfer run: {} result(s) not recorded; `kvxfer record --results {} --experiment {}` records them",
            r.not_recorded, report.results_dir, r.experiment
        );
    }
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

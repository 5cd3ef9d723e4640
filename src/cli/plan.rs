//! `kvxfer plan validate|generate|estimate`: experiment plans into task definitions, and their
//! wall time predicted.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use kvxfer::plan::{self, PlanError};

/// Options of `kvxfer plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(subcommand)]
    command: PlanCommand,
}

#[derive(Debug, Subcommand)]
enum PlanCommand {
    /// Check a plan; every problem is printed with its JSON path.
    Validate {
        /// The plan (e.g. plans/phase-low-level.json).
        plan: PathBuf,
    },
    /// Render every pattern into task definitions (byte-identical on rerun).
    Generate {
        /// The plan.
        plan: PathBuf,
        /// Output folder (server files at the top, client files under client/);
        /// default task-definitions/<plan name>/.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Template folder; default: templates/ beside the plan's folder, else ./templates.
        #[arg(long)]
        templates: Option<PathBuf>,
    },
    /// Predict a plan's wall time from its counts and the last results of its patterns.
    Estimate {
        /// The plan.
        plan: PathBuf,
        /// The results folder of an earlier run (default: the plan's common.output_dir).
        #[arg(long)]
        results: Option<PathBuf>,
    },
}

/// Runs the subcommand.
pub fn run(a: PlanArgs) -> anyhow::Result<ExitCode> {
    match a.command {
        PlanCommand::Validate { plan } => validate(&plan),
        PlanCommand::Estimate { plan, results } => estimate(&plan, results),
        PlanCommand::Generate {
            plan,
            out,
            templates,
        } => {
            let doc = plan::load_plan(&plan)?;
            let out = out.unwrap_or_else(|| {
                PathBuf::from("task-definitions").join(doc["name"].as_str().unwrap_or("plan"))
            });
            let dir = templates.unwrap_or_else(|| kvxfer::plan::default_templates(&plan));
            let files = plan::generate(&doc, &dir)?;
            // The error names the file it could not write.
            let written = plan::write_generated(&out, &files)?;
            kvxfer::outln!(
                "{} task definitions from {} written under {}",
                written.len(),
                plan.display(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn estimate(path: &Path, results: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    use kvxfer::run::plan::estimate::{estimate, Basis};
    let doc = plan::load_plan(path)?;
    let dir = match results {
        Some(d) => d,
        None => doc
            .pointer("/common/output_dir")
            .and_then(serde_json::Value::as_str)
            .map(PathBuf::from)
            .ok_or_else(|| anyhow::anyhow!("the plan has no common.output_dir; give --results"))?,
    };
    let e = estimate(&doc, &dir);
    for p in &e.patterns {
        let basis = match p.basis {
            Basis::ResultsAndWallTime => "last results and wall time",
            Basis::ResultsOnly => "last results (set-up not counted)",
            Basis::WallTimeOnly => "last wall time",
            Basis::Unknown => "no earlier result",
        };
        match p.seconds {
            Some(s) => kvxfer::outln!("{} {:<40} {:>9.1} s  ({basis})", p.layer, p.pattern, s),
            None => kvxfer::outln!("{} {:<40} {:>9} s  ({basis})", p.layer, p.pattern, "?"),
        }
    }
    let unknown = match e.unknown {
        0 => String::new(),
        n => format!(", {n} pattern(s) without an earlier result not counted"),
    };
    kvxfer::outln!(
        "total {:.1} s ({:.1} min) from {}{unknown}",
        e.total_seconds,
        e.total_seconds / 60.0,
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn validate(path: &Path) -> anyhow::Result<ExitCode> {
    match plan::load_plan(path) {
        Ok(doc) => {
            let n: usize = doc["layers"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .map(|x| x["patterns"].as_array().map_or(0, Vec::len))
                        .sum()
                })
                .unwrap_or(0);
            kvxfer::outln!("{}: valid, {n} patterns", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(PlanError::Invalid { path, problems }) => {
            for p in &problems {
                eprintln!("{}: {p}", path.display());
            }
            eprintln!("{}: {} problem(s)", path.display(), problems.len());
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

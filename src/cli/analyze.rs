//! `kvxfer analyze`: E2E results against low-level ones, the four claims judged, plots and a
//! Markdown report.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use kvxfer::analyze::markdown::{self, Report};
use kvxfer::analyze::{
    self, e2e, lowlevel, mlflow_source, plots, Analysis, Catalogue, Inputs, Settings,
};
use kvxfer::mlflow::{Client, RetryPolicy, DEFAULT_EXPERIMENT};
use kvxfer::report::write_atomic;

/// Options of `kvxfer analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Folder of the team's E2E result files (nested or flat layout; searched recursively).
    #[arg(long)]
    e2e_dir: Vec<PathBuf>,
    /// Folder of kvxfer.result/v1 documents (kvxfer's and parsed stock tools'; recursive).
    #[arg(long)]
    low_level_dir: Vec<PathBuf>,
    /// MLflow server to read E2E runs from.
    #[arg(long)]
    e2e_mlflow: Option<String>,
    /// E2E experiments to read from --e2e-mlflow.
    #[arg(long, value_delimiter = ',', default_values_t = mlflow_source::E2E_EXPERIMENTS.map(String::from))]
    experiments: Vec<String>,
    /// MLflow server to read low-level runs from (their result documents).
    #[arg(long)]
    low_level_mlflow: Option<String>,
    /// Low-level experiment to read from --low-level-mlflow.
    #[arg(long, default_value = DEFAULT_EXPERIMENT)]
    low_level_experiment: String,
    /// Analyses to run (default all): tpot-independence, tcp-incast, token-gap, staircase.
    #[arg(long, value_delimiter = ',', value_parser = parse_analysis)]
    analysis: Vec<AnalysisArg>,
    /// Prefill time in ms for token-gap, instead of the unified TTFT.
    #[arg(long)]
    prefill_ms: Option<f64>,
    /// Plan whose pattern ids name the runs that would fill missing data (default: the
    /// shipped plans/phase-low-level.json).
    #[arg(long)]
    plan: Option<PathBuf>,
    /// The JSON report.
    #[arg(long, default_value = "results/correlation-analysis.json")]
    out: PathBuf,
    /// Folder for the plots (PNG and SVG).
    #[arg(long, default_value = "results/plots")]
    plots_dir: PathBuf,
    /// The Markdown report (default: correlation-report.md beside --out).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write no plots.
    #[arg(long)]
    no_plots: bool,
}

/// An analysis name from the command line.
#[derive(Debug, Clone, Copy)]
pub struct AnalysisArg(Analysis);

fn parse_analysis(s: &str) -> Result<AnalysisArg, String> {
    Analysis::from_name(s).map(AnalysisArg).ok_or_else(|| {
        let names: Vec<&str> = Analysis::ALL.iter().map(|a| a.name()).collect();
        format!("unknown analysis {s:?}; one of {}", names.join(", "))
    })
}

fn client(uri: &str) -> anyhow::Result<Client> {
    let retry = RetryPolicy {
        attempts: 3,
        initial_backoff: Duration::from_millis(300),
        max_backoff: Duration::from_secs(2),
        ..RetryPolicy::default()
    };
    Client::new(uri, retry).with_context(|| format!("MLflow server {uri}"))
}

/// Reads every input named on the command line.
fn gather(a: &AnalyzeArgs) -> anyhow::Result<(Inputs, Vec<String>)> {
    let mut inputs = Inputs::default();
    let mut sources = Vec::new();
    for d in &a.e2e_dir {
        let (r, s) =
            e2e::load_dir(d).with_context(|| format!("reading E2E results in {}", d.display()))?;
        inputs.e2e.extend(r);
        inputs.skipped.extend(s);
        sources.push(format!("E2E folder {}", d.display()));
    }
    if let Some(uri) = &a.e2e_mlflow {
        let (r, s) = mlflow_source::e2e_records(&client(uri)?, &a.experiments)
            .with_context(|| format!("reading E2E runs from {uri}"))?;
        inputs.e2e.extend(r);
        inputs.skipped.extend(s);
        sources.push(format!(
            "MLflow {uri} experiments {}",
            a.experiments.join(", ")
        ));
    }
    for d in &a.low_level_dir {
        let (p, s) = lowlevel::load_dir(d)
            .with_context(|| format!("reading low-level results in {}", d.display()))?;
        inputs.low.extend(p);
        inputs.skipped.extend(s);
        sources.push(format!("low-level folder {}", d.display()));
    }
    if let Some(uri) = &a.low_level_mlflow {
        let (p, s) = mlflow_source::low_points(&client(uri)?, &a.low_level_experiment)
            .with_context(|| format!("reading low-level runs from {uri}"))?;
        inputs.low.extend(p);
        inputs.skipped.extend(s);
        sources.push(format!(
            "MLflow {uri} experiment {}",
            a.low_level_experiment
        ));
    }
    Ok((inputs, sources))
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_atomic(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Runs the analyses and writes their outputs.
pub fn run(a: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !a.e2e_dir.is_empty()
            || !a.low_level_dir.is_empty()
            || a.e2e_mlflow.is_some()
            || a.low_level_mlflow.is_some(),
        "nothing to analyse: give --e2e-dir, --low-level-dir, --e2e-mlflow or --low-level-mlflow"
    );
    if let Some(p) = a.prefill_ms {
        anyhow::ensure!(
            p.is_finite() && p >= 0.0,
            "--prefill-ms must be a non-negative number"
        );
    }
    let mut settings = Settings {
        prefill_ms: a.prefill_ms,
        ..Settings::default()
    };
    if let Some(p) = &a.plan {
        let plan =
            kvxfer::plan::load_plan(p).with_context(|| format!("reading plan {}", p.display()))?;
        settings.catalogue = Catalogue::from_plan(&plan);
    }
    let (inputs, sources) = gather(&a)?;
    for s in &inputs.skipped {
        eprintln!("kvxfer analyze: skipped {}: {}", s.file, s.reason);
    }
    let chosen: Vec<Analysis> = if a.analysis.is_empty() {
        Analysis::ALL.to_vec()
    } else {
        a.analysis.iter().map(|x| x.0).collect()
    };
    let assessments = chosen
        .iter()
        .map(|x| analyze::assess(*x, &inputs, &settings))
        .collect();
    let plots = if a.no_plots {
        Vec::new()
    } else {
        plots::write_all(&inputs, &settings, &a.plots_dir).with_context(|| {
            format!(
                "drawing plots in {} (PNG text needs a sans-serif font: scripts/setup.sh \
                 installs fonts-dejavu-core)",
                a.plots_dir.display()
            )
        })?
    };
    let report = Report {
        schema: "kvxfer.correlation/v1",
        generated_at: kvxfer::report::schema::now_rfc3339(),
        sources,
        e2e_records: inputs.e2e.len(),
        low_level_points: inputs.low.len(),
        skipped: inputs.skipped.clone(),
        assessments,
        plots,
    };
    let mut json = serde_json::to_vec_pretty(&report)?;
    json.push(b'\n');
    write(&a.out, &json)?;
    let md_path = a.report.clone().unwrap_or_else(|| {
        a.out
            .parent()
            .unwrap_or(Path::new(""))
            .join("correlation-report.md")
    });
    let md_dir = md_path.parent().unwrap_or(Path::new("")).to_path_buf();
    write(&md_path, markdown::markdown(&report, &md_dir).as_bytes())?;
    kvxfer::out!("{}", markdown::summary(&report));
    eprintln!(
        "kvxfer analyze: wrote {} and {}",
        a.out.display(),
        md_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

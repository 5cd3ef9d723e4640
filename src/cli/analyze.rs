//! `kvxfer analyze`: E2E results against low-level ones, the four claims judged, plots and a
//! Markdown report.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use kvxfer::analyze::markdown::{self, Report};
use kvxfer::analyze::{
    self, e2e, lowlevel, mlflow_source, plots, score, sentences, Analysis, Catalogue, Inputs,
    Settings,
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
    /// Compare two correlation reports (this command's --out files) side by side instead:
    /// verdicts, confidences, key figures with their ratio B / A, and the validity scores.
    #[arg(long, num_args = 2, value_names = ["A.json", "B.json"])]
    compare: Vec<PathBuf>,
}

/// Reports larger than this are refused (a correlation report is a few hundred KiB).
const MAX_REPORT_BYTES: u64 = 64 << 20;

/// Reads one correlation report as JSON.
fn read_report(path: &Path) -> anyhow::Result<serde_json::Value> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        meta.is_file() && meta.len() <= MAX_REPORT_BYTES,
        "{} is not a correlation report (not a regular file of at most {} MiB)",
        path.display(),
        MAX_REPORT_BYTES >> 20
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)
        .with_context(|| format!("{} is not JSON", path.display()))?;
    anyhow::ensure!(
        v["schema"] == "kvxfer.correlation/v1",
        "{} is not a kvxfer.correlation/v1 report",
        path.display()
    );
    Ok(v)
}

/// `--compare A B`: the two reports side by side on stdout (and in --report when given).
fn compare(a: &AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let (pa, pb) = (&a.compare[0], &a.compare[1]);
    let md = kvxfer::analyze::compare::markdown(
        &read_report(pa)?,
        &read_report(pb)?,
        (&pa.display().to_string(), &pb.display().to_string()),
    );
    if let Some(r) = &a.report {
        write(r, md.as_bytes())?;
    }
    kvxfer::out!("{md}");
    Ok(ExitCode::SUCCESS)
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

/// The analyses' settings: --prefill-ms, and the plan's pattern ids and tolerance.
fn settings(a: &AnalyzeArgs) -> anyhow::Result<Settings> {
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
        if let Some(t) = plan
            .pointer("/validation_targets/crosscheck_tolerance")
            .and_then(serde_json::Value::as_f64)
            .filter(|t| *t > 0.0)
        {
            settings.crosscheck_tolerance = t;
        }
    }
    Ok(settings)
}

/// Writes the JSON report and the Markdown beside it (or at --report); prints the summary.
fn publish(a: &AnalyzeArgs, report: &Report) -> anyhow::Result<()> {
    let mut json = serde_json::to_vec_pretty(report)?;
    json.push(b'\n');
    write(&a.out, &json)?;
    let md_path = a.report.clone().unwrap_or_else(|| {
        a.out
            .parent()
            .unwrap_or(Path::new(""))
            .join("correlation-report.md")
    });
    let md_dir = md_path.parent().unwrap_or(Path::new("")).to_path_buf();
    write(&md_path, markdown::markdown(report, &md_dir).as_bytes())?;
    kvxfer::out!("{}", markdown::summary(report));
    eprintln!(
        "kvxfer analyze: wrote {} and {}",
        a.out.display(),
        md_path.display()
    );
    Ok(())
}

/// Runs the analyses and writes their outputs.
pub fn run(a: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    if !a.compare.is_empty() {
        return compare(&a);
    }
    anyhow::ensure!(
        !a.e2e_dir.is_empty()
            || !a.low_level_dir.is_empty()
            || a.e2e_mlflow.is_some()
            || a.low_level_mlflow.is_some(),
        "nothing to analyse: give --e2e-dir, --low-level-dir, --e2e-mlflow or --low-level-mlflow \
         (or --compare A.json B.json)"
    );
    let settings = settings(&a)?;
    let (inputs, sources) = gather(&a)?;
    for s in &inputs.skipped {
        eprintln!("kvxfer analyze: skipped {}: {}", s.file, s.reason);
    }
    let chosen: Vec<Analysis> = if a.analysis.is_empty() {
        Analysis::ALL.to_vec()
    } else {
        a.analysis.iter().map(|x| x.0).collect()
    };
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
        sentences: sentences::all(&inputs, &settings),
        validity: score::validity(&chosen, &inputs, &settings),
        assessments: chosen
            .iter()
            .map(|x| analyze::assess(*x, &inputs, &settings))
            .collect(),
        plots,
    };
    publish(&a, &report)?;
    Ok(ExitCode::SUCCESS)
}

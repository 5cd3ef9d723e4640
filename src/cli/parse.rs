//! `kvxfer parse`: a reference tool's printed output into a `kvxfer.result/v1` document.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use kvxfer::reference::{self, ParseOptions, Tool};
use kvxfer::report::{write_atomic, ResultDoc};

/// Options of `kvxfer parse`.
#[derive(Debug, Args)]
pub struct ParseArgs {
    /// Which tool printed the output.
    #[arg(long, value_parser = parse_tool)]
    tool: Tool,
    /// The tool's raw output (a file; `-` reads standard input).
    raw: PathBuf,
    /// Write the result document here (atomically) instead of printing a summary.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Plan pattern the run belongs to.
    #[arg(long)]
    pattern_id: Option<String>,
    /// Message size in bytes, for output that does not print it (ucx_perftest's client).
    #[arg(long)]
    message_size: Option<u64>,
    /// The model file KVBench ran (kvbench only): the class it loads the file as, the name,
    /// and why go into every result's `extra`.
    #[arg(long, value_name = "FILE")]
    kvbench_model: Option<PathBuf>,
}

fn parse_tool(s: &str) -> Result<Tool, String> {
    s.parse()
}

/// Runs the subcommand.
pub fn run(a: ParseArgs) -> anyhow::Result<ExitCode> {
    let raw = if a.raw.as_os_str() == "-" {
        read_capped(std::io::stdin().lock(), "standard input")?
    } else {
        let f =
            std::fs::File::open(&a.raw).with_context(|| format!("reading {}", a.raw.display()))?;
        read_capped(f, &a.raw.display().to_string())?
    };
    let opts = ParseOptions {
        message_size: a.message_size,
        pattern_id: a.pattern_id.clone(),
    };
    let mut doc = reference::parse(a.tool, &raw, &opts)
        .with_context(|| format!("parsing {} as {} output", a.raw.display(), a.tool))?;
    if let Some(path) = &a.kvbench_model {
        annotate_kvbench_class(&mut doc, a.tool, path)?;
    }
    doc.environment.kvxfer_version = env!("CARGO_PKG_VERSION").to_string();
    doc.environment.git_sha = env!("KVXFER_GIT_SHA").to_string();
    match &a.json {
        Some(out) => {
            write_atomic(out, &doc.to_json())
                .with_context(|| format!("writing {}", out.display()))?;
            eprintln!(
                "kvxfer: {} sizes of {} written to {}",
                doc.results.len(),
                doc.tool,
                out.display()
            );
        }
        None => kvxfer::out!("{}", summary(&doc)),
    }
    Ok(ExitCode::SUCCESS)
}

/// Records in every result's `extra` the KVBench class the model file loads as
/// (`kvbench_class`, `kvbench_model_name`, `kvbench_class_why`).
fn annotate_kvbench_class(doc: &mut ResultDoc, tool: Tool, path: &Path) -> anyhow::Result<()> {
    use kvxfer::model::kvbench_class::loaded_class;
    anyhow::ensure!(
        tool == Tool::Kvbench,
        "--kvbench-model belongs to --tool kvbench, not {tool}"
    );
    let g = kvxfer::model::kvbench::load_model(path, None)
        .with_context(|| format!("reading KVBench's model file {}", path.display()))?;
    let c = loaded_class(&g).with_context(|| path.display().to_string())?;
    for r in &mut doc.results {
        r.extra
            .insert("kvbench_class".into(), c.class.name().into());
        r.extra
            .insert("kvbench_model_name".into(), c.model_name.clone().into());
        r.extra
            .insert("kvbench_class_why".into(), c.why.clone().into());
    }
    Ok(())
}

/// Reads at most [`reference::MAX_RAW_INPUT`] bytes of tool output; more is an error.
fn read_capped(from: impl std::io::Read, what: &str) -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    from.take(reference::MAX_RAW_INPUT + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {what}"))?;
    if bytes.len() as u64 > reference::MAX_RAW_INPUT {
        anyhow::bail!(
            "{what} holds more than {} MiB: not the output of one reference tool run",
            reference::MAX_RAW_INPUT >> 20
        );
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A short table: size, iterations, mean latency, bandwidth; `-` where the tool gave nothing.
fn summary(doc: &ResultDoc) -> String {
    let mut s = format!(
        "{} {} ({}): {} sizes\n",
        doc.tool,
        doc.bench,
        doc.layer,
        doc.results.len()
    );
    s.push_str(&format!(
        "{:>14} {:>10} {:>14} {:>12} {:>12}\n",
        "bytes", "iters", "lat mean us", "GB/s", "MB/s"
    ));
    let opt = |v: Option<f64>, prec: usize| match v {
        Some(x) if x.is_finite() => format!("{x:.prec$}"),
        _ => "-".to_string(),
    };
    for r in &doc.results {
        let iters = if r.iterations == 0 {
            "-".to_string()
        } else {
            r.iterations.to_string()
        };
        s.push_str(&format!(
            "{:>14} {:>10} {:>14} {:>12} {:>12}\n",
            r.message_size,
            iters,
            opt(r.latency_us.map(|l| l.mean), 2),
            opt(r.bandwidth_gbps, 4),
            opt(r.bandwidth_mbps, 2),
        ));
    }
    s
}

//! `kvxfer crosscheck DIR`: kvxfer's results beside the stock tools', with verdicts.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use kvxfer::reference::crosscheck::{self, Verdict};
use kvxfer::report::write_atomic;

/// Options of `kvxfer crosscheck`.
#[derive(Debug, Args)]
pub struct CrosscheckArgs {
    /// Folder holding `<id>[.run<k>][.server].json` (kvxfer) and
    /// `<id>[.run<k>][.server].ref[.<size>].json` (stock tool) documents.
    dir: PathBuf,
    /// Relative tolerance for agreement (0.10 = 10 %).
    #[arg(long, default_value_t = 0.10)]
    tolerance: f64,
    /// Exit 1 when a comparable pair differs beyond the tolerance.
    #[arg(long)]
    strict: bool,
}

/// Runs the subcommand.
pub fn run(a: CrosscheckArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        a.tolerance.is_finite() && a.tolerance >= 0.0,
        "--tolerance must be a non-negative number"
    );
    let report = crosscheck::crosscheck_dir(&a.dir, a.tolerance)
        .with_context(|| format!("reading results in {}", a.dir.display()))?;
    for sk in &report.skipped {
        eprintln!("kvxfer crosscheck: skipped {}: {}", sk.file, sk.reason);
    }
    let out = a.dir.join(crosscheck::REPORT_FILE);
    let mut bytes = serde_json::to_vec_pretty(&report)?;
    bytes.push(b'\n');
    write_atomic(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
    let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.4}"));
    kvxfer::outln!(
        "{:<40} {:<20} {:>10} {:>12} {:>12} {:>7} {:>5}  verdict",
        "pattern",
        "metric",
        "bytes",
        "kvxfer",
        "reference",
        "ratio",
        "runs"
    );
    for r in &report.rows {
        let verdict = match r.verdict {
            Verdict::Agree => "agree",
            Verdict::Differ => "DIFFER",
            Verdict::NotComparable => "not comparable",
        };
        kvxfer::outln!(
            "{:<40} {:<20} {:>10} {:>12} {:>12} {:>7} {:>5}  {verdict}{}",
            r.pattern,
            r.metric,
            r.message_size,
            f(r.kvxfer),
            f(r.reference),
            r.ratio.map_or("-".to_string(), |x| format!("{x:.3}")),
            format!("{}/{}", r.kvxfer_runs.len(), r.reference_runs.len()),
            r.reason
                .as_deref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default(),
        );
    }
    for u in &report.unpaired {
        eprintln!(
            "kvxfer crosscheck: {} ({}, {} file(s)) not compared: {}",
            u.pattern,
            u.tool,
            u.files.len(),
            u.reason
        );
    }
    eprintln!("kvxfer crosscheck: report written to {}", out.display());
    let differ = report.rows.iter().any(|r| r.verdict == Verdict::Differ);
    Ok(if a.strict && differ {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

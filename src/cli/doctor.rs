//! `kvxfer doctor`: its options, and the table of the library's checks (`kvxfer::doctor`).

use std::fmt::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use kvxfer::doctor::{doctor, DoctorOptions, DoctorReport, Status};

/// Options of `kvxfer doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The experiment plan whose patterns say what the node must offer.
    #[arg(long)]
    plan: Option<PathBuf>,
    /// Only these pattern ids of the plan (repeatable).
    #[arg(long, value_delimiter = ',', requires = "plan")]
    pattern: Vec<String>,
    /// The libfabric provider the measurements use (tcp, shm, efa).
    #[arg(short, long)]
    provider: Option<String>,
    /// An etcd to check (http://HOST:PORT); default: the plan's, when a pattern uses etcd.
    #[arg(long)]
    etcd: Option<String>,
    /// The peer node (HOST or HOST:PORT; the port defaults to the plan's control port).
    #[arg(long)]
    peer: Option<String>,
    /// Also write the findings as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The findings as a table: status, check, evidence; what to do and the patterns concerned
/// on the lines below.
pub fn table(r: &DoctorReport) -> String {
    let width = r.findings.iter().map(|f| f.check.len()).max().unwrap_or(5);
    let mut out = String::new();
    let _ = writeln!(out, "{:<7}{:<width$}  evidence", "status", "check");
    for f in &r.findings {
        let _ = writeln!(
            out,
            "{:<7}{:<width$}  {}",
            f.status.word(),
            f.check,
            f.evidence
        );
        let pad = " ".repeat(7 + width + 2);
        if !f.action.is_empty() {
            let lead = if f.status == Status::Ok {
                "means"
            } else {
                "do"
            };
            let _ = writeln!(out, "{pad}{lead}: {}", f.action);
        }
        if let Some(ids) = f.patterns.as_ref().filter(|_| f.status >= Status::Warn) {
            const SHOWN: usize = 8;
            if ids.len() > SHOWN {
                let more = ids.len() - SHOWN;
                let _ = writeln!(
                    out,
                    "{pad}patterns: {} and {more} more",
                    ids[..SHOWN].join(", ")
                );
            } else if !ids.is_empty() {
                let _ = writeln!(out, "{pad}patterns: {}", ids.join(", "));
            }
        }
    }
    let _ = writeln!(
        out,
        "{} ok, {} warn, {} fail, {} skip in {:.2} s",
        r.count(Status::Ok),
        r.count(Status::Warn),
        r.count(Status::Fail),
        r.count(Status::Skip),
        r.seconds
    );
    out
}

/// Runs the checks and prints the table; exit 1 when a check failed.
pub fn run(a: DoctorArgs) -> anyhow::Result<ExitCode> {
    let plan = match &a.plan {
        Some(p) => {
            Some(kvxfer::plan::load_plan(p).with_context(|| format!("plan {}", p.display()))?)
        }
        None => None,
    };
    if let Some(p) = &plan {
        let known: Vec<&str> = p["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|l| l["patterns"].as_array().into_iter().flatten())
            .filter_map(|x| x["id"].as_str())
            .collect();
        if let Some(bad) = a.pattern.iter().find(|i| !known.contains(&i.as_str())) {
            anyhow::bail!("--pattern {bad}: no such pattern in the plan");
        }
    }
    let opts = DoctorOptions {
        plan,
        patterns: a.pattern,
        templates: a.plan.as_deref().map(kvxfer::plan::default_templates),
        provider: a.provider,
        etcd: a.etcd,
        peer: a.peer,
    };
    let report = doctor(&opts);
    kvxfer::out!("{}", table(&report));
    if let Some(path) = &a.json {
        let mut bytes = serde_json::to_vec_pretty(&report)?;
        bytes.push(b'\n');
        kvxfer::report::write_atomic(path, &bytes)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

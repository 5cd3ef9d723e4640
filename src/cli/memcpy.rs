//! `kvxfer memcpy`: a single-thread copy of `--size` bytes, the one-core limit that the
//! transfers are compared with.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use kvxfer::bench::memcpy::run_memcpy;
use kvxfer::mem::available_memory;
use kvxfer::report::{export, ResultDoc, SizeResult, Status};
use kvxfer::stats::{encode_histogram, LatencySummary};
use kvxfer::units::human_size;
use serde_json::json;

/// Options of `kvxfer memcpy`.
#[derive(Debug, Args)]
pub struct MemcpyArgs {
    /// Bytes per copy.
    #[arg(short = 's', long, default_value = "672M", value_parser = |s: &str| kvxfer::units::parse_size(s).map_err(|e| e.to_string()))]
    size: u64,
    /// Timed copies, 1 to 10^12.
    #[arg(short = 'I', long, default_value_t = 10, value_parser = super::common::parse_iterations)]
    iterations: u64,
    /// Untimed copies first, 0 to 10^12.
    #[arg(short, long, default_value_t = 2, value_parser = super::common::parse_warmup)]
    warmup: u64,
    /// Write the kvxfer.result/v1 document here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// Runs `kvxfer memcpy`.
pub fn run(a: MemcpyArgs) -> anyhow::Result<ExitCode> {
    if a.iterations == 0 || a.size == 0 {
        anyhow::bail!("--size and --iterations must be at least 1");
    }
    let need = a.size.saturating_mul(2);
    if let Some(avail) = available_memory() {
        if need > avail {
            anyhow::bail!(
                "memcpy of {} needs {} of host memory but only {} is available",
                human_size(a.size),
                human_size(need),
                human_size(avail)
            );
        }
    }
    let size = usize::try_from(a.size).context("--size does not fit this machine")?;
    let s = run_memcpy(size, a.iterations, a.warmup)?;
    let h = &s.copy_ns;
    let stopped = kvxfer::stop::requested();
    let gbps = |ns: u64| a.size as f64 / ns as f64;
    let mut doc = ResultDoc::new("kvxfer", "memcpy", "L1");
    doc.config.insert("size".into(), json!(a.size));
    doc.config.insert("iterations".into(), json!(a.iterations));
    doc.config.insert("warmup".into(), json!(a.warmup));
    doc.config.insert("threads".into(), json!(1));
    doc.environment = kvxfer::run::environment::base();
    let mut r = SizeResult {
        message_size: a.size,
        iterations: h.len(),
        latency_us: LatencySummary::from_histogram(h),
        bandwidth_gbps: Some(gbps(h.value_at_quantile(0.5))),
        bandwidth_mbps: Some(gbps(h.value_at_quantile(0.5)) * 1e3),
        transfer_time_ms: Some(h.value_at_quantile(0.5) as f64 / 1e6),
        histogram: encode_histogram(h).ok(),
        ..Default::default()
    };
    r.extra.insert("best_gbps".into(), json!(gbps(h.min())));
    r.extra.insert(
        "bandwidth".into(),
        json!("size / median copy time, one thread"),
    );
    doc.results.push(r);
    doc.status = Status::Complete;
    if let Some(signal) = stopped {
        return keep_stopped(doc, &a, signal);
    }
    let line = format!(
        "memcpy {} one thread: median {:.3} ms = {:.2} GB/s ({:.2} GiB/s), best {:.2} GB/s\n",
        human_size(a.size),
        h.value_at_quantile(0.5) as f64 / 1e6,
        gbps(h.value_at_quantile(0.5)),
        gbps(h.value_at_quantile(0.5)) * 1e9 / (1u64 << 30) as f64,
        gbps(h.min())
    );
    let terminal = export::Table(|_: &ResultDoc| line.clone());
    let json = a.json.clone().map(export::JsonFile);
    let mut exporters: Vec<&dyn export::Exporter> = vec![&terminal];
    exporters.extend(json.as_ref().map(|j| j as &dyn export::Exporter));
    export::export_all(&exporters, &doc, &mut |l| eprintln!("kvxfer: {l}"))?;
    Ok(ExitCode::SUCCESS)
}

/// Ends a run a signal stopped: the copies timed so far (none: status failed) written to
/// --json with status partial; the error says how many.
fn keep_stopped(
    mut doc: ResultDoc,
    a: &MemcpyArgs,
    signal: kvxfer::stop::Signal,
) -> anyhow::Result<ExitCode> {
    let done = doc.results.first().map_or(0, |r| r.iterations);
    if done == 0 {
        doc.results.clear();
    }
    let (status, name) = if done == 0 {
        (Status::Failed, "failed")
    } else {
        (Status::Partial, "partial")
    };
    doc.status = status;
    doc.errors.push(kvxfer::report::ErrorEntry {
        at: "run".into(),
        message: kvxfer::stop::Stopped(signal).to_string(),
    });
    let measured = format!("{done} of {} timed copies measured", a.iterations);
    match &a.json {
        Some(p) => {
            kvxfer::report::write_atomic(p, &doc.to_json())
                .with_context(|| format!("writing {}", p.display()))?;
            anyhow::bail!("{measured}, kept in {} with status {name}", p.display())
        }
        None => anyhow::bail!("{measured}; use --json to keep them"),
    }
}

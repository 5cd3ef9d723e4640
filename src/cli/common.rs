//! Option parsers and helpers shared by the measurement subcommands.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kvxfer::bootstrap::{OobListener, DEFAULT_PORT};
use kvxfer::report::export::{export_all, ExportError, Exporter, JsonFile};
use kvxfer::report::ResultDoc;
use kvxfer::run::path::{ExpectPath, Judgement};
use kvxfer::run::two_sided::{self, PairRun, Progress, SideOutcome};
use std::process::ExitCode;

/// `--endpoint`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum EndpointArg {
    /// Reliable datagram (fi_pingpong -e rdm; what EFA offers).
    Rdm,
    /// Connected message endpoint.
    Msg,
}

impl From<EndpointArg> for kvxfer::fabric::EndpointType {
    fn from(a: EndpointArg) -> Self {
        match a {
            EndpointArg::Rdm => Self::Rdm,
            EndpointArg::Msg => Self::Msg,
        }
    }
}

impl EndpointArg {
    /// The option's spelling.
    pub fn name(self) -> &'static str {
        match self {
            EndpointArg::Rdm => "rdm",
            EndpointArg::Msg => "msg",
        }
    }
}

/// `--mode`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    /// fi_send / fi_recv.
    Msg,
    /// fi_tsend / fi_trecv.
    Tagged,
}

/// clap value parser for a size list.
pub fn parse_sizes(s: &str) -> Result<Vec<u64>, String> {
    kvxfer::units::parse_size_list(s).map_err(|e| e.to_string())
}

/// The longest `--timeout` accepted: a week, far past any run and far inside what a clock can add.
pub const MAX_TIMEOUT_S: f64 = 7.0 * 24.0 * 3600.0;

/// clap value parser for `--timeout`: positive seconds, at most [`MAX_TIMEOUT_S`].
pub fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("{s} is not a positive number of seconds"));
    }
    if secs > MAX_TIMEOUT_S {
        return Err(format!(
            "{s} seconds is more than the longest time-out, {MAX_TIMEOUT_S} s (a week)"
        ));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// Most iterations, timed or untimed, any command takes (10^12: eleven days at a microsecond
/// each), so a count plus a warm-up, or a count times a size, is checked, never wrapped.
pub const MAX_COUNT: u64 = 1_000_000_000_000;

/// clap value parser for timed iterations: a whole number up to [`MAX_COUNT`]; 0 is left to
/// each run's check, which says `--iterations must be at least 1` in the run's own terms.
pub fn parse_iterations(s: &str) -> Result<u64, String> {
    parse_count(s, 1)
}

/// clap value parser for warm-up iterations: a whole number from 0 to [`MAX_COUNT`].
pub fn parse_warmup(s: &str) -> Result<u64, String> {
    parse_count(s, 0)
}

/// A whole number at most [`MAX_COUNT`]; `least` is the smallest the option takes, for the
/// message.
fn parse_count(s: &str, least: u64) -> Result<u64, String> {
    let n: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number from {least} to 10^12"))?;
    if n > MAX_COUNT {
        return Err(format!("{n} is outside {least} to 10^12 ({MAX_COUNT})"));
    }
    Ok(n)
}

/// `--cpus`: a list of CPUs this process may run on.
pub fn parse_cpus(text: &str) -> Result<kvxfer::run::sched::CpuPlan, String> {
    let plan = kvxfer::run::sched::CpuPlan::parse(text)?;
    plan.check_allowed()?;
    Ok(plan)
}

/// `[ADDR][:PORT]` for --listen: empty means all addresses on the default port.
pub fn parse_listen(s: &str, default_port: u16) -> anyhow::Result<SocketAddr> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            default_port,
        ));
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| {
            anyhow::anyhow!("--listen {s:?}: {port:?} is not a port number (0 to 65535)")
        })?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    if let Some((host, port)) = s.rsplit_once(':') {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.parse::<IpAddr>().is_ok() && port.parse::<u16>().is_err() {
            anyhow::bail!("--listen {s:?}: {port:?} is not a port number (0 to 65535)");
        }
    }
    anyhow::bail!(
        "--listen {s:?}: expected ADDR, ADDR:PORT or :PORT, with ADDR a numeric IP address"
    )
}

/// A progress bar on stderr (drawn only when stderr is a terminal).
pub fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// Runs one side of a two-sided measurement or both, as `--listen` / `--peer` say, with a
/// progress bar over its sizes; `waiting` tells what a target waits for.
pub fn run_pair<C: PairRun>(
    cfg: &C,
    listen: Option<&str>,
    peer: Option<&str>,
    what: &str,
    sizes: usize,
    waiting: &str,
) -> anyhow::Result<SideOutcome> {
    let bar = progress_bar(sizes as u64, what);
    bar.enable_steady_tick(std::time::Duration::from_millis(250));
    let mut progress = |p: Progress| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
        bar.set_message(format!("size {} done", kvxfer::units::human_size(p.size)));
    };
    let outcome = if let Some(listen) = listen {
        let addr = parse_listen(listen, DEFAULT_PORT)?;
        // The provider and the memory first: a target that cannot run says so before it
        // says it waits.
        cfg.check()?;
        cfg.memory().check_available()?;
        let listener = OobListener::bind(addr)?;
        eprintln!(
            "kvxfer: {what} target waiting on {} ({waiting})",
            listener.local_addr()
        );
        two_sided::run_target(cfg, &listener, &mut progress)
    } else if let Some(peer) = peer {
        two_sided::run_initiator(cfg, peer, &mut progress)
    } else {
        two_sided::run_local(cfg, &mut progress)
    };
    bar.finish_and_clear();
    Ok(outcome?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        assert_eq!(
            parse_listen("", 47590).unwrap().to_string(),
            "0.0.0.0:47590"
        );
        assert_eq!(
            parse_listen(":9000", 1).unwrap().to_string(),
            "0.0.0.0:9000"
        );
        assert_eq!(
            parse_listen("127.0.0.1", 47590).unwrap().to_string(),
            "127.0.0.1:47590"
        );
        assert_eq!(
            parse_listen("127.0.0.1:5", 1).unwrap().to_string(),
            "127.0.0.1:5"
        );
        assert!(parse_listen("host:port", 1).is_err());
        assert!(parse_listen(":99999", 1).is_err());
        for bad in ["127.0.0.1:70000", "[::1]:70000", "127.0.0.1:x"] {
            let e = parse_listen(bad, 1).unwrap_err().to_string();
            assert!(e.contains("is not a port number"), "{e}");
        }
        let e = parse_listen("node1:5", 1).unwrap_err().to_string();
        assert!(e.contains("numeric IP address"), "{e}");
    }

    #[test]
    fn timeouts_beyond_a_week_or_not_positive_are_refused() {
        assert_eq!(
            parse_timeout("1.5").unwrap(),
            std::time::Duration::from_millis(1500)
        );
        assert_eq!(parse_timeout("604800").unwrap().as_secs(), 604800);
        for bad in [
            "1e300",
            "18446744073709551615",
            "604801",
            "0",
            "-1",
            "nan",
            "inf",
            "x",
        ] {
            assert!(parse_timeout(bad).is_err(), "{bad} accepted");
        }
    }
}

/// `--json` and `--mlflow-uri`, shared by the measurement subcommands.
#[derive(Debug, clap::Args)]
pub struct OutputArgs {
    /// Write the kvxfer.result/v1 document here (atomically).
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,
    /// Also record the result in this MLflow tracking server (e.g. http://127.0.0.1:5000).
    #[arg(long, value_name = "URI")]
    pub mlflow_uri: Option<String>,
    /// MLflow experiment for --mlflow-uri.
    #[arg(long, default_value = kvxfer::mlflow::DEFAULT_EXPERIMENT, requires = "mlflow_uri")]
    pub experiment: String,
    /// Plan pattern id recorded in the result.
    #[arg(long)]
    pub pattern_id: Option<String>,
}

impl OutputArgs {
    /// Checks, before anything is measured, that the JSON file can be written where asked and
    /// that the MLflow URI is an http(s) URL, so a bad option never costs a whole run.
    pub fn check(&self) -> anyhow::Result<()> {
        if let Some(path) = &self.json {
            check_writable(path)?;
        }
        if let Some(uri) = &self.mlflow_uri {
            kvxfer::mlflow::Client::new(uri, kvxfer::mlflow::RetryPolicy::default())
                .map_err(|e| anyhow::anyhow!("--mlflow-uri: {e}"))?;
        }
        Ok(())
    }

    /// The output pipeline, each step an [`Exporter`]: the terminal table (when given), the
    /// JSON file, then MLflow; the file is written before the recording, so a failed recording
    /// loses nothing (`kvxfer record` catches up later). Without --json, a failed recording
    /// leaves the document in `kvxfer-<bench>-<time>.json` in the current directory.
    pub fn publish(&self, doc: &mut ResultDoc, table: Option<&dyn Exporter>) -> anyhow::Result<()> {
        if self.pattern_id.is_some() {
            doc.pattern_id = self.pattern_id.clone();
        }
        let json = self.json.clone().map(JsonFile);
        let mlflow = self.mlflow_uri.as_ref().map(|uri| {
            let mut cfg = kvxfer::mlflow::RecordConfig::new(uri);
            cfg.experiment = self.experiment.clone();
            let file_name = self
                .json
                .as_ref()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| format!("{}.json", doc.bench));
            kvxfer::mlflow::Mlflow { cfg, file_name }
        });
        let exporters: Vec<&dyn Exporter> = [
            table,
            json.as_ref().map(|j| j as &dyn Exporter),
            mlflow.as_ref().map(|m| m as &dyn Exporter),
        ]
        .into_iter()
        .flatten()
        .collect();
        export_all(&exporters, doc, &mut |line| eprintln!("kvxfer: {line}")).map_err(|e| match e {
            ExportError::Record { .. } => {
                let kept = match &self.json {
                    Some(p) => format!("the result is kept in {}", p.display()),
                    None => keep_fallback(doc),
                };
                anyhow::anyhow!("{e} ({kept}; `kvxfer record` can add it later)")
            }
            other => other.into(),
        })
    }
}

impl OutputArgs {
    /// Ends a failed run: when the run had set up, prints what was measured (`table`), writes
    /// it with its status (partial or failed) and error to --json, and returns the error,
    /// saying where the measurements are (a run a signal stopped: only where they are, or that
    /// none were). A partial document is not sent to MLflow.
    pub fn fail(
        &self,
        e: anyhow::Error,
        table: impl Fn(&kvxfer::report::ResultDoc) -> String,
    ) -> anyhow::Result<std::process::ExitCode> {
        let stopped = kvxfer::stop::requested().is_some();
        let (mut doc, error) = match e.downcast::<kvxfer::run::RunError>() {
            Ok(kvxfer::run::RunError::Partial { doc, error }) => (doc, error),
            Ok(_) if stopped => anyhow::bail!("nothing was measured"),
            Ok(other) => return Err(other.into()),
            Err(e) => return Err(e),
        };
        if !doc.results.is_empty() {
            kvxfer::out!("{}", table(&doc));
        }
        if self.pattern_id.is_some() {
            doc.pattern_id = self.pattern_id.clone();
        }
        let status = match doc.status {
            kvxfer::report::Status::Partial => "partial",
            _ => "failed",
        };
        let kept = match &self.json {
            Some(p) => match kvxfer::report::write_output(p, &doc.to_json()) {
                Ok(()) => format!(
                    "{} result(s) kept in {} with status {status}",
                    doc.results.len(),
                    p.display()
                ),
                Err(w) => format!("writing {} failed too: {w}", p.display()),
            },
            None if doc.results.is_empty() => "nothing was measured".to_string(),
            None => format!(
                "{} result(s) printed; use --json to keep them",
                doc.results.len()
            ),
        };
        match stopped {
            true => Err(anyhow::anyhow!("{kept}")),
            false => Err(anyhow::anyhow!("{error} ({kept})")),
        }
    }
}

/// `--expect-path`, shared by the measurement subcommands.
#[derive(Debug, clap::Args)]
pub struct PathArgs {
    /// The path the payload must take: network (a device other than lo), local (lo, shared
    /// memory or a copy on this host), or DEV[,DEV...] (these devices and no other, each named
    /// one carrying part; a name with * admits the devices it matches, e.g. rdmap*). Another
    /// path ends the run with status wrong-path and exit status 1, the figures kept.
    #[arg(long, value_name = "network|local|DEV[,DEV...]", value_parser = ExpectPath::parse)]
    pub expect_path: Option<ExpectPath>,
}

impl PathArgs {
    /// Checks the document's paths against `--expect-path`, before it is published.
    pub fn judge(&self, doc: &mut ResultDoc) -> Option<Judgement> {
        let expect = self.expect_path.as_ref()?;
        let j = kvxfer::run::path::judge(doc, expect);
        if j.unchecked > 0 {
            eprintln!(
                "kvxfer: warning: --expect-path {}: {} result(s) not checked: their counters \
                 cannot tell where the payload went",
                expect.name(),
                j.unchecked
            );
        }
        Some(j)
    }

    /// The exit status after publishing: success, or exit status 1 naming what carried the
    /// payload instead of the requested path.
    pub fn exit(&self, judged: Option<Judgement>, output: &OutputArgs) -> anyhow::Result<ExitCode> {
        let Some(first) = judged.as_ref().and_then(|j| j.wrong.first()) else {
            return Ok(ExitCode::SUCCESS);
        };
        let kept = match &output.json {
            Some(p) => format!(
                "the figures are kept in {} with status wrong-path",
                p.display()
            ),
            None => "the figures are kept; use --json to write them".into(),
        };
        anyhow::bail!("wrong path: {first} ({kept})")
    }
}

/// Fails unless a result can be written at `path`: a regular file (or a new one) whose folder
/// takes new files, through any links, or a character device or FIFO.
fn check_writable(path: &std::path::Path) -> anyhow::Result<()> {
    kvxfer::report::destination(path).map_err(|e| anyhow::anyhow!("--json {e}"))?;
    Ok(())
}

/// Writes `doc` to `kvxfer-<bench>-<time>.json` in the current directory; says where, or why not.
fn keep_fallback(doc: &kvxfer::report::ResultDoc) -> String {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let path = std::path::PathBuf::from(format!("kvxfer-{}-{stamp}.json", doc.bench));
    match kvxfer::report::write_atomic(&path, &doc.to_json()) {
        Ok(()) => format!("the result is kept in {}", path.display()),
        Err(e) => format!(
            "the result could not be kept in {} either: {e}",
            path.display()
        ),
    }
}

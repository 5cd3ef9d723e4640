//! `--iterations N|auto` and the options that pace a run whose count is not fixed
//! (`--precision`, `--max-iterations`, `--max-time`, `--duration`).

use std::time::Duration;

use clap::Args;
use kvxfer::stats::{AutoLimits, Count};

/// `--iterations`: a count, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IterationsArg {
    /// This many timed iterations.
    Count(u64),
    /// Until the median's interval is narrow enough (`--precision`), or a limit.
    Auto,
}

/// clap value parser for `--iterations`: `auto`, or a whole number up to 10^12 (0 is left to
/// each run's check).
pub fn parse_iterations(s: &str) -> Result<IterationsArg, String> {
    if s.trim().eq_ignore_ascii_case("auto") {
        return Ok(IterationsArg::Auto);
    }
    super::common::parse_iterations(s)
        .map(IterationsArg::Count)
        .map_err(|e| format!("{e}, or auto"))
}

/// clap value parser for a time: `30s`, `500ms`, `2m`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a time (30s, 500ms, 2m, 1h)"))?;
    let secs = v * scale;
    if !(secs > 0.0 && secs <= super::common::MAX_TIMEOUT_S) {
        return Err(format!("{s} is not a time from 1 ms to a week"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The options that pace a run whose count is not fixed.
#[derive(Debug, Default, Args)]
pub struct PacingArgs {
    /// With --iterations auto: stop once the median's 95 % interval is within +-PCT % of it
    /// [default: 1].
    #[arg(long, value_name = "PCT")]
    pub precision: Option<f64>,
    /// With --iterations auto: at most this many timed iterations [default: 1000000].
    #[arg(long, value_name = "N", value_parser = super::common::parse_iterations)]
    pub max_iterations: Option<u64>,
    /// With --iterations auto: stop once the timed iterations took this long, e.g. 60s
    /// [default: 60s].
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    pub max_time: Option<Duration>,
    /// As many timed iterations as fit in this time (perftest's -D), e.g. 30s; instead of
    /// --iterations.
    #[arg(long, value_name = "TIME", value_parser = parse_duration, conflicts_with = "iterations")]
    pub duration: Option<Duration>,
}

impl PacingArgs {
    /// The count `--iterations` and these options give; None when nothing was asked (the
    /// run's default count).
    pub fn count(&self, iterations: Option<IterationsArg>) -> anyhow::Result<Option<Count>> {
        let auto_only = [
            self.precision.map(|_| "--precision"),
            self.max_iterations.map(|_| "--max-iterations"),
            self.max_time.map(|_| "--max-time"),
        ];
        if iterations != Some(IterationsArg::Auto) {
            if let Some(opt) = auto_only.into_iter().flatten().next() {
                anyhow::bail!("{opt} paces --iterations auto; give --iterations auto with it");
            }
        }
        let d = AutoLimits::default();
        let count = match (iterations, self.duration) {
            (_, Some(t)) => Some(Count::Duration(t)),
            (Some(IterationsArg::Count(n)), None) => Some(Count::Fixed(n)),
            (Some(IterationsArg::Auto), None) => Some(Count::Auto(AutoLimits {
                precision_pct: self.precision.unwrap_or(d.precision_pct),
                max_iterations: self.max_iterations.unwrap_or(d.max_iterations),
                max_time: self.max_time.unwrap_or(d.max_time),
            })),
            (None, None) => None,
        };
        if let Some(c) = &count {
            c.check().map_err(anyhow::Error::msg)?;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterations_and_times_parse() {
        assert_eq!(parse_iterations("auto"), Ok(IterationsArg::Auto));
        assert_eq!(parse_iterations("AUTO"), Ok(IterationsArg::Auto));
        assert_eq!(parse_iterations("12"), Ok(IterationsArg::Count(12)));
        assert!(parse_iterations("many").unwrap_err().contains("or auto"));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        for bad in ["0s", "-1s", "x", "9999h", ""] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pacing_options_need_auto() {
        let p = PacingArgs {
            precision: Some(0.5),
            ..PacingArgs::default()
        };
        let e = p.count(Some(IterationsArg::Count(10))).unwrap_err();
        assert!(e.to_string().contains("--precision paces"), "{e}");
        let c = p.count(Some(IterationsArg::Auto)).unwrap().unwrap();
        assert!(
            matches!(c, Count::Auto(a) if a.precision_pct == 0.5 && a.max_iterations == 1_000_000)
        );
        let d = PacingArgs {
            duration: Some(Duration::from_secs(3)),
            ..PacingArgs::default()
        };
        assert_eq!(
            d.count(None).unwrap(),
            Some(Count::Duration(Duration::from_secs(3)))
        );
        assert_eq!(PacingArgs::default().count(None).unwrap(), None);
        let bad = PacingArgs {
            precision: Some(0.0),
            ..PacingArgs::default()
        };
        assert!(bad.count(Some(IterationsArg::Auto)).is_err());
    }
}

//! `kvxfer plan estimate`: a plan's wall time predicted from its counts and the last results of
//! the same patterns: each result's time per iteration times the iterations the plan asks for
//! now, plus the set-up the last `kvxfer run` spent around them (its `plan-run.json`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::{EARLIER, RUN_REPORT};
use crate::report::folder::read_folder;
use crate::report::{ResultDoc, SizeResult};

/// What one pattern's estimate rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Basis {
    /// Its results and the wall time of the run that made them.
    ResultsAndWallTime,
    /// Its results alone: the set-up around the iterations is not counted.
    ResultsOnly,
    /// The last run's wall time alone (its results hold no timings to scale).
    WallTimeOnly,
    /// Nothing: no earlier result of the pattern.
    Unknown,
}

/// One pattern's estimate.
#[derive(Debug, Clone, Serialize)]
pub struct PatternEstimate {
    /// The pattern's id.
    pub pattern: String,
    /// Its layer.
    pub layer: String,
    /// Predicted wall time, seconds; None when unknown.
    pub seconds: Option<f64>,
    /// The timed iterations' share of it, seconds.
    pub measured_seconds: Option<f64>,
    /// The last run's wall time of the pattern, seconds.
    pub last_seconds: Option<f64>,
    /// What the estimate rests on.
    pub basis: Basis,
}

/// A plan's estimate.
#[derive(Debug, Clone, Serialize)]
pub struct PlanEstimate {
    /// Every pattern, in plan order.
    pub patterns: Vec<PatternEstimate>,
    /// The sum of the known estimates, seconds.
    pub total_seconds: f64,
    /// Patterns without an estimate (not in the total).
    pub unknown: usize,
}

/// Seconds one iteration of `r` took: its mean latency, else its size at its bandwidth.
fn per_iteration(r: &SizeResult) -> Option<f64> {
    let mean = r.latency_us.as_ref().map(|l| l.mean / 1e6);
    let by_bw = r
        .bandwidth_gbps
        .filter(|b| *b > 0.0)
        .map(|b| r.message_size as f64 / (b * 1e9));
    mean.filter(|m| *m > 0.0).or(by_bw)
}

/// The fixed count a pattern's params ask for (`iterations`, or nixlbench's `num_iter`); None
/// for `auto`.
fn fixed_count(params: &Value) -> Option<u64> {
    params
        .get("iterations")
        .or_else(|| params.get("num_iter"))
        .and_then(Value::as_u64)
}

/// Seconds of timed iterations (last, planned) over a pattern's result documents: each result's
/// time per iteration times the iterations it ran and the iterations the plan asks for (a fixed
/// count; an `auto` pattern is expected to take what it took). None when no result has timings.
fn measured(docs: &[&ResultDoc], params: &Value) -> Option<(f64, f64)> {
    let fixed = fixed_count(params);
    let mut last = 0.0;
    let mut planned = 0.0;
    let mut any = false;
    for r in docs.iter().flat_map(|d| d.results.iter()) {
        let Some(t) = per_iteration(r).filter(|_| r.iterations > 0) else {
            continue;
        };
        any = true;
        last += t * r.iterations as f64;
        planned += t * fixed.unwrap_or(r.iterations) as f64;
    }
    any.then_some((last, planned))
}

/// Each pattern's wall time in the last `kvxfer run` report of `dir`: the patterns it ran, and
/// those it kept from earlier runs of the folder.
pub(super) fn last_wall_times(dir: &Path) -> BTreeMap<String, f64> {
    let Ok(bytes) = std::fs::read(dir.join(RUN_REPORT)) else {
        return BTreeMap::new();
    };
    let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
        return BTreeMap::new();
    };
    let mut walls = BTreeMap::new();
    // The report's own patterns first: an id kept from earlier runs never replaces them.
    for p in ["patterns", EARLIER]
        .into_iter()
        .flat_map(|k| v[k].as_array().into_iter().flatten())
        .filter(|p| p["outcome"]["status"] == "ok")
    {
        if let (Some(id), Some(s)) = (p["pattern"].as_str(), p["seconds"].as_f64()) {
            walls.entry(id.to_string()).or_insert(s);
        }
    }
    walls
}

/// One pattern's estimate from its results and its last wall time.
fn pattern_estimate(
    id: &str,
    layer: &str,
    params: &Value,
    docs: &[&ResultDoc],
    last_seconds: Option<f64>,
) -> PatternEstimate {
    let m = measured(docs, params);
    let (seconds, basis) = match (m, last_seconds) {
        (Some((last, planned)), Some(wall)) => (
            Some((wall - last).max(0.0) + planned),
            Basis::ResultsAndWallTime,
        ),
        (Some((_, planned)), None) => (Some(planned), Basis::ResultsOnly),
        (None, Some(wall)) => (Some(wall), Basis::WallTimeOnly),
        (None, None) => (None, Basis::Unknown),
    };
    PatternEstimate {
        pattern: id.to_string(),
        layer: layer.to_string(),
        seconds,
        measured_seconds: m.map(|x| x.1),
        last_seconds,
        basis,
    }
}

/// Estimates every pattern of `plan` from the results folder `dir` (its result documents and
/// the last run's `plan-run.json`); a folder that cannot be read leaves every pattern unknown.
pub fn estimate(plan: &Value, dir: &Path) -> PlanEstimate {
    let docs: Vec<ResultDoc> = read_folder(dir)
        .map(|(loaded, _)| loaded.into_iter().map(|l| l.doc).collect())
        .unwrap_or_default();
    let walls = last_wall_times(dir);
    let mut patterns = Vec::new();
    for layer in plan["layers"].as_array().into_iter().flatten() {
        let lid = layer["id"].as_str().unwrap_or("");
        for p in layer["patterns"].as_array().into_iter().flatten() {
            let Some(id) = p["id"].as_str() else { continue };
            let mine: Vec<&ResultDoc> = docs
                .iter()
                .filter(|d| d.pattern_id.as_deref() == Some(id))
                .collect();
            let wall = walls.get(id).copied();
            patterns.push(pattern_estimate(id, lid, &p["params"], &mine, wall));
        }
    }
    PlanEstimate {
        total_seconds: patterns.iter().filter_map(|p| p.seconds).sum(),
        unknown: patterns.iter().filter(|p| p.seconds.is_none()).count(),
        patterns,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::stats::LatencySummary;

    fn doc(id: &str, results: &[(u64, f64)]) -> ResultDoc {
        let mut d = ResultDoc::new("kvxfer", "xfer", "L1");
        d.pattern_id = Some(id.into());
        for &(n, mean_us) in results {
            d.results.push(SizeResult {
                message_size: 1 << 20,
                iterations: n,
                latency_us: Some(LatencySummary {
                    mean: mean_us,
                    ..LatencySummary::default()
                }),
                ..SizeResult::default()
            });
        }
        d
    }

    #[test]
    fn counts_scale_the_timed_part_and_the_set_up_stays() {
        // 100 iterations of 10 ms and 50 of 20 ms: 2 s timed, in a pattern that took 5 s.
        let d = doc("pll-a", &[(100, 10_000.0), (50, 20_000.0)]);
        let e = pattern_estimate("pll-a", "L1", &json!({"iterations": 10}), &[&d], Some(5.0));
        // 3 s of set-up, and 10 iterations of each size: 0.1 + 0.2 s.
        assert!((e.seconds.unwrap() - 3.3).abs() < 1e-9, "{e:?}");
        assert!((e.measured_seconds.unwrap() - 0.3).abs() < 1e-9, "{e:?}");
        assert_eq!(e.basis, Basis::ResultsAndWallTime);
        // `auto` takes what it took last time.
        let a = pattern_estimate(
            "pll-a",
            "L1",
            &json!({"iterations": "auto"}),
            &[&d],
            Some(5.0),
        );
        assert!((a.seconds.unwrap() - 5.0).abs() < 1e-9, "{a:?}");
        // Without a wall time: the timed part alone; without results: the wall time alone.
        let r = pattern_estimate("pll-a", "L1", &json!({"num_iter": 200}), &[&d], None);
        assert!((r.seconds.unwrap() - 6.0).abs() < 1e-9, "{r:?}");
        assert_eq!(r.basis, Basis::ResultsOnly);
        let w = pattern_estimate("pll-a", "L1", &json!({"iterations": 1}), &[], Some(7.5));
        assert_eq!((w.seconds, w.basis), (Some(7.5), Basis::WallTimeOnly));
        let u = pattern_estimate("pll-a", "L1", &json!({"iterations": 1}), &[], None);
        assert_eq!((u.seconds, u.basis), (None, Basis::Unknown));
    }

    #[test]
    fn a_folder_gives_each_pattern_its_results_and_wall_time() {
        let dir = tempfile::tempdir().unwrap();
        let w = |name: &str, v: &Value| {
            std::fs::write(dir.path().join(name), serde_json::to_vec(v).unwrap()).unwrap()
        };
        w(
            "a.run1.json",
            &serde_json::to_value(doc("pll-a", &[(10, 100_000.0)])).unwrap(),
        );
        w(
            "b.run1.json",
            &serde_json::to_value(doc("pll-b", &[(4, 500_000.0)])).unwrap(),
        );
        w(
            RUN_REPORT,
            &json!({"patterns": [
                {"pattern": "pll-a", "seconds": 2.0, "outcome": {"status": "ok"}},
                {"pattern": "pll-b", "seconds": 9.0, "outcome": {"status": "failed"}}]}),
        );
        let plan = json!({"layers": [
            {"id": "L1", "patterns": [
                {"id": "pll-a", "params": {"iterations": 20}},
                {"id": "pll-b", "params": {"iterations": "auto"}},
                {"id": "pll-c", "params": {"iterations": 5}}]}]});
        let e = estimate(&plan, dir.path());
        let secs: Vec<Option<f64>> = e.patterns.iter().map(|p| p.seconds).collect();
        // a: 1 s timed of 2 s, now 20 x 0.1 s; b: its failed run's wall time is not used.
        assert_eq!(secs, [Some(3.0), Some(2.0), None]);
        assert_eq!(e.patterns[1].basis, Basis::ResultsOnly);
        assert_eq!((e.total_seconds, e.unknown), (5.0, 1));
    }
}

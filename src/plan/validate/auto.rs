//! The checks of an `auto` count's settings: its limits, and whether its timed runs fit the
//! time a command is given.

use serde_json::Value;

use super::it_is;

/// The limits of an `auto` count: `precision_pct` (above 0, below 100) and `max_time_s` (1 to
/// 3600), only beside `"iterations": "auto"`.
pub(super) fn auto_problems(
    params: &serde_json::Map<String, Value>,
) -> Vec<(&'static str, String)> {
    let auto = params.get("iterations").and_then(Value::as_str) == Some("auto");
    let mut out = Vec::new();
    for key in ["precision_pct", "max_time_s"] {
        let Some(x) = params.get(key) else { continue };
        let ok = match key {
            "precision_pct" => x.as_f64().is_some_and(|p| p > 0.0 && p < 100.0),
            _ => x.as_u64().is_some_and(|s| (1..=3600).contains(&s)),
        };
        if !auto {
            out.push((key, "paces \"iterations\": \"auto\" only".to_string()));
        } else if !ok {
            let want = match key {
                "precision_pct" => "a number above 0 and below 100",
                _ => "an integer from 1 to 3600",
            };
            out.push((key, format!("must be {want}{}", it_is(Some(x)))));
        }
    }
    out
}

/// An `auto` pattern's timed runs fit in `common.timeout_s`, which kills each command: each
/// run may take `max_time_s` (the default 60 s), and a kv profile makes one run per shape
/// (back to back, contiguous, each idle gap above 0).
pub(super) fn time_problem(plan: &Value, p: &Value) -> Option<(&'static str, String)> {
    let params = &p["params"];
    if params["iterations"].as_str() != Some("auto") {
        return None;
    }
    let limit = plan.pointer("/common/timeout_s").and_then(Value::as_u64)?;
    let gaps = params["idle_ms"].as_array().map_or(0, |g| {
        g.iter()
            .filter(|x| x.as_u64().is_some_and(|n| n > 0))
            .count()
    });
    let runs = match p["tool"].as_str() {
        Some("kvxfer_kv") => 2 + gaps as u64,
        _ => 1,
    };
    let (key, each) = match params["max_time_s"].as_u64() {
        Some(s) => ("max_time_s", s),
        None => ("iterations", crate::stats::DEFAULT_MAX_TIME.as_secs()),
    };
    (runs.saturating_mul(each) >= limit).then(|| {
        (
            key,
            format!(
                "auto may time {runs} run(s) of up to {each} s here, past common.timeout_s \
                 ({limit} s) that ends the command: give a smaller max_time_s"
            ),
        )
    })
}

//! Two correlation reports side by side (before and after a change, EFA against TCP nodes, two
//! days): each claim's verdict and confidence, each key figure with its ratio, and the
//! validity score. Reports are read as JSON values, so older ones (without a score) compare
//! too, their missing parts shown as `-`.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::Value;

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn figure(v: Option<&Value>) -> String {
    match v.and_then(Value::as_f64) {
        Some(x) => format!("{x:.4}"),
        None => "-".into(),
    }
}

/// B over A, when both are numbers and A is not zero.
fn ratio(a: Option<&Value>, b: Option<&Value>) -> String {
    match (a.and_then(Value::as_f64), b.and_then(Value::as_f64)) {
        (Some(a), Some(b)) if a != 0.0 => format!("{:.3}", b / a),
        _ => "-".into(),
    }
}

/// The assessment of `name` in a report.
fn claim<'a>(r: &'a Value, name: &str) -> Option<&'a Value> {
    r["assessments"]
        .as_array()?
        .iter()
        .find(|a| a["analysis"] == name)
}

/// The claims either report judged, in first-seen order.
fn claim_names(a: &Value, b: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in [a, b] {
        for x in r["assessments"].as_array().into_iter().flatten() {
            let n = text(&x["analysis"]);
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

/// A claim's score in a report's validity section.
fn claim_score(r: &Value, section: &str, name: &str) -> Option<u64> {
    r["validity"][section]["claims"]
        .as_array()?
        .iter()
        .find(|c| c["analysis"] == name)?["score"]
        .as_u64()
}

fn score_cell(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |x| x.to_string())
}

/// The comparison as Markdown; `names` label the two reports.
pub fn markdown(a: &Value, b: &Value, names: (&str, &str)) -> String {
    let (na, nb) = names;
    let mut s = format!("# {na} against {nb}\n\n");
    let total = |r: &Value, k: &str| r["validity"][k]["score"].as_u64();
    let _ = writeln!(
        s,
        "## Measurement validity score\n\n| | A: {na} | B: {nb} |\n|---|---|---|\n| overall \
         | {} | {} |\n| E2E results alone | {} | {} |",
        score_cell(total(a, "measured")),
        score_cell(total(b, "measured")),
        score_cell(total(a, "baseline")),
        score_cell(total(b, "baseline"))
    );
    let names = claim_names(a, b);
    for n in &names {
        let _ = writeln!(
            s,
            "| {n} | {} | {} |",
            score_cell(claim_score(a, "measured", n)),
            score_cell(claim_score(b, "measured", n))
        );
    }
    s.push_str(
        "\n## Claims\n\n| claim | verdict A | verdict B | confidence A | confidence B |\n\
         |---|---|---|---|---|\n",
    );
    for n in &names {
        let (x, y) = (claim(a, n), claim(b, n));
        let get = |c: Option<&Value>, k: &str| c.map_or_else(|| "-".into(), |c| text(&c[k]));
        let _ = writeln!(
            s,
            "| {n} | {} | {} | {} | {} |",
            get(x, "verdict"),
            get(y, "verdict"),
            get(x, "confidence_after"),
            get(y, "confidence_after")
        );
    }
    for n in &names {
        figures(&mut s, n, claim(a, n), claim(b, n));
    }
    s
}

/// One claim's key figures, A, B and B/A, every key either report has.
fn figures(s: &mut String, name: &str, a: Option<&Value>, b: Option<&Value>) {
    let metrics = |c: Option<&Value>| c.map(|c| c["key_metrics"].clone()).unwrap_or(Value::Null);
    let (ma, mb) = (metrics(a), metrics(b));
    let keys: BTreeSet<&String> = [&ma, &mb]
        .iter()
        .filter_map(|m| m.as_object())
        .flat_map(|m| m.keys())
        .collect();
    if keys.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n## {name}: key figures\n\n| figure | A | B | B / A |\n|---|---|---|---|"
    );
    for k in keys {
        let _ = writeln!(
            s,
            "| {k} | {} | {} | {} |",
            figure(ma.get(k)),
            figure(mb.get(k)),
            ratio(ma.get(k), mb.get(k))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(verdict: &str, ttft: f64, score: u64) -> Value {
        json!({"assessments": [{"analysis": "token-gap", "verdict": verdict,
            "confidence_after": "low", "key_metrics": {"ttft_ms_tcp": ttft}}],
            "validity": {"measured": {"score": score, "claims": [
                {"analysis": "token-gap", "score": score}]}, "baseline": {"score": 2}}})
    }

    #[test]
    fn verdicts_figures_ratios_and_scores_side_by_side() {
        let md = markdown(
            &report("inconclusive", 2000.0, 9),
            &report("supported", 1500.0, 21),
            ("before", "after"),
        );
        assert!(md.contains("| overall | 9 | 21 |"), "{md}");
        assert!(md.contains("| E2E results alone | 2 | 2 |"), "{md}");
        assert!(
            md.contains("| token-gap | inconclusive | supported | low | low |"),
            "{md}"
        );
        assert!(
            md.contains("| ttft_ms_tcp | 2000.0000 | 1500.0000 | 0.750 |"),
            "{md}"
        );
    }

    #[test]
    fn an_older_report_without_a_score_or_a_claim_shows_dashes() {
        let old = json!({"assessments": []});
        let md = markdown(&old, &report("supported", 1500.0, 21), ("old", "new"));
        assert!(md.contains("| overall | - | 21 |"), "{md}");
        assert!(
            md.contains("| token-gap | - | supported | - | low |"),
            "{md}"
        );
        assert!(md.contains("| ttft_ms_tcp | - | 1500.0000 | - |"), "{md}");
    }
}

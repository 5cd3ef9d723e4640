//! The scheduling line: how long each side's workers waited for a CPU over the timed span.

use serde_json::Value;

use crate::report::{ResultDoc, SizeResult};
use crate::run::sched::WAITING_NOTABLE_PCT;
use crate::units::size_str;

/// `scheduling: waited for a CPU over the timed span: initiator 2 worker(s) 45.1 % (...)`, and
/// a second line when either side waited long enough to bend the latencies; None without the
/// figures.
pub fn scheduling_lines(r: &SizeResult) -> Option<String> {
    let (line, worst) = side_figures(r)?;
    let mut out = format!("scheduling: {line}\n");
    out.push_str(&warning(worst));
    Some(out)
}

/// [`scheduling_lines`] of every size of a document, each line labelled with its size where
/// there are several, and one warning at most.
pub fn scheduling_summary(doc: &ResultDoc) -> String {
    let each: Vec<(u64, String, f64)> = doc
        .results
        .iter()
        .filter_map(|r| side_figures(r).map(|(l, w)| (r.message_size, l, w)))
        .collect();
    let mut out = String::new();
    for (size, line, _) in &each {
        match each.len() {
            1 => out.push_str(&format!("scheduling: {line}\n")),
            _ => out.push_str(&format!("scheduling ({}): {line}\n", size_str(*size))),
        }
    }
    out.push_str(&warning(each.iter().map(|e| e.2).fold(0.0, f64::max)));
    out
}

/// The line's text after its label, and the larger of the sides' waiting shares.
fn side_figures(r: &SizeResult) -> Option<(String, f64)> {
    let s = r.extra.get("scheduling")?;
    let sides: Vec<(&str, &Value)> = ["initiator", "target"]
        .into_iter()
        .filter_map(|k| Some((k, s.get(k)?)))
        .collect();
    if sides.is_empty() {
        return None;
    }
    let pct = |v: &Value| v.get("waiting_pct").and_then(Value::as_f64);
    let parts: Vec<String> = sides
        .iter()
        .map(|(k, v)| {
            let n = |f: &str| v.get(f).and_then(Value::as_u64);
            let migrations = n("migrations").map_or(String::new(), |m| format!(", {m} migrations"));
            format!(
                "{k} {} worker(s) {:.1} % ({} involuntary switches{migrations})",
                n("workers").unwrap_or(0),
                pct(v).unwrap_or(f64::NAN),
                n("involuntary_switches").unwrap_or(0),
            )
        })
        .collect();
    let cpus = s.get("host_cpus").and_then(Value::as_u64).unwrap_or(0);
    let worst = sides.iter().filter_map(|(_, v)| pct(v)).fold(0.0, f64::max);
    Some((
        format!(
            "waited for a CPU over the timed span: {}; {cpus} CPUs here",
            parts.join("; ")
        ),
        worst,
    ))
}

/// The warning when a side waited for a CPU for a notable share of its span (else nothing).
fn warning(worst: f64) -> String {
    if worst < WAITING_NOTABLE_PCT {
        return String::new();
    }
    format!(
        "  the latencies include {worst:.0} % of time spent waiting for a CPU: more busy \
         threads than CPUs took turns; fewer workers than CPUs measure the fabric alone\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(scheduling: Value) -> SizeResult {
        let mut r = SizeResult::default();
        r.extra.insert("scheduling".into(), scheduling);
        r
    }

    #[test]
    fn both_sides_and_a_warning_when_they_waited() {
        let r = result(json!({
            "initiator": {"workers": 2, "waiting_pct": 45.14, "involuntary_switches": 2462,
                          "migrations": 3},
            "target": {"workers": 2, "waiting_pct": 0.4, "involuntary_switches": 12},
            "host_cpus": 2
        }));
        let s = scheduling_lines(&r).unwrap();
        assert_eq!(
            s.lines().next().unwrap(),
            "scheduling: waited for a CPU over the timed span: initiator 2 worker(s) 45.1 % \
             (2462 involuntary switches, 3 migrations); target 2 worker(s) 0.4 % (12 \
             involuntary switches); 2 CPUs here"
        );
        assert!(
            s.lines().nth(1).unwrap().contains("include 45 % of time"),
            "{s}"
        );
    }

    #[test]
    fn no_warning_below_the_notable_share_and_no_line_without_figures() {
        let r = result(json!({
            "initiator": {"workers": 1, "waiting_pct": 4.9, "involuntary_switches": 3},
            "host_cpus": 8
        }));
        assert_eq!(scheduling_lines(&r).unwrap().lines().count(), 1);
        assert_eq!(scheduling_lines(&result(json!({"host_cpus": 8}))), None);
        assert_eq!(scheduling_lines(&SizeResult::default()), None);
    }

    #[test]
    fn a_document_labels_each_size_and_warns_once() {
        let side = |pct: f64| json!({"workers": 1, "waiting_pct": pct, "involuntary_switches": 1});
        let mut doc = ResultDoc::new("kvxfer", "pingpong", "L0");
        for (size, pct) in [(64, 30.0), (1 << 20, 12.0)] {
            let mut r = result(json!({"initiator": side(pct), "target": side(1.0),
                                      "host_cpus": 2}));
            r.message_size = size;
            doc.results.push(r);
        }
        let s = scheduling_summary(&doc);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 3, "{s}");
        assert!(lines[0].starts_with("scheduling (64): waited"), "{s}");
        assert!(lines[1].starts_with("scheduling (1m): waited"), "{s}");
        assert!(lines[2].contains("include 30 %"), "{s}");
        doc.results.truncate(1);
        assert!(scheduling_summary(&doc).starts_with("scheduling: waited"));
    }
}

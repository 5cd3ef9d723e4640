//! The table lines of a result's `path`: where the payload went, the retransmissions, and
//! what the timed span cost the CPU. Read from the document alone.

use std::fmt::Write;

use serde_json::Value;

use super::{ResultDoc, SizeResult};

/// `path: <verdict>`, a retransmission line when any counter of one moved, and this side's CPU
/// cost; nothing for a result without a path.
pub fn lines(r: &SizeResult) -> String {
    let Some(p) = r.path.as_ref() else {
        return String::new();
    };
    let mut out = String::new();
    if let Some(v) = p.get("verdict").and_then(Value::as_str) {
        let _ = writeln!(out, "path: {v}");
    }
    let own = p.get("sides").and_then(|s| s.get(0));
    if let Some(line) = own.and_then(retransmissions) {
        let _ = writeln!(out, "{line}");
    }
    if let Some(line) = own.and_then(cpu) {
        let _ = writeln!(out, "{line}");
    }
    out
}

/// The lines of a table of several sizes: one `path` line per run of sizes whose payload took
/// the same devices (the largest size's verdict: headers weigh least there), then the largest
/// size's CPU line.
pub fn summary(doc: &ResultDoc) -> String {
    let mut groups: Vec<(String, Vec<&SizeResult>)> = Vec::new();
    for r in doc.results.iter().filter(|r| r.path.is_some()) {
        let key = carriers(r);
        match groups.last_mut() {
            Some((k, rs)) if *k == key => rs.push(r),
            _ => groups.push((key, vec![r])),
        }
    }
    let mut out = String::new();
    let one = groups.len() == 1;
    for (_, rs) in &groups {
        let last = rs[rs.len() - 1];
        let v = last
            .path
            .as_ref()
            .and_then(|p| p.get("verdict"))
            .and_then(Value::as_str)
            .unwrap_or("-");
        if one {
            let _ = writeln!(out, "path: {v}");
        } else {
            let (a, b) = (rs[0].message_size, last.message_size);
            let _ = writeln!(out, "path ({}): {v}", size_range(a, b));
        }
    }
    let own = doc
        .results
        .iter()
        .rev()
        .find_map(|r| r.path.as_ref()?.get("sides")?.get(0));
    for line in own
        .into_iter()
        .flat_map(|o| [retransmissions(o), cpu(o)])
        .flatten()
    {
        let _ = writeln!(out, "{line}");
    }
    out
}

fn size_range(a: u64, b: u64) -> String {
    let s = crate::units::human_size;
    if a == b {
        s(a)
    } else {
        format!("{}..{}", s(a), s(b))
    }
}

/// A result's path kind and carrying devices, for grouping.
fn carriers(r: &SizeResult) -> String {
    let p = r.path.as_ref();
    let kind = p
        .and_then(|p| p.get("kind"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let names: Vec<&str> = p
        .and_then(|p| p.get("devices"))
        .and_then(Value::as_array)
        .map(|d| d.iter().filter_map(|x| x.get("name")?.as_str()).collect())
        .unwrap_or_default();
    format!("{kind}:{}", names.join(","))
}

/// `path retransmissions: efa0 retrans_pkts 12, ...` when a view's counters of them moved.
fn retransmissions(view: &Value) -> Option<String> {
    let parts: Vec<String> = view
        .get("retransmissions")?
        .as_array()?
        .iter()
        .filter_map(|x| {
            Some(format!(
                "{} {} {}",
                x.get("device")?.as_str()?,
                x.get("counter")?.as_str()?,
                x.get("count")?.as_u64()?
            ))
        })
        .collect();
    (!parts.is_empty()).then(|| format!("path retransmissions: {}", parts.join(", ")))
}

/// `cpu: 0.030 s (user 0.002, system 0.028) = 0.36 s/GB; host 45% busy of 4 CPUs`.
fn cpu(view: &Value) -> Option<String> {
    let c = view.get("cpu")?;
    let n = |k: &str| c.get(k).and_then(Value::as_f64);
    let total = n("process_s")?;
    let mut s = format!(
        "cpu ({}): {total:.3} s (user {:.3}, system {:.3})",
        view.get("role")
            .and_then(Value::as_str)
            .unwrap_or("this side"),
        n("user_s").unwrap_or(f64::NAN),
        n("system_s").unwrap_or(f64::NAN),
    );
    if let Some(g) = n("cpu_s_per_gb") {
        let _ = write!(s, " = {g:.3} s/GB");
    }
    if let Some(b) = n("host_busy_fraction") {
        let cpus = c.get("host_cpus").and_then(Value::as_u64).unwrap_or(0);
        let _ = write!(s, "; host {:.0}% busy of {cpus} CPUs", b * 100.0);
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(size: u64, kind: &str, devices: &[&str], verdict: &str) -> SizeResult {
        let devs: Vec<Value> = devices.iter().map(|d| json!({"name": d})).collect();
        SizeResult {
            message_size: size,
            path: Some(json!({"verdict": verdict, "kind": kind, "devices": devs,
                "sides": [{"role": "initiator", "retransmissions": [],
                    "cpu": {"process_s": 0.5, "user_s": 0.1, "system_s": 0.4,
                            "cpu_s_per_gb": 0.25, "host_busy_fraction": 0.5, "host_cpus": 4}}]})),
            ..Default::default()
        }
    }

    #[test]
    fn a_verdict_its_retransmissions_and_its_cpu() {
        let mut r = result(
            1 << 20,
            "network",
            &["efa0", "efa1"],
            "efa0 50% efa1 50%, 1.00x",
        );
        r.path.as_mut().unwrap()["sides"][0]["retransmissions"] = json!([{"device": "efa1", "counter": "retrans_pkts", "count": 12},
                   {"device": "tcp", "counter": "RetransSegs", "count": 3}]);
        let l = lines(&r);
        let l: Vec<&str> = l.lines().collect();
        assert_eq!(l[0], "path: efa0 50% efa1 50%, 1.00x");
        assert_eq!(
            l[1],
            "path retransmissions: efa1 retrans_pkts 12, tcp RetransSegs 3"
        );
        assert_eq!(
            l[2],
            "cpu (initiator): 0.500 s (user 0.100, system 0.400) = 0.250 s/GB; host 50% busy \
             of 4 CPUs"
        );
        assert_eq!(lines(&SizeResult::default()), "");
    }

    #[test]
    fn sizes_that_took_the_same_devices_share_a_line() {
        let mut doc = ResultDoc::new("kvxfer", "pingpong", "L0");
        doc.results.push(result(
            64,
            "local",
            &["lo"],
            "lo carried 5.00x of the payload",
        ));
        doc.results.push(result(
            4096,
            "local",
            &["lo"],
            "lo carried 1.10x of the payload",
        ));
        let s = summary(&doc);
        assert!(
            s.starts_with("path: lo carried 1.10x of the payload\ncpu (initiator)"),
            "{s}"
        );
        doc.results.push(result(
            1 << 20,
            "none",
            &[],
            "no network device carried the payload",
        ));
        let s = summary(&doc);
        let l: Vec<&str> = s.lines().collect();
        assert_eq!(l[0], "path (64..4K): lo carried 1.10x of the payload");
        assert_eq!(l[1], "path (1M): no network device carried the payload");
    }
}

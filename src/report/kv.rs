//! `kvxfer kv`'s outputs: the size table, KVBench's plan forms (text, JSON, CSV) and the
//! profile table.

use std::fmt::Write;

use serde_json::{json, Map, Value};

use crate::model::kvbench::{plain, Plan};
use crate::model::kvbench_class::ClassChoice;
use crate::model::size::SizeTable;

/// The section-7 table: tokens, bytes, MiB, theoretical ms per link, difference.
pub fn size_text(t: &SizeTable) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "model {} ({} cache): {} bytes per token",
        t.model.name,
        t.model.dtype.name(),
        t.kv_bytes_per_token
    );
    let mut head = format!("{:>8} {:>15} {:>10}", "tokens", "bytes", "MiB");
    if let Some(r) = t.rows.first() {
        for l in &r.links {
            let _ = write!(head, " {:>14}", format!("ms@{}GB/s", l.link_gbps));
        }
        if r.difference_ms.is_some() {
            let _ = write!(head, " {:>10}", "diff(ms)");
        }
    }
    let _ = writeln!(out, "{head}");
    for r in &t.rows {
        let _ = write!(out, "{:>8} {:>15} {:>10.1}", r.tokens, r.kv_bytes, r.kv_mib);
        for l in &r.links {
            let _ = write!(out, " {:>14.2}", l.theoretical_ms);
        }
        if let Some(d) = r.difference_ms {
            let _ = write!(out, " {d:>10.2}");
        }
        let _ = writeln!(out);
    }
    if let Some(r) = t.rows.first() {
        let spec: Vec<String> = r
            .links
            .iter()
            .map(|l| format!("{:.0} ms at {}", l.spec_gib_ms, l.link_gbps))
            .collect();
        let _ = writeln!(
            out,
            "rates in 10^9 B/s; the spec's section-7 table reads them as GiB/s ({} tokens: {})",
            r.tokens,
            spec.join(", ")
        );
    }
    out
}

/// The KVBench class a plan's model runs as, or why it runs as none.
pub type ClassOutcome = Result<ClassChoice, String>;

fn class_line(c: &ClassOutcome) -> String {
    match c {
        Ok(c) => format!(
            "KVBench class: {} (model_name {})",
            c.class.name(),
            c.model_name
        ),
        Err(why) => format!("KVBench class: none ({why})"),
    }
}

fn class_json(c: &ClassOutcome) -> Value {
    match c {
        Ok(c) => json!({"class": c.class.name(), "model_name": c.model_name, "why": c.why}),
        Err(why) => json!({"class": null, "model_name": null, "why": why}),
    }
}

/// KVBench's text form (the preamble between two rules, then the nixlbench command), after a
/// first line naming the KVBench class the model runs as.
pub fn plan_text(p: &Plan, config_file: &str, class: &ClassOutcome) -> String {
    let rule = "=".repeat(80);
    format!(
        "{}\n{rule}\nModel Config: {config_file}\nISL: {} tokens\nPage Size: {}\nRequests: {}\n\
         TP: {}\nPP: {}\n{rule}\n{}\n\n",
        class_line(class),
        p.workload.isl,
        p.layout.page_size,
        p.workload.num_requests,
        p.layout.tp,
        p.layout.pp,
        p.command_text()
    )
}

fn plan_object(p: &Plan, config_file: &str) -> Map<String, Value> {
    let mut m: Map<String, Value> = p
        .nixlbench
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    m.insert("config_file".into(), json!(config_file));
    m
}

/// KVBench's JSON form (an array of every nixlbench parameter, defaults included, with the
/// config file), each object with kvxfer's arithmetic and the KVBench class under `kvxfer`.
pub fn plan_json(p: &Plan, config_file: &str, class: &ClassOutcome) -> Value {
    let mut m = plan_object(p, config_file);
    m.insert(
        "kvxfer".into(),
        json!({
            "model": p.model,
            "layout": p.layout,
            "workload": p.workload,
            "kv_bytes_per_token": p.kv_bytes_per_token,
            "kv_bytes_per_request": p.kv_bytes_per_request,
            "io_size": p.io_size,
            "batch_size": p.batch_size,
            "command": p.command_args(),
            "kvbench": class_json(class),
        }),
    );
    Value::Array(vec![Value::Object(m)])
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// KVBench's CSV form: every parameter, the config file, the model, and the model config
/// under `model_strategy_`, `model_runtime_`, `model_system_`, and kvxfer's `kvbench_class` and
/// `kvbench_model_name`; columns sorted by name.
pub fn plan_csv(
    p: &Plan,
    config_file: &str,
    model_quant_mode: &str,
    class: &ClassOutcome,
) -> String {
    let mut m = plan_object(p, config_file);
    m.insert("model".into(), json!(p.model.name));
    let c = class_json(class);
    m.insert("kvbench_class".into(), c["class"].clone());
    m.insert("kvbench_model_name".into(), c["model_name"].clone());
    let extra = [
        ("model_strategy_tp_size", json!(p.layout.tp)),
        ("model_strategy_pp_size", json!(p.layout.pp)),
        ("model_strategy_model_quant_mode", json!(model_quant_mode)),
        (
            "model_strategy_kvcache_quant_mode",
            json!(p.model.dtype.name()),
        ),
        ("model_runtime_num_requests", json!(p.workload.num_requests)),
        ("model_runtime_isl", json!(p.workload.isl)),
        ("model_runtime_osl", json!(p.workload.osl)),
        ("model_system_page_size", json!(p.layout.page_size)),
        ("model_system_access_pattern", json!(p.layout.access.name())),
    ];
    for (k, v) in extra {
        m.insert(k.into(), v);
    }
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    let head: Vec<String> = keys.iter().map(|k| csv_field(k)).collect();
    let row: Vec<String> = keys.iter().map(|k| csv_field(&plain(&m[*k]))).collect();
    format!("{}\n{}\n", head.join(","), row.join(","))
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn f(v: &Value, path: &[&str], scale: f64, prec: usize) -> String {
    at(v, path)
        .and_then(Value::as_f64)
        .map(|x| format!("{:.prec$}", x * scale))
        .unwrap_or_else(|| "-".into())
}

/// The profile per prompt length: transfer p50/p99, cold, registration, contiguous against
/// the descriptor list, each idle gap, and the decomposition.
pub fn profile_text(doc: &crate::report::ResultDoc) -> String {
    let mut out = String::new();
    heading(&mut out, doc);
    let gaps: Vec<u64> = doc
        .results
        .first()
        .and_then(|r| r.extra.get("slow_start"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|g| g["idle_ms"].as_u64()).collect())
        .unwrap_or_default();
    let mut head = format!(
        "{:>7} {:>9} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9}",
        "tokens",
        "MiB",
        "descs",
        "p50(ms)",
        "p99(ms)",
        "cold(ms)",
        "reg(us)",
        "regc(us)",
        "regrq(us)",
        "contig(ms)",
        "desc(us)"
    );
    for g in &gaps {
        let _ = write!(head, " {:>11}", format!("idle{g}(ms)"));
    }
    let _ = writeln!(out, "{head} {:>9} {:>9} {:>7}", "theo(ms)", "meas(ms)", "x");
    for r in &doc.results {
        let e = Value::Object(r.extra.clone());
        let _ = write!(
            out,
            "{:>7} {:>9.1} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9}",
            e["tokens"].as_u64().unwrap_or(0),
            r.message_size as f64 / (1u64 << 20) as f64,
            e["descriptors"].as_u64().unwrap_or(0),
            f(&e, &["transfer_us", "p50"], 1e-3, 2),
            f(&e, &["transfer_us", "p99"], 1e-3, 2),
            f(&e, &["cold_warm", "cold_us"], 1e-3, 2),
            f(&e, &["registration", "cold_us"], 1.0, 0),
            f(&e, &["registration", "cached_us"], 1.0, 0),
            f(&e, &["registration", "per_request_us"], 1.0, 0),
            f(&e, &["per_descriptor", "contiguous_p50_us"], 1e-3, 2),
            f(&e, &["per_descriptor", "per_descriptor_us"], 1.0, 3),
        );
        for k in 0..gaps.len() {
            let g = e["slow_start"]
                .get(k)
                .and_then(|g| g["p50_us"].as_f64())
                .map(|us| format!("{:.2}", us / 1e3))
                .unwrap_or_else(|| "-".into());
            let _ = write!(out, " {g:>11}");
        }
        let _ = writeln!(
            out,
            " {:>9} {:>9} {:>7}",
            f(&e, &["decomposition", "theoretical_ms"], 1.0, 2),
            f(&e, &["decomposition", "measured_ms"], 1.0, 2),
            f(&e, &["decomposition", "measured_over_theoretical"], 1.0, 2),
        );
    }
    let _ = writeln!(
        out,
        "p50/p99: the descriptor list back to back; cold: the first transfer on the connection; \
         reg: first registration, regc: the same memory again, regrq: both ends registering a \
         request's fresh memory; contig: the same bytes as one transfer; desc: cost per extra \
         descriptor; idleN: p50 after N ms idle; x: measured / theoretical"
    );
    decomposition(&mut out, doc);
    for r in doc.results.iter().filter(|r| r.path.is_some()) {
        let tokens = r.extra.get("tokens").and_then(Value::as_u64).unwrap_or(0);
        let sched = super::table::scheduling_lines(r).unwrap_or_default();
        let cache = super::table::cache_lines(r).unwrap_or_default();
        let lines = super::path_lines::lines(r);
        for line in lines.lines().chain(sched.lines()).chain(cache.lines()) {
            let _ = writeln!(out, "{tokens:>7}: {line}");
        }
    }
    out
}

/// The profile's first line: model, geometry and the host's TCP settings.
fn heading(out: &mut String, doc: &crate::report::ResultDoc) {
    let env = &doc.environment.extra;
    let _ = writeln!(
        out,
        "kv profile {} ({} B/token, {} cache, {} pattern, page {}, tp {}, pp {}); \
         tcp_slow_start_after_idle={} congestion={}",
        doc.config.get("model").map(plain).unwrap_or_default(),
        doc.config
            .get("kv_bytes_per_token")
            .map(plain)
            .unwrap_or_default(),
        doc.config.get("kv_dtype").map(plain).unwrap_or_default(),
        doc.config
            .get("access_pattern")
            .map(plain)
            .unwrap_or_default(),
        doc.config.get("page_size").map(plain).unwrap_or_default(),
        doc.config.get("tp").map(plain).unwrap_or_default(),
        doc.config.get("pp").map(plain).unwrap_or_default(),
        env.get("tcp_slow_start_after_idle")
            .map(plain)
            .unwrap_or_else(|| "?".into()),
        env.get("tcp_congestion_control")
            .map(plain)
            .unwrap_or_else(|| "?".into()),
    );
}

/// The decomposition of each shape's measured time, and the verdict on each difference.
fn decomposition(out: &mut String, doc: &crate::report::ResultDoc) {
    let _ = writeln!(out, "decomposition (ms): theoretical + registration + slow start + per descriptor + remainder = measured");
    for r in &doc.results {
        let e = Value::Object(r.extra.clone());
        let d = &["decomposition"];
        let p = |k: &str| f(&e, &[d[0], k], 1.0, 2);
        let _ = writeln!(
            out,
            "{:>7}: {} + {} + {} + {} + {} = {}  (cold connection: +{})",
            e["tokens"].as_u64().unwrap_or(0),
            p("theoretical_ms"),
            p("registration_ms"),
            p("slow_start_ms"),
            p("per_descriptor_ms"),
            p("remainder_ms"),
            p("measured_ms"),
            p("cold_connection_extra_ms"),
        );
        let verdict = |path: &[&str]| {
            let mut v = &e;
            for k in path {
                v = &v[*k];
            }
            v.as_str().unwrap_or("-").to_string()
        };
        let _ = writeln!(
            out,
            "         slow start: {}; per descriptor: {}; cold connection: {}",
            verdict(&["decomposition", "slow_start_is"]),
            verdict(&["decomposition", "per_descriptor_is"]),
            verdict(&["cold_warm", "cold_extra", "verdict"]),
        );
    }
}

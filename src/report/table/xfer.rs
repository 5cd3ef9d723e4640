//! The xfer table: nixlbench's columns, then kvxfer's own figures.

use std::fmt::Write;

use serde_json::Value;

use crate::report::{ResultDoc, SizeResult};

fn f_or_dash(v: Option<&serde_json::Value>, digits: usize) -> String {
    v.and_then(|x| x.as_f64())
        .map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

/// The column format of nixlbench's table, header and rows alike.
macro_rules! nixl_row {
    ($out:expr, $($v:expr),* $(,)?) => {
        writeln!(
            $out,
            "{:<16}{:<12}{:<14}{:<15}{:<15}{:<15}{:<15}{:<15}{:<15}{:<13}{:<12}",
            $($v),*
        )
    };
}

/// The xfer table: nixlbench's columns, then kvxfer's end-to-end figures, costs and tiers.
pub fn xfer(doc: &ResultDoc) -> String {
    let mut out = String::new();
    let _ = nixl_row!(
        out,
        "Block Size (B)",
        "Batch Size",
        "B/W (GB/Sec)",
        "B/W (GiB/Sec)",
        "Avg Lat. (us)",
        "Avg Prep (us)",
        "P99 Prep (us)",
        "Avg Post (us)",
        "P99 Post (us)",
        "Avg Tx (us)",
        "P99 Tx (us)"
    );
    for r in &doc.results {
        nixlbench_row(&mut out, r);
        transfer_line(&mut out, doc, r);
        if let Some(c) = r.extra.get("costs") {
            costs_line(&mut out, c);
        }
        if let Some(t) = r.extra.get("host_tcp") {
            tcp_line(&mut out, t);
            out.push_str(&loopback_reorder_hint(r, t).unwrap_or_default());
        }
        if let Some(s) = super::scheduling_lines(r) {
            out.push_str(&s);
        }
        if let Some(c) = cache_lines(r) {
            out.push_str(&c);
        }
        out.push_str(&crate::report::path_lines::lines(r));
        if let Some(tiers) = r.extra.get("tiers").and_then(|v| v.as_array()) {
            tiers_table(&mut out, tiers);
        }
        if r.extra.contains_key("arrived_per_s") {
            open_loop_lines(&mut out, r);
        }
        if let Some(line) = super::precision_line(r) {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

/// An open-loop rate: offered, arrived and achieved, drops, and the three latencies.
fn open_loop_lines(out: &mut String, r: &SizeResult) {
    let f = |k: &str| r.extra.get(k).and_then(Value::as_f64);
    let q = |k: &str, p: &str| {
        r.extra
            .get(k)
            .and_then(|v| v.get(p))
            .and_then(Value::as_f64)
    };
    let overloaded = r.extra.get("overloaded").and_then(Value::as_bool) == Some(true);
    let _ = writeln!(
        out,
        "open loop: offered {} /s, arrived {} /s, achieved {} /s, {} of {} arrivals dropped{}",
        f_or_dash(r.extra.get("offered_per_s"), 2),
        f_or_dash(r.extra.get("arrived_per_s"), 2),
        f_or_dash(r.extra.get("achieved_per_s"), 2),
        f_or_dash(r.extra.get("dropped"), 0),
        f_or_dash(r.extra.get("arrivals"), 0),
        if overloaded { ": overloaded" } else { "" },
    );
    let _ = writeln!(
        out,
        "  ms p50/p99: corrected (from arrival) {}/{}; service (post to end) {}/{}; queueing \
         {}/{}",
        ms(r.latency_us.map(|l| l.p50)),
        ms(f("corrected_p99_us")),
        ms(q("service_us", "p50")),
        ms(f("uncorrected_p99_us")),
        ms(q("queueing_us", "p50")),
        ms(q("queueing_us", "p99")),
    );
    if let Some(qs) = r.extra.get("queueing_by_quarter").and_then(Value::as_array) {
        let means: Vec<String> = qs
            .iter()
            .map(|x| ms(x.get("mean_us").and_then(Value::as_f64)))
            .collect();
        let _ = writeln!(
            out,
            "  queueing ms by quarter of the run (mean): {}",
            means.join(" ")
        );
    }
    if let Some(k) = r.extra.get("sweep") {
        let _ = writeln!(
            out,
            "  knee: {} /s (p99 within 2x the unloaded service time, {} ms)",
            f_or_dash(k.get("knee_per_s"), 2),
            ms(k.get("unloaded_service_p50_us").and_then(Value::as_f64)),
        );
    }
}

/// Microseconds as milliseconds with three decimals, or "-".
fn ms(v: Option<f64>) -> String {
    v.map(|x| format!("{:.3}", x / 1000.0))
        .unwrap_or_else(|| "-".into())
}

/// One size's row in nixlbench's columns.
fn nixlbench_row(out: &mut String, r: &SizeResult) {
    let nx = r.extra.get("nixlbench");
    let g = |path: &[&str]| {
        let mut v = nx;
        for p in path {
            v = v.and_then(|x| x.get(*p));
        }
        v
    };
    let _ = nixl_row!(
        out,
        f_or_dash(g(&["block_size"]), 0),
        f_or_dash(g(&["batch_size"]), 0),
        r.bandwidth_gbps
            .map(|b| format!("{b:.3}"))
            .unwrap_or_else(|| "-".into()),
        f_or_dash(r.extra.get("bandwidth_gibps"), 3),
        f_or_dash(g(&["avg_lat_us"]), 2),
        f_or_dash(g(&["prep_us", "avg"]), 2),
        f_or_dash(g(&["prep_us", "p99"]), 2),
        f_or_dash(g(&["post_us", "avg"]), 2),
        f_or_dash(g(&["post_us", "p99"]), 2),
        f_or_dash(g(&["tx_us", "avg"]), 1),
        f_or_dash(g(&["tx_us", "p99"]), 1),
    );
}

/// The transfer's shape and its end-to-end and initiator-side milliseconds.
fn transfer_line(out: &mut String, doc: &ResultDoc, r: &SizeResult) {
    let lat = r.latency_us.as_ref();
    let _ = writeln!(
        out,
        "transfer {} x {} ({}, {}): end-to-end ms p50 {} p99 {} max {}; initiator-side ms p50 {}",
        crate::units::human_size(r.message_size),
        doc.config
            .get("concurrency")
            .and_then(|v| v.as_u64())
            .unwrap_or(0),
        doc.config.get("op").and_then(|v| v.as_str()).unwrap_or("-"),
        doc.config
            .get("concurrency_mode")
            .and_then(|v| v.as_str())
            .unwrap_or("-"),
        ms(lat.map(|l| l.p50)),
        ms(lat.map(|l| l.p99)),
        ms(lat.map(|l| l.max)),
        ms(r.extra
            .get("initiator_side_us")
            .and_then(|v| v.get("p50"))
            .and_then(|v| v.as_f64())),
    );
}

/// The host's TCP retransmissions and reordering over the timed iterations, when there were
/// any (they explain slow iterations on a loopback or a TCP fabric).
fn tcp_line(out: &mut String, t: &Value) {
    let n = |k: &str| t.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    if n("retrans_segs") == 0 && n("reorder_events") == 0 && n("ofo_queued") == 0 {
        return;
    }
    let _ = writeln!(
        out,
        "host TCP over the timed iterations (every connection of {}): {} of {} segments \
         retransmitted ({} fast, {} timeouts, {} reported duplicate), {} reordering events, {} \
         segments queued out of order",
        t.get("host").and_then(|v| v.as_str()).unwrap_or("-"),
        n("retrans_segs"),
        n("out_segs"),
        n("fast_retrans"),
        n("timeouts"),
        n("dsack_recv"),
        n("reorder_events"),
        n("ofo_queued"),
    );
}

/// Under the host TCP line of a run on one host whose threads moved between CPUs: why segments
/// were reordered at all. The loopback delivers each packet on the CPU that sent it, so a
/// sending thread that moves can have its later segments delivered first; each reordering
/// brings duplicate acknowledgements and a fast retransmission. Pinned workers move none.
fn loopback_reorder_hint(r: &SizeResult, t: &Value) -> Option<String> {
    let n = |k: &str| t.get(k).and_then(Value::as_u64).unwrap_or(0);
    let kind = r.path.as_ref().and_then(|p| p.get("kind"));
    if n("reorder_events") + n("ofo_queued") == 0 || kind.and_then(Value::as_str) != Some("local") {
        return None;
    }
    let s = r.extra.get("scheduling")?;
    let moved: u64 = ["initiator", "target"]
        .iter()
        .filter_map(|k| s.get(*k)?.get("migrations")?.as_u64())
        .sum();
    (moved > 0).then(|| {
        format!(
            "  on one host, segments reorder when a sending thread moves to another CPU ({moved} \
             migrations over the timed span); --cpus pins each worker to one\n"
        )
    })
}

/// Registration, connection and first-transfer costs against the steady state.
fn costs_line(out: &mut String, c: &Value) {
    let _ = writeln!(
        out,
        "registration us: first {} cached {}{} (target: first {} cached {}{}); connect ms {}; \
         first transfer ms {} vs steady p50 ms {} (x{})",
        f_or_dash(c.get("registration_first_us"), 1),
        f_or_dash(c.get("registration_cached_us"), 1),
        huge_pages(c.get("registration_huge_page_pct")),
        f_or_dash(c.get("target_registration_first_us"), 1),
        f_or_dash(c.get("target_registration_cached_us"), 1),
        huge_pages(c.get("target_registration_huge_page_pct")),
        ms(c.get("connect_us").and_then(|v| v.as_f64())),
        ms(c.get("first_transfer_us").and_then(|v| v.as_f64())),
        ms(c.get("steady_state_p50_us").and_then(|v| v.as_f64())),
        f_or_dash(c.get("first_over_steady"), 2),
    );
}

/// Where a result's host payload stood against the last-level cache (`extra.cache`): a line
/// when it was evicted before every iteration, or when it fits and transfers back to back may
/// run from the cache; None otherwise.
pub fn cache_lines(r: &SizeResult) -> Option<String> {
    let mut out = String::new();
    cache_line(&mut out, r.extra.get("cache")?);
    (!out.is_empty()).then_some(out)
}

fn cache_line(out: &mut String, c: &Value) {
    let mib = |k: &str| {
        c.get(k)
            .and_then(Value::as_u64)
            .map(|b| b as f64 / (1u64 << 20) as f64)
    };
    let payload = mib("host_payload_bytes").unwrap_or(0.0);
    if c.get("evicted_before_each") == Some(&Value::Bool(true)) {
        let _ = writeln!(
            out,
            "cache: each side evicted its host payload ({payload:.1} MiB) from the CPU caches \
             before every iteration (--cold-cache)"
        );
    } else if c.get("fits_llc") == Some(&Value::Bool(true)) {
        let _ = writeln!(
            out,
            "cache: a side's host payload ({payload:.1} MiB) fits in this host's {:.0} MiB \
             last-level cache: transfers back to back may run from it, where one after a pause \
             would not (--cold-cache evicts it before each iteration)",
            mib("llc_bytes").unwrap_or(0.0)
        );
    }
}

/// `, huge pages 100 %`: the share of a side's buffer mappings in transparent huge pages,
/// nothing where it is not known (device memory, an older document).
fn huge_pages(pct: Option<&Value>) -> String {
    pct.and_then(Value::as_f64)
        .map_or(String::new(), |p| format!(", huge pages {p:.0} %"))
}

/// The latency tiers: each one's centre, range and member iterations.
fn tiers_table(out: &mut String, tiers: &[Value]) {
    let _ = writeln!(
        out,
        "tiers: {}\n{:<6}{:>12}{:>12}{:>12}  members",
        tiers.len(),
        "tier",
        "centre(ms)",
        "min(ms)",
        "max(ms)"
    );
    for (i, t) in tiers.iter().enumerate() {
        let members: Vec<String> = t
            .get("members")
            .and_then(|m| m.as_array())
            .map(|m| m.iter().map(|x| x.to_string()).collect())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<6}{:>12}{:>12}{:>12}  {}",
            i + 1,
            f_or_dash(t.get("centre_ms"), 3),
            f_or_dash(t.get("min_ms"), 3),
            f_or_dash(t.get("max_ms"), 3),
            members.join(",")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::LatencySummary;
    use serde_json::json;

    #[test]
    fn nixlbench_columns_then_kvxfer_figures_and_tiers() {
        let mut doc = ResultDoc::new("kvxfer", "xfer", "L1");
        doc.config.insert("concurrency".into(), json!(16));
        doc.config.insert("op".into(), json!("write"));
        doc.config
            .insert("concurrency_mode".into(), json!("endpoints"));
        let mut r = SizeResult {
            message_size: 57_671_680,
            iterations: 3,
            bandwidth_gbps: Some(2.5),
            latency_us: Some(LatencySummary {
                p50: 300_000.0,
                p99: 410_000.0,
                max: 420_000.0,
                ..Default::default()
            }),
            ..Default::default()
        };
        r.extra.insert("bandwidth_gibps".into(), json!(2.3283));
        r.extra.insert(
            "nixlbench".into(),
            json!({"block_size": 4194304, "batch_size": 14, "avg_lat_us": 1234.5,
                   "prep_us": {"avg": 4.5, "p99": 12.5}, "post_us": {"avg": 130.0, "p99": 1900.0},
                   "tx_us": {"avg": 326000.6, "p99": 409468.9}}),
        );
        r.extra
            .insert("initiator_side_us".into(), json!({"p50": 290_000.0}));
        r.extra.insert(
            "tiers".into(),
            json!([{"centre_ms": 357.1, "min_ms": 323.6, "max_ms": 389.0, "members": [0, 2]},
                   {"centre_ms": 409.5, "min_ms": 409.5, "max_ms": 409.5, "members": [1]}]),
        );
        doc.results.push(r);
        let t = xfer(&doc);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with(
            "Block Size (B)  Batch Size  B/W (GB/Sec)  B/W (GiB/Sec)  Avg Lat. (us)  Avg Prep (us)"
        ));
        assert!(
            lines[1]
                .starts_with("4194304         14          2.500         2.328          1234.50"),
            "{}",
            lines[1]
        );
        assert!(lines[1].contains("326000.6"));
        assert_eq!(
            lines[2],
            "transfer 55M x 16 (write, endpoints): end-to-end ms p50 300.000 p99 410.000 max \
             420.000; initiator-side ms p50 290.000"
        );
        assert_eq!(lines[3], "tiers: 2");
        assert!(lines[5].starts_with("1          357.100     323.600     389.000  0,2"));
        assert!(lines[6].ends_with("  1"));
    }

    #[test]
    fn reordering_on_one_host_with_threads_that_moved_gets_a_hint_and_otherwise_none() {
        let tcp = json!({"host": "vm", "out_segs": 255_405, "retrans_segs": 1537,
            "fast_retrans": 1537, "timeouts": 0, "reorder_events": 3349, "ofo_queued": 2931,
            "dsack_recv": 1310});
        let hint = |kind: &str, moved: [u64; 2], tcp: &Value| {
            let mut r = SizeResult {
                path: Some(json!({"kind": kind})),
                ..Default::default()
            };
            r.extra.insert(
                "scheduling".into(),
                json!({"initiator": {"migrations": moved[0]}, "target": {"migrations": moved[1]}}),
            );
            loopback_reorder_hint(&r, tcp)
        };
        assert_eq!(
            hint("local", [36, 59], &tcp).as_deref(),
            Some(
                "  on one host, segments reorder when a sending thread moves to another CPU (95 \
                 migrations over the timed span); --cpus pins each worker to one\n"
            )
        );
        assert_eq!(hint("local", [0, 0], &tcp), None, "pinned: nothing moved");
        assert_eq!(
            hint("network", [36, 59], &tcp),
            None,
            "between hosts: another story"
        );
        let mut in_order = tcp.clone();
        in_order["reorder_events"] = json!(0);
        in_order["ofo_queued"] = json!(0);
        assert_eq!(hint("local", [36, 59], &in_order), None);
    }

    #[test]
    fn tcp_trouble_gets_a_line_and_a_clean_run_none() {
        let mut doc = ResultDoc::new("kvxfer", "xfer", "L1");
        let mut r = SizeResult {
            message_size: 704_643_072,
            ..Default::default()
        };
        let clean = json!({"host": "n1", "out_segs": 90_000, "retrans_segs": 0,
            "fast_retrans": 0, "timeouts": 0, "reorder_events": 0, "ofo_queued": 0,
            "dsack_recv": 0});
        r.extra.insert("host_tcp".into(), clean);
        doc.results.push(r.clone());
        assert!(!xfer(&doc).contains("host TCP"));
        r.extra.insert(
            "host_tcp".into(),
            json!({"host": "n1", "out_segs": 90_000, "retrans_segs": 52, "fast_retrans": 40,
                "timeouts": 1, "reorder_events": 278, "ofo_queued": 317, "dsack_recv": 37}),
        );
        doc.results[0] = r;
        let t = xfer(&doc);
        let line = t.lines().find(|l| l.starts_with("host TCP")).unwrap();
        assert_eq!(
            line,
            "host TCP over the timed iterations (every connection of n1): 52 of 90000 segments \
             retransmitted (40 fast, 1 timeouts, 37 reported duplicate), 278 reordering events, \
             317 segments queued out of order"
        );
    }

    #[test]
    fn the_cache_line_says_evicted_or_fits_and_nothing_otherwise() {
        let line = |c: serde_json::Value| {
            let mut out = String::new();
            cache_line(&mut out, &c);
            out
        };
        let evicted = line(
            json!({"host_payload_bytes": 57_671_680, "llc_bytes": 503_316_480u64,
                                  "fits_llc": true, "evicted_before_each": true}),
        );
        assert!(
            evicted.starts_with("cache: each side evicted its host payload (55.0 MiB)"),
            "{evicted}"
        );
        let fits = line(
            json!({"host_payload_bytes": 57_671_680, "llc_bytes": 503_316_480u64,
                               "fits_llc": true, "evicted_before_each": false}),
        );
        assert!(
            fits.contains("(55.0 MiB) fits in this host's 480 MiB last-level cache"),
            "{fits}"
        );
        for quiet in [
            json!({"host_payload_bytes": 704_643_072u64, "llc_bytes": 503_316_480u64,
                   "fits_llc": false, "evicted_before_each": false}),
            json!({"host_payload_bytes": 1024, "llc_bytes": null, "fits_llc": null,
                   "evicted_before_each": false}),
        ] {
            assert_eq!(line(quiet), "");
        }
    }
}

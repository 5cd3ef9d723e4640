//! The spec's three sentences for the talk, each filled from the measurements that answer it,
//! with the pattern ids and files it rests on. A figure that is missing is said to be missing,
//! with the pattern to run; one measured on one host says so.

use std::collections::BTreeMap;

use serde::Serialize;

use super::axis::bytes_label;
use super::evidence::sources;
use super::lowlevel::{LowPoint, Transport};
use super::select::median;
use super::{token_gap, Inputs, Settings};

/// One sentence, filled.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sentence {
    /// `l1-transfer`, `l2-slow-start` or `l0-latency`.
    pub id: &'static str,
    /// The sentence as the spec writes it, with its blanks.
    pub template: &'static str,
    /// The sentence filled from the data.
    pub text: String,
    /// The figures in it (names carry their units).
    pub figures: BTreeMap<String, f64>,
    /// Plan patterns its figures come from.
    pub pattern_ids: Vec<String>,
    /// Files or MLflow runs its figures come from.
    pub sources: Vec<String>,
    /// Patterns to run for what it lacks.
    pub to_run: Vec<String>,
    /// True when every figure in it was measured on the nodes (none on one host, none missing).
    pub on_nodes: bool,
}

impl Sentence {
    fn new(id: &'static str, template: &'static str) -> Sentence {
        Sentence {
            id,
            template,
            text: String::new(),
            figures: BTreeMap::new(),
            pattern_ids: Vec::new(),
            sources: Vec::new(),
            to_run: Vec::new(),
            on_nodes: true,
        }
    }

    /// Records the points a figure came from.
    fn rests_on(&mut self, pts: &[&LowPoint]) {
        let ids = pts.iter().filter_map(|p| p.pattern_id.as_deref());
        self.pattern_ids = sources(self.pattern_ids.iter().map(String::as_str).chain(ids));
        let files = pts.iter().map(|p| p.source.as_str());
        self.sources = sources(self.sources.iter().map(String::as_str).chain(files));
        if pts.iter().any(|p| p.loopback) {
            self.on_nodes = false;
        }
    }

    /// Records what is missing and the patterns that would supply it.
    fn lacks(&mut self, ids: Vec<String>) {
        self.on_nodes = false;
        self.to_run.extend(ids);
    }
}

/// The three sentences, in the spec's order.
pub fn all(inputs: &Inputs, s: &Settings) -> Vec<Sentence> {
    vec![
        l1_transfer(inputs, s),
        l2_slow_start(inputs, s),
        l0_latency(inputs, s),
    ]
}

/// `its threads waited up to 45 % of the timed span for a CPU`, where any of `pts` waited
/// enough to bend its latencies.
fn cpu_wait(pts: &[&LowPoint]) -> Option<String> {
    let worst = pts.iter().filter_map(|p| p.cpu_wait_pct).reduce(f64::max)?;
    (worst >= crate::run::sched::WAITING_NOTABLE_PCT)
        .then(|| format!("its threads waited up to {worst:.0} % of the timed span for a CPU"))
}

/// `its payload fit in the last-level cache ...`, where any of `pts` ran back to back with a
/// payload the CPU's cache could hold.
fn cache_warm(pts: &[&LowPoint]) -> Option<String> {
    pts.iter().any(|p| p.cache_warm == Some(true)).then(|| {
        "its payload fit in the last-level cache back to back, which a transfer after a pause \
         does not find (--cold-cache evicts it)"
            .to_string()
    })
}

/// A figure with one decimal and its unit.
fn fig(v: f64, unit: &str) -> String {
    format!("{v:.1} {unit}")
}

/// The median of `f` over the points of `tool`, with those points.
fn by_tool<'a>(
    pts: &[&'a LowPoint],
    tool: &str,
    f: impl Fn(&LowPoint) -> Option<f64>,
) -> Option<(f64, Vec<&'a LowPoint>)> {
    let mine: Vec<&LowPoint> = pts.iter().copied().filter(|p| p.tool == tool).collect();
    let v = median(&mine.iter().filter_map(|p| f(p)).collect::<Vec<_>>())?;
    Some((v, mine))
}

/// The stock tool's figure first, kvxfer's beside it: (headline tool, headline, twin).
fn headline<'a>(
    pts: &[&'a LowPoint],
    stock: &str,
    f: impl Fn(&LowPoint) -> Option<f64> + Copy,
) -> Option<(String, f64, Option<f64>, Vec<&'a LowPoint>)> {
    let own = by_tool(pts, "kvxfer", f);
    match (by_tool(pts, stock, f), own) {
        (Some((v, mut a)), Some((k, b))) => {
            a.extend(b);
            Some((stock.to_string(), v, Some(k), a))
        }
        (Some((v, a)), None) => Some((stock.to_string(), v, None, a)),
        (None, Some((k, b))) => Some(("kvxfer".to_string(), k, None, b)),
        (None, None) => None,
    }
}

const L1: &str = "Measured directly with nixlbench, a KV-cache of 12K tokens (672 MB) takes XX ms \
                  over EFA (libfabric) and YY ms over TCP (UCX).";

/// "A KV-cache of 12K tokens (672 MB) takes XX ms over EFA and YY ms over TCP."
fn l1_transfer(inputs: &Inputs, s: &Settings) -> Sentence {
    let mut out = Sentence::new("l1-transfer", L1);
    let bytes = s.gap_tokens * s.bytes_per_token;
    let what = format!(
        "a KV-cache of {}K tokens ({} MB)",
        s.gap_tokens / 1000,
        bytes_label(bytes as f64).trim_end_matches('M')
    );
    let (mut measured, mut missing, mut tools) = (Vec::new(), Vec::new(), Vec::new());
    for (t, name, lib) in [
        (Transport::Efa, "EFA", "libfabric"),
        (Transport::Tcp, "TCP", "UCX"),
    ] {
        let pts: Vec<&LowPoint> = inputs
            .low
            .iter()
            .filter(|p| p.layer == "L1" && p.transport == t && p.size == bytes)
            .filter(|p| p.concurrency.unwrap_or(1) == 1 && p.transfer_time_ms.is_some())
            .collect();
        let Some((tool, v, twin, used)) = headline(&pts, "nixlbench", |p| p.transfer_time_ms)
        else {
            let ids = s.catalogue.ids("nixlbench", t.name(), Some(bytes), Some(1));
            missing.push((format!("{name} ({lib})"), ids.join(", ")));
            out.lacks(ids);
            continue;
        };
        out.figures
            .insert(format!("transfer_ms_{}_{tool}", t.name()), v);
        let mut detail = vec![lib.to_string()];
        if let Some(k) = twin {
            out.figures
                .insert(format!("transfer_ms_{}_kvxfer", t.name()), k);
            detail.push(format!("kvxfer {}", fig(k, "ms")));
        }
        detail.extend(sources(used.iter().filter_map(|p| p.pattern_id.as_deref())));
        if used.iter().any(|p| p.loopback) {
            detail.push("on one host, not measured on the nodes".into());
        }
        detail.extend(cpu_wait(&used));
        detail.extend(cache_warm(&used));
        out.rests_on(&used);
        if !tools.contains(&tool) {
            tools.push(tool);
        }
        measured.push(format!(
            "{} over {name} ({})",
            fig(v, "ms"),
            detail.join("; ")
        ));
    }
    out.text = if measured.is_empty() {
        let runs: Vec<String> = missing
            .iter()
            .map(|(n, ids)| format!("{ids} over {n}"))
            .collect();
        format!(
            "A{} is not measured directly yet: run {}.",
            &what[1..],
            runs.join(" and ")
        )
    } else {
        let mut t = format!(
            "Measured directly with {}, {what} takes {}",
            tools.join(" and "),
            measured.join(" and ")
        );
        for (n, ids) in &missing {
            t.push_str(&format!("; over {n} it is not measured yet: run {ids}"));
        }
        t.push('.');
        t
    };
    out
}

const L2: &str = "With KVBench separating TCP slow start, the first transfer pays ZZ ms more, the \
                  main cause of the gap to the theoretical time.";

/// The parts of a TCP profile's first transfer beyond the theoretical time, largest first.
fn first_transfer_parts(p: &LowPoint) -> Vec<(&'static str, f64)> {
    let Some(prof) = &p.profile else {
        return Vec::new();
    };
    let first = prof.cold_excess_ms.or(prof.slow_start_ms);
    let mut parts: Vec<(&'static str, f64)> = [
        (
            "slow start and MR warm-up (first transfer over warm)",
            first,
        ),
        ("per-descriptor cost", prof.descriptors_ms),
        ("protocol, copies and path rate", prof.protocol_ms),
        ("memory registration", prof.registration_ms),
    ]
    .into_iter()
    .filter_map(|(n, v)| v.map(|v| (n, v)))
    .collect();
    parts.sort_by(|a, b| b.1.total_cmp(&a.1));
    parts
}

/// "The first transfer pays ZZ ms more, the main cause of the gap to the theoretical time."
fn l2_slow_start(inputs: &Inputs, s: &Settings) -> Sentence {
    let mut out = Sentence::new("l2-slow-start", L2);
    let bytes = s.gap_tokens * s.bytes_per_token;
    let p = inputs
        .low
        .iter()
        .filter(|p| p.transport == Transport::Tcp && p.bench == "kv_profile")
        .filter(|p| {
            p.profile
                .as_ref()
                .is_some_and(|q| q.cold_excess_ms.or(q.slow_start_ms).is_some())
        })
        .min_by_key(|p| p.size.abs_diff(bytes));
    let Some(p) = p else {
        let ids = s.catalogue.profile_run("tcp", bytes, "").pattern_ids;
        out.text = format!(
            "What the first transfer over TCP pays beyond a warm one is not measured yet: run {} \
             (the L2 profile: cold against warm, and after idle gaps).",
            ids.join(", ")
        );
        out.lacks(ids);
        return out;
    };
    let prof = p.profile.clone().unwrap_or_default();
    let extra = prof.cold_excess_ms.or(prof.slow_start_ms).unwrap_or(0.0);
    let theoretical = p.size as f64 / (s.tcp_gbps * 1e9) * 1e3;
    let parts = first_transfer_parts(p);
    let gap: f64 = parts.iter().map(|x| x.1).sum();
    out.figures.insert("first_transfer_extra_ms".into(), extra);
    out.figures.insert("theoretical_ms".into(), theoretical);
    out.figures.insert("gap_parts_ms".into(), gap);
    if let Some(idle) = prof.slow_start_ms {
        out.figures.insert("after_idle_extra_ms".into(), idle);
    }
    out.rests_on(&[p]);
    let main = parts.first().is_some_and(|x| x.0.starts_with("slow start"));
    let verdict = if main {
        "the main cause".to_string()
    } else {
        let (n, v) = parts[0];
        format!("not the main cause: {n} is larger, {}", fig(v, "ms"))
    };
    let mut notes = vec![p.pattern_id.clone().unwrap_or_else(|| p.source.clone())];
    if let Some(idle) = prof.slow_start_ms.filter(|_| prof.cold_excess_ms.is_some()) {
        notes.push(format!("after an idle gap {} more", fig(idle, "ms")));
    }
    if p.loopback {
        notes.push("on one host, not measured on the nodes".into());
    }
    notes.extend(cpu_wait(&[p]));
    notes.extend(cache_warm(&[p]));
    if p.size != bytes {
        let ids = s.catalogue.profile_run("tcp", bytes, "").pattern_ids;
        notes.push(format!("not the 12K cache: run {}", ids.join(", ")));
        out.lacks(ids);
    }
    out.text = format!(
        "With the L2 profile (kvxfer kv profile, KVBench's twin) separating TCP slow start, the \
         first transfer of {} pays {} more than a warm one ({}): {:.0} % of the {} its parts \
         add beyond the theoretical {} at {} GB/s, {verdict}.",
        bytes_label(p.size as f64),
        fig(extra, "ms"),
        notes.join("; "),
        100.0 * extra / gap.max(f64::MIN_POSITIVE),
        fig(gap, "ms"),
        fig(theoretical, "ms"),
        s.tcp_gbps
    );
    out
}

const L0: &str = "fi_pingpong measures a pure network latency of XX us; most of TTFT is vLLM's \
                  prefill and proxy overhead.";

/// The L0 latency: the smallest size's one-way p50 over the first transport measured.
fn latency(inputs: &Inputs) -> Option<(Transport, Vec<&LowPoint>)> {
    [Transport::Efa, Transport::Tcp, Transport::Shm]
        .into_iter()
        .find_map(|t| {
            let pts: Vec<&LowPoint> = inputs
                .low
                .iter()
                .filter(|p| p.layer == "L0" && p.transport == t && p.latency_p50_us.is_some())
                .collect();
            let small = pts.iter().map(|p| p.size).min()?;
            Some((t, pts.into_iter().filter(|p| p.size == small).collect()))
        })
}

/// "fi_pingpong measures XX us; most of TTFT is prefill and proxy overhead."
fn l0_latency(inputs: &Inputs, s: &Settings) -> Sentence {
    let mut out = Sentence::new("l0-latency", L0);
    let first = match latency(inputs)
        .and_then(|(t, pts)| Some((t, headline(&pts, "fi_pingpong", |p| p.latency_p50_us)?)))
    {
        Some((t, (tool, v, twin, used))) => {
            out.figures.insert(format!("latency_us_{}", t.name()), v);
            let mut detail = vec![format!(
                "{} B one way, p50, over {}",
                used[0].size,
                t.name()
            )];
            if let Some(k) = twin {
                out.figures
                    .insert(format!("latency_us_{}_kvxfer", t.name()), k);
                detail.push(format!("kvxfer {}", fig(k, "µs")));
            }
            detail.extend(sources(used.iter().filter_map(|p| p.pattern_id.as_deref())));
            if t != Transport::Efa || used.iter().any(|p| p.loopback) {
                detail.push("not the nodes' EFA".into());
                out.lacks(s.catalogue.ids("fi_pingpong", "efa", None, None));
            }
            detail.extend(cpu_wait(&used));
            out.rests_on(&used);
            format!(
                "{tool} measures a pure network latency of {} ({})",
                fig(v, "µs"),
                detail.join("; ")
            )
        }
        None => {
            let ids = s.catalogue.ids("fi_pingpong", "efa", None, None);
            let text = format!(
                "The pure network latency is not measured yet (run {})",
                ids.join(", ")
            );
            out.lacks(ids);
            text
        }
    };
    out.text = format!("{first}; {}.", ttft_split(inputs, s, &mut out));
    out
}

/// TTFT at 12K tokens split into prefill, transfer and the rest (vLLM and proxy overhead).
fn ttft_split(inputs: &Inputs, s: &Settings, out: &mut Sentence) -> String {
    let Some(d) = ["efa", "tcp"]
        .iter()
        .find_map(|b| token_gap::decompose(inputs, s, b))
    else {
        out.on_nodes = false;
        return "TTFT at 12K tokens with a prefill estimate (a unified run) is not in the E2E data"
            .into();
    };
    out.figures.insert("ttft_ms".into(), d.ttft_ms);
    out.figures.insert("prefill_ms".into(), d.prefill_ms);
    let Some(t) = d.measured_transfer_ms else {
        let ids = s
            .catalogue
            .ids("nixlbench", &d.backend, Some(d.kv_bytes), Some(1));
        let text = format!(
            "at {} tokens over {} TTFT {} holds {} of prefill; the rest cannot be told from the \
             transfer until that is measured (run {})",
            d.tokens,
            d.backend,
            fig(d.ttft_ms, "ms"),
            fig(d.prefill_ms, "ms"),
            ids.join(", ")
        );
        out.lacks(ids);
        return text;
    };
    let overhead = d.ttft_ms - t - d.prefill_ms;
    out.figures.insert("transfer_ms".into(), t);
    out.figures.insert("overhead_ms".into(), overhead);
    format!(
        "at {} tokens over {} TTFT {} is {} of prefill ({}), {} of transfer and {} of vLLM and \
         proxy overhead: prefill and overhead are {:.0} % of it",
        d.tokens,
        d.backend,
        fig(d.ttft_ms, "ms"),
        fig(d.prefill_ms, "ms"),
        d.prefill_source,
        fig(t, "ms"),
        fig(overhead, "ms"),
        100.0 * (d.prefill_ms + overhead) / d.ttft_ms
    )
}

#[cfg(test)]
mod tests;

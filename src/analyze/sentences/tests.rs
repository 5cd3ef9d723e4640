//! Each sentence's numbers against the points they come from; what is missing is said, with
//! the pattern to run, never a placeholder.

use super::*;
use crate::analyze::e2e::{Dist, E2eRecord, Mode};
use crate::analyze::lowlevel::KvProfile;

const KV12K: u64 = 12_288 * 57_344;

fn point(tool: &str, t: Transport, layer: &str, size: u64, id: &str) -> LowPoint {
    LowPoint {
        source: format!("{id}.{tool}.json"),
        tool: tool.into(),
        bench: "xfer".into(),
        layer: layer.into(),
        pattern_id: Some(id.into()),
        transport: t,
        concurrency: Some(1),
        size,
        ..LowPoint::default()
    }
}

fn transfer(tool: &str, t: Transport, ms: f64) -> LowPoint {
    let id = format!("pll-nixlbench-{}-672m", t.name());
    let mut p = point(tool, t, "L1", KV12K, &id);
    p.transfer_time_ms = Some(ms);
    p
}

fn rec(backend: &str, ttft: f64) -> E2eRecord {
    E2eRecord {
        source: format!("{backend}.json"),
        mode: Some(if backend == "none" {
            Mode::Unified
        } else {
            Mode::Disaggregated
        }),
        backend: Some(backend.into()),
        prompt_tokens: Some(12_288),
        concurrency: Some(1),
        ttft: Dist {
            mean: Some(ttft),
            ..Dist::default()
        },
        ..E2eRecord::default()
    }
}

fn no_blanks(s: &Sentence) {
    for b in ["XX", "YY", "ZZ", "NaN", "inf"] {
        assert!(!s.text.contains(b), "{b} in {}", s.text);
    }
}

#[test]
fn nothing_measured_says_so_and_names_the_patterns() {
    let out = all(&Inputs::default(), &Settings::default());
    assert_eq!(out.len(), 3);
    for s in &out {
        no_blanks(s);
        assert!(!s.on_nodes);
        assert!(s.figures.is_empty(), "{}: {:?}", s.id, s.figures);
        assert!(!s.to_run.is_empty(), "{}", s.id);
    }
    assert!(
        out[0].text.contains("not measured directly yet"),
        "{}",
        out[0].text
    );
    assert!(
        out[0].text.contains("pll-nixlbench-efa-672m"),
        "{}",
        out[0].text
    );
    assert!(
        out[0].text.contains("pll-nixlbench-tcp-672m"),
        "{}",
        out[0].text
    );
    assert!(
        out[1].text.contains("pll-kvbench-ucx-tcp-12k"),
        "{}",
        out[1].text
    );
    assert!(
        out[2].text.contains("pll-fi-pingpong-efa"),
        "{}",
        out[2].text
    );
}

#[test]
fn the_672m_sentence_takes_nixlbench_first_with_kvxfer_beside() {
    let i = Inputs {
        low: vec![
            transfer("nixlbench", Transport::Efa, 151.2),
            transfer("kvxfer", Transport::Efa, 150.0),
            transfer("kvxfer", Transport::Tcp, 243.0),
        ],
        ..Inputs::default()
    };
    let s = &all(&i, &Settings::default())[0];
    no_blanks(s);
    assert_eq!(s.figures["transfer_ms_efa_nixlbench"], 151.2);
    assert_eq!(s.figures["transfer_ms_efa_kvxfer"], 150.0);
    assert_eq!(s.figures["transfer_ms_tcp_kvxfer"], 243.0);
    assert!(s.text.starts_with("Measured directly with nixlbench and kvxfer, a KV-cache of 12K tokens (672 MB) takes 151.2 ms over EFA (libfabric; kvxfer 150.0 ms; pll-nixlbench-efa-672m) and 243.0 ms over TCP"), "{}", s.text);
    assert!(s.on_nodes);
    assert_eq!(
        s.pattern_ids,
        ["pll-nixlbench-efa-672m", "pll-nixlbench-tcp-672m"]
    );
    let mut j = i.clone();
    j.low.pop();
    j.low[0].loopback = true;
    j.low[0].cpu_wait_pct = Some(45.2);
    let s = &all(&j, &Settings::default())[0];
    assert!(
        s.text.contains("on one host, not measured on the nodes; its threads waited up to 45 % of the timed span for a CPU"),
        "{}",
        s.text
    );
    // Below the notable share, nothing is said of it.
    j.low[0].cpu_wait_pct = Some(4.9);
    let s = &all(&j, &Settings::default())[0];
    assert!(!s.text.contains("for a CPU"), "{}", s.text);
    assert!(!s.text.contains("last-level cache"), "{}", s.text);
    // A payload the cache held back to back is named; an evicted one (false) is not.
    j.low[0].cache_warm = Some(true);
    let s = &all(&j, &Settings::default())[0];
    assert!(
        s.text
            .contains("its payload fit in the last-level cache back to back"),
        "{}",
        s.text
    );
    j.low[0].cache_warm = Some(false);
    let s = &all(&j, &Settings::default())[0];
    assert!(!s.text.contains("last-level cache"), "{}", s.text);
    assert!(
        s.text
            .contains("over TCP (UCX) it is not measured yet: run pll-nixlbench-tcp-672m"),
        "{}",
        s.text
    );
    assert!(!s.on_nodes);
}

#[test]
fn the_slow_start_sentence_weighs_the_first_transfer_against_the_other_parts() {
    let mut p = point(
        "kvxfer",
        Transport::Tcp,
        "L2",
        KV12K,
        "pll-kvbench-ucx-tcp-12k",
    );
    p.bench = "kv_profile".into();
    p.profile = Some(KvProfile {
        cold_excess_ms: Some(450.0),
        slow_start_ms: Some(12.0),
        descriptors_ms: Some(100.0),
        protocol_ms: Some(50.0),
        ..KvProfile::default()
    });
    let mut i = Inputs {
        low: vec![p],
        ..Inputs::default()
    };
    let s = &all(&i, &Settings::default())[1];
    no_blanks(s);
    assert_eq!(s.figures["first_transfer_extra_ms"], 450.0);
    assert_eq!(s.figures["gap_parts_ms"], 600.0);
    assert!(s.text.contains("pays 450.0 ms more"), "{}", s.text);
    assert!(
        s.text.contains("after an idle gap 12.0 ms more"),
        "{}",
        s.text
    );
    assert!(s.on_nodes && s.to_run.is_empty(), "{:?}", s.to_run);
    assert!(s.text.contains("75 % of the 600.0 ms"), "{}", s.text);
    assert!(s.text.ends_with("the main cause."), "{}", s.text);
    let theoretical = KV12K as f64 / 2.9e9 * 1e3;
    assert!((s.figures["theoretical_ms"] - theoretical).abs() < 1e-9);
    // A profile of another prompt length stands in, and says which to run.
    let mut j = i.clone();
    j.low[0].size = 256 * 57_344;
    let s = &all(&j, &Settings::default())[1];
    assert!(s.text.contains("first transfer of 14M"), "{}", s.text);
    assert!(
        s.text
            .contains("not the 12K cache: run pll-kvbench-ucx-tcp-12k"),
        "{}",
        s.text
    );
    assert!(!s.on_nodes);
    i.low[0].profile.as_mut().unwrap().descriptors_ms = Some(900.0);
    let s = &all(&i, &Settings::default())[1];
    assert!(
        s.text
            .contains("not the main cause: per-descriptor cost is larger, 900.0 ms"),
        "{}",
        s.text
    );
}

#[test]
fn the_latency_sentence_splits_ttft_with_the_measured_transfer() {
    let mut fi = point(
        "fi_pingpong",
        Transport::Efa,
        "L0",
        64,
        "pll-fi-pingpong-efa-msg",
    );
    fi.latency_p50_us = Some(12.3);
    let mut kx = fi.clone();
    kx.tool = "kvxfer".into();
    kx.latency_p50_us = Some(12.0);
    let mut big = fi.clone();
    big.size = 1024;
    big.latency_p50_us = Some(20.0);
    let mut i = Inputs {
        e2e: vec![rec("none", 800.0), rec("efa", 2664.0)],
        low: vec![fi, kx, big],
        ..Inputs::default()
    };
    let s = &all(&i, &Settings::default())[2];
    no_blanks(s);
    assert_eq!(s.figures["latency_us_efa"], 12.3);
    assert_eq!(s.figures["latency_us_efa_kvxfer"], 12.0);
    assert!(
        s.text
            .starts_with("fi_pingpong measures a pure network latency of 12.3 µs (64 B one way"),
        "{}",
        s.text
    );
    assert!(
        s.text.contains("the rest cannot be told from the transfer"),
        "{}",
        s.text
    );
    i.low.push(transfer("nixlbench", Transport::Efa, 150.0));
    let s = &all(&i, &Settings::default())[2];
    assert_eq!(s.figures["overhead_ms"], 2664.0 - 150.0 - 800.0);
    // (800 + 1714) / 2664
    assert!(
        s.text.contains("prefill and overhead are 94 % of it"),
        "{}",
        s.text
    );
    assert!(s.on_nodes, "{:?}", s.to_run);
}

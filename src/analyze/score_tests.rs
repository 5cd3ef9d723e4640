//! The score moves with the evidence: a twin that disagrees, a wrong path or a one-host result,
//! too few samples for the stated percentile, a missing pattern.

use super::*;
use crate::analyze::e2e::{Dist, E2eRecord, Mode};
use crate::analyze::lowlevel::Transport;
use crate::analyze::Analysis;

const KV12K: u64 = 12_288 * 57_344;

fn rec(c: u64, ttft: f64) -> E2eRecord {
    E2eRecord {
        source: format!("p15-tcp-12288-c{c}.json"),
        mode: Some(Mode::Disaggregated),
        backend: Some("tcp".into()),
        prompt_tokens: Some(12_288),
        concurrency: Some(c),
        ttft: Dist {
            mean: Some(ttft),
            ..Dist::default()
        },
        ..E2eRecord::default()
    }
}

/// A many-to-one transfer over tcp at c, by `tool`, under its plan pattern id.
fn xfer(tool: &str, c: u64, ms: f64) -> LowPoint {
    let id = if c == 1 {
        "pll-nixlbench-tcp-672m".to_string()
    } else {
        format!("pll-nixlbench-tcp-672m-c{c}")
    };
    LowPoint {
        source: format!("{id}.{tool}.json"),
        tool: tool.into(),
        bench: "xfer".into(),
        layer: "L1".into(),
        pattern_id: Some(id),
        transport: Transport::Tcp,
        scheme: Some(if c == 1 { "pairwise" } else { "manytoone" }.into()),
        concurrency: Some(c),
        size: KV12K,
        transfer_time_ms: Some(ms),
        bandwidth_gbps: Some(KV12K as f64 * c as f64 / ms / 1e6 / (c as f64).powi(2)),
        samples: 10,
        path: PathCheck::Confirmed {
            devices: vec!["eth0".into()],
        },
        ..LowPoint::default()
    }
}

fn full() -> Inputs {
    Inputs {
        e2e: vec![rec(1, 1000.0), rec(16, 2720.0)],
        low: vec![
            xfer("kvxfer", 1, 300.0),
            xfer("nixlbench", 1, 310.0),
            xfer("kvxfer", 16, 9600.0),
            xfer("nixlbench", 16, 9700.0),
        ],
        ..Inputs::default()
    }
}

fn incast(i: &Inputs) -> ClaimScore {
    scores(&[Analysis::TcpIncast], i, &Settings::default())
        .claims
        .remove(0)
}

fn points(c: &ClaimScore, criterion: &str) -> u32 {
    c.awards
        .iter()
        .find(|a| a.criterion == criterion)
        .unwrap()
        .points
}

#[test]
fn the_rubric_adds_up_to_25_a_claim() {
    assert_eq!(RUBRIC.iter().map(|c| c.points).sum::<u32>(), CLAIM_POINTS);
    assert_eq!(samples_needed(0.5), 10);
    assert_eq!(samples_needed(0.75), 20);
    assert_eq!(samples_needed(0.99), 500);
}

#[test]
fn full_evidence_on_the_nodes_earns_every_point_each_traced() {
    let c = incast(&full());
    assert_eq!(c.score, 25, "{:#?}", c.awards);
    let twin = c
        .awards
        .iter()
        .find(|a| a.criterion == "stock-twin")
        .unwrap();
    assert!(twin
        .sources
        .contains(&"pll-nixlbench-tcp-672m-c16.nixlbench.json".to_string()));
    let runs = c
        .awards
        .iter()
        .find(|a| a.criterion == "runs-present")
        .unwrap();
    assert!(runs.sources.contains(&"p15-tcp-12288-c16.json".to_string()));
}

#[test]
fn a_twin_that_disagrees_costs_the_twin_points() {
    let mut i = full();
    i.low[3].transfer_time_ms = Some(9600.0 * 1.5);
    let c = incast(&i);
    assert_eq!(points(&c, "stock-twin"), 0);
    assert_eq!(c.score, 20);
    // No twin at all: nothing to agree with.
    i.low.retain(|p| p.tool == "kvxfer");
    assert_eq!(points(&incast(&i), "stock-twin"), 0);
}

#[test]
fn one_host_and_wrong_or_unrecorded_paths_lose_their_points() {
    let mut i = full();
    i.low[2].loopback = true;
    assert_eq!(points(&incast(&i), "measured-where"), 3);
    let mut i = full();
    i.low[0].path = PathCheck::WrongPath {
        devices: vec!["lo".into()],
    };
    let c = incast(&i);
    assert_eq!(points(&c, "path-confirmed"), 0);
    let a = c
        .awards
        .iter()
        .find(|a| a.criterion == "path-confirmed")
        .unwrap();
    assert!(a.why.contains("wrong path"), "{}", a.why);
    assert_eq!(a.sources, ["pll-nixlbench-tcp-672m.kvxfer.json"]);
    let mut i = full();
    i.low[1].path = PathCheck::NotConfirmed;
    let a = incast(&i);
    assert_eq!(points(&a, "path-confirmed"), 0);
}

#[test]
fn too_few_samples_for_the_stated_percentile() {
    let mut i = full();
    i.low[2].samples = 8;
    let c = incast(&i);
    assert_eq!(points(&c, "samples"), 0);
    // p99 asks for 500 samples: 200 are too few, 500 enough.
    let mut p = xfer("kvxfer", 1, 300.0);
    p.samples = 200;
    let mut ev = crate::analyze::evidence::ClaimEvidence::at(0.99);
    ev.low("x", vec![&p], Vec::new());
    let s = Settings::default();
    assert_eq!(points(&score_claim("x", &ev, &[], &s), "samples"), 0);
    let mut q = p.clone();
    q.samples = 500;
    let mut ev = crate::analyze::evidence::ClaimEvidence::at(0.99);
    ev.low("x", vec![&q], Vec::new());
    assert_eq!(points(&score_claim("x", &ev, &[], &s), "samples"), 3);
}

#[test]
fn a_missing_pattern_is_named_and_costs_its_share() {
    let mut i = full();
    i.low.retain(|p| p.concurrency == Some(1));
    let c = incast(&i);
    // No c=16 point: no degradation, so neither network need is met; only the E2E one is.
    let runs = c
        .awards
        .iter()
        .find(|a| a.criterion == "runs-present")
        .unwrap();
    assert_eq!(runs.points, 2, "{}", runs.why);
    assert!(
        runs.why.contains("pll-nixlbench-tcp-672m-c16"),
        "{}",
        runs.why
    );
    assert_eq!(points(&c, "measured-where"), 0);
}

#[test]
fn the_baseline_is_the_e2e_results_alone_by_the_same_rubric() {
    let v = validity(&Analysis::ALL, &full(), &Settings::default());
    assert_eq!(v.rubric.len(), RUBRIC.len());
    let base = v
        .baseline
        .claims
        .iter()
        .find(|c| c.analysis == "tcp-incast")
        .unwrap();
    assert_eq!(base.score, 2, "{:#?}", base.awards);
    assert!(v.measured.score > v.baseline.score);
    // Overall: the claims' sum over their maximum, out of 100.
    let sum: u32 = v.measured.claims.iter().map(|c| c.score).sum();
    assert_eq!(v.measured.score, sum);
}

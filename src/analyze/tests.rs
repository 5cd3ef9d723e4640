//! Each analysis's verdict moves when the data says otherwise.

use super::e2e::{Dist, E2eRecord, Mode};
use super::lowlevel::{KvProfile, LowPoint, Transport};
use super::*;

const KV12K: u64 = 12_288 * 57_344;

fn rec(backend: &str, tokens: u64, c: u64, ttft: f64, tpot: f64) -> E2eRecord {
    E2eRecord {
        source: format!("{backend}-{tokens}-{c}"),
        mode: Some(if backend == "none" {
            Mode::Unified
        } else {
            Mode::Disaggregated
        }),
        backend: Some(backend.into()),
        prompt_tokens: Some(tokens),
        concurrency: Some(c),
        ttft: Dist {
            mean: Some(ttft),
            ..Dist::default()
        },
        tpot: Dist {
            mean: Some(tpot),
            ..Dist::default()
        },
        ..E2eRecord::default()
    }
}

fn xfer(t: Transport, size: u64, c: u64, ms: f64, gbps: f64, tiers: usize) -> LowPoint {
    LowPoint {
        source: "x.json".into(),
        tool: "kvxfer".into(),
        bench: "xfer".into(),
        layer: "L1".into(),
        pattern_id: None,
        backend: Some("libfabric".into()),
        transport: t,
        loopback: false,
        scheme: Some(if c == 1 { "pairwise" } else { "manytoone" }.into()),
        concurrency: Some(c),
        size,
        latency_p50_us: Some(ms * 1e3),
        latency_mean_us: Some(ms * 1e3),
        bandwidth_gbps: Some(gbps),
        transfer_time_ms: Some(ms),
        tier_centres_ms: (1..=tiers).map(|k| k as f64 * ms).collect(),
        profile: None,
        samples: 10,
        path: Default::default(),
        cpu_wait_pct: None,
        cache_warm: None,
    }
}

fn ids(a: &Assessment) -> Vec<String> {
    a.needed
        .iter()
        .flat_map(|n| n.pattern_ids.iter().cloned())
        .collect()
}

#[test]
fn tpot_independence_moves_with_the_tpot_gap_and_the_transfers_measured() {
    let s = Settings::default();
    let mut i = Inputs {
        e2e: vec![
            rec("tcp", 4096, 1, 500.0, 12.0),
            rec("efa", 4096, 1, 400.0, 12.1),
        ],
        ..Inputs::default()
    };
    let a = tpot::assess(&i, &s);
    assert_eq!(
        (a.verdict, a.confidence_after),
        (Verdict::Supported, Confidence::Medium)
    );
    assert!(
        ids(&a).contains(&"pll-nixlbench-tcp-672m".to_string()),
        "{:?}",
        a.needed
    );
    let rel = a.key_metrics["tpot_relative_difference"];
    assert!((rel - 0.1 / 12.0).abs() < 1e-12, "{rel}");

    i.low = vec![
        xfer(Transport::Tcp, KV12K, 1, 300.0, 2.3, 1),
        xfer(Transport::Efa, KV12K, 1, 170.0, 4.1, 1),
    ];
    let a = tpot::assess(&i, &s);
    assert_eq!(
        (a.verdict, a.confidence_after),
        (Verdict::Supported, Confidence::High)
    );
    assert_eq!(a.evidence_type, EvidenceType::Measured);
    assert!(a.needed.is_empty());
    assert_eq!(
        a.key_metrics[&format!("kv_transfer_ms_tcp_{KV12K}B")],
        300.0
    );

    i.e2e[1].tpot.mean = Some(15.0);
    let a = tpot::assess(&i, &s);
    assert_eq!(
        (a.verdict, a.confidence_after),
        (Verdict::Contradicted, Confidence::Low)
    );

    i.e2e.truncate(1);
    let a = tpot::assess(&i, &s);
    assert_eq!(a.verdict, Verdict::InsufficientData);
    assert!(a.key_metrics.keys().all(|k| !k.starts_with("tpot_ms")));
}

#[test]
fn tcp_incast_moves_with_the_networks_collapse_and_never_mixes_lengths() {
    let s = Settings::default();
    let mut i = Inputs {
        e2e: vec![
            rec("tcp", 12288, 1, 1000.0, 12.0),
            rec("tcp", 12288, 16, 2720.0, 12.0),
        ],
        ..Inputs::default()
    };
    let a = incast::assess(&i, &s);
    assert_eq!(a.verdict, Verdict::Inconclusive);
    assert!((a.key_metrics["e2e_ttft_c16_over_c1_tcp_12288tok"] - 2.72).abs() < 1e-12);
    assert!(
        ids(&a).contains(&"pll-nixlbench-tcp-672m-c16".to_string()),
        "{:?}",
        a.needed
    );

    i.low = vec![
        xfer(Transport::Tcp, KV12K, 1, 300.0, 2.0, 1),
        xfer(Transport::Tcp, KV12K, 16, 9600.0, 1.0, 4),
    ];
    let a = incast::assess(&i, &s);
    assert_eq!(
        (a.verdict, a.confidence_after),
        (Verdict::Supported, Confidence::High)
    );
    assert_eq!(
        a.key_metrics[&format!("net_bandwidth_c16_over_c1_tcp_{KV12K}B")],
        0.5
    );
    assert_eq!(
        a.key_metrics[&format!("net_time_c16_over_c1_tcp_{KV12K}B")],
        32.0
    );

    // The same figures from one host's loopback: the verdict stands, at most medium.
    for p in &mut i.low {
        p.loopback = true;
    }
    let a = assess(Analysis::TcpIncast, &i, &s);
    assert_eq!(
        (a.verdict, a.confidence_after),
        (Verdict::Supported, Confidence::Medium)
    );
    assert!(a.explanation.contains("loopback"), "{}", a.explanation);
    for p in &mut i.low {
        p.loopback = false;
    }
    assert_eq!(
        assess(Analysis::TcpIncast, &i, &s).confidence_after,
        Confidence::High
    );

    i.low[1].bandwidth_gbps = Some(1.9);
    let a = incast::assess(&i, &s);
    assert_eq!(
        (a.verdict, a.confidence_after),
        (Verdict::Contradicted, Confidence::Low)
    );

    // c=1 at one length and c=16 at another: no E2E ratio at all.
    i.e2e = vec![
        rec("tcp", 4096, 1, 400.0, 12.0),
        rec("tcp", 12288, 16, 2720.0, 12.0),
    ];
    let a = incast::assess(&i, &s);
    assert!(
        a.key_metrics.keys().all(|k| !k.starts_with("e2e_")),
        "{:?}",
        a.key_metrics
    );
}

#[test]
fn token_gap_splits_the_12k_ttft_and_moves_with_the_ratio() {
    let s = Settings::default();
    let theoretical = KV12K as f64 / 2.9e9 * 1e3;
    let ttft = 7.31 * theoretical;
    let mut i = Inputs {
        e2e: vec![
            rec("none", 12288, 1, 1000.0, 12.0),
            rec("tcp", 12288, 1, ttft, 12.0),
        ],
        ..Inputs::default()
    };
    let a = token_gap::assess(&i, &s);
    assert_eq!(
        (a.verdict, a.confidence_after),
        (Verdict::Inconclusive, Confidence::Low)
    );
    assert!((a.key_metrics["ttft_over_theoretical_tcp"] - 7.31).abs() < 1e-9);
    assert!(ids(&a).contains(&"pll-kvbench-ucx-tcp-12k".to_string()));
    assert!(ids(&a).contains(&"pll-nixlbench-tcp-672m".to_string()));

    let mut p = xfer(Transport::Tcp, KV12K, 1, 300.0, 2.3, 1);
    p.profile = Some(KvProfile {
        slow_start_ms: Some(20.0),
        registration_ms: Some(50.0),
        descriptors_ms: Some(5.0),
        ..KvProfile::default()
    });
    i.low = vec![p];
    let a = token_gap::assess(&i, &s);
    assert_eq!(
        (a.verdict, a.confidence_after),
        (Verdict::Supported, Confidence::High)
    );
    let d = token_gap::decompose(&i, &s, "tcp").unwrap();
    // The descriptors are inside the measured transfer; slow start and registration beside it.
    let rest = ttft - 1000.0 - 300.0 - 20.0 - 50.0;
    assert!((d.runtime_overhead_ms.unwrap() - rest).abs() < 1e-9);
    let parts = d.parts();
    let part = |n: &str| parts.iter().find(|p| p.0 == n).map(|p| p.1);
    assert_eq!(part("per-descriptor cost"), Some(5.0));
    let rest_of_transfer = part("protocol, copies, path rate").unwrap();
    assert!((rest_of_transfer - (300.0 - theoretical - 5.0)).abs() < 1e-9);
    let sum: f64 = parts.iter().map(|p| p.1).sum();
    assert!((sum - ttft).abs() < 1e-9, "parts add up to the TTFT");

    // A kv profile of the same bytes: its own descriptor list (p50) is the transfer its
    // per-descriptor cost splits, whatever other xfer runs measured.
    let mut kp = xfer(Transport::Tcp, KV12K, 1, 520.0, 1.4, 1);
    kp.bench = "kv_profile".into();
    kp.layer = "L2".into();
    kp.latency_p50_us = Some(500e3);
    kp.profile = Some(KvProfile {
        descriptors_ms: Some(100.0),
        slow_start_ms: Some(7.0),
        ..KvProfile::default()
    });
    let mut j = i.clone();
    j.low.push(kp);
    let d = token_gap::decompose(&j, &s, "tcp").unwrap();
    assert_eq!(d.measured_transfer_ms, Some(500.0));
    assert_eq!(
        (d.descriptors_ms, d.slow_start_ms),
        (Some(100.0), Some(7.0))
    );
}

/// TTFT at 12K over tcp at the team's 7.31x, unified prefill 1000 ms, a 300 ms transfer whose
/// run gives only registration and the cold first transfer.
fn gap_inputs() -> (Inputs, f64) {
    let theoretical = KV12K as f64 / 2.9e9 * 1e3;
    let ttft = 7.31 * theoretical;
    let mut p = xfer(Transport::Tcp, KV12K, 1, 300.0, 2.3, 1);
    p.profile = Some(KvProfile {
        registration_ms: Some(50.0),
        cold_excess_ms: Some(30.0),
        ..KvProfile::default()
    });
    let i = Inputs {
        e2e: vec![
            rec("none", 12288, 1, 1000.0, 12.0),
            rec("tcp", 12288, 1, ttft, 12.0),
        ],
        low: vec![p],
        ..Inputs::default()
    };
    (i, theoretical)
}

#[test]
fn token_gap_needs_the_profile_for_high_and_the_ratio_for_support() {
    let s = Settings::default();
    let (mut i, theoretical) = gap_inputs();
    let ttft = 7.31 * theoretical;
    let with_prefill = Settings {
        prefill_ms: Some(400.0),
        ..Settings::default()
    };
    let d = token_gap::decompose(&i, &with_prefill, "tcp").unwrap();
    assert!((d.gap_ms - (ttft - 400.0)).abs() < 1e-9);

    // Registration alone (any xfer run gives it) is not the L2 profile.
    let a = token_gap::assess(&i, &s);
    assert_eq!(
        (a.verdict, a.confidence_after),
        (Verdict::Supported, Confidence::Medium)
    );
    assert_eq!(
        a.key_metrics["cold_first_transfer_slow_start_mr_warm_up_ms_tcp"],
        30.0
    );

    // The ratio holds over efa, not over tcp: the claim names no backend, efa bears it out.
    i.e2e.push(rec(
        "efa",
        12288,
        1,
        7.31 * KV12K as f64 / 4.4e9 * 1e3,
        12.0,
    ));
    i.e2e[1].ttft.mean = Some(3.0 * theoretical);
    let a = token_gap::assess(&i, &s);
    assert_eq!(
        a.verdict,
        Verdict::Inconclusive,
        "efa holds, its transfer unmeasured"
    );
    i.e2e.pop();
    let a = token_gap::assess(&i, &s);
    assert_eq!(a.verdict, Verdict::Contradicted);

    i.e2e.remove(0);
    let a = token_gap::assess(&i, &s);
    assert_eq!(a.verdict, Verdict::InsufficientData, "no prefill estimate");
    let a = token_gap::assess(&i, &with_prefill);
    assert_ne!(
        a.verdict,
        Verdict::InsufficientData,
        "--prefill-ms stands in for it"
    );
}

#[test]
fn staircase_moves_with_the_tiers_of_the_efa_incast() {
    let s = Settings::default();
    let mut i = Inputs::default();
    let a = staircase::assess(&i, &s);
    assert_eq!(a.verdict, Verdict::InsufficientData);
    assert!(ids(&a).contains(&"pll-nixlbench-efa-672m-c8".to_string()));

    i.low = [1, 4, 8, 16]
        .into_iter()
        .map(|c| {
            xfer(
                Transport::Efa,
                KV12K,
                c,
                160.0 * c as f64,
                4.0,
                c.min(4) as usize,
            )
        })
        .collect();
    let a = staircase::assess(&i, &s);
    assert_eq!(
        (a.verdict, a.confidence_after),
        (Verdict::Supported, Confidence::High)
    );
    assert_eq!(a.key_metrics["net_tiers_efa_c16"], 4.0);
    assert!(ids(&a).is_empty(), "no network run missing: {:?}", a.needed);

    i.low[3].tier_centres_ms.truncate(2);
    let a = staircase::assess(&i, &s);
    assert_eq!(
        (a.verdict, a.confidence_after),
        (Verdict::Contradicted, Confidence::Low)
    );

    // The E2E raw samples set the tiers to expect: two waves at c=16 make two tiers right.
    let mut r = rec("efa", 12288, 16, 300.0, 12.0);
    r.ttft.raw = (0..16)
        .map(|k| if k % 2 == 0 { 100.0 } else { 200.0 })
        .collect();
    i.e2e = vec![rec("efa", 12288, 1, 100.0, 12.0), r];
    let a = staircase::assess(&i, &s);
    assert_eq!(a.key_metrics["e2e_ttft_tiers_efa_c16"], 2.0);
    assert_eq!(a.verdict, Verdict::Supported);
}

//! The xfer document's arithmetic on synthetic reports with known times.

use std::time::Duration;

use super::*;
use crate::bench::xfer::IterSample;
use crate::fabric::EndpointType;
use crate::peer::Side;
use crate::run::xfer::{ConcurrencyMode, Scheme};
use serde_json::json;

fn cfg(op: XferOp) -> XferConfig {
    XferConfig {
        backend: crate::run::xfer::XferBackend::Libfabric,
        provider: "tcp".into(),
        endpoint: EndpointType::Rdm,
        domain: None,
        op,
        size: 1_000_000,
        block: Some(250_000),
        window: 4,
        concurrency: 4,
        mode: ConcurrencyMode::Endpoints,
        scheme: Scheme::ManyToOne,
        iterations: crate::stats::Count::Fixed(2),
        warmup: 1,
        verify: false,
        reuse: false,
        cold_cache: false,
        timeout: Duration::from_secs(1),
        idle_before_timed: Duration::ZERO,
        rails: None,
        stripe_threshold: crate::run::xfer::DEFAULT_STRIPE_THRESHOLD,
        mem: Default::default(),
        open: None,
        rounds: 1,
        cpus: Default::default(),
    }
}

fn plan() -> XferPlan {
    XferPlan {
        block: 250_000,
        chunks: 4,
        workers: 4,
        transfers_per_worker: 1,
        bytes: 4_000_000,
        available: None,
    }
}

fn sample(local_ms: f64, confirmed_ms: f64) -> IterSample {
    IterSample {
        prep_ns: 1_000,
        post_ns: 20_000,
        local_ns: vec![(local_ms * 1e6) as u64],
        confirmed_ns: vec![(confirmed_ms * 1e6) as u64],
        chunks: 4,
        busy_retries: 0,
    }
}

/// Four workers: two finish at ~1 ms, two at ~2 ms (a two-step staircase); the first
/// transfer after connecting took 10 ms.
fn reports() -> Vec<WorkerReport> {
    let finish = [1.0, 2.0, 1.02, 2.02];
    (0..4)
        .map(|w| WorkerReport {
            worker: w,
            target_worker: w,
            transfers: 1,
            connect_ns: 5_000_000,
            registration_first_ns: 40_000,
            registration_cached_ns: 4_000,
            target_registration_first_ns: 30_000,
            target_registration_cached_ns: 3_000,
            // Half the initiators' buffers in huge pages; the target's regions unknown.
            pages: Some(Backing {
                mapped_bytes: 4 << 20,
                huge_bytes: if w % 2 == 0 { 4 << 20 } else { 0 },
            }),
            target_pages: None,
            cold: Some(sample(9.0, 10.0)),
            timed: vec![
                sample(finish[w] - 0.1, finish[w]),
                sample(finish[w] - 0.1, finish[w]),
            ],
            verified_bytes: 0,
            environment: Default::default(),
            registration: None,
            staging_ns: Vec::new(),
            rails: None,
            target_path: None,
            stopped_by: None,
            blocks: None,
            open: Vec::new(),
            rounds: Vec::new(),
            // Each initiator worker waited 10 ms of its 100 ms span, worker 3 went unread;
            // the targets' threads were not read.
            sched: (w != 3).then_some(crate::run::sched::ThreadSched {
                span_ns: 100_000_000,
                on_cpu_ns: 90_000_000,
                waiting_ns: 10_000_000,
                voluntary_switches: 0,
                involuntary_switches: 7,
                migrations: Some(w as u64),
            }),
            target_sched: None,
        })
        .collect()
}

#[test]
fn bandwidth_spans_tiers_and_costs() {
    let doc = build(
        &cfg(XferOp::Write),
        &plan(),
        Side::Initiator,
        &reports(),
        None,
    );
    let r = &doc.results[0];
    // Each iteration lasts until the slowest confirmation: 2.02 ms; 4 MB per iteration.
    let spans = r.extra["iteration_span_ms"].as_array().unwrap();
    assert_eq!(spans.len(), 2);
    assert!((spans[0].as_f64().unwrap() - 2.02).abs() < 1e-6);
    let want = 8_000_000.0 / 4.04e-3 / 1e9;
    assert!(
        (r.bandwidth_gbps.unwrap() - want).abs() < 1e-6,
        "{:?}",
        r.bandwidth_gbps
    );
    assert!((r.extra["bandwidth_gibps"].as_f64().unwrap() - want * 1e9 / GIB).abs() < 1e-6);
    // Two tiers: workers 0 and 2 near 1 ms, 1 and 3 near 2 ms.
    let tiers = r.extra["tiers"].as_array().unwrap();
    assert_eq!(tiers.len(), 2);
    assert_eq!(tiers[0]["members"], json!([0, 2]));
    assert_eq!(tiers[1]["members"], json!([1, 3]));
    assert!((tiers[1]["centre_ms"].as_f64().unwrap() - 2.01).abs() < 1e-3);
    assert_eq!(r.extra["tiers_per_iteration"], json!([2, 2]));
    // nixlbench: span / (iterations x blocks) per block.
    let nx = &r.extra["nixlbench"];
    assert!((nx["avg_lat_us"].as_f64().unwrap() - 4040.0 / 8.0).abs() < 0.01);
    assert_eq!(nx["batch_size"], 4);
    assert!((nx["post_us"]["avg"].as_f64().unwrap() - 20.0).abs() < 0.1);
    // Costs: means over the workers, the cold transfer against the median.
    let c = &r.extra["costs"];
    assert!((c["registration_first_us"].as_f64().unwrap() - 40.0).abs() < 1e-9);
    assert!((c["registration_cached_us"].as_f64().unwrap() - 4.0).abs() < 1e-9);
    assert_eq!(c["registration_huge_page_pct"], json!(50.0));
    assert!(c["target_registration_huge_page_pct"].is_null());
    assert!((c["first_transfer_us"].as_f64().unwrap() - 10_000.0).abs() < 1e-6);
    let steady = c["steady_state_p50_us"].as_f64().unwrap();
    assert!((steady - 1020.0).abs() < 2.0, "{steady}");
    let ratio = c["first_over_steady"].as_f64().unwrap();
    assert!((ratio - 10_000.0 / steady).abs() < 1e-9);
    // The latency summary is of end-to-end (confirmed) times.
    let lat = r.latency_us.unwrap();
    assert!((lat.max - 2020.0).abs() < 2.0 && (lat.min - 1000.0).abs() < 1.0);
    let init = &r.extra["initiator_side_us"];
    assert!((init["min"].as_f64().unwrap() - 900.0).abs() < 1.0);
    // Each stream carries its own summary: worker 1 finished at 2 ms both times.
    let w1 = &r.extra["workers"][1];
    assert_eq!(w1["worker"], 1);
    assert!((w1["latency_us"]["p50"].as_f64().unwrap() - 2000.0).abs() < 2.0);
    assert_eq!(w1["completion_ms"], json!([2.0, 2.0]));
    // Scheduling: the three workers read, summed; no target side.
    let s = &r.extra["scheduling"]["initiator"];
    assert_eq!(s["workers"], 3);
    assert_eq!(s["waiting_ms"], json!(30.0));
    assert_eq!(s["waiting_pct"], json!(10.0));
    assert_eq!(s["involuntary_switches"], 21);
    assert_eq!(s["migrations"], 3);
    assert!(r.extra["scheduling"].get("target").is_none());
    assert_eq!(doc.status, Status::Complete);
}

#[test]
fn reads_are_timed_by_local_completion_and_have_no_confirmed_figure() {
    let doc = build(
        &cfg(XferOp::Read),
        &plan(),
        Side::Initiator,
        &reports(),
        None,
    );
    let r = &doc.results[0];
    assert!(r.extra.get("target_confirmed_us").is_none());
    assert!((r.latency_us.unwrap().min - 900.0).abs() < 1.0);
}

#[test]
fn no_reports_give_a_failed_document_without_figures() {
    let doc = build(&cfg(XferOp::Write), &plan(), Side::Target, &[], None);
    assert_eq!(doc.status, Status::Failed);
    let r = &doc.results[0];
    assert!(r.bandwidth_gbps.is_none() && r.latency_us.is_none() && r.histogram.is_none());
    assert!(r.extra["costs"]["first_transfer_us"].is_null());
}

#[test]
fn one_pace_states_its_blocks_and_paces_that_differ_state_the_samples_alone() {
    // Blocks wider than the samples (which span 1 to 2.02 ms): the stated interval is theirs.
    let b = crate::stats::BlockInterval {
        count: 10,
        iterations_each: 24,
        p50_interval_us: [900.0, 3000.0],
        coverage: 0.978,
    };
    let mut rs = reports();
    for r in &mut rs {
        r.blocks = Some(b);
    }
    let doc = build(&cfg(XferOp::Write), &plan(), Side::Initiator, &rs, None);
    let p = &doc.results[0].extra["precision"];
    assert_eq!(p["blocks"]["count"], 10, "{p}");
    assert_eq!(p["p50_interval_us"], json!([900.0, 3000.0]), "{p}");
    assert!(p["samples_p50_interval_us"].is_array(), "{p}");
    // Workers of two processes whose blocks differ: no one interval over blocks holds.
    rs[3].blocks = Some(crate::stats::BlockInterval { count: 11, ..b });
    let doc = build(&cfg(XferOp::Write), &plan(), Side::Initiator, &rs, None);
    let p = &doc.results[0].extra["precision"];
    assert!(p.get("blocks").is_none(), "{p}");
    assert!(p.get("samples_p50_interval_us").is_none(), "{p}");
    assert!(p["p50_interval_us"][1].as_f64().unwrap() < 3000.0, "{p}");
}

/// `reports()` with every time scaled by `k`.
fn scaled(k: f64) -> Vec<WorkerReport> {
    let mut rs = reports();
    for r in &mut rs {
        for s in &mut r.timed {
            s.local_ns
                .iter_mut()
                .for_each(|v| *v = (*v as f64 * k) as u64);
            s.confirmed_ns
                .iter_mut()
                .for_each(|v| *v = (*v as f64 * k) as u64);
        }
    }
    rs
}

#[test]
fn rounds_merge_per_worker_and_state_the_interval_of_their_medians() {
    use crate::stats::StoppedBy;
    let first = reports();
    let mut second = scaled(1.5);
    // The second round's workers in another order, one stopped by a limit, one checked bytes.
    second.reverse();
    second[0].stopped_by = Some(StoppedBy::MaxTime);
    second[1].verified_bytes = 7;
    second[2].blocks = None;
    let mut third = scaled(1.2);
    third[3].stopped_by = Some(StoppedBy::Precision);
    let merged = super::super::rounds::merge(vec![first, second, third]);
    assert_eq!(merged.len(), 4);
    for r in &merged {
        assert_eq!(r.rounds, [2, 2, 2], "worker {}", r.worker);
        assert_eq!(r.timed.len(), 6);
        assert!(r.blocks.is_none());
    }
    // Worker 3 (first in the reversed second round) met a limit there: it sticks.
    assert_eq!(merged[3].stopped_by, Some(StoppedBy::MaxTime));
    assert_eq!(merged[2].verified_bytes, 7);
    // Each worker's samples in round order: worker 1 finished at 2, 3 and 2.4 ms.
    let w1: Vec<u64> = merged[1].timed.iter().map(|s| s.confirmed_ns[0]).collect();
    assert_eq!(
        w1,
        [2_000_000, 2_000_000, 3_000_000, 3_000_000, 2_400_000, 2_400_000]
    );
    let c = XferConfig {
        rounds: 3,
        ..cfg(XferOp::Write)
    };
    let doc = build(&c, &plan(), Side::Initiator, &merged, None);
    let r = &doc.results[0];
    // Every round's iterations count, not just one round's fixed 2.
    assert_eq!(r.iterations, 6);
    let p = &r.extra["precision"];
    // Round medians: 1.02 ms (lower middle of 1, 1, 1.02, 1.02, 2, 2, 2.02, 2.02), x1.5, x1.2.
    let medians: Vec<f64> = p["rounds"]["p50_us"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(medians.len(), 3, "{p}");
    for (m, want) in medians.iter().zip([1020.0, 1530.0, 1224.0]) {
        assert!((m - want).abs() < 0.5, "{medians:?}");
    }
    // The stated interval spans the rounds' medians (3 rounds: their range).
    let iv = &p["p50_interval_us"];
    assert!(
        iv[0].as_f64().unwrap() <= 1020.0 && iv[1].as_f64().unwrap() >= 1530.0,
        "{p}"
    );
    assert_eq!(doc.config["rounds"], 3);
    // One round is left as it is: no rounds in the result.
    let one = super::super::rounds::merge(vec![reports()]);
    assert!(one.iter().all(|r| r.rounds.is_empty()));
    let doc = build(&cfg(XferOp::Write), &plan(), Side::Initiator, &one, None);
    assert!(doc.results[0].extra["precision"].get("rounds").is_none());
}

#[test]
fn a_worker_missing_from_a_round_counts_none_there() {
    let mut second = reports();
    second.truncate(3);
    let mut third = reports();
    third.retain(|r| r.worker != 1);
    let merged = super::super::rounds::merge(vec![reports(), second, third]);
    assert_eq!(merged[3].rounds, [2, 0, 2]);
    assert_eq!(merged[1].rounds, [2, 2, 0]);
    assert_eq!(merged[3].timed.len(), 4);
}

#[test]
fn the_host_payload_is_set_against_the_last_level_cache() {
    use crate::run::segments::SegKind;
    // 4 transfers of 1 MB: 4 MB a side, against caches below, at and above it.
    let c = cfg(XferOp::Write);
    let at = |llc| cache_state(&c, 4, llc).unwrap();
    assert_eq!(at(Some(3_999_999)).fits_llc, Some(false));
    assert_eq!(at(Some(4_000_000)).fits_llc, Some(true));
    let s = at(None);
    assert_eq!(
        (s.host_payload_bytes, s.fits_llc, s.evicted_before_each),
        (4_000_000, None, false)
    );
    let cold = XferConfig {
        cold_cache: true,
        ..cfg(XferOp::Read)
    };
    assert!(
        cache_state(&cold, 4, Some(1 << 30))
            .unwrap()
            .evicted_before_each
    );
    // One side in host memory still has a host payload; none in host memory has no block.
    let mut vram = cfg(XferOp::Write);
    vram.mem.initiator = SegKind::Vram;
    assert!(cache_state(&vram, 4, Some(1 << 30)).is_some());
    vram.mem.target = SegKind::Vram;
    assert_eq!(cache_state(&vram, 4, Some(1 << 30)), None);
    // The document carries it beside the other figures.
    let doc = build(&c, &plan(), Side::Initiator, &reports(), None);
    let block = &doc.results[0].extra["cache"];
    assert_eq!(block["host_payload_bytes"], 4_000_000, "{block}");
    assert_eq!(block["evicted_before_each"], false, "{block}");
}

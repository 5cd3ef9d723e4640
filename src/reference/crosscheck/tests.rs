use serde_json::json;

use super::*;
use crate::stats::LatencySummary;

/// A fabtests-like reference row: usec/xfer and MB/sec as printed (two decimals).
fn fab(size: u64, usec: f64, mbps: f64) -> SizeResult {
    let mut r = SizeResult {
        message_size: size,
        iterations: 1000,
        latency_us: Some(LatencySummary::mean_only(usec)),
        bandwidth_mbps: Some(mbps),
        bandwidth_gbps: Some(mbps / 1000.0),
        ..Default::default()
    };
    r.extra.insert("usec_per_xfer".into(), json!(usec));
    r.extra.insert("mb_per_sec".into(), json!(mbps));
    r
}

/// kvxfer's row: fabtests arithmetic in extra, histogram median in latency_us.
fn own(size: u64, usec: f64, p50: f64) -> SizeResult {
    let mut lat = LatencySummary::mean_only(usec * 1.01);
    lat.p50 = p50;
    let mut r = SizeResult {
        message_size: size,
        iterations: 1000,
        latency_us: Some(lat),
        bandwidth_mbps: Some(size as f64 / usec),
        bandwidth_gbps: Some(size as f64 / usec / 1000.0),
        ..Default::default()
    };
    r.extra.insert("usec_per_xfer".into(), json!(usec));
    r
}

fn doc(tool: &str, bench: &str, warmup: u64, rows: Vec<SizeResult>) -> ResultDoc {
    let mut d = ResultDoc::new(tool, bench, "L0");
    d.config.insert("warmup".into(), json!(warmup));
    d.results = rows;
    d
}

#[test]
fn file_names_give_group_and_side() {
    let f = |n: &str| file_name(n).map(|f| (f.group, f.is_ref));
    assert_eq!(f("pll-a.json"), Some(("pll-a".into(), false)));
    assert_eq!(f("pll-a.ref.json"), Some(("pll-a".into(), true)));
    assert_eq!(f("pll-a.run3.json"), Some(("pll-a".into(), false)));
    assert_eq!(
        f("pll-a.run12.ref.65536.json"),
        Some(("pll-a".into(), true))
    );
    assert_eq!(
        f("pll-a.run1.server.ref.json"),
        Some(("pll-a (server)".into(), true))
    );
    assert_eq!(
        f("pll-a.server.json"),
        Some(("pll-a (server)".into(), false))
    );
    for other in [
        "pll-a.txt",
        "pll-a.model.json",
        "pll-a.ref.x.json",
        "pll-a.server.run1.json",
        "pll-a.runx.json",
        ".json",
    ] {
        assert_eq!(f(other), None, "{other}");
    }
}

#[test]
fn median_of_odd_even_and_empty() {
    assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    assert_eq!(median(&[f64::NAN]), None);
    assert_eq!(median(&[]), None);
}

#[test]
fn fabtests_usec_takes_the_more_precise_printed_figure() {
    // 64 B at 0.35 us prints 182.86 MB/sec: five digits against two.
    let r = fab(64, 0.35, 182.86);
    assert!((fabtests_usec(&r).unwrap() - 64.0 / 182.86).abs() < 1e-12);
    // 64 B at 120.5 us prints 0.53 MB/sec: the usec column is the precise one.
    assert_eq!(fabtests_usec(&fab(64, 120.5, 0.53)), Some(120.5));
}

#[test]
fn medians_of_runs_ratios_and_verdicts() {
    let kv: Vec<ResultDoc> = [4.1, 5.2, 9.0]
        .iter()
        .map(|&u| doc("kvxfer", "pingpong", 0, vec![own(1024, u, u - 0.1)]))
        .collect();
    // fi_pingpong: 4.0 (outlier), 5.0, 5.1 us, MB/sec printed consistently.
    let rf: Vec<ResultDoc> = [4.0, 5.0, 5.1]
        .iter()
        .map(|&u| {
            let m = (1024.0 / u * 100.0_f64).round() / 100.0;
            doc("fi_pingpong", "pingpong", 0, vec![fab(1024, u, m)])
        })
        .collect();
    let rows = compare("pll-x", &kv, &rf, 0.10);
    let names: Vec<&str> = rows.iter().map(|r| r.metric.as_str()).collect();
    assert_eq!(
        names,
        ["extra.usec_per_xfer", "latency_us.p50", "bandwidth_mbps"]
    );
    let u = &rows[0];
    assert_eq!(u.kvxfer, Some(5.2));
    assert_eq!(u.kvxfer_runs, [4.1, 5.2, 9.0]);
    assert!((u.reference.unwrap() - 1024.0 / 204.8).abs() < 1e-9);
    // Run by run: 4.1/4.0, 5.2/5.0, 9.0/5.1; the median pair is the second.
    assert!((u.ratio.unwrap() - 5.2 / (1024.0 / 204.8)).abs() < 1e-9);
    assert_eq!(u.verdict, Verdict::Agree);
    assert_eq!(u.reason, None, "no warm-up on either side");
    let p = &rows[1];
    assert!((p.kvxfer.unwrap() - 5.1).abs() < 1e-12);
    assert_eq!(p.verdict, Verdict::NotComparable);
    assert!(p.reason.as_deref().unwrap().contains("prints no median"));
    assert_eq!(rows[2].verdict, Verdict::Agree);
    // A tolerance of 1 % judges the same medians different.
    assert_eq!(compare("pll-x", &kv, &rf, 0.01)[0].verdict, Verdict::Differ);
}

#[test]
fn runs_are_compared_pair_by_pair_across_a_change_of_speed() {
    // The host slowed down between kvxfer's third run and the stock tool's: the medians over
    // runs fall in different speed modes (0.6 vs 0.165), no pair does.
    let kv: Vec<ResultDoc> = [0.17, 0.6, 0.6]
        .iter()
        .map(|&u| doc("kvxfer", "pingpong", 0, vec![own(64, u, u)]))
        .collect();
    let rf: Vec<ResultDoc> = [0.16, 0.58, 0.165]
        .iter()
        .map(|&u| doc("fi_pingpong", "pingpong", 0, vec![fab(64, u, 64.0 / u)]))
        .collect();
    let u = &compare("pll-x", &kv, &rf, 0.10)[0];
    assert_eq!(u.kvxfer, Some(0.6));
    assert!((u.reference.unwrap() - 0.165).abs() < 1e-9);
    assert!(
        (u.ratio.unwrap() - 0.17 / 0.16).abs() < 1e-9,
        "{:?}",
        u.ratio
    );
    assert_eq!(u.verdict, Verdict::Agree);
    // Runs that do not pair up fall back to the ratio of the medians.
    let u = &compare("pll-x", &kv[..2], &rf, 0.10)[0];
    assert!((u.ratio.unwrap() - (0.17 + 0.6) / 2.0 / 0.165).abs() < 1e-9);
    assert_eq!(paired_ratio(&[1.0], &[0.0]), None);
    assert_eq!(paired_ratio(&[], &[]), None);
}

#[test]
fn warm_up_is_said_and_missing_sizes_have_a_reason() {
    let kv = [doc("kvxfer", "pingpong", 10, vec![own(64, 5.0, 4.9)])];
    let rf = [doc(
        "fi_pingpong",
        "pingpong",
        0,
        vec![fab(64, 5.5, 11.64), fab(1024, 10.0, 102.4)],
    )];
    let rows = compare("pll-x", &kv, &rf, 0.10);
    assert_eq!(rows[0].verdict, Verdict::Agree);
    assert!(rows[0].reason.as_deref().unwrap().contains("warmed up (10"));
    let missing: Vec<&Row> = rows.iter().filter(|r| r.message_size == 1024).collect();
    assert_eq!(missing.len(), 3);
    for r in missing {
        assert_eq!(r.verdict, Verdict::NotComparable);
        assert_eq!(r.kvxfer, None);
        assert_eq!(
            r.reason.as_deref(),
            Some("kvxfer did not measure this size")
        );
    }
}

#[test]
fn tag_bw_bandwidth_is_judged_only_where_ucx_perftest_acks_the_end() {
    let mk = |tool: &str, mbps: f64, ucx: Option<&str>| {
        let mut d = doc(tool, "tag_bw", 0, vec![]);
        d.environment.ucx_version = ucx.map(String::from);
        d.results.push(SizeResult {
            message_size: 1 << 20,
            bandwidth_mbps: Some(mbps),
            ..Default::default()
        });
        d
    };
    // UCX 1.13 (or unknown): the stock figure stops at local completion, never judged.
    for ucx in [Some("1.13.1"), None] {
        let rows = compare(
            "pll-u",
            &[mk("kvxfer", 4000.0, ucx)],
            &[mk("ucx_perftest", 4000.0, None)],
            0.10,
        );
        assert_eq!(rows.len(), 1, "{rows:#?}");
        assert_eq!(rows[0].metric, "bandwidth_mbps");
        assert_eq!(rows[0].ratio, Some(1.0));
        assert_eq!(rows[0].verdict, Verdict::NotComparable);
        assert!(rows[0].reason.as_deref().unwrap().contains("10184"));
    }
    // UCX 1.22: judged, both ways.
    let judge = |theirs: f64| {
        compare(
            "pll-u",
            &[mk("kvxfer", 4000.0, Some("1.22.0"))],
            &[mk("ucx_perftest", theirs, None)],
            0.10,
        )
        .remove(0)
    };
    let agree = judge(3900.0);
    assert_eq!(agree.verdict, Verdict::Agree, "{agree:#?}");
    assert!(agree.reason.as_deref().unwrap().contains("1.22.0"));
    let differ = judge(2000.0);
    assert_eq!(differ.verdict, Verdict::Differ);
    assert_eq!(differ.ratio, Some(2.0));
}

#[test]
fn tag_lat_is_judged_by_the_last_2048_median_only() {
    let mut k = SizeResult {
        message_size: 64,
        iterations: 3000,
        latency_us: Some(LatencySummary::mean_only(724.0)),
        bandwidth_mbps: Some(0.088),
        ..Default::default()
    };
    if let Some(l) = k.latency_us.as_mut() {
        l.p50 = 7.1;
    }
    k.extra.insert("overall_latency_us".into(), json!(724.0));
    k.extra
        .insert("ucx_perftest_percentile_us".into(), json!(6.9));
    let mut u = SizeResult {
        message_size: 64,
        iterations: 3000,
        latency_us: Some(LatencySummary::mean_only(23.8)),
        bandwidth_mbps: Some(2.68),
        ..Default::default()
    };
    u.extra.insert("latency_overall_us".into(), json!(23.8));
    u.extra
        .insert("latency_percentile_last2048_us".into(), json!(6.0));
    let rows = compare(
        "pll-l",
        &[doc("kvxfer", "tag_lat", 300, vec![k])],
        &[doc("ucx_perftest", "tag_lat", 0, vec![u])],
        0.10,
    );
    let by = |m: &str| rows.iter().find(|r| r.metric == m).unwrap();
    let last = by("extra.ucx_perftest_percentile_us");
    assert_eq!((last.kvxfer, last.reference), (Some(6.9), Some(6.0)));
    assert_eq!(last.verdict, Verdict::Differ, "6.9 / 6.0 = 1.15");
    assert!(last.reason.as_deref().unwrap().contains("last 2048"));
    let overall = by("extra.overall_latency_us");
    assert_eq!(overall.ratio, Some(724.0 / 23.8));
    assert_eq!(overall.verdict, Verdict::NotComparable);
    assert!(overall.reason.as_deref().unwrap().starts_with("not judged"));
    assert_eq!(by("bandwidth_mbps").verdict, Verdict::NotComparable);
    let p50 = by("latency_us.p50");
    assert_eq!((p50.kvxfer, p50.reference), (Some(7.1), None));
    assert!(p50.reason.as_deref().unwrap().contains("last 2048"));
    assert_eq!(rows.len(), 4, "{rows:#?}");
}

#[test]
fn a_lone_xfer_result_names_its_missing_twin() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = doc("kvxfer", "xfer", 2, vec![own(1 << 20, 100.0, 99.0)]);
    d.pattern_id = Some("pll-lo-x".into());
    std::fs::write(dir.path().join("pll-lo-x.run1.json"), d.to_json()).unwrap();
    let report = crosscheck_dir(dir.path(), 0.1).unwrap();
    assert!(report.rows.is_empty());
    assert_eq!(report.unpaired.len(), 1);
    assert_eq!(report.unpaired[0].files, ["pll-lo-x.run1.json"]);
    assert!(report.unpaired[0]
        .reason
        .contains("nixlbench, which needs an etcd server"));
}

#[test]
fn nixlbench_rows_pair_with_xfer_as_whole_transfers() {
    // The driver's row: 168 blocks of 4 MiB, Avg Lat. per block.
    let mut theirs = doc("nixlbench", "xfer", 0, vec![]);
    let mut row = SizeResult {
        message_size: 4 << 20,
        iterations: 10,
        latency_us: Some(LatencySummary::mean_only(500.0)),
        bandwidth_mbps: Some(8000.0),
        ..Default::default()
    };
    row.extra.insert("batch_size".into(), json!(168));
    theirs.results.push(row);
    per_transfer(&mut theirs);
    let r = &theirs.results[0];
    assert_eq!(r.message_size, 168 * (4 << 20));
    assert_eq!(r.extra["block_size"], json!(4 << 20));
    assert_eq!(r.latency_us.unwrap().mean, 500.0 * 168.0);
    // kvxfer's transfer of the same size now meets it, bandwidth judged.
    let mut ours = doc("kvxfer", "xfer", 0, vec![]);
    ours.results.push(SizeResult {
        message_size: 168 * (4 << 20),
        iterations: 10,
        latency_us: Some(LatencySummary::mean_only(84_000.0)),
        bandwidth_mbps: Some(8400.0),
        ..Default::default()
    });
    let rows = compare("pll-x", &[ours], &[theirs], 0.10);
    let bw = rows.iter().find(|r| r.metric == "bandwidth_mbps").unwrap();
    assert_eq!(bw.message_size, 168 * (4 << 20));
    assert_eq!(bw.verdict, Verdict::Agree);
    assert!((bw.ratio.unwrap() - 1.05).abs() < 1e-9);
    let lat = rows.iter().find(|r| r.metric == "latency_us.mean").unwrap();
    assert!((lat.ratio.unwrap() - 1.0).abs() < 1e-9, "{lat:#?}");
    assert!(lat.reason.as_deref().unwrap().contains("per transfer"));
}

#[test]
fn a_negative_reference_figure_is_named_not_called_zero() {
    let kv = vec![doc("kvxfer", "pingpong", 0, vec![own(64, 5.0, 5.0)])];
    // A garbled line: negative time and rate.
    let rf = vec![doc(
        "fi_pingpong",
        "pingpong",
        0,
        vec![fab(64, -3.5, -12.0)],
    )];
    let rows = compare("pll-x", &kv, &rf, 0.10);
    let u = rows.iter().find(|r| r.metric == "bandwidth_mbps").unwrap();
    assert_eq!(u.verdict, Verdict::NotComparable);
    assert_eq!(
        u.reason.as_deref(),
        Some("the reference figure is -12, not positive: no ratio is taken")
    );
}

#[test]
fn files_that_are_not_results_are_listed_as_skipped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("garbage.json"), "not json").unwrap();
    std::fs::write(
        dir.path().join("pll-a.ref.json"),
        doc("kvxfer", "pingpong", 0, vec![]).to_json(),
    )
    .unwrap();
    std::fs::write(dir.path().join(REPORT_FILE), "{}").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
    let r = crosscheck_dir(dir.path(), 0.1).unwrap();
    let files: Vec<&str> = r.skipped.iter().map(|s| s.file.as_str()).collect();
    assert_eq!(files, ["garbage.json", "pll-a.ref.json"]);
    assert!(r.skipped[0]
        .reason
        .starts_with("not a kvxfer.result/v1 document"));
    assert!(r.skipped[1].reason.contains("holds kvxfer's"));
}

//! `kvxfer xfer --rails`: striping over several tcp endpoints on the loopback (127.0.0.1,
//! 127.0.0.2, ... or endpoints of their own on `lo`), with --verify; per-rail bytes, chunks
//! and time in the result; the rails refused where they cannot be honoured.

mod common;
mod xfer_support;

use std::time::Duration;

use common::*;
use predicates::prelude::*;
use serde_json::Value;
use xfer_support::*;

/// The document's per-rail entries: (via, bytes, chunks, busy_ns).
fn rails(doc: &kvxfer::report::ResultDoc) -> Vec<(String, u64, u64, u64)> {
    let r = &doc.results[0].extra["rails"];
    r.as_array()
        .unwrap_or_else(|| panic!("no rails in {r}"))
        .iter()
        .enumerate()
        .map(|(i, x)| {
            assert_eq!(x["rail"], i as u64);
            let n = |k: &str| x[k].as_u64().unwrap_or_else(|| panic!("{k} in {x}"));
            (
                x["via"].as_str().unwrap().to_string(),
                n("bytes"),
                n("chunks"),
                n("busy_ns"),
            )
        })
        .collect()
}

#[test]
fn two_rails_on_two_loopback_addresses_split_writes_evenly() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let doc = local(
        &[
            "xfer", "-p", "tcp", "-s", "8M", "-b", "1M", "-c", "2", "-I", "3", "-w", "1",
            "--verify", "--rails", "2",
        ],
        &dir.path().join("r.json"),
    );
    let e = Expect {
        size: 8 << 20,
        iterations: 3,
        warmup: 1,
        transfers: 2,
        verify: true,
        op: "write",
    };
    assert_xfer_consistent(&doc, &e);
    assert_eq!(doc.config["rails"], "2");
    assert_eq!(doc.config["stripe_threshold"], 128 << 10);
    let r = rails(&doc);
    // 2 workers x 3 timed iterations x half of 8 chunks of 1M each.
    assert_eq!(r.len(), 2);
    for (i, (via, bytes, chunks, busy)) in r.iter().enumerate() {
        assert_eq!(via, &format!("127.0.0.{}", i + 1));
        assert_eq!(*bytes, 2 * 3 * (4 << 20), "rail {i}");
        assert_eq!(*chunks, 2 * 3 * 4, "rail {i}");
        assert!(*busy > 0, "rail {i} carried chunks in no time");
    }
}

#[test]
fn three_rails_on_lo_read_uneven_chunks_within_one_chunk() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let doc = local(
        &[
            "xfer", "-p", "tcp", "-d", "lo", "-s", "5M", "-b", "1M", "-o", "read", "-I", "2", "-w",
            "1", "--verify", "--rails", "3",
        ],
        &dir.path().join("r.json"),
    );
    let e = Expect {
        size: 5 << 20,
        iterations: 2,
        warmup: 1,
        transfers: 1,
        verify: true,
        op: "read",
    };
    assert_xfer_consistent(&doc, &e);
    let r = rails(&doc);
    let vias: Vec<&str> = r.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(vias, ["lo (127.0.0.1)"; 3]);
    // Five chunks by place over three rails: 2, 2, 1 per iteration.
    let chunks: Vec<u64> = r.iter().map(|x| x.2).collect();
    assert_eq!(chunks, [4, 4, 2]);
    let bytes: Vec<u64> = r.iter().map(|x| x.1).collect();
    assert_eq!(bytes.iter().sum::<u64>(), 2 * (5 << 20));
    let spread = bytes.iter().max().unwrap() - bytes.iter().min().unwrap();
    assert!(
        spread <= 2 * (1 << 20),
        "{bytes:?}: more than a chunk apart per iteration"
    );
}

#[test]
fn transfers_under_the_threshold_go_round_robin() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let base = [
        "xfer", "-p", "tcp", "-s", "96K", "-b", "32K", "-I", "2", "-w", "1", "--verify", "--rails",
        "2",
    ];
    // 96K is under the default 128K: chunk after chunk alternate, across iterations
    // (warm-up chunks 0..3 turn 0,1,0; timed 1,0,1 then 0,1,0: three each).
    let doc = local(&base, &dir.path().join("rr.json"));
    let chunks: Vec<u64> = rails(&doc).iter().map(|x| x.2).collect();
    assert_eq!(chunks, [3, 3]);
    // At a 64K threshold the same transfer is split by place: chunks 0 and 1 on rail 0.
    let mut split = base.to_vec();
    split.extend(["--stripe-threshold", "64K"]);
    let doc = local(&split, &dir.path().join("split.json"));
    assert_eq!(doc.config["stripe_threshold"], 64 << 10);
    let chunks: Vec<u64> = rails(&doc).iter().map(|x| x.2).collect();
    assert_eq!(chunks, [4, 2]);
}

#[test]
fn two_processes_stripe_over_two_rails() {
    let _g = fabric_lock();
    let e = Expect {
        size: 4 << 20,
        iterations: 2,
        warmup: 1,
        transfers: 1,
        verify: true,
        op: "write",
    };
    let (idoc, tdoc) = two_processes_consistent(
        &[],
        &[
            "-p", "tcp", "-s", "4M", "-b", "512K", "-I", "2", "-w", "1", "--verify", "--rails", "2",
        ],
        &e,
    );
    let r = rails(&idoc);
    assert_eq!(
        r.iter().map(|x| x.1).collect::<Vec<_>>(),
        [4 << 20, 4 << 20]
    );
    assert_eq!(tdoc.config["rails"], "2");
}

#[test]
fn one_run_without_rails_has_no_rail_keys() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let doc = local(
        &["xfer", "-p", "tcp", "-s", "1M", "-I", "1", "-w", "0"],
        &dir.path().join("r.json"),
    );
    assert_eq!(doc.results[0].extra.get("rails"), None);
    assert_eq!(doc.config.get("rails"), None::<&Value>);
}

#[test]
fn rails_are_refused_where_they_cannot_be_honoured() {
    for (args, what) in [
        (
            vec!["-B", "ucx", "--rails", "2"],
            "UCX stripes by itself (set UCX_MAX_RMA_RAILS",
        ),
        (vec!["-o", "send", "--rails", "2"], "--rails stripes RMA"),
        (vec!["--rails", "0"], "--rails must be at least 1"),
        (
            vec!["--rails", "lo,,eth0"],
            "expected auto, a count, or dev,dev",
        ),
    ] {
        let out = kvxfer()
            .args(["xfer", "-s", "1M"])
            .args(&args)
            .timeout(Duration::from_secs(20))
            .assert()
            .failure()
            .stdout(predicate::str::is_empty());
        let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
        assert!(err.contains(what), "{args:?}: {err}");
    }
}

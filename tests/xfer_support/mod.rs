//! Checks of xfer result documents shared by the xfer tests.
#![allow(dead_code)]

use kvxfer::report::{ResultDoc, Status};
use serde_json::Value;

/// Runs `args` as a target process and an initiator process on the loopback (with `env` on
/// both), asserts that both succeeded and that both documents are consistent with `e`;
/// returns (initiator, target) documents.
pub fn two_processes_consistent(
    env: &[(&str, &str)],
    args: &[&str],
    e: &Expect,
) -> (ResultDoc, ResultDoc) {
    let dir = tempfile::tempdir().unwrap();
    let all: Vec<&str> = args.iter().copied().chain(["--timeout", "120"]).collect();
    let (ini, t) = crate::common::target_and_initiator_with(env, &all, dir.path());
    for (o, who) in [(&ini, "initiator"), (&t, "target")] {
        assert!(
            o.status.success(),
            "{who}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let idoc = crate::common::read_doc(&dir.path().join("i.json"));
    let tdoc = crate::common::read_doc(&dir.path().join("t.json"));
    assert_xfer_consistent(&idoc, e);
    assert_xfer_consistent(&tdoc, e);
    assert_eq!(idoc.config["role"], "initiator");
    assert_eq!(tdoc.config["role"], "target");
    (idoc, tdoc)
}

/// Runs one local xfer with `args` and returns its document (stdout: the result table).
pub fn local(args: &[&str], json: &std::path::Path) -> ResultDoc {
    crate::common::kvxfer()
        .args(args)
        .args(["--timeout", "120", "--json"])
        .arg(json)
        .timeout(std::time::Duration::from_secs(300))
        .assert()
        .success()
        .stdout(predicates::str::starts_with("Block Size (B)  Batch Size"));
    crate::common::read_doc(json)
}

/// What a run was asked to do, to check its document against.
pub struct Expect {
    pub size: u64,
    pub iterations: u64,
    pub warmup: u64,
    pub transfers: u64,
    pub verify: bool,
    pub op: &'static str,
}

/// Checks the figures of an xfer document against each other and against the request.
pub fn assert_xfer_consistent(doc: &ResultDoc, e: &Expect) {
    assert_eq!(doc.schema, "kvxfer.result/v1");
    assert_eq!(doc.bench, "xfer");
    assert_eq!(doc.layer, "L1");
    assert_eq!(doc.status, Status::Complete, "errors: {:?}", doc.errors);
    assert_eq!(doc.config["op"], e.op);
    assert_eq!(doc.results.len(), 1);
    let r = &doc.results[0];
    assert_eq!(r.message_size, e.size);
    assert_eq!(r.iterations, e.iterations);
    let x = &r.extra;
    assert_eq!(x["transfers_per_iteration"].as_u64().unwrap(), e.transfers);
    let workers = x["workers"].as_array().unwrap();
    assert_eq!(workers.len() as u64, e.transfers);
    for w in workers {
        let c = w["completion_ms"].as_array().unwrap();
        let l = w["initiator_side_ms"].as_array().unwrap();
        assert_eq!(c.len() as u64, e.iterations);
        for (ci, li) in c.iter().zip(l) {
            let (ci, li) = (ci.as_f64().unwrap(), li.as_f64().unwrap());
            assert!(ci > 0.0 && li > 0.0);
            if e.op == "write" {
                // The target confirms after the initiator's last local completion.
                assert!(ci >= li, "confirmed {ci} before local {li}");
            }
        }
    }
    // Aggregate bandwidth = all bytes / the sum of iteration spans (slowest transfer each).
    let spans: Vec<f64> = x["iteration_span_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(spans.len() as u64, e.iterations);
    for (i, s) in spans.iter().enumerate() {
        let slowest = workers
            .iter()
            .map(|w| w["completion_ms"][i].as_f64().unwrap())
            .fold(0.0, f64::max);
        assert!((s - slowest).abs() < 1e-9, "span {s} vs slowest {slowest}");
    }
    let bytes = (e.transfers * e.size * e.iterations) as f64;
    let gbps = r.bandwidth_gbps.unwrap();
    let want = bytes / (spans.iter().sum::<f64>() / 1e3) / 1e9;
    assert!((gbps - want).abs() <= want * 1e-9, "{gbps} vs {want}");
    assert!((r.bandwidth_mbps.unwrap() - gbps * 1e3).abs() <= gbps * 1e-6);
    let gib = x["bandwidth_gibps"].as_f64().unwrap();
    assert!((gib * (1u64 << 30) as f64 - gbps * 1e9).abs() <= gbps);
    let lat = r.latency_us.unwrap();
    assert!(lat.min > 0.0 && lat.min <= lat.p50 && lat.p50 <= lat.p99 && lat.p99 <= lat.max);
    let h = kvxfer::stats::decode_histogram(r.histogram.as_ref().unwrap()).unwrap();
    assert_eq!(h.len(), e.transfers * e.iterations);
    // Tiers partition the transfers.
    let tiers = x["tiers"].as_array().unwrap();
    assert_eq!(x["tier_count"].as_u64().unwrap(), tiers.len() as u64);
    assert!(!tiers.is_empty());
    let mut members: Vec<u64> = tiers
        .iter()
        .flat_map(|t| {
            t["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_u64().unwrap())
        })
        .collect();
    members.sort_unstable();
    members.dedup();
    assert_eq!(
        members.len() as u64,
        e.transfers,
        "every transfer in one tier"
    );
    let labels: Vec<u64> = workers
        .iter()
        .map(|w| w["worker"].as_u64().unwrap())
        .collect();
    assert!(members
        .iter()
        .all(|m| labels.contains(m) || *m < e.transfers));
    // nixlbench's columns.
    let nx = &x["nixlbench"];
    let block = nx["block_size"].as_u64().unwrap();
    assert_eq!(nx["batch_size"].as_u64().unwrap(), e.size.div_ceil(block));
    let avg_lat = nx["avg_lat_us"].as_f64().unwrap();
    let want = spans.iter().sum::<f64>() * 1e3 / (e.iterations * e.size.div_ceil(block)) as f64;
    assert!((avg_lat - want).abs() <= want * 1e-9);
    for k in ["prep_us", "post_us", "tx_us"] {
        let v = &nx[k];
        assert!(v["avg"].as_f64().unwrap() >= 0.0 && v["p99"].as_f64().unwrap() >= 0.0);
    }
    // Costs: registration both ways, connection, the cold first transfer.
    let c = &x["costs"];
    for k in [
        "registration_first_us",
        "registration_cached_us",
        "target_registration_first_us",
        "connect_us",
        "first_transfer_us",
        "steady_state_p50_us",
    ] {
        assert!(c[k].as_f64().unwrap() > 0.0, "{k}: {}", c[k]);
    }
    let verified = x["verified_bytes"].as_u64().unwrap();
    if e.verify {
        assert_eq!(verified, e.transfers * e.size * (e.iterations + e.warmup));
    } else {
        assert_eq!(verified, 0);
    }
    if e.op == "read" {
        assert!(x.get("target_confirmed_us").is_none());
    } else {
        assert!(x["target_confirmed_us"]["p50"].as_f64().unwrap() > 0.0);
    }
}

/// The number at `doc.results[0].extra[key]`.
pub fn extra<'a>(doc: &'a ResultDoc, key: &str) -> &'a Value {
    &doc.results[0].extra[key]
}

//! The nixlbench and kvbench parsers on every recorded real output in ../shared/fixtures and on
//! the synthetic layouts in tests/data.

use std::path::PathBuf;

use kvxfer::reference::{parse, ParseError, ParseOptions, Tool};
use kvxfer::report::{ResultDoc, SizeResult};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/nixlbench")
}

fn data(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn fixture(name: &str) -> Option<String> {
    let p = fixtures().join(name);
    match std::fs::read_to_string(&p) {
        Ok(t) => Some(t),
        Err(_) => {
            println!("SKIPPED {name}: fixture {} not present", p.display());
            None
        }
    }
}

fn nixl(text: &str) -> ResultDoc {
    parse(Tool::Nixlbench, text, &ParseOptions::default()).expect("parses")
}

/// (block, batch, GB/s, avg lat, avg prep, p99 prep, avg post, p99 post, avg tx, p99 tx)
type Row = (u64, u64, f64, f64, f64, f64, f64, f64, f64, f64);

fn check_row(r: &SizeResult, want: Row) {
    let (block, batch, gb, lat, ap, pp, apo, ppo, at, pt) = want;
    assert_eq!(r.message_size, block);
    assert_eq!(r.extra["batch_size"], batch);
    assert_eq!(r.bandwidth_gbps, Some(gb));
    assert!((r.bandwidth_mbps.unwrap() - gb * 1000.0).abs() < 1e-6);
    assert_eq!(r.extra["bw_gb_sec"], gb);
    assert_eq!(r.latency_us.unwrap().mean, lat);
    assert_eq!(r.extra["avg_lat_us"], lat);
    for (k, v) in [
        ("avg_prep_us", ap),
        ("p99_prep_us", pp),
        ("avg_post_us", apo),
        ("p99_post_us", ppo),
        ("avg_tx_us", at),
        ("p99_tx_us", pt),
    ] {
        assert_eq!(r.extra[k], v, "{k} of block {block}");
    }
}

#[test]
fn every_fixture_parses() {
    let Ok(dir) = std::fs::read_dir(fixtures()) else {
        println!(
            "SKIPPED every_fixture_parses: {} absent",
            fixtures().display()
        );
        return;
    };
    let mut n = 0;
    for e in dir {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) != Some("txt") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let tool = if text.contains("Model Config:") {
            Tool::Kvbench
        } else {
            Tool::Nixlbench
        };
        let d = parse(tool, &text, &ParseOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(!d.results.is_empty(), "{}", p.display());
        for r in &d.results {
            assert!(r.bandwidth_gbps.unwrap() > 0.0 && r.latency_us.unwrap().mean > 0.0);
        }
        n += 1;
    }
    assert!(n >= 4, "only {n} fixtures found");
}

#[test]
fn ucx_write_prep_post_tx() {
    let Some(t) = fixture("ucx-vram-pairwise-write-prep-post-tx.txt") else {
        return;
    };
    let d = nixl(&t);
    assert_eq!(
        (d.tool.as_str(), d.bench.as_str(), d.layer.as_str()),
        ("nixlbench", "xfer", "L1")
    );
    assert_eq!(d.results.len(), 12);
    check_row(
        &d.results[0],
        (4096, 1, 0.206109, 19.9, 45.0, 45.0, 9.1, 10.0, 10.8, 13.0),
    );
    check_row(
        &d.results[11],
        (
            8388608, 1, 0.975764, 8597.0, 16.0, 16.0, 8490.9, 8734.0, 105.7, 109.0,
        ),
    );
    assert_eq!(d.config["backend"], "UCX");
    assert_eq!(d.config["op_type"], "WRITE");
    assert_eq!(d.config["etcd_endpoint"], "http://10.28.38.84:2379/");
    assert_eq!(d.config["num_iter"], 1008);
    // 1008 iterations up to 1 MiB, 1008 / 16 above.
    assert_eq!(d.results[8].iterations, 1008);
    assert_eq!(d.results[9].iterations, 63);
    assert!(d.errors.is_empty());
    assert_eq!(d.raw_output.as_deref(), Some(t.as_str()));
}

#[test]
fn ucx_read_keeps_non_monotonic_values() {
    let Some(t) = fixture("ucx-vram-pairwise-read-prep-post-tx.txt") else {
        return;
    };
    let d = nixl(&t);
    assert_eq!(d.results.len(), 12);
    assert_eq!(d.config["op_type"], "READ");
    check_row(
        &d.results[0],
        (4096, 1, 0.195834, 20.9, 195.0, 195.0, 1.5, 2.0, 19.2, 21.0),
    );
    check_row(
        &d.results[8],
        (
            1048576, 1, 0.262022, 4001.9, 128.0, 128.0, 1.4, 2.0, 4000.2, 1141.0,
        ),
    );
    check_row(
        &d.results[11],
        (
            8388608, 1, 1.0182, 8238.7, 113.0, 113.0, 2.3, 19.0, 8234.2, 8415.0,
        ),
    );
}

#[test]
fn kvbench_preamble_warnings_and_storage_config() {
    let Some(t) = fixture("gds-dram-to-vram-read-kvbench-warnings-single-row.txt") else {
        return;
    };
    let d = parse(Tool::Kvbench, &t, &ParseOptions::default()).unwrap();
    assert_eq!(
        (d.tool.as_str(), d.bench.as_str(), d.layer.as_str()),
        ("kvbench", "kv_profile", "L2")
    );
    assert_eq!(d.results.len(), 1);
    // KVBench's rows are sized by iteration: 36,864-byte blocks x 954.
    let mut r = d.results[0].clone();
    assert_eq!(r.message_size, 36864 * 954);
    assert_eq!(r.extra["block_size"], 36864);
    r.message_size = 36864;
    check_row(
        &r,
        (
            36864, 954, 9.711935, 3.8, 58.0, 58.0, 3466.6, 3627.0, 154.5, 177.0,
        ),
    );
    assert_eq!(d.results[0].iterations, 1008);
    assert_eq!(d.config["kvbench_isl_tokens"], 1000);
    assert_eq!(d.config["kvbench_pp"], 16);
    assert_eq!(d.config["backend"], "GDS");
    assert_eq!(d.config["filenames"], "");
    assert_eq!(d.config["etcd_endpoint"], "disabled (storage backend)");
    assert_eq!(d.config["warnings"].as_array().unwrap().len(), 2);
    // The same text read as plain nixlbench gives the same row.
    assert_eq!(nixl(&t).results[0].message_size, 36864);
}

#[test]
fn ci_timestamps_and_batch_sweep() {
    let Some(t) = fixture("uccl-vram-pairwise-read-batch-sweep-timestamped-partial.txt") else {
        return;
    };
    let d = nixl(&t);
    assert_eq!(d.results.len(), 4);
    check_row(
        &d.results[0],
        (4096, 1, 0.229964, 17.8, 41.0, 41.0, 4.8, 6.0, 12.9, 25.0),
    );
    assert_eq!(d.results[1].extra["batch_size"], 2);
    assert_eq!(d.results[1].bandwidth_gbps, Some(0.415997));
    assert_eq!(d.results[1].latency_us.unwrap().mean, 9.8);
    assert_eq!(d.results[2].extra["batch_size"], 4);
    assert_eq!(d.results[2].latency_us.unwrap().mean, 5.7);
    check_row(
        &d.results[3],
        (8192, 1, 0.462063, 17.7, 31.0, 31.0, 4.7, 6.0, 12.9, 28.0),
    );
    // No configuration block in the slice: iterations unknown, hence absent.
    assert_eq!(d.results[0].iterations, 0);
    assert!(!String::from_utf8(d.to_json())
        .unwrap()
        .contains("\"iterations\""));
}

#[test]
fn aggregate_columns_of_four_processes() {
    let d = nixl(&data("nixlbench-aggregate-four-processes.txt"));
    assert_eq!(d.results.len(), 2);
    let r = &d.results[0];
    assert_eq!(r.message_size, 57_671_680);
    assert_eq!(r.bandwidth_gbps, Some(3.5123));
    assert_eq!(r.extra["aggregate_bw_gb_sec"], 7.0246);
    assert_eq!(r.extra["network_util_pct"], 79.8);
    assert_eq!(r.latency_us.unwrap().mean, 16419.9);
    assert_eq!(r.extra["p99_tx_us"], 16512.0);
    assert_eq!(r.iterations, 63);
    assert_eq!(d.config["backend"], "LIBFABRIC");
    assert_eq!(d.config["num_initiator_dev"], 2);
}

#[test]
fn old_six_columns_with_ci_blank_lines() {
    let d = nixl(&data("nixlbench-old-six-columns-ci-blank-lines.txt"));
    assert_eq!(d.results.len(), 3);
    let r = &d.results[1];
    assert_eq!(r.message_size, 1_048_576);
    assert_eq!(r.latency_us.unwrap().mean, 410.2);
    // GB/Sec is taken when printed; MiB and GiB are kept as printed.
    assert_eq!(r.bandwidth_gbps, Some(2.556237));
    assert_eq!(r.extra["bw_mib_sec"], 2437.835202);
    assert_eq!(r.extra["bw_gib_sec"], 2.380698);
    assert_eq!(d.results[2].message_size, 67_108_864);
    assert!(d.config.get("num_iter").is_none());
    assert_eq!(d.config["warnings"].as_array().unwrap().len(), 1);
}

#[test]
fn truncated_row_is_an_error_not_a_row() {
    let e = parse(
        Tool::Nixlbench,
        &data("nixlbench-truncated-row.txt"),
        &ParseOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        e,
        ParseError::RowWidth {
            tool: "nixlbench",
            line: 4,
            got: 3,
            want: 10
        }
    );
}

#[test]
fn empty_and_garbage_inputs_are_errors() {
    let o = ParseOptions::default();
    for tool in Tool::ALL {
        assert!(matches!(
            parse(tool, " \n\n", &o),
            Err(ParseError::Empty { .. })
        ));
        let e = parse(tool, "\u{0}\u{1}garbage ||| 12 34\n--\n", &o).unwrap_err();
        assert!(e.to_string().starts_with(tool.name()), "{e}");
    }
}

#[test]
fn two_runs_pasted_together() {
    let (Some(w), Some(r)) = (
        fixture("ucx-vram-pairwise-write-prep-post-tx.txt"),
        fixture("ucx-vram-pairwise-read-prep-post-tx.txt"),
    ) else {
        return;
    };
    // The thread's code block holds the WRITE run, a blank line, then the READ run.
    let e = parse(
        Tool::Nixlbench,
        &format!("{w}\n{r}"),
        &ParseOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, ParseError::Ambiguous { .. }), "{e}");
    assert!(e.to_string().contains("lines 1 and 46"), "{e}");
    // The same configuration twice is one run's table printed twice: rows are kept.
    let d = nixl(&format!("{w}\n{w}"));
    assert_eq!(d.results.len(), 24);
}

//! plans/loopback.json end to end on this host, as shipped: each one-host definition runs
//! through `kvxfer task run` (kvxfer pingpong beside fi_pingpong, kvxfer ucx-perf beside UCX
//! 1.22's ucx_perftest, kvxfer xfer over UCX beside NIXL's engine, in alternating rounds; kvxfer
//! xfer over libfabric alone), and the cross-check report's
//! verdicts are asserted. Then the same plan in its
//! two-node shape, server and client definitions side by side. The tests take turns: two
//! busy-polling measurements at once on a small machine would judge nothing.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::assert_judged;
use kvxfer::plan;
use kvxfer::report::ResultDoc;
use serde_json::Value;

const KVXFER: &str = env!("CARGO_BIN_EXE_kvxfer");

fn installed(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs one definition to its end (bounded), returning its stderr. A client definition's peer
/// is this host, as the launcher would export it.
fn task_run(def: &Path, state: &Path) -> String {
    let mut child = Command::new(KVXFER)
        .args(["task", "run"])
        .arg(def)
        .arg("--state")
        .arg(state)
        .env("PEER_IP", "127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).unwrap();
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} hung", def.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = reader.join().unwrap();
    assert!(status.success(), "{} failed:\n{err}", def.display());
    err
}

/// Whether the plan's NIXL driver finds NIXL's Python API.
fn nixl_installed(p: &Value) -> bool {
    let tools = &p["infrastructure"]["tools"];
    Command::new(tools["nixl_python"].as_str().unwrap())
        .arg(tools["nixl_xfer"].as_str().unwrap())
        .arg("--check")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn doc(path: &Path) -> ResultDoc {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ResultDoc::from_json(&bytes).unwrap()
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect()
}

/// The slow group: the shipped plan in full (seven rounds of each latency pattern, NIXL's twins
/// at 55M, 224M and 672M) takes minutes; `scripts/test.sh --slow` (and CI) runs it. The same
/// checks on a shortened plan run in every test run (tests/run_plan.rs).
#[test]
#[ignore = "slow group: the shipped loopback plan in full, minutes; scripts/test.sh --slow"]
fn loopback_plan_runs_end_to_end_and_its_rows_follow_the_comparators_rules() {
    let _turn = common::fabric_lock();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let ucx_perftest = root.join(".cache/ucx/bin/ucx_perftest");
    if !installed("fi_pingpong") || !ucx_perftest.is_file() {
        println!("SKIPPED loopback_plan_runs_end_to_end_and_its_rows_follow_the_comparators_rules: fi_pingpong or UCX 1.22's ucx_perftest (scripts/setup.sh) not installed");
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let mut p = plan::load_plan(&root.join("plans/loopback.json")).unwrap();
    p["common"]["output_dir"] = out.display().to_string().into();
    p["common"]["control_port"] = free_port().into();
    p["common"]["reference_port"] = free_port().into();
    p["infrastructure"]["tools"]["kvxfer"] = KVXFER.into();
    // The plan's tools are relative to the repository root; tasks here run elsewhere.
    for tool in ["ucx_perftest", "nixl_python", "nixl_xfer"] {
        let rel = p["infrastructure"]["tools"][tool]
            .as_str()
            .unwrap()
            .to_string();
        p["infrastructure"]["tools"][tool] = root.join(rel).display().to_string().into();
    }
    let nixl = nixl_installed(&p);
    if !nixl {
        println!("SKIPPED the NIXL twin rounds of the loopback plan: NIXL's Python API is not installed (scripts/setup.sh --test)");
    }
    assert_eq!(plan::validate(&p), []);
    let defs = dir.path().join("defs");
    let files = plan::generate(&p, &root.join("templates")).unwrap();
    plan::write_generated(&defs, &files).unwrap();

    let mut fi_patterns = Vec::new();
    let mut ucx_patterns = Vec::new();
    let mut xfer_patterns = Vec::new();
    let mut twin_patterns = Vec::new();
    let mut kv_patterns = Vec::new();
    for layer in p["layers"].as_array().unwrap() {
        for pat in layer["patterns"].as_array().unwrap() {
            let id = pat["id"].as_str().unwrap();
            let err = task_run(
                &defs.join(format!("{id}.json")),
                &dir.path().join("state.json"),
            );
            let params = &pat["params"];
            let sizes = params.get("sizes").map(u64s).unwrap_or_default();
            // A fixed count is run as it is; `auto` runs at least its first batch.
            let fixed = params["iterations"].as_u64();
            assert!(fixed.is_some() || params["iterations"] == "auto", "{id}");
            let count_ok = |n: u64| match fixed {
                Some(i) => n == i,
                None => n >= kvxfer::stats::FIRST_AUTO_BATCH,
            };
            let runs = params["runs"].as_u64().unwrap_or(1);
            match pat["tool"].as_str().unwrap() {
                "fi_pingpong" => {
                    for r in 1..=runs {
                        for (file, tool) in [
                            (format!("{id}.run{r}.json"), "kvxfer"),
                            (format!("{id}.run{r}.ref.json"), "fi_pingpong"),
                        ] {
                            let d = doc(&out.join(&file));
                            assert_eq!(d.tool, tool, "{file}");
                            assert_eq!(d.pattern_id.as_deref(), Some(id), "{file}");
                            let got: Vec<u64> = d.results.iter().map(|x| x.message_size).collect();
                            assert_eq!(got, sizes, "{file}");
                            assert!(d.results.iter().all(|x| count_ok(x.iterations)), "{file}");
                        }
                        let k = doc(&out.join(format!("{id}.run{r}.json")));
                        assert_eq!(k.config["warmup"], params["warmup"]);
                        assert_eq!(k.config["provider"], params["provider"]);
                    }
                    fi_patterns.push((id.to_string(), sizes, runs as usize));
                }
                "ucx_perftest" => {
                    let test = params["test"].as_str().unwrap();
                    for r in 1..=runs {
                        for s in &sizes {
                            let d = doc(&out.join(format!("{id}.run{r}.ref.{s}.json")));
                            assert_eq!(d.bench, test);
                            assert_eq!(d.results[0].message_size, *s);
                            assert!(count_ok(d.results[0].iterations));
                            assert!(d.results[0].bandwidth_gbps.unwrap() > 0.0);
                        }
                        // kvxfer ucx-perf ran with the same parameters and UCX environment.
                        let k = doc(&out.join(format!("{id}.run{r}.json")));
                        assert_eq!(k.tool, "kvxfer");
                        assert_eq!(k.bench, test);
                        assert_eq!(k.pattern_id.as_deref(), Some(id));
                        assert_eq!(k.config["warmup"], params["warmup"]);
                        assert_eq!(k.environment.env["UCX_TLS"], params["ucx_tls"]);
                        let got: Vec<u64> = k.results.iter().map(|x| x.message_size).collect();
                        assert_eq!(got, sizes);
                        assert!(k.results.iter().all(|x| count_ok(x.iterations)));
                        assert!(k.results[0].bandwidth_gbps.unwrap() > 0.0);
                    }
                    ucx_patterns.push((id.to_string(), test.to_string(), sizes, runs as usize));
                }
                "kvxfer_xfer" => {
                    for r in 1..=runs {
                        let k = doc(&out.join(format!("{id}.run{r}.json")));
                        assert_eq!((k.tool.as_str(), k.bench.as_str()), ("kvxfer", "xfer"));
                        if params["backend"] == "ucx" {
                            // UCX: the transports asked for, and those UCX chose.
                            assert_eq!(k.config["backend"], "ucx");
                            assert_eq!(k.config["ucx_tls"], params["ucx_tls"]);
                            let lanes = &k.environment.extra["ucx_transports"];
                            let lanes: Vec<&str> = lanes
                                .as_array()
                                .unwrap()
                                .iter()
                                .map(|l| l.as_str().unwrap())
                                .collect();
                            assert!(lanes.contains(&"tcp/lo"), "{lanes:?}");
                            if params["ucx_tls"] == "tcp,cma" {
                                assert!(lanes.contains(&"cma/memory"), "{lanes:?}");
                            }
                            assert_eq!(k.environment.ucx_version.as_deref(), Some("1.22.0"));
                        } else {
                            assert_eq!(k.config["provider"], params["provider"]);
                        }
                        assert_eq!(k.config["concurrency"], params["concurrency"]);
                        assert_eq!(k.config["op"], params["op"]);
                        assert_eq!(k.results[0].message_size, params["size"].as_u64().unwrap());
                        assert!(count_ok(k.results[0].iterations));
                        assert!(k.results[0].bandwidth_gbps.unwrap() > 0.0);
                    }
                    if params["twin"] != "nixl" {
                        xfer_patterns.push(id.to_string());
                        continue;
                    }
                    let block = params["block"].as_u64().unwrap();
                    let size = params["size"].as_u64().unwrap();
                    for r in 1..=runs {
                        let file = out.join(format!("{id}.run{r}.ref.json"));
                        if !nixl {
                            assert!(!file.exists());
                            continue;
                        }
                        // The driver's table, parsed as nixlbench's: the same transfer, a
                        // descriptor list of size / block blocks.
                        let d = doc(&file);
                        assert_eq!((d.tool.as_str(), d.bench.as_str()), ("nixlbench", "xfer"));
                        assert_eq!(d.config["op_type"], "WRITE");
                        let x = &d.results[0];
                        assert_eq!(x.message_size, block);
                        assert_eq!(x.extra["batch_size"], size / block);
                        assert!(count_ok(x.iterations));
                        assert!(x.bandwidth_gbps.unwrap() > 0.0);
                    }
                    if !nixl {
                        assert!(
                            err.contains("[nixl-r1] skipped (needs NIXL's Python API"),
                            "{err}"
                        );
                    }
                    twin_patterns.push(id.to_string());
                }
                "kvxfer_kv" => {
                    // kvxfer kv profile (L2): the cache's bytes at the plan's prompt length, and
                    // a decomposition whose parts add up to what was measured.
                    let k = doc(&out.join(format!("{id}.run1.json")));
                    assert_eq!(
                        (k.tool.as_str(), k.bench.as_str(), k.layer.as_str()),
                        ("kvxfer", "kv_profile", "L2")
                    );
                    assert_eq!(k.status, kvxfer::report::Status::Complete, "{:?}", k.errors);
                    let r = &k.results[0];
                    let tokens = params["tokens"].as_u64().unwrap();
                    assert_eq!(r.message_size, tokens * 57_344, "Qwen2.5-7B, bf16");
                    assert!(count_ok(r.iterations));
                    let d = &r.extra["decomposition"];
                    let f = |key: &str| d[key].as_f64().unwrap();
                    let link = params["link_gbps"].as_f64().unwrap();
                    let theoretical = r.message_size as f64 / (link * 1e9) * 1e3;
                    assert!((f("theoretical_ms") - theoretical).abs() < 1e-6, "{d}");
                    let parts = f("theoretical_ms")
                        + f("registration_ms")
                        + f("slow_start_ms")
                        + f("per_descriptor_ms")
                        + f("remainder_ms");
                    assert!((parts - f("measured_ms")).abs() < 1e-6, "{d}");
                    assert!(f("measured_ms") > 0.0, "{d}");
                    kv_patterns.push(id.to_string());
                }
                other => panic!("no check for {other}"),
            }
        }
    }
    assert_eq!(fi_patterns.len(), 2, "tcp and shm");
    assert_eq!(xfer_patterns.len(), 3, "libfabric tcp and shm, UCX tcp");
    assert_eq!(
        twin_patterns.len(),
        6,
        "55M, 224M, 672M over UCX tcp and tcp,cma"
    );
    assert_eq!(ucx_patterns.len(), 4, "tcp and shm, tag_lat and tag_bw");
    assert_eq!(kv_patterns.len(), 1, "kv profile over tcp");

    let read_report = || -> Value {
        serde_json::from_slice(&std::fs::read(out.join("crosscheck.json")).unwrap()).unwrap()
    };
    let report = read_report();
    let tolerance = report["tolerance"].as_f64().unwrap();
    assert_eq!(
        report["tolerance"],
        p["validation_targets"]["crosscheck_tolerance"]
    );
    let rows = report["rows"].as_array().unwrap();
    for (id, sizes, runs) in &fi_patterns {
        for s in sizes {
            let row = |metric: &str| -> &Value {
                rows.iter()
                    .find(|r| {
                        r["pattern"] == **id && r["metric"] == metric && r["message_size"] == *s
                    })
                    .unwrap_or_else(|| panic!("{id} {s} {metric} missing"))
            };
            for metric in ["extra.usec_per_xfer", "bandwidth_mbps"] {
                let r = row(metric);
                assert_eq!(r["kvxfer_runs"].as_array().unwrap().len(), *runs, "{r}");
                assert_eq!(r["reference_runs"].as_array().unwrap().len(), *runs, "{r}");
                println!(
                    "{id} {s} B {metric}: kvxfer {} reference {} ratio {} {} (one run: judged by scripts/compare-pingpong.sh)",
                    r["kvxfer"], r["reference"], r["ratio"], r["verdict"]
                );
                assert_judged(r, tolerance);
            }
            let p50 = row("latency_us.p50");
            assert_eq!(p50["verdict"], "not_comparable");
            assert!(p50["kvxfer"].as_f64().unwrap() > 0.0);
            assert!(p50["reason"].as_str().unwrap().contains("no median"));
        }
    }
    for (id, test, sizes, runs) in &ucx_patterns {
        for s in sizes {
            let row = |metric: &str| -> &Value {
                rows.iter()
                    .find(|r| {
                        r["pattern"] == **id && r["metric"] == metric && r["message_size"] == *s
                    })
                    .unwrap_or_else(|| panic!("{id} {s} {metric} missing"))
            };
            let show = |r: &Value| {
                println!(
                    "{id} {s} B {}: kvxfer {} reference {} ratio {} {}",
                    r["metric"], r["kvxfer"], r["reference"], r["ratio"], r["verdict"]
                )
            };
            let bw = row("bandwidth_mbps");
            show(bw);
            assert!(bw["kvxfer"].as_f64().unwrap() > 0.0);
            if test == "tag_bw" {
                // UCX 1.22's ucx_perftest acknowledges the end of the stream: judged.
                assert_judged(bw, tolerance);
                continue;
            }
            assert_eq!(bw["verdict"], "not_comparable", "{bw}");
            // tag_lat: judged by the median of the last 2048 half round trips on both sides.
            let lat = row("extra.ucx_perftest_percentile_us");
            show(lat);
            assert_eq!(lat["kvxfer_runs"].as_array().unwrap().len(), *runs, "{lat}");
            assert_eq!(
                lat["reference_runs"].as_array().unwrap().len(),
                *runs,
                "{lat}"
            );
            assert!(lat["reason"].as_str().unwrap().contains("last 2048"));
            assert_judged(lat, tolerance);
            for metric in ["extra.overall_latency_us", "latency_us.p50"] {
                let r = row(metric);
                show(r);
                assert_eq!(r["verdict"], "not_comparable", "{r}");
                assert!(r["kvxfer"].as_f64().unwrap() > 0.0);
                assert!(r["reason"].as_str().unwrap().contains("last 2048"), "{r}");
            }
        }
    }
    for id in &twin_patterns {
        let bw = rows
            .iter()
            .find(|r| r["pattern"] == **id && r["metric"] == "bandwidth_mbps");
        let Some(bw) = bw else {
            assert!(!nixl, "{id}: no bandwidth row beside NIXL's");
            continue;
        };
        println!(
            "{id} bandwidth_mbps: kvxfer {} NIXL {} ratio {} {}",
            bw["kvxfer"], bw["reference"], bw["ratio"], bw["verdict"]
        );
        // Judged (kvxfer's transfer size against block x batch).
        assert_eq!(bw["tool"], "nixlbench");
        assert_judged(bw, tolerance);
    }
    if !nixl {
        xfer_patterns.extend(twin_patterns.iter().cloned());
    }
    let unpaired = report["unpaired"].as_array().unwrap();
    let alone: Vec<&str> = unpaired
        .iter()
        .map(|u| u["pattern"].as_str().unwrap())
        .collect();
    xfer_patterns.extend(kv_patterns.iter().cloned());
    xfer_patterns.sort();
    assert_eq!(alone, xfer_patterns, "{unpaired:#?}");
    for u in unpaired {
        assert_eq!(u["tool"], "kvxfer");
        assert!(u["reason"].as_str().unwrap().contains("nixlbench"), "{u}");
    }
    println!("loopback plan end to end in {:?}", started.elapsed());
}

/// The two-node shape on one host: the server and client definitions of a pattern started side
/// by side (PEER_IP = 127.0.0.1), ordered only by their own waits and retries.
#[test]
fn two_node_definitions_meet_each_other_in_order() {
    let _turn = common::fabric_lock();
    if !installed("fi_pingpong") {
        println!(
            "SKIPPED two_node_definitions_meet_each_other_in_order: fi_pingpong not installed"
        );
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let mut p = plan::load_plan(&root.join("plans/loopback.json")).unwrap();
    p["infrastructure"]["topology"] = "two-node".into();
    p["common"]["output_dir"] = out.display().to_string().into();
    p["common"]["control_port"] = free_port().into();
    p["common"]["reference_port"] = free_port().into();
    p["infrastructure"]["tools"]["kvxfer"] = KVXFER.into();
    let mut tcp = p["layers"][0]["patterns"][0].clone();
    let id = tcp["id"].as_str().unwrap().to_string();
    tcp["params"]["iterations"] = 500.into();
    tcp["params"]["runs"] = 2.into();
    p["layers"] = serde_json::json!([{"id": "L0", "name": "tcp", "patterns": [tcp]}]);
    assert_eq!(plan::validate(&p), []);
    let defs = dir.path().join("defs");
    plan::write_generated(&defs, &plan::generate(&p, &root.join("templates")).unwrap()).unwrap();

    let spawn = |def: PathBuf, state: &str| {
        let state = dir.path().join(state);
        std::thread::spawn(move || task_run(&def, &state))
    };
    // The client first: its kvxfer and fi_pingpong wait for the server that starts after it.
    let client = spawn(
        defs.join("client").join(format!("{id}-client.json")),
        "client.json",
    );
    std::thread::sleep(Duration::from_millis(300));
    let server = spawn(defs.join(format!("{id}-server.json")), "server.json");
    client.join().unwrap();
    server.join().unwrap();

    let sizes = u64s(&p["layers"][0]["patterns"][0]["params"]["sizes"]);
    for r in 1..=2 {
        for (file, tool, role) in [
            (format!("{id}.run{r}.json"), "kvxfer", Some("initiator")),
            (format!("{id}.run{r}.server.json"), "kvxfer", Some("target")),
            (format!("{id}.run{r}.ref.json"), "fi_pingpong", None),
            (format!("{id}.run{r}.server.ref.json"), "fi_pingpong", None),
        ] {
            let d = doc(&out.join(&file));
            assert_eq!(d.tool, tool, "{file}");
            let got: Vec<u64> = d.results.iter().map(|x| x.message_size).collect();
            assert_eq!(got, sizes, "{file}");
            assert!(d.results.iter().all(|x| x.iterations == 500), "{file}");
            if let Some(role) = role {
                assert_eq!(d.config["role"], role, "{file}");
            }
        }
    }
    // Each side pairs with its own twin; the figures are there, two runs each.
    Command::new(KVXFER)
        .arg("crosscheck")
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("crosscheck.json")).unwrap()).unwrap();
    for pattern in [id.clone(), format!("{id} (server)")] {
        let rows: Vec<&Value> = report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["pattern"] == *pattern.as_str() && r["metric"] == "extra.usec_per_xfer")
            .collect();
        assert_eq!(rows.len(), sizes.len(), "{pattern}: {report:#}");
        for r in rows {
            assert_eq!(r["kvxfer_runs"].as_array().unwrap().len(), 2);
            assert_eq!(r["reference_runs"].as_array().unwrap().len(), 2);
            assert!(r["ratio"].as_f64().unwrap() > 0.0);
        }
    }
    assert_eq!(report["unpaired"], serde_json::json!([]));
}

/// Plan values that try to break out of their quotes reach the shipped template's commands as
/// data: a results folder named `'; touch MARKER #` is created and filled, nothing is touched.
#[test]
fn hostile_plan_values_run_as_data_through_the_shipped_template() {
    if !installed("fi_pingpong") {
        println!("SKIPPED hostile_plan_values_run_as_data_through_the_shipped_template: fi_pingpong not installed");
        return;
    }
    let _turn = common::fabric_lock();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("x");
    let out = dir.path().join(format!("'; touch {} #", marker.display()));
    let mut p = plan::load_plan(&root.join("plans/loopback.json")).unwrap();
    p["common"]["output_dir"] = out.display().to_string().into();
    p["common"]["control_port"] = free_port().into();
    p["common"]["reference_port"] = free_port().into();
    p["infrastructure"]["tools"]["kvxfer"] = KVXFER.into();
    let mut tcp = p["layers"][0]["patterns"][0].clone();
    tcp["description"] = format!(
        "\"; touch {}; \\\"$(touch {})",
        marker.display(),
        marker.display()
    )
    .into();
    tcp["params"]["sizes"] = serde_json::json!([64]);
    tcp["params"]["iterations"] = 10.into();
    tcp["params"]["runs"] = 1.into();
    let id = tcp["id"].as_str().unwrap().to_string();
    p["layers"] = serde_json::json!([{"id": "L0", "name": "tcp", "patterns": [tcp]}]);
    assert_eq!(plan::validate(&p), []);
    let defs = dir.path().join("defs");
    plan::write_generated(&defs, &plan::generate(&p, &root.join("templates")).unwrap()).unwrap();
    task_run(
        &defs.join(format!("{id}.json")),
        &dir.path().join("state.json"),
    );
    assert!(!marker.exists(), "a plan value ran as a command");
    for f in ["run1.json", "run1.ref.json", "run1.ref.txt"] {
        assert!(out.join(format!("{id}.{f}")).is_file(), "{f}");
    }
    assert!(out.join("crosscheck.json").is_file());
}

use super::*;
use serde_json::json;

fn minimal() -> Value {
    json!({
        "name": "p", "description": "d",
        "infrastructure": {"tools": {"kvxfer": "kvxfer", "ucx_perftest": "ucx_perftest"}},
        "common": {"output_dir": "/tmp/r", "timeout_s": 60},
        "kv_cache_reference": {"bytes_per_token": 57344}, "validation_targets": {},
        "layers": [{"id": "L3", "patterns": [{
            "id": "pll-ucx-lat", "tool": "ucx_perftest", "description": "x",
            "params": {"test": "tag_lat", "ucx_tls": "tcp", "mem": "host",
                       "sizes": [64], "iterations": 10, "warmup": 0}}]}]
    })
}

#[test]
fn a_minimal_plan_is_valid() {
    assert_eq!(validate(&minimal()), []);
}

#[test]
fn ports_tools_tolerance_and_endpoints_are_checked_by_field() {
    let cases: Vec<(&str, Value, &str)> = vec![
        ("/common/control_port", json!(-1), "$.common.control_port"),
        (
            "/common/control_port",
            json!(99999),
            "$.common.control_port",
        ),
        (
            "/common/control_port",
            json!("1; rm -rf /"),
            "$.common.control_port",
        ),
        (
            "/infrastructure/tools/kvxfer",
            Value::Null,
            "$.infrastructure.tools.kvxfer",
        ),
        (
            "/infrastructure/tools/ucx_perftest",
            json!(""),
            "$.infrastructure.tools.ucx_perftest",
        ),
        (
            "/validation_targets/crosscheck_tolerance",
            json!(-0.5),
            "$.validation_targets.crosscheck_tolerance",
        ),
    ];
    for (at, value, path) in cases {
        let mut p = minimal();
        let (parent, key) = at.rsplit_once('/').unwrap();
        let obj = p.pointer_mut(parent).unwrap().as_object_mut().unwrap();
        if value.is_null() {
            obj.remove(key);
        } else {
            obj.insert(key.to_string(), value.clone());
        }
        let got = validate(&p);
        assert_eq!(got.len(), 1, "{at}={value}: {got:?}");
        assert_eq!(got[0].path, path, "{at}={value}");
    }
    let mut p = minimal();
    p["validation_targets"]["crosscheck_tolerance"] = json!(0.1);
    p["common"]["control_port"] = json!(47600);
    assert_eq!(validate(&p), []);
    p["layers"][0] = json!({"id": "L0", "patterns": [{
        "id": "pll-fi", "tool": "fi_pingpong", "description": "x",
        "params": {"provider": "tcp", "endpoint": "dgram", "mode": "msg",
                   "sizes": [64], "iterations": 1, "warmup": 0}}]});
    p["infrastructure"]["tools"]["fi_pingpong"] = json!("fi_pingpong");
    let got: Vec<String> = validate(&p).iter().map(|x| x.path.clone()).collect();
    assert_eq!(got, ["$.layers[0].patterns[0].params.endpoint"]);
}

#[test]
fn every_problem_has_its_path() {
    let mut p = minimal();
    p["common"]["output_dir"] = json!("relative");
    p["name"] = json!("../up");
    let pat = &mut p["layers"][0]["patterns"][0];
    pat["tool"] = json!("nixlbench");
    let mut dup = p["layers"][0]["patterns"][0].clone();
    dup["params"]["sizes"] = json!([]);
    dup["tool"] = json!("ucx_perftest");
    dup["params"]["mem"] = json!("gpu");
    dup["description"] = json!("a\nb");
    dup["env"] = json!({"BAD NAME": "x"});
    p["layers"][0]["patterns"].as_array_mut().unwrap().push(dup);
    let got: Vec<String> = validate(&p).iter().map(|x| x.to_string()).collect();
    let want = [
        "$.common.output_dir: must be an absolute path",
        "$.name: must hold only letters, digits, - and _ (it names a folder)",
        "$.layers[0].patterns[1].description: holds a control character (a command must be one line)",
        "$.layers[0].patterns[0].tool: nixlbench belongs to layer L1, not L3",
        "$.layers[0].patterns[0].params.backend: missing",
        "$.layers[0].patterns[1].id: duplicate pattern id \"pll-ucx-lat\"",
        "$.layers[0].patterns[1].params.mem: must be one of host, cuda",
        "$.layers[0].patterns[1].env.BAD NAME: not an environment variable name",
        "$.layers[0].patterns[1].params.sizes: must be a non-empty list of positive integers",
    ];
    for w in want {
        assert!(got.iter().any(|g| g == w), "missing {w:?} in {got:#?}");
    }
}

#[test]
fn an_xfer_pattern_names_a_provider_or_ucx_transports_by_its_backend() {
    let mut p = minimal();
    p["layers"][0]["id"] = json!("L1");
    p["layers"][0]["patterns"][0] = json!({
        "id": "pll-x", "tool": "kvxfer_xfer", "description": "x",
        "params": {"backend": "ucx", "ucx_tls": "tcp", "op": "send", "size": 1024,
                   "concurrency": 1, "scheme": "pairwise", "iterations": 1, "warmup": 0}});
    assert_eq!(validate(&p), []);
    // libfabric (the default) needs a provider and an endpoint type; UCX needs UCX_TLS.
    let x = &mut p["layers"][0]["patterns"][0]["params"];
    x.as_object_mut().unwrap().remove("backend");
    let got: Vec<String> = validate(&p).iter().map(|x| x.to_string()).collect();
    assert_eq!(
        got,
        [
            "$.layers[0].patterns[0].params.provider: missing",
            "$.layers[0].patterns[0].params.endpoint: missing",
        ]
    );
    let x = &mut p["layers"][0]["patterns"][0]["params"];
    x["backend"] = json!("ucx");
    x.as_object_mut().unwrap().remove("ucx_tls");
    x["op"] = json!("atomic");
    let got: Vec<String> = validate(&p).iter().map(|x| x.to_string()).collect();
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(got[0].ends_with("params.ucx_tls: missing"), "{got:#?}");
    assert!(got[1].contains("params.op"), "{got:#?}");
    p["layers"][0]["patterns"][0]["params"]["backend"] = json!("verbs");
    let got: Vec<String> = validate(&p).iter().map(|x| x.to_string()).collect();
    assert!(got
        .iter()
        .any(|g| g == "$.layers[0].patterns[0].params.backend: must be one of libfabric, ucx"));
}

#[test]
fn optional_settings_are_checked() {
    let mut p = minimal();
    assert_eq!(validate(&p), []);
    p["infrastructure"]["topology"] = json!("one-host");
    p["common"]["peer_timeout_s"] = json!(30);
    p["common"]["realtime_priority"] = json!(1);
    p["layers"][0]["patterns"][0]["params"]["runs"] = json!(5);
    p["layers"][0]["patterns"][0]["params"]["expect_path"] = json!("rdmap*,efa*");
    assert_eq!(validate(&p), []);
    for bad in [json!(""), json!("efa0,,efa1"), json!("eth 0"), json!(3)] {
        let mut q = p.clone();
        q["layers"][0]["patterns"][0]["params"]["expect_path"] = bad;
        let got: Vec<String> = validate(&q).iter().map(|x| x.to_string()).collect();
        assert_eq!(
            got,
            ["$.layers[0].patterns[0].params.expect_path: must be network, local or DEV[,DEV...] \
              (kvxfer's --expect-path)"]
        );
    }
    p["infrastructure"]["topology"] = json!("three-node");
    p["common"]["peer_timeout_s"] = json!(0);
    p["common"]["realtime_priority"] = json!(100);
    p["layers"][0]["patterns"][0]["params"]["runs"] = json!(0);
    let got: Vec<String> = validate(&p).iter().map(|x| x.to_string()).collect();
    assert_eq!(
        got,
        [
            "$.common.peer_timeout_s: must be an integer >= 1; it is 0",
            "$.common.realtime_priority: must be an integer from 1 to 99; it is 100",
            "$.infrastructure.topology: must be one of two-node, one-host",
            "$.layers[0].patterns[0].params.runs: must be an integer from 1 to 100 (alternating runs of kvxfer and the stock tool); it is 0",
        ]
    );
    let mut q = minimal();
    q["infrastructure"]["topology"] = json!("one-host");
    q["layers"][0]["id"] = json!("L1");
    q["layers"][0]["patterns"][0]["tool"] = json!("nixlbench");
    let got: Vec<String> = validate(&q).iter().map(|x| x.to_string()).collect();
    assert!(
        got.contains(&"$.layers[0].patterns[0].tool: a one-host plan runs only fi_pingpong, kvxfer_xfer, kvxfer_kv, ucx_perftest patterns".to_string()),
        "{got:#?}"
    );
}

#[test]
fn kvxfer_kv_patterns_need_their_model_and_layout() {
    let mut p = minimal();
    p["layers"][0]["id"] = json!("L2");
    p["layers"][0]["patterns"][0] = json!({
        "id": "pll-kvbench-efa-1k", "tool": "kvxfer_kv", "description": "x",
        "params": {"provider": "efa", "endpoint": "rdm", "model": "qwen2.5-7b",
                   "tokens": 1000, "page_size": 16, "tp": 1, "pp": 1,
                   "access_pattern": "block", "iterations": 20, "warmup": 2}});
    assert_eq!(validate(&p), []);
    // Two runs (back to back, contiguous) of up to 60 s fit a command's 900 s.
    p["common"]["timeout_s"] = json!(900);
    p["layers"][0]["patterns"][0]["params"]["iterations"] = json!("auto");
    assert_eq!(validate(&p), []);
    p["layers"][0]["patterns"][0]["params"]["precision_pct"] = json!(2.5);
    p["layers"][0]["patterns"][0]["params"]["max_time_s"] = json!(10);
    assert_eq!(validate(&p), []);
    p["layers"][0]["patterns"][0]["params"]["max_time_s"] = json!(0);
    let got: Vec<String> = validate(&p).iter().map(|x| x.to_string()).collect();
    assert_eq!(
        got,
        ["$.layers[0].patterns[0].params.max_time_s: must be an integer from 1 to 3600; it is 0"]
    );
    p["layers"][0]["patterns"][0]["params"]["max_time_s"] = json!(10);
    p["layers"][0]["patterns"][0]["params"]["iterations"] = json!(20);
    let got: Vec<String> = validate(&p).iter().map(|x| x.path.clone()).collect();
    assert_eq!(
        got,
        [
            "$.layers[0].patterns[0].params.precision_pct",
            "$.layers[0].patterns[0].params.max_time_s"
        ]
    );
    // The runs auto may time must fit the command's timeout: three shapes of 10 s here.
    p["common"]["timeout_s"] = json!(30);
    p["layers"][0]["patterns"][0]["params"]["iterations"] = json!("auto");
    p["layers"][0]["patterns"][0]["params"]["idle_ms"] = json!([0, 100]);
    let got: Vec<String> = validate(&p).iter().map(|x| x.to_string()).collect();
    assert_eq!(
        got,
        ["$.layers[0].patterns[0].params.max_time_s: auto may time 3 run(s) of up to 10 s here, \
          past common.timeout_s (30 s) that ends the command: give a smaller max_time_s"]
    );
    p["layers"][0]["patterns"][0]["params"]["max_time_s"] = json!(9);
    assert_eq!(validate(&p), []);
    // --cold-cache: a boolean.
    p["layers"][0]["patterns"][0]["params"]["cold_cache"] = json!(true);
    assert_eq!(validate(&p), []);
    p["layers"][0]["patterns"][0]["params"]["cold_cache"] = json!("yes");
    let got: Vec<String> = validate(&p).iter().map(|x| x.to_string()).collect();
    assert_eq!(
        got,
        ["$.layers[0].patterns[0].params.cold_cache: must be true or false; it is \"yes\""]
    );
    p["layers"][0]["patterns"][0]["params"]
        .as_object_mut()
        .unwrap()
        .remove("cold_cache");
    for k in ["precision_pct", "max_time_s"] {
        p["layers"][0]["patterns"][0]["params"]
            .as_object_mut()
            .unwrap()
            .remove(k);
    }
    p["layers"][0]["patterns"][0]["params"]["iterations"] = json!("some");
    let got: Vec<String> = validate(&p).iter().map(|x| x.to_string()).collect();
    assert_eq!(
        got,
        [
            "$.layers[0].patterns[0].params.iterations: must be an integer >= 1 or \"auto\"; \
          it is the text \"some\", not a number"
        ]
    );
    p["layers"][0]["patterns"][0]["params"]["iterations"] = json!(20);
    let pat = &mut p["layers"][0]["patterns"][0]["params"];
    pat.as_object_mut().unwrap().remove("tokens");
    pat["access_pattern"] = json!("diagonal");
    let got: Vec<String> = validate(&p).iter().map(|x| x.path.clone()).collect();
    assert_eq!(
        got,
        [
            "$.layers[0].patterns[0].params.tokens",
            "$.layers[0].patterns[0].params.access_pattern"
        ]
    );
}

#[test]
fn ids_are_checked() {
    assert!(valid_id("pll-fi-pingpong-efa-msg"));
    assert!(!valid_id("pll-"));
    assert!(!valid_id("pll-A"));
    assert!(!valid_id("x-1"));
}

#[test]
fn nixl_twin_needs_a_pairwise_ucx_transfer_of_equal_blocks() {
    let ok = json!({"backend": "ucx", "ucx_tls": "tcp", "op": "write", "size": 704643072,
                    "block": 4194304, "concurrency": 1, "scheme": "pairwise", "twin": "nixl"});
    let probs = |v: &Value| twin_problems(v.as_object().unwrap());
    assert!(probs(&ok).is_empty(), "{:?}", probs(&ok));
    let mut no_twin = ok.clone();
    no_twin.as_object_mut().unwrap().remove("twin");
    no_twin["op"] = json!("send");
    assert!(probs(&no_twin).is_empty());
    let mut bad = ok.clone();
    bad["backend"] = json!("libfabric");
    bad["op"] = json!("send");
    bad["concurrency"] = json!(4);
    bad["block"] = json!(4000000);
    let keys: Vec<&str> = probs(&bad).iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, ["backend", "op", "scheme", "block"]);
    let mut auto = ok.clone();
    auto["iterations"] = json!("auto");
    let keys: Vec<&str> = probs(&auto).iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, ["iterations"]);
    auto.as_object_mut().unwrap().remove("twin");
    assert!(probs(&auto).is_empty());
    let mut other = ok.clone();
    other["twin"] = json!("nixlbench");
    assert_eq!(probs(&other), [("twin", "must be nixl".to_string())]);
}

#[test]
fn a_number_no_count_can_be_says_what_it_is() {
    let mut p = minimal();
    for (v, says) in [
        (
            json!(1e30),
            "it is 1e30, past the largest whole number (2^64 - 1)",
        ),
        (json!(2.5), "it is 2.5, not a whole number"),
        (json!(-3), "it is -3, below 0"),
        (json!("30"), "it is the text \"30\", not a number"),
    ] {
        p["common"]["timeout_s"] = v;
        let got: Vec<String> = validate(&p).iter().map(|x| x.to_string()).collect();
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(
            got[0].starts_with("$.common.timeout_s: must be an integer >= 1"),
            "{got:#?}"
        );
        assert!(got[0].ends_with(says), "{got:#?}");
    }
}

#[test]
fn cpus_are_distinct_cpu_numbers_on_patterns_whose_tools_can_be_pinned() {
    let problem = |tool: &str, v: Value| cpus_problem(tool, v.as_object().unwrap());
    assert_eq!(problem("fi_pingpong", json!({})), None);
    for tool in [
        "kvxfer_xfer",
        "kvxfer_kv",
        "fi_pingpong",
        "fi_rma_pingpong",
        "ucx_perftest",
    ] {
        assert_eq!(problem(tool, json!({"cpus": [2, 3]})), None, "{tool}");
    }
    let said = |tool: &str, v: Value| problem(tool, v).unwrap_or_default();
    assert!(said("nixlbench", json!({"cpus": [0]})).contains("nixlbench cannot be pinned"));
    assert!(said("kvxfer_xfer", json!({"cpus": [0], "twin": "nixl"})).contains("nixl twin"));
    assert!(said("fi_pingpong", json!({"cpus": "0-3"})).contains("list of CPU numbers"));
    assert!(said("fi_pingpong", json!({"cpus": []})).contains("list of CPU numbers"));
    assert!(said("fi_pingpong", json!({"cpus": [0, -1]})).contains("list of CPU numbers"));
    assert_eq!(
        said("fi_pingpong", json!({"cpus": [1, 0, 1]})),
        "CPU 1 is named twice"
    );
    assert_eq!(
        said("ucx_perftest", json!({"cpus": [4096]})),
        "CPU 4096 is above 4095"
    );
}

#[test]
fn cold_cache_is_a_boolean_of_kvxfer_patterns_without_a_nixl_twin() {
    let problem = |tool: &str, v: Value| cold_cache_problem(tool, v.as_object().unwrap());
    assert_eq!(problem("kvxfer_xfer", json!({"size": 1})), None);
    assert_eq!(problem("kvxfer_xfer", json!({"cold_cache": true})), None);
    assert_eq!(problem("kvxfer_kv", json!({"cold_cache": false})), None);
    assert_eq!(
        problem("kvxfer_xfer", json!({"cold_cache": 1})).as_deref(),
        Some("must be true or false; it is 1")
    );
    let stock = problem("fi_pingpong", json!({"cold_cache": true})).unwrap();
    assert!(stock.contains("fi_pingpong has no such option"), "{stock}");
    let twin = problem("kvxfer_xfer", json!({"cold_cache": true, "twin": "nixl"})).unwrap();
    assert!(twin.contains("nixl twin does not evict"), "{twin}");
    assert_eq!(
        problem("kvxfer_xfer", json!({"cold_cache": false, "twin": "nixl"})),
        None
    );
}

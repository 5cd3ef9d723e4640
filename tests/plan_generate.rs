//! The shipped plan and templates: validation, generation, determinism, stock-tool option names,
//! and errors that name the file and the place.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use kvxfer::plan::{self, render, Generated, PlanError, TaskDefinition};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shipped() -> Vec<Generated> {
    let plan = plan::load_plan(&root().join("plans/phase-low-level.json")).unwrap();
    plan::generate(&plan, &root().join("templates")).unwrap()
}

fn commands(g: &Generated) -> Vec<String> {
    let def = TaskDefinition::from_json(std::str::from_utf8(&g.bytes).unwrap()).unwrap();
    def.tasks
        .iter()
        .flat_map(|t| t.commands.iter().chain(t.skip_if.iter()).cloned())
        .collect()
}

#[test]
fn every_pattern_of_every_layer_gives_a_valid_server_client_pair() {
    let plan = plan::load_plan(&root().join("plans/phase-low-level.json")).unwrap();
    let files = shipped();
    let mut ids = BTreeSet::new();
    // Patterns kvxfer runs alone (no stock tool can: KVBench has no LIBFABRIC path).
    let mut alone = BTreeSet::new();
    for layer in plan["layers"].as_array().unwrap() {
        let pats = layer["patterns"].as_array().unwrap();
        assert!(!pats.is_empty(), "layer {} has no pattern", layer["id"]);
        for p in pats {
            ids.insert(p["id"].as_str().unwrap().to_string());
            if p["tool"] == "kvxfer_kv" {
                alone.insert(p["id"].as_str().unwrap().to_string());
            }
        }
    }
    assert_eq!(alone.len(), 3, "{alone:?}");
    let layers: Vec<&str> = plan["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(layers, ["L0", "L1", "L2", "L3"]);
    assert_eq!(files.len(), 2 * ids.len());
    for id in &ids {
        let server = PathBuf::from(format!("{id}-server.json"));
        let client = Path::new("client").join(format!("{id}-client.json"));
        for want in [&server, &client] {
            let g = files
                .iter()
                .find(|g| &g.path == want)
                .unwrap_or_else(|| panic!("{want:?}"));
            let def = TaskDefinition::from_json(std::str::from_utf8(&g.bytes).unwrap()).unwrap();
            let declared: BTreeSet<String> = def.variables.keys().cloned().collect();
            for c in commands(g) {
                for v in render::runner_variables(&c) {
                    assert!(
                        declared.contains(&v),
                        "{want:?}: {{{{{v}}}}} not declared: {c}"
                    );
                }
            }
            let ids: Vec<&str> = def.tasks.iter().map(|t| t.id.as_str()).collect();
            // The plan's first pattern runs the doctor first.
            let start = usize::from(id == "pll-fi-pingpong-efa-default");
            assert_eq!(ids[start], "prepare-output", "{ids:?}");
            let task = |name: &str| {
                ids.iter()
                    .any(|i| *i == name || i.strip_prefix(name).is_some_and(|r| r == "-r1"))
            };
            assert!(task("kvxfer"), "{ids:?}");
            assert_eq!(task("reference"), !alone.contains(id), "{ids:?}");
        }
    }
    // The spec's headline patterns are there.
    for id in [
        "pll-fi-pingpong-efa-msg",
        "pll-fi-rma-pingpong-efa-write",
        "pll-nixlbench-efa-672m",
        "pll-nixlbench-tcp-672m-c16",
        "pll-kvbench-ucx-tcp-12k",
        "pll-ucx-perftest-srd-cuda-tag-bw",
        // The spec's example ids.
        "pll-fi-pingpong-efa-default",
        "pll-nixlbench-efa-55m",
        "pll-kvbench-efa-1k",
        "pll-kvbench-efa-4k",
        "pll-kvbench-efa-12k",
    ] {
        assert!(ids.contains(id), "{id} missing");
    }
}

#[test]
fn generation_is_byte_identical_and_written_where_the_runner_expects() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for dir in [a.path(), b.path()] {
        Command::cargo_bin("kvxfer")
            .unwrap()
            .args(["plan", "generate"])
            .arg(root().join("plans/phase-low-level.json"))
            .arg("--out")
            .arg(dir)
            .assert()
            .success();
    }
    let list = |d: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut v = Vec::new();
        for sub in [d.to_path_buf(), d.join("client")] {
            for e in std::fs::read_dir(&sub).unwrap() {
                let p = e.unwrap().path();
                if p.is_file() {
                    v.push((
                        p.strip_prefix(d).unwrap().to_path_buf(),
                        std::fs::read(&p).unwrap(),
                    ));
                }
            }
        }
        v.sort();
        v
    };
    let (la, lb) = (list(a.path()), list(b.path()));
    assert_eq!(la.len(), 72);
    assert!(la == lb, "a second generation differs");
    assert!(la
        .iter()
        .any(|(p, _)| p == Path::new("client/pll-nixlbench-efa-55m-client.json")));
}

#[test]
fn stock_tools_get_their_real_option_names() {
    let files = shipped();
    let text = |name: &str| -> String {
        let g = files.iter().find(|g| g.path == Path::new(name)).unwrap();
        commands(g).join("\n")
    };
    let nb = text("client/pll-nixlbench-efa-672m-c16-client.json");
    for opt in [
        "nixlbench --benchmark_group pll-nixlbench-efa-672m-c16",
        "--backend LIBFABRIC",
        "--initiator_seg_type VRAM --target_seg_type VRAM",
        "--scheme manytoone",
        "--op_type WRITE",
        "--start_block_size 704643072 --max_block_size 704643072",
        "--num_iter 160 --warmup_iter 32",
        "--num_initiator_dev 16",
        "--etcd_endpoints http://{{PEER_IP}}:2379",
        // kvxfer xfer's real flags; the iterations nixlbench really runs for a block over 1 MiB
        // (160 / 16, 32 / 16).
        "kvxfer xfer --provider efa --endpoint rdm --size 704643072 --block 704643072 --concurrency 16 --scheme many-to-one --op write --initiator-seg VRAM --target-seg VRAM --iterations 10 --warmup 2 --timeout 300",
        "kvxfer parse --tool nixlbench",
        "kvxfer crosscheck /tmp/low-level-results --tolerance 0.1",
    ] {
        assert!(nb.contains(opt), "{opt:?} missing from\n{nb}");
    }
    assert!(
        !nb.contains("--scheme many-to-one --op_type"),
        "kvxfer's scheme name given to nixlbench"
    );
    let fi = text("client/pll-fi-pingpong-efa-tagged-client.json");
    assert!(
        fi.contains("fi_pingpong -p efa -e rdm -m tagged -I 1000 -S \"$s\" -P 47592 {{PEER_IP}}"),
        "{fi}"
    );
    assert!(
        fi.contains("kvxfer pingpong --provider efa --endpoint rdm --mode tagged"),
        "{fi}"
    );
    // kvxfer pingpong's real interface: the server listens, the client names its peer, both
    // bounded; the stock tool meets its peer on another port.
    let fis = text("pll-fi-pingpong-efa-tagged-server.json");
    for (t, want) in [
        (&fi, "timeout -k 10 900 kvxfer pingpong --provider efa --endpoint rdm --mode tagged --sizes 64,1024,65536,1048576,10485760,104857600 --iterations 1000 --warmup 10 --timeout 300 --expect-path 'rdmap*,efa*' --pattern-id pll-fi-pingpong-efa-tagged --peer {{PEER_IP}}:47590 --json /tmp/low-level-results/pll-fi-pingpong-efa-tagged.run1.json"),
        (&fis, "kvxfer pingpong --provider efa --endpoint rdm --mode tagged --sizes 64,1024,65536,1048576,10485760,104857600 --iterations 1000 --warmup 10 --timeout 300 --expect-path 'rdmap*,efa*' --pattern-id pll-fi-pingpong-efa-tagged --listen :47590 --json /tmp/low-level-results/pll-fi-pingpong-efa-tagged.run1.server.json"),
        (&fis, "fi_pingpong -p efa -e rdm -m tagged -I 1000 -S \"$s\" -B 47592; done ) > /tmp/low-level-results/pll-fi-pingpong-efa-tagged.run1.server.ref.txt"),
        (&fis, "kvxfer parse --tool fi_pingpong /tmp/low-level-results/pll-fi-pingpong-efa-tagged.run1.server.ref.txt --json /tmp/low-level-results/pll-fi-pingpong-efa-tagged.run1.server.ref.json"),
    ] {
        assert!(t.contains(want), "{want:?} missing from\n{t}");
    }
    let rma = text("pll-fi-rma-pingpong-efa-read-server.json");
    assert!(
        rma.contains("fi_rma_pingpong -p efa -e rdm -o read -w 10 -E -I 1000 -S \"$s\""),
        "{rma}"
    );
    let ucx = text("client/pll-ucx-perftest-tcp-host-tag-bw-client.json");
    assert!(ucx.contains("UCX_TLS=tcp timeout -k 10 900 ucx_perftest -p 47592 -t tag_bw -s \"$s\" -n 20 -w 2 -m host {{PEER_IP}}"), "{ucx}");
    assert!(ucx.contains("kvxfer ucx-perf --test tag_bw --sizes 57344000,234881024,704643072 --iterations 20 --warmup 2 --memory host --timeout 300 --expect-path 'eth*,ens*,enp*' --pattern-id pll-ucx-perftest-tcp-host-tag-bw --peer {{PEER_IP}}:47590 --json /tmp/low-level-results/pll-ucx-perftest-tcp-host-tag-bw.run1.json"), "{ucx}");
    let kvb = text("pll-kvbench-ucx-srd-1k-server.json");
    assert!(kvb.contains("main.py profile --model"), "{kvb}");
    // KVBench's twin: kvxfer kv profile over UCX reading the same model and config files.
    assert!(kvb.contains("UCX_TLS=srd timeout -k 10 900 kvxfer kv profile --backend ucx --model /tmp/low-level-results/pll-kvbench-ucx-srd-1k.model.yaml --model-config /tmp/low-level-results/pll-kvbench-ucx-srd-1k.config.yaml --tokens 1000 --timeout 300 --expect-path 'rdmap*,efa*' --pattern-id pll-kvbench-ucx-srd-1k --json /tmp/low-level-results/pll-kvbench-ucx-srd-1k.server.json --listen :47590"), "{kvb}");
    // On EFA, kvxfer's own profile over libfabric (KVBench has no LIBFABRIC path).
    let efa = text("client/pll-kvbench-efa-4k-client.json");
    assert!(efa.contains("kvxfer kv profile --model qwen2.5-7b --tokens 4096 --page-size 16 --tp 1 --pp 1 --access-pattern block --idle-ms 0,100,1000 --link-gbps 4.4 --provider efa --endpoint rdm --iterations auto --warmup 2 --timeout 300 --expect-path 'rdmap*,efa*' --pattern-id pll-kvbench-efa-4k --peer {{PEER_IP}}:47590 --json /tmp/low-level-results/pll-kvbench-efa-4k.run1.json"), "{efa}");
    assert!(!efa.contains("main.py"), "{efa}");
    let fpp = text("client/pll-fi-pingpong-efa-default-client.json");
    assert!(fpp.contains("fi_pingpong -p efa -e rdm"), "{fpp}");
    // The plan's first task: the doctor, with the plan's environment; the client asks its
    // peer's control port. No other pattern runs it.
    let first = |name: &str| -> String {
        let g = files.iter().find(|g| g.path == Path::new(name)).unwrap();
        let def = TaskDefinition::from_json(std::str::from_utf8(&g.bytes).unwrap()).unwrap();
        format!("{}: {}", def.tasks[0].id, def.tasks[0].commands.join("; "))
    };
    assert!(
        first("client/pll-fi-pingpong-efa-default-client.json").starts_with(
            "doctor: env FI_EFA_FORK_SAFE=1 FI_EFA_USE_DEVICE_RDMA=1 timeout -k 10 900 kvxfer doctor \
         --provider efa --peer {{PEER_IP}}:47590 ||"
        )
    );
    assert!(first("pll-fi-pingpong-efa-default-server.json")
        .starts_with("doctor: env FI_EFA_FORK_SAFE=1 FI_EFA_USE_DEVICE_RDMA=1 timeout -k 10 900 kvxfer doctor --provider efa ||"));
    assert!(first("pll-fi-pingpong-efa-tagged-server.json").starts_with("prepare-output: "));
    assert!(kvb.contains(
        "--isl 1000 --osl 128 --num_requests 1 --page_size 16 --tp 1 --pp 1 --access_pattern block"
    ));
    // KVBench's own spelling (an underscore), its required --backend, and VRAM to VRAM by
    // --source/--destination (which override the segment-type options).
    assert!(
        kvb.contains("--backend UCX --isl 1000")
            && kvb
                .contains("--source gpu --destination gpu --etcd_endpoints http://127.0.0.1:2379"),
        "{kvb}"
    );
    assert!(
        kvb.contains("curl -sf http://127.0.0.1:2379/health"),
        "etcd health as skip_if"
    );
}

#[test]
fn a_broken_plan_names_file_and_places() {
    let dir = tempfile::tempdir().unwrap();
    let bad_json = dir.path().join("bad.json");
    std::fs::write(&bad_json, "{\n  \"name\": \"x\",\n  oops\n}\n").unwrap();
    match plan::load_plan(&bad_json) {
        Err(e @ PlanError::Json { line: 3, .. }) => {
            assert!(
                e.to_string()
                    .starts_with(&format!("{}:3:", bad_json.display())),
                "{e}"
            )
        }
        other => panic!("{other:?}"),
    }
    let mut p: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root().join("plans/phase-low-level.json")).unwrap())
            .unwrap();
    p["layers"][1]["patterns"][0]["params"]["scheme"] = "many_to_one".into();
    p["layers"][3]["patterns"][2]["params"]["sizes"] = serde_json::json!([]);
    let invalid = dir.path().join("invalid.json");
    std::fs::write(&invalid, serde_json::to_vec(&p).unwrap()).unwrap();
    let out = Command::cargo_bin("kvxfer")
        .unwrap()
        .args(["plan", "validate"])
        .arg(&invalid)
        .assert()
        .failure()
        .get_output()
        .clone();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("$.layers[1].patterns[0].params.scheme: must be one of pairwise, manytoone, onetomany, tp"),
        "{err}"
    );
    assert!(
        err.contains("$.layers[3].patterns[2].params.sizes: must be a non-empty list"),
        "{err}"
    );
    assert!(err.contains("2 problem(s)"), "{err}");
}

#[test]
fn a_broken_template_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(root().join("templates")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    let broken = dir.path().join("kvbench.json.jinja2");
    std::fs::write(
        &broken,
        "{\n  \"name\": {{ pattern.id|tojson }},\n  {% if %}\n}\n",
    )
    .unwrap();
    let plan = plan::load_plan(&root().join("plans/phase-low-level.json")).unwrap();
    let e = plan::generate(&plan, dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("kvbench.json.jinja2") && e.contains("line 3"),
        "{e}"
    );
    // A template that renders no valid definition is refused too, naming the pattern.
    std::fs::write(
        &broken,
        "{\"name\": {{ pattern.id|tojson }}, \"tasks\": []}",
    )
    .unwrap();
    let e = plan::generate(&plan, dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("kvbench.json.jinja2") && e.contains("pll-kvbench-ucx-tcp-1k"),
        "{e}"
    );
}

/// KVBench's loader, as its source has it (ai-dynamo/nixl benchmark/kvbench at 8770b655,
/// models/models.py and the classes; written down in templates/kvbench.json.jinja2): the
/// substring of the lower-cased model_name tested in this order, the class's constructor
/// arguments (exactly these keys), and the strategy key whose precision sizes the cache.
const KVBENCH_CLASSES: &[(&str, &str, &[&str], &str)] = &[
    (
        "llama3.1",
        "Llama3_1",
        &[
            "model_name",
            "num_layers",
            "num_query_heads_with_mha",
            "query_head_dimension",
            "gqa_num_queries_in_group",
            "num_model_params",
        ],
        "model_quant_mode",
    ),
    (
        "deepseek_r1",
        "DeepSeekR1",
        &[
            "model_name",
            "num_layers",
            "num_query_heads",
            "query_head_dimension",
            "embedding_dimension",
            "rope_mla_dimension",
            "mla_latent_vector_dimension",
            "num_model_params",
        ],
        "kvcache_quant_mode",
    ),
    (
        "gpt_oss",
        "GptOss",
        &[
            "model_name",
            "num_layers",
            "num_query_heads",
            "num_kv_heads",
            "query_head_dimension",
            "num_model_params",
        ],
        "model_quant_mode",
    ),
    (
        "qwen3",
        "Qwen3",
        &[
            "model_name",
            "num_layers",
            "num_query_heads",
            "num_kv_heads",
            "query_head_dimension",
            "num_model_params",
        ],
        "model_quant_mode",
    ),
];

/// `key: value` lines of a flat YAML file, the nested config's keys as `section.key`.
fn yaml_keys(text: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let (k, v) = line.split_once(':').unwrap_or_else(|| panic!("{line:?}"));
        let v = v.trim().to_string();
        if line.starts_with("  ") {
            out.push((format!("{section}.{}", k.trim()), v));
        } else if v.is_empty() {
            section = k.to_string();
        } else {
            out.push((k.to_string(), v));
        }
    }
    out
}

/// KVBench's bytes per token for a class's fields and precision (models/*.py, utils.py).
fn kvbench_bytes_per_token(class: &str, f: &dyn Fn(&str) -> u64, precision: &str) -> u64 {
    let width = match precision {
        "fp8" | "int8" => 1,
        "fp16" | "bfloat16" => 2,
        other => panic!("KVBench raises on precision {other:?}"),
    };
    let per_layer = match class {
        "DeepSeekR1" => f("rope_mla_dimension") + f("mla_latent_vector_dimension"),
        "Llama3_1" => {
            f("num_query_heads_with_mha") / f("gqa_num_queries_in_group")
                * f("query_head_dimension")
                * 2
        }
        _ => f("num_kv_heads") * f("query_head_dimension") * 2,
    };
    f("num_layers") * per_layer * width
}

#[test]
fn every_kvbench_pattern_writes_files_kvbench_loads_with_kvxfers_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = plan::load_plan(&root().join("plans/phase-low-level.json")).unwrap();
    p["common"]["output_dir"] = dir.path().display().to_string().into();
    assert_eq!(plan::validate(&p), []);
    let files = plan::generate(&p, &root().join("templates")).unwrap();
    let kvbench: Vec<&Generated> = files
        .iter()
        .filter(|g| {
            let d = TaskDefinition::from_json(std::str::from_utf8(&g.bytes).unwrap()).unwrap();
            d.tasks.iter().any(|t| t.id == "model-files")
        })
        .collect();
    // Six patterns, a server and a client file each.
    assert_eq!(kvbench.len(), 12);
    for g in kvbench {
        let def = TaskDefinition::from_json(std::str::from_utf8(&g.bytes).unwrap()).unwrap();
        let id = def.name.rsplit_once('-').unwrap().0.to_string();
        let task = def.tasks.iter().find(|t| t.id == "model-files").unwrap();
        for c in &task.commands {
            let ok = std::process::Command::new("bash")
                .arg("-c")
                .arg(c)
                .status()
                .unwrap();
            assert!(ok.success(), "{c}");
        }
        let model_path = dir.path().join(format!("{id}.model.yaml"));
        let config_path = dir.path().join(format!("{id}.config.yaml"));
        let model = yaml_keys(&std::fs::read_to_string(&model_path).unwrap());
        let config = yaml_keys(&std::fs::read_to_string(&config_path).unwrap());
        // The name routes to a class, by KVBench's order of tests.
        let name = model
            .iter()
            .find(|(k, _)| k == "model_name")
            .unwrap()
            .1
            .clone();
        let (_, class, fields, quant) = KVBENCH_CLASSES
            .iter()
            .find(|(key, ..)| name.to_ascii_lowercase().contains(key))
            .unwrap_or_else(|| panic!("{id}: KVBench raises on model_name {name}"));
        assert_eq!(*class, "Qwen3", "{id}");
        assert_eq!(name, "qwen3-arch-qwen2.5-7b", "{id}");
        // Exactly the class's constructor arguments.
        let keys: Vec<&str> = model.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, *fields, "{id}");
        let f = |k: &str| -> u64 {
            model
                .iter()
                .find(|(m, _)| m == k)
                .unwrap()
                .1
                .parse()
                .unwrap()
        };
        let cfg = |k: &str| config.iter().find(|(m, _)| m == k).unwrap().1.clone();
        let per_token = kvbench_bytes_per_token(class, &f, &cfg(&format!("strategy.{quant}")));
        let isl: u64 = cfg("runtime.isl").parse().unwrap();
        // KVBench's bytes equal the reference's and the pattern's kv_bytes.
        assert_eq!(per_token, 57_344, "{id}");
        let kv_bytes = [
            (1000, 57_344_000u64),
            (4096, 234_881_024),
            (12_288, 704_643_072),
        ]
        .iter()
        .find(|(t, _)| *t == isl)
        .unwrap()
        .1;
        assert_eq!(per_token * isl, kv_bytes, "{id}");
        // The task says which class and why; KVBench's run does too.
        assert!(
            task.description
                .starts_with("KVBench class Qwen3: KVBench has no class for qwen2.5-7b"),
            "{}",
            task.description
        );
        let run = def.tasks.iter().find(|t| t.id == "reference").unwrap();
        assert!(run.description.contains("Qwen3"), "{}", run.description);
        let parse = def
            .tasks
            .iter()
            .find(|t| t.id == "parse-reference")
            .unwrap();
        assert!(
            parse.commands[0].contains(&format!("--kvbench-model {}", model_path.display())),
            "{:?}",
            parse.commands
        );
        // kvxfer reads the same files to the same bytes, and kv plan names the same class.
        let out = Command::cargo_bin("kvxfer")
            .unwrap()
            .args(["kv", "plan", "--format", "json", "--model"])
            .arg(&model_path)
            .arg("--model-config")
            .arg(&config_path)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v[0]["kvxfer"]["kv_bytes_per_token"], per_token);
        assert_eq!(v[0]["kvxfer"]["kv_bytes_per_request"], kv_bytes);
        assert_eq!(v[0]["kvxfer"]["kvbench"]["class"], *class);
        assert_eq!(v[0]["kvxfer"]["kvbench"]["model_name"], name.as_str());
        // block descriptors of 2,048 B x 28 layers x 16 tokens.
        assert_eq!(v[0]["start_block_size"], 917_504);
        assert_eq!(v[0]["start_batch_size"], isl.div_ceil(16));
    }
    // The same class from the preset the kvxfer_kv patterns name.
    let out = Command::cargo_bin("kvxfer")
        .unwrap()
        .args(["kv", "plan", "--format", "json", "--model", "qwen2.5-7b"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v[0]["kvxfer"]["kvbench"]["class"], "Qwen3");
    assert_eq!(
        v[0]["kvxfer"]["kvbench"]["model_name"],
        "qwen3-arch-qwen2.5-7b"
    );
}

#[test]
fn parsed_kvbench_results_say_which_class_ran_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.yaml");
    std::fs::write(
        &model,
        "model_name: qwen3-arch-qwen2.5-7b\nnum_layers: 28\nnum_query_heads: 28\n\
         num_kv_heads: 4\nquery_head_dimension: 128\nnum_model_params: 7615616512\n",
    )
    .unwrap();
    let raw = dir.path().join("ref.txt");
    std::fs::write(
        &raw,
        "Model Config: c.yaml\nISL: 1000 tokens\nPage Size: 16\nRequests: 1\nTP: 1\nPP: 1\n\
         ================================================================================\n\
         Block Size (B)      Batch Size     Avg Lat. (us)  B/W (MiB/Sec)  B/W (GiB/Sec)  B/W (GB/Sec)\n\
         --------------------------------------------------------------------------------\n\
         917504              63             40.5           3086.419753    3.014082       3.236345\n",
    )
    .unwrap();
    let out = dir.path().join("ref.json");
    Command::cargo_bin("kvxfer")
        .unwrap()
        .args(["parse", "--tool", "kvbench"])
        .arg(&raw)
        .arg("--json")
        .arg(&out)
        .arg("--kvbench-model")
        .arg(&model)
        .assert()
        .success();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let extra = &v["results"][0]["extra"];
    assert_eq!(extra["kvbench_class"], "Qwen3");
    assert_eq!(extra["kvbench_model_name"], "qwen3-arch-qwen2.5-7b");
    assert!(
        extra["kvbench_class_why"]
            .as_str()
            .unwrap()
            .contains("written for qwen2.5-7b"),
        "{extra}"
    );
    // The old name: KVBench raises on it, and so does the parse, saying why.
    std::fs::write(
        &model,
        "model_name: QWEN2_5_7B\nnum_layers: 28\nnum_query_heads: 28\nnum_kv_heads: 4\n\
         query_head_dimension: 128\nnum_model_params: 7615616512\n",
    )
    .unwrap();
    Command::cargo_bin("kvxfer")
        .unwrap()
        .args(["parse", "--tool", "kvbench"])
        .arg(&raw)
        .arg("--kvbench-model")
        .arg(&model)
        .assert()
        .failure()
        .stderr(predicates::str::contains("routes to none of its classes"));
}

#[test]
fn a_one_host_plan_gives_one_definition_per_pattern() {
    let plan = plan::load_plan(&root().join("plans/loopback.json")).unwrap();
    let files = plan::generate(&plan, &root().join("templates")).unwrap();
    let paths: Vec<String> = files.iter().map(|g| g.path.display().to_string()).collect();
    assert_eq!(
        paths,
        [
            "pll-lo-fi-pingpong-tcp-msg.json",
            "pll-lo-fi-pingpong-shm-rdm.json",
            "pll-lo-kvxfer-xfer-tcp.json",
            "pll-lo-kvxfer-xfer-shm.json",
            "pll-lo-kvxfer-xfer-ucx-tcp.json",
            "pll-lo-xfer-nixl-tcp-55m.json",
            "pll-lo-xfer-nixl-tcp-224m.json",
            "pll-lo-xfer-nixl-tcp-672m.json",
            "pll-lo-xfer-nixl-tcp-cma-55m.json",
            "pll-lo-xfer-nixl-tcp-cma-224m.json",
            "pll-lo-xfer-nixl-tcp-cma-672m.json",
            "pll-lo-kv-profile-tcp.json",
            "pll-lo-ucx-perftest-tcp-tag-lat.json",
            "pll-lo-ucx-perftest-shm-tag-lat.json",
            "pll-lo-ucx-perftest-tcp-tag-bw.json",
            "pll-lo-ucx-perftest-shm-tag-bw.json"
        ]
    );
    assert_eq!(
        files,
        plan::generate(&plan, &root().join("templates")).unwrap()
    );
    // xfer over UCX: UCX_TLS from the pattern, UCX_NET_DEVICES from its env, normal priority.
    let ucx = commands(&files[4]).join("\n");
    assert!(
        ucx.contains("env UCX_TLS=tcp UCX_NET_DEVICES=lo timeout -k 10 30 kvxfer xfer --backend ucx --size 1048576"),
        "{ucx}"
    );
    assert!(ucx.contains("kvxfer info --ucx"), "{ucx}");
    // Patterns without a stock twin run auto counts within a time that fits the command's.
    assert!(
        ucx.contains("--iterations auto --max-time 10s --warmup 2"),
        "{ucx}"
    );
    let kv = commands(&files[11]).join("\n");
    assert!(
        kv.contains("--iterations auto --max-time 5s --warmup 1"),
        "{kv}"
    );
    assert!(!ucx.contains("$KVXFER_RT kvxfer xfer"), "{ucx}");
    assert!(!ucx.contains("nixl_xfer.py"), "{ucx}");
    // xfer's NIXL twin: the same transfer as size / block descriptors, UCX_TLS alike, skipped
    // where NIXL is missing, parsed as nixlbench's table beside kvxfer's result.
    let twin = commands(&files[10]).join("\n");
    for want in [
        "env UCX_TLS=tcp,cma UCX_NET_DEVICES=lo timeout -k 10 30 kvxfer xfer --backend ucx --size 704643072 --block 4194304 --op write",
        "! env UCX_TLS=tcp,cma UCX_NET_DEVICES=lo timeout -k 10 30 .cache/mlflow-venv/bin/python scripts/nixl_xfer.py --check",
        "scripts/nixl_xfer.py --op_type WRITE --block_size 4194304 --batch_size 168 --num_iter 3 --warmup_iter 1 --check_consistency 0 --timeout 20 > /tmp/kvxfer-loopback/pll-lo-xfer-nixl-tcp-cma-672m.run1.ref.txt",
        "kvxfer parse --tool nixlbench /tmp/kvxfer-loopback/pll-lo-xfer-nixl-tcp-cma-672m.run1.ref.txt --pattern-id pll-lo-xfer-nixl-tcp-cma-672m --json /tmp/kvxfer-loopback/pll-lo-xfer-nixl-tcp-cma-672m.run1.ref.json",
    ] {
        assert!(twin.contains(want), "{want}\n{twin}");
    }
    let def = TaskDefinition::from_json(std::str::from_utf8(&files[0].bytes).unwrap()).unwrap();
    assert!(def.variables.is_empty(), "no runner variable on one host");
    let ids: Vec<&str> = def.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "prepare-output",
            "forget-old-results",
            "check-tools",
            "check-fabric",
            "priority",
            "kvxfer-r1",
            "reference-r1",
            "kvxfer-r2",
            "reference-r2",
            "kvxfer-r3",
            "reference-r3",
            "kvxfer-r4",
            "reference-r4",
            "kvxfer-r5",
            "reference-r5",
            "kvxfer-r6",
            "reference-r6",
            "kvxfer-r7",
            "reference-r7",
            "crosscheck"
        ]
    );
    let all = commands(&files[0]).join("\n");
    for want in [
        // kvxfer: both sides in one process, no warm-up like fi_pingpong, under the priority.
        "timeout -k 10 30 $KVXFER_RT kvxfer pingpong --provider tcp --endpoint msg --mode msg --sizes 64,1024 --iterations 10000 --warmup 0 --domain lo --timeout 20 --expect-path local --pattern-id pll-lo-fi-pingpong-tcp-msg --json /tmp/kvxfer-loopback/pll-lo-fi-pingpong-tcp-msg.run3.json",
        // fi_pingpong: the server in the background, the client retried while it lives, waited.
        "fi_pingpong -p tcp -e msg -m msg -I 10000 -d lo -S \"$s\" -B 47601 >> /tmp/kvxfer-loopback/pll-lo-fi-pingpong-tcp-msg.run3.server.ref.txt 2>&1 & srv=$!",
        "fi_pingpong -p tcp -e msg -m msg -I 10000 -d lo -S \"$s\" -P 47601 127.0.0.1 > /tmp/kvxfer-loopback/pll-lo-fi-pingpong-tcp-msg.run3.ref.last 2>&1; then ok=1; break; fi; kill -0 \"$srv\"",
        "wait \"$srv\"",
        "kvxfer crosscheck /tmp/kvxfer-loopback --tolerance 0.1",
    ] {
        assert!(all.contains(want), "{want:?} missing from\n{all}");
    }
    assert!(!all.contains("{{"), "{all}");
}

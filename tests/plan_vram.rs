//! The phase plan's VRAM twins: every nixlbench and KVBench pattern gets a kvxfer task in
//! VRAM, generated and run; where the CUDA driver opens no GPU the runner skips it and prints
//! why (`kvxfer info --gpu --check`).

mod common;

use std::path::Path;

use common::*;
use kvxfer::plan::{self, TaskDefinition};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The phase plan's definitions with the kvxfer binary under test as its tool.
fn generated() -> Vec<(String, TaskDefinition, serde_json::Value)> {
    let mut p = plan::load_plan(&root().join("plans/phase-low-level.json")).unwrap();
    p["infrastructure"]["tools"]["kvxfer"] = kvxfer_path().to_str().unwrap().into();
    plan::generate(&p, &root().join("templates"))
        .unwrap()
        .into_iter()
        .map(|g| {
            let text = std::str::from_utf8(&g.bytes).unwrap();
            let def = TaskDefinition::from_json(text).unwrap();
            let json: serde_json::Value = serde_json::from_str(text).unwrap();
            (g.path.display().to_string(), def, json)
        })
        .collect()
}

/// The VRAM tasks of the definitions: (definition file, task JSON).
fn vram_tasks(
    defs: &[(String, TaskDefinition, serde_json::Value)],
) -> Vec<(String, serde_json::Value)> {
    defs.iter()
        .flat_map(|(path, _, json)| {
            json["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| {
                    t["commands"][0]
                        .as_str()
                        .unwrap_or("")
                        .contains("-seg VRAM")
                })
                .map(|t| (path.clone(), t.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_nixlbench_and_kvbench_pattern_has_a_vram_twin_behind_the_gpu_check() {
    let defs = generated();
    let tasks = vram_tasks(&defs);
    let with = |needle: &str| -> Vec<&String> {
        let mut v: Vec<&String> = tasks
            .iter()
            .filter(|(p, _)| p.trim_start_matches("client/").starts_with(needle))
            .map(|(p, _)| p)
            .collect();
        v.dedup();
        v
    };
    // 12 nixlbench patterns and 6 KVBench (UCX) patterns, each a server and a client side.
    assert_eq!(with("pll-nixlbench-").len(), 24, "nixlbench twins");
    assert_eq!(with("pll-kvbench-ucx-").len(), 12, "KVBench twins");
    let check = format!("! {} info --gpu --check", kvxfer_path().display());
    for (path, t) in &tasks {
        assert_eq!(t["skip_if"].as_str(), Some(check.as_str()), "{path}");
        let cmd = t["commands"][0].as_str().unwrap();
        assert!(cmd.contains(" xfer "), "{path}: {cmd}");
        if path
            .trim_start_matches("client/")
            .starts_with("pll-kvbench-")
        {
            assert!(
                cmd.contains("UCX_TLS=tcp,cuda_copy") || cmd.contains("UCX_TLS=srd,cuda_copy"),
                "{cmd}"
            );
            assert!(cmd.contains("-vram"), "its own result name: {cmd}");
        }
    }
}

#[test]
fn without_a_gpu_the_runner_skips_the_vram_twin_and_prints_why() {
    let defs = generated();
    let (path, def, json) = defs
        .iter()
        .find(|(p, _, _)| p == "pll-nixlbench-tcp-55m-server.json")
        .unwrap();
    // Only the kvxfer task of the generated definition: the stock tool is not on this host.
    let mut one = json.clone();
    one["tasks"] = serde_json::Value::Array(
        json["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["id"] == "kvxfer")
            .cloned()
            .collect(),
    );
    assert_eq!(
        one["tasks"].as_array().unwrap().len(),
        1,
        "{path}: {}",
        def.name
    );
    let gpu = kvxfer()
        .args(["info", "--gpu", "--check"])
        .output()
        .unwrap()
        .status
        .success();
    if gpu {
        skip(
            "without_a_gpu_the_runner_skips_the_vram_twin_and_prints_why",
            "the CUDA driver opens a GPU here: the twin would run",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("def.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&one).unwrap()).unwrap();
    let out = kvxfer()
        .args(["task", "run"])
        .arg(&file)
        .arg("--state")
        .arg(dir.path().join("state.json"))
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    // The reason, as the runner prints a skipped task: its description.
    assert!(
        stderr.contains("[kvxfer] skipped (needs a GPU the CUDA driver opens"),
        "{stderr}"
    );
    // And the check itself says why, to whoever runs it.
    let check = kvxfer()
        .args(["info", "--gpu", "--check"])
        .assert()
        .failure()
        .stdout(predicates::str::is_empty());
    let why = String::from_utf8_lossy(&check.get_output().stderr).to_string();
    assert!(why.starts_with("kvxfer: no usable GPU: "), "{why}");
    assert_eq!(why.trim_end().lines().count(), 1, "{why}");
}

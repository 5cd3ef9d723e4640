//! The phase plan's many-to-one patterns with `infrastructure.etcd.kvxfer`: kvxfer runs as
//! nixlbench does, one process per initiator on the client and the target on the server,
//! meeting through the plan's etcd. The generated server and client commands are run here,
//! on one host, against a real etcd server.

mod common;
mod etcd_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use etcd_support::{assert_merged, stderr, EtcdServer};
use kvxfer::plan::{self, TaskDefinition};

const ID: &str = "pll-nixlbench-tcp-672m-c4";

/// The phase plan with kvxfer on etcd (at `port`), pattern ID shrunk to 1 MiB over
/// libfabric tcp with host memory; the kvxfer task's command of (server, client).
fn commands(port: u16, out: &Path) -> (String, String) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut p = plan::load_plan(&root.join("plans/phase-low-level.json")).unwrap();
    p["infrastructure"]["etcd"]["kvxfer"] = true.into();
    p["infrastructure"]["etcd"]["port"] = port.into();
    p["infrastructure"]["tools"]["kvxfer"] = common::kvxfer_path().to_str().unwrap().into();
    p["common"]["output_dir"] = out.to_str().unwrap().into();
    p["common"]["peer_timeout_s"] = 60.into();
    for layer in p["layers"].as_array_mut().unwrap() {
        for pat in layer["patterns"].as_array_mut().unwrap() {
            if pat["id"] == ID {
                let q = &mut pat["params"];
                q["backend"] = "LIBFABRIC".into();
                q["transport"] = "tcp".into();
                q["initiator_seg_type"] = "DRAM".into();
                q["target_seg_type"] = "DRAM".into();
                q["block_size"] = (1 << 20).into();
                q["num_iter"] = 4.into();
                q["warmup_iter"] = 1.into();
                // One host: the payload takes lo, not the eth*/ens*/enp* the phase plan expects.
                q["expect_path"] = "local".into();
            }
        }
    }
    let defs = plan::generate(&p, &root.join("templates")).unwrap();
    let task = |name: &str| -> String {
        let g = defs
            .iter()
            .find(|g| g.path.file_name().unwrap() == name)
            .unwrap_or_else(|| panic!("{name} generated"));
        let def = TaskDefinition::from_json(std::str::from_utf8(&g.bytes).unwrap()).unwrap();
        let t = def.tasks.iter().find(|t| t.id == "kvxfer").unwrap();
        assert!(t.skip_if.is_none(), "{name}: {:?}", t.description);
        t.commands.join("\n")
    };
    (
        task(&format!("{ID}-server.json")),
        task(&format!("{ID}-client.json")),
    )
}

#[test]
fn many_to_one_patterns_run_kvxfer_through_the_plans_etcd() {
    let test = "many_to_one_patterns_run_kvxfer_through_the_plans_etcd";
    let Some(etcd) = EtcdServer::start(test) else {
        return;
    };
    let _g = common::fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let port: u16 = etcd.url.rsplit(':').next().unwrap().parse().unwrap();
    let (server, client) = commands(port, dir.path());
    // Rank 0 on the server, ranks 1..4 (one worker each) on the client, under the pattern's group.
    assert!(server.contains("PMI_RANK=0 PMI_SIZE=5"), "{server}");
    assert!(
        server.contains(&format!("--etcd http://127.0.0.1:{port}")),
        "{server}"
    );
    assert!(client.contains("for i in $(seq 4)"), "{client}");
    assert!(
        client.contains(&format!("--etcd http://{{{{PEER_IP}}}}:{port}")),
        "{client}"
    );
    for cmd in [&server, &client] {
        assert!(cmd.contains(&format!("--group {ID}")) && cmd.contains("--concurrency 1"));
    }
    let sh = |cmd: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(cmd.replace("{{PEER_IP}}", "127.0.0.1"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (s, c) = (sh(&server), sh(&client));
    let (so, co) = (s.wait_with_output().unwrap(), c.wait_with_output().unwrap());
    assert!(so.status.success(), "server: {}", stderr(&so));
    assert!(co.status.success(), "client: {}", stderr(&co));
    let merged = common::read_doc(&dir.path().join(format!("{ID}.server.json")));
    assert_eq!(merged.pattern_id.as_deref(), Some(ID));
    assert_merged(&merged, 4, 1, 1 << 20, 4);
    for r in 1..=4 {
        assert!(dir.path().join(format!("{ID}.rank{r}.json")).is_file());
    }
}

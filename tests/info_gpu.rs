//! `kvxfer info --gpu`: GPUs and the GPU-to-NIC PCIe distances from a sysfs tree
//! (`KVXFER_SYSFS_ROOT` points at one built here).

mod common;

use common::*;
use kvxfer::topo::fake::{two_socket, FakeSysfs};

/// The two-socket tree: GPU 0000:03:00.0 behind a switch with rdmap0 (PIX), rdmap1 a switch
/// further down (PXB), rdmap2 on another host bridge of node 0 (NODE), rdmap3 on node 1 (SYS),
/// eth0 on another root port (PHB); a second GPU on node 1.
fn tree(dir: &std::path::Path) -> FakeSysfs {
    two_socket(dir).unwrap()
}

#[test]
fn json_lists_the_gpu_and_its_distance_to_every_nic() {
    let dir = tempfile::tempdir().unwrap();
    let f = tree(dir.path());
    let out = kvxfer()
        .args(["info", "--gpu", "--json"])
        .env("KVXFER_SYSFS_ROOT", f.root())
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let gpus = v["gpus"].as_array().unwrap();
    // A real GPU of this host would be listed too only if the driver saw one: none here.
    let fake = gpus
        .iter()
        .find(|g| g["pci_bus_id"] == "0000:03:00.0")
        .expect("the tree's GPU");
    assert_eq!(fake["numa_node"], 0);
    let dist = |nic: &str| {
        v["affinity"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["gpu"] == "0000:03:00.0" && a["nic"] == nic)
            .map(|a| a["distance"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(
        [
            dist("rdmap0"),
            dist("rdmap1"),
            dist("rdmap2"),
            dist("rdmap3"),
            dist("eth0")
        ],
        ["PIX", "PXB", "NODE", "SYS", "PHB"]
    );
    let nics: Vec<&str> = v["nics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(nics, ["rdmap0", "rdmap1", "rdmap2", "rdmap3", "eth0"]);
}

#[test]
fn text_shows_a_matrix_like_nvidia_smi_topo() {
    let dir = tempfile::tempdir().unwrap();
    let f = tree(dir.path());
    let out = kvxfer()
        .args(["info", "--gpu"])
        .env("KVXFER_SYSFS_ROOT", f.root())
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(text.contains("0000:03:00.0"), "{text}");
    let row = text
        .lines()
        .find(|l| l.starts_with("GPU0 ") || l.starts_with("0000:03:00.0 "))
        .unwrap_or_else(|| panic!("no matrix row: {text}"));
    let cells: Vec<&str> = row.split_whitespace().skip(1).collect();
    assert_eq!(cells, ["PIX", "PXB", "NODE", "SYS", "PHB"], "{text}");
}

#[test]
fn no_gpu_is_said_on_stderr_and_is_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let f = FakeSysfs::new(dir.path()).unwrap();
    let out = kvxfer()
        .args(["info", "--gpu", "--json"])
        .env("KVXFER_SYSFS_ROOT", f.root())
        .assert()
        .success();
    let o = out.get_output();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    if v["gpus"].as_array().unwrap().is_empty() {
        assert!(stderr.contains("no GPU found"), "{stderr}");
        assert!(
            v["driver_error"].is_string(),
            "the driver's reason is kept: {v}"
        );
    } else {
        skip(
            "no_gpu_is_said_on_stderr_and_is_not_a_failure",
            "the CUDA driver lists a GPU on this host",
        );
    }
}

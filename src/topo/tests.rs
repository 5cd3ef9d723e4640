use super::fake::two_socket;
use super::*;

#[test]
fn gpus_and_nics_are_found_with_bus_ids_and_numa_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let t = Topology::scan(two_socket(dir.path()).unwrap().root());
    let gpus: Vec<(&str, Option<i32>)> = t
        .gpus
        .iter()
        .map(|g| (g.pci_bus_id.as_str(), g.numa_node))
        .collect();
    assert_eq!(gpus, [("0000:03:00.0", Some(0)), ("0000:81:00.0", Some(1))]);
    assert_eq!(t.gpus[0].device_id, "0x2335");
    let nics: Vec<(&str, &str, &str)> = t
        .nics
        .iter()
        .map(|n| (n.name.as_str(), n.class, n.pci_bus_id.as_str()))
        .collect();
    assert_eq!(
        nics,
        [
            ("rdmap0", "infiniband", "0000:04:00.0"),
            ("rdmap1", "infiniband", "0000:07:00.0"),
            ("rdmap2", "infiniband", "0000:11:00.0"),
            ("rdmap3", "infiniband", "0000:82:00.0"),
            ("eth0", "net", "0000:08:00.0"),
        ],
        "lo has no device and is left out"
    );
}

#[test]
fn distances_follow_nvidia_smi_legend() {
    let dir = tempfile::tempdir().unwrap();
    let t = Topology::scan(two_socket(dir.path()).unwrap().root());
    let row = |g: usize| -> Vec<&str> {
        t.nics
            .iter()
            .map(|n| t.gpus[g].place().distance(n.place()).name())
            .collect()
    };
    assert_eq!(row(0), ["PIX", "PXB", "NODE", "SYS", "PHB"]);
    assert_eq!(row(1), ["SYS", "SYS", "SYS", "PHB", "SYS"]);
    // Symmetric.
    let (g, n) = (t.gpus[0].place(), t.nics[1].place());
    assert_eq!(g.distance(n), n.distance(g));
}

#[test]
fn unknown_numa_nodes_count_as_one_node() {
    let a = PciPlace {
        root: "pci0000:00".into(),
        chain: vec!["0000:00:01.0".into()],
        numa_node: None,
    };
    let b = PciPlace {
        root: "pci0000:40".into(),
        chain: vec!["0000:40:01.0".into()],
        numa_node: Some(1),
    };
    assert_eq!(a.distance(&b), Distance::Node);
    let c = PciPlace {
        numa_node: Some(0),
        ..a.clone()
    };
    assert_eq!(c.distance(&b), Distance::Sys);
}

#[test]
fn nearest_domains_pick_the_gpus_switch_and_map_efa_domain_names() {
    let dir = tempfile::tempdir().unwrap();
    let t = Topology::scan(two_socket(dir.path()).unwrap().root());
    let domains: Vec<String> = ["rdmap3-rdm", "rdmap1-rdm", "rdmap0-rdm", "lo"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(t.nic_for_domain("rdmap0-rdm").unwrap().name, "rdmap0");
    assert_eq!(t.nic_for_domain("eth0").unwrap().name, "eth0");
    assert!(t.nic_for_domain("lo").is_none());
    let near = t.nearest_domains(t.gpus[0].place(), &domains).unwrap();
    assert_eq!(near.domains, ["rdmap0-rdm"]);
    assert_eq!(near.distance, Distance::Pix);
    let near = t.nearest_domains(t.gpus[1].place(), &domains).unwrap();
    assert_eq!(
        (near.domains, near.distance),
        (vec!["rdmap3-rdm".to_string()], Distance::Phb)
    );
    // Equal distances keep every one, in the order given.
    let both = ["rdmap1-rdm".to_string(), "rdmap0-rdm".to_string()];
    let near = t.nearest_domains(t.gpus[1].place(), &both).unwrap();
    assert_eq!(near.domains, both);
    assert_eq!(near.distance, Distance::Sys);
    assert!(t
        .nearest_domains(t.gpus[0].place(), &["lo".into()])
        .is_none());
}

#[test]
fn bus_ids_from_cuda_match_sysfs_spelling() {
    assert_eq!(
        normalize_bus_id("00000000:1B:00.0").unwrap(),
        "0000:1b:00.0"
    );
    assert_eq!(normalize_bus_id("0000:1b:00.0").unwrap(), "0000:1b:00.0");
    assert_eq!(normalize_bus_id("1b:00.0"), None);
    assert_eq!(normalize_bus_id("zz:1b:00.0"), None);
    let dir = tempfile::tempdir().unwrap();
    let t = Topology::scan(two_socket(dir.path()).unwrap().root());
    assert_eq!(t.gpu("00000000:81:00.0").unwrap().numa_node, Some(1));
}

#[test]
fn a_missing_tree_is_empty_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let t = Topology::scan(&dir.path().join("absent"));
    assert!(t.gpus.is_empty() && t.nics.is_empty());
}

#[test]
fn default_gpu_is_the_local_rank_modulo_the_count() {
    assert_eq!(default_gpu(Some(5), 4), 1);
    assert_eq!(default_gpu(Some(3), 8), 3);
    assert_eq!(default_gpu(Some(3), 0), 0, "no GPU known: 0");
    assert_eq!(default_gpu(None, 8), 0);
}

//! The doctor on fake nodes: each troubleshooting case of the spec and the issue.

use std::path::{Path, PathBuf};

use super::facts::{FabricOffer, Libfabric, Ucx};
use super::fake::{p5_like, FakeProc};
use super::*;
use crate::topo::DriverGpu;

/// Facts of a node whose libraries offer tcp and shm only (no efa, no UCX, no GPU driver).
pub(crate) fn no_facts() -> Facts {
    Facts {
        libfabric: Libfabric {
            version: "1.17".into(),
            providers: vec!["shm".into(), "tcp".into()],
            efa: Vec::new(),
        },
        ucx: Err("no UCX here".into()),
        gpus: Err("no driver".into()),
        huge_pages: None,
    }
}

/// Facts of a p5 with the EFA installer's libfabric 1.22, a UCX with srd and CUDA, and the
/// CUDA driver opening `gpus` GPUs laid out as [`p5_like`] lays them.
fn p5_facts(gpus: usize) -> Facts {
    let offer = |fabric: &str, hmem| FabricOffer {
        fabric: fabric.into(),
        domains: (0..gpus * 4).map(|d| format!("rdmap{d}s0-rdm")).collect(),
        rma: true,
        hmem,
    };
    Facts {
        libfabric: Libfabric {
            version: "1.22".into(),
            providers: ["efa", "shm", "tcp"].map(String::from).to_vec(),
            efa: vec![offer("efa", true), offer("efa-direct", true)],
        },
        ucx: Ok(Ucx {
            version: "1.22.0".into(),
            library: Some("/opt/ucx/lib/libucp.so.0".into()),
            transports: [
                "cma",
                "cuda_copy",
                "cuda_ipc",
                "posix",
                "self",
                "srd",
                "sysv",
                "tcp",
            ]
            .map(String::from)
            .to_vec(),
            cuda: true,
        }),
        gpus: Ok((0..gpus)
            .map(|g| DriverGpu {
                ordinal: g as i32,
                name: "NVIDIA H100 80GB HBM3".into(),
                memory_bytes: 85_520_809_984,
                pci_bus_id: format!("00000000:{:02x}:00.0", g * 0x10 + 3),
            })
            .collect()),
        huge_pages: Some(crate::mem::Backing {
            mapped_bytes: 4 << 20,
            huge_bytes: 4 << 20,
        }),
    }
}

/// A plan file's JSON, its etcd on a port nobody listens on and its KVBench folder `kvbench`.
fn plan(name: &str, kvbench: &Path) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut p = crate::plan::load_plan(&root.join("plans").join(name)).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    p["infrastructure"]["etcd"]["port"] = closed.port().into();
    p["infrastructure"]["tools"]["kvbench_dir"] = kvbench.display().to_string().into();
    p
}

/// A folder of stand-ins for the plan's tools, docker and nvidia-smi (free memory of every
/// GPU: 80000 MiB).
fn tools(dir: &Path, gpus: usize) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let rows: String = (0..gpus)
        .map(|g| format!("00000000:{:02X}:00.0, 81559, 80000\\n", g * 0x10 + 3))
        .collect();
    let scripts = [
        ("nvidia-smi", format!("printf '{rows}'")),
        (
            "fi_info",
            "echo 'fi_info: 1.22.0'; echo 'libfabric: 1.22.0'".into(),
        ),
        ("ucx_info", "echo '# Library version: 1.22.0'".into()),
    ];
    for (name, body) in scripts {
        write_script(&bin.join(name), &body);
    }
    for name in [
        "fi_pingpong",
        "fi_rma_pingpong",
        "nixlbench",
        "ucx_perftest",
        "python3",
        "docker",
    ] {
        write_script(&bin.join(name), "exit 0");
    }
    bin
}

fn write_script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A p5-like node of two GPUs (eight EFA devices) with the low-level plan: its fake trees,
/// host and facts.
struct Node {
    _dir: tempfile::TempDir,
    host: Host,
    proc: FakeProc,
    sysfs: PathBuf,
    plan: Value,
}

fn p5_node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let sysfs = dir.path().join("sys");
    p5_like(&sysfs, 2).unwrap();
    let proc = FakeProc::new(&dir.path().join("proc")).unwrap();
    proc.nvidia("580.65.06", true).unwrap();
    let kvbench = dir.path().join("kvbench");
    std::fs::create_dir_all(&kvbench).unwrap();
    std::fs::write(kvbench.join("main.py"), "").unwrap();
    let bin = tools(dir.path(), 2);
    let mut host = Host::under(&sysfs, proc.root());
    host.env.insert("PATH".into(), bin.display().to_string());
    let plan = plan("phase-low-level.json", &kvbench);
    Node {
        _dir: dir,
        host,
        proc,
        sysfs,
        plan,
    }
}

fn run(n: &Node, facts: Facts) -> DoctorReport {
    let o = DoctorOptions {
        plan: Some(n.plan.clone()),
        templates: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("templates")),
        ..DoctorOptions::default()
    };
    examine(&o, &n.host, &move || facts.clone())
}

fn find<'a>(r: &'a DoctorReport, check: &str) -> &'a Finding {
    r.findings
        .iter()
        .find(|f| f.check == check)
        .unwrap_or_else(|| panic!("no {check} in {:#?}", r.findings))
}

#[test]
fn a_p5_like_node_with_four_efa_devices_per_gpu_passes() {
    let n = p5_node();
    let r = run(&n, p5_facts(2));
    let failed: Vec<&Finding> = r
        .findings
        .iter()
        .filter(|f| f.status == Status::Fail)
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    for check in [
        "libfabric.providers",
        "libfabric.efa",
        "efa.devices",
        "efa.ports",
        "efa.rate",
        "efa.rdma",
        "efa.env",
        "gpu.driver",
        "gpu.memory",
        "gpu.gpudirect",
        "memory.memlock",
        "memory.available",
        "memory.huge_pages",
        "tcp.slow_start_after_idle",
        "tcp.mtu",
        "ucx.transports",
        "noise.governor",
        "noise.load",
    ] {
        assert_eq!(find(&r, check).status, Status::Ok, "{:#?}", find(&r, check));
    }
    assert!(find(&r, "efa.devices")
        .evidence
        .starts_with("8 EFA device(s): rdmap0s0,"));
    assert_eq!(
        find(&r, "efa.rate").evidence,
        "100 Gb/sec (4X EDR) per port, 800 Gb/s in all (ports/*/rate)"
    );
    assert!(find(&r, "efa.env")
        .evidence
        .contains("FI_EFA_USE_DEVICE_RDMA=1 (plan common.env)"));
    assert!(find(&r, "gpu.gpudirect")
        .evidence
        .starts_with("nvidia_peermem loaded"));
    let nics: Vec<&Finding> = r.findings.iter().filter(|f| f.check == "gpu.nic").collect();
    assert_eq!(nics.len(), 2);
    assert_eq!(
        nics[0].evidence,
        "GPU0 0000:03:00.0: rdmap0s0, rdmap1s0, rdmap2s0, rdmap3s0 (PIX, sysfs PCI tree)"
    );
    assert!(nics.iter().all(|f| f.status == Status::Ok));
    assert!(find(&r, "tcp.mtu")
        .evidence
        .starts_with("ens32 (the default route (no --peer)): MTU 9001"));
    assert!(find(&r, "tools.nixlbench")
        .evidence
        .contains("/bin/nixlbench"));
    // etcd is down, and the plan's start-etcd task starts it with docker (found).
    let e = find(&r, "etcd");
    assert_eq!(e.status, Status::Warn, "{e:#?}");
    assert!(
        e.action.contains("docker run -d --name etcd-nixlbench"),
        "{}",
        e.action
    );
    assert!(r.blocking(&n.plan_ids()).is_empty());
}

impl Node {
    fn plan_ids(&self) -> Vec<String> {
        PlanNeeds::of(&self.plan, &[])
            .patterns
            .into_iter()
            .map(|p| p.id)
            .collect()
    }
}

#[test]
fn without_nvidia_peermem_on_an_old_kernel_gpudirect_fails_naming_both_fixes() {
    let n = p5_node();
    std::fs::remove_dir(n.sysfs.join("module/nvidia_peermem")).unwrap();
    n.proc.kernel("5.10.0-28-cloud-amd64").unwrap();
    n.proc.nvidia("535.161.08", false).unwrap();
    let r = run(&n, p5_facts(2));
    let g = find(&r, "gpu.gpudirect");
    assert_eq!(g.status, Status::Fail, "{g:#?}");
    assert!(
        g.evidence.starts_with("nvidia_peermem absent"),
        "{}",
        g.evidence
    );
    assert!(
        g.action
            .starts_with("load nvidia_peermem (sudo modprobe nvidia_peermem), or use dmabuf:"),
        "{}",
        g.action
    );
    assert!(
        g.action
            .contains("a kernel of 5.12 or later (here 5.10.0-28-cloud-amd64)"),
        "{}",
        g.action
    );
    assert!(
        g.action.contains("NVIDIA's open kernel module"),
        "{}",
        g.action
    );
    assert!(
        !g.action.contains("libfabric 1.20"),
        "1.22 is new enough: {}",
        g.action
    );
    let ids = g.patterns.as_ref().unwrap();
    assert!(
        ids.contains(&"pll-nixlbench-efa-672m".to_string()),
        "{ids:?}"
    );
    assert!(
        ids.contains(&"pll-ucx-perftest-srd-cuda-tag-bw".to_string()),
        "{ids:?}"
    );
    assert!(
        !ids.iter().any(|i| i.contains("-tcp-")),
        "VRAM over TCP is staged, GPUDirect or not: {ids:?}"
    );
    // Only the dmabuf path's missing pieces are named; with a new kernel only the module is.
    n.proc.kernel("6.8.0-1015-aws").unwrap();
    let r = run(&n, p5_facts(2));
    let g = find(&r, "gpu.gpudirect");
    assert_eq!(g.status, Status::Fail);
    assert!(!g.action.contains("kernel of 5.12"), "{}", g.action);
    n.proc.nvidia("580.65.06", true).unwrap();
    assert_eq!(
        find(&run(&n, p5_facts(2)), "gpu.gpudirect").status,
        Status::Ok
    );
}

#[test]
fn a_memlock_of_64_kib_fails_with_the_bytes_the_plan_registers() {
    let n = p5_node();
    n.proc.memlock(Some(65536)).unwrap();
    let r = run(&n, p5_facts(2));
    let m = find(&r, "memory.memlock");
    assert_eq!(m.status, Status::Fail, "{m:#?}");
    assert!(
        m.evidence.starts_with("RLIMIT_MEMLOCK 65536 B (64.0 KiB)"),
        "{}",
        m.evidence
    );
    assert!(
        m.evidence
            .contains("registers 704643072 B (672.0 MiB) (704643072 x 1 side(s))"),
        "{}",
        m.evidence
    );
    assert!(
        m.action.starts_with("raise it to at least 704643072 B"),
        "{}",
        m.action
    );
    let ids = m.patterns.as_ref().unwrap();
    for id in [
        "pll-kvbench-efa-12k",
        "pll-ucx-perftest-srd-host-tag-bw",
        "pll-fi-pingpong-efa-msg",
    ] {
        assert!(ids.contains(&id.to_string()), "{id} in {ids:?}");
    }
    assert!(
        !ids.iter().any(|i| i.contains("nixlbench")),
        "VRAM is not host-pinned: {ids:?}"
    );
    let blocked = r.blocking(&[
        "pll-fi-pingpong-tcp-msg".into(),
        "pll-kvbench-efa-12k".into(),
    ]);
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0].patterns, ["pll-kvbench-efa-12k"]);
    // 1 GiB covers the plan.
    n.proc.memlock(Some(1 << 30)).unwrap();
    assert_eq!(
        find(&run(&n, p5_facts(2)), "memory.memlock").status,
        Status::Ok
    );
}

#[test]
fn slow_start_after_idle_warns_naming_the_slow_start_pattern() {
    let dir = tempfile::tempdir().unwrap();
    let proc = FakeProc::new(&dir.path().join("proc")).unwrap();
    proc.slow_start_after_idle(1).unwrap();
    let sysfs = crate::topo::fake::FakeSysfs::new(&dir.path().join("sys")).unwrap();
    let host = Host::under(sysfs.root(), proc.root());
    let o = DoctorOptions {
        plan: Some(plan("loopback.json", dir.path())),
        ..DoctorOptions::default()
    };
    let r = examine(&o, &host, &no_facts);
    let s = find(&r, "tcp.slow_start_after_idle");
    assert_eq!(s.status, Status::Warn);
    assert!(
        s.action
            .contains("the idle-gap figures of pll-lo-kv-profile-tcp"),
        "{}",
        s.action
    );
    assert_eq!(
        s.patterns.as_deref(),
        Some(&["pll-lo-kv-profile-tcp".to_string()][..])
    );
    assert!(!r.concerning("pll-lo-kv-profile-tcp").is_empty());
    assert!(!r
        .concerning("pll-lo-fi-pingpong-tcp-msg")
        .iter()
        .any(|f| f.check == s.check));
    proc.slow_start_after_idle(0).unwrap();
    assert_eq!(
        find(&examine(&o, &host, &no_facts), s.check.as_str()).status,
        Status::Ok
    );
}

#[test]
fn checks_that_cannot_apply_say_why_and_never_ok() {
    let dir = tempfile::tempdir().unwrap();
    let proc = FakeProc::new(&dir.path().join("proc")).unwrap();
    let sysfs = crate::topo::fake::FakeSysfs::new(&dir.path().join("sys")).unwrap();
    let host = Host::under(sysfs.root(), proc.root());
    let o = DoctorOptions {
        provider: Some("tcp".into()),
        ..DoctorOptions::default()
    };
    let r = examine(&o, &host, &no_facts);
    for f in r
        .findings
        .iter()
        .filter(|f| f.check.starts_with("efa.") || f.check.starts_with("gpu."))
    {
        assert_eq!(f.status, Status::Skip, "{f:#?}");
        assert!(
            f.evidence.contains("no EFA device") || f.evidence.contains("no NVIDIA GPU"),
            "{f:#?}"
        );
    }
    assert!(!r.failed(), "{:#?}", r.findings);
    // Asked for efa, the same node fails the provider and the devices.
    let efa = DoctorOptions {
        provider: Some("efa".into()),
        ..DoctorOptions::default()
    };
    let r = examine(&efa, &host, &no_facts);
    assert_eq!(find(&r, "libfabric.providers").status, Status::Fail);
    assert_eq!(find(&r, "efa.devices").status, Status::Fail);
}

#[test]
fn ucx_without_srd_fails_its_patterns_with_the_tcp_fallback() {
    let n = p5_node();
    let mut facts = p5_facts(2);
    if let Ok(u) = facts.ucx.as_mut() {
        u.transports.retain(|t| t != "srd");
    }
    let r = run(&n, facts);
    let u = find(&r, "ucx.transports");
    assert_eq!(u.status, Status::Fail, "{u:#?}");
    assert!(u.evidence.ends_with(": no srd"), "{}", u.evidence);
    assert!(u.action.contains("UCX_TLS=tcp"), "{}", u.action);
    let ids = u.patterns.as_ref().unwrap();
    assert!(ids.iter().all(|i| i.contains("srd")), "{ids:?}");
    assert_eq!(ids.len(), 7, "{ids:?}");
}

#[test]
fn a_port_down_a_first_generation_device_and_fi_provider_are_named() {
    let n = p5_node();
    let ib = n.sysfs.join("class/infiniband");
    std::fs::write(ib.join("rdmap5s0/ports/1/state"), "1: DOWN\n").unwrap();
    let r = run(&n, p5_facts(2));
    let p = find(&r, "efa.ports");
    assert_eq!(p.status, Status::Fail);
    assert!(
        p.evidence.starts_with("not ACTIVE: rdmap5s0 1: DOWN"),
        "{}",
        p.evidence
    );
    // Generation 1 has no device RDMA: FI_EFA_USE_DEVICE_RDMA=1 (the plan's) stops efa.
    for d in 0..8 {
        std::fs::write(ib.join(format!("rdmap{d}s0/device/device")), "0xefa0\n").unwrap();
    }
    let r = run(&n, p5_facts(2));
    assert_eq!(find(&r, "efa.rdma").status, Status::Warn);
    let e = find(&r, "efa.env");
    assert_eq!(e.status, Status::Fail, "{e:#?}");
    assert!(
        e.action
            .starts_with("FI_EFA_USE_DEVICE_RDMA=1 on a device without RDMA read"),
        "{}",
        e.action
    );
    // FI_PROVIDER that leaves efa out hides it from every efa pattern.
    let mut hidden = n.host.clone();
    hidden.env.insert("FI_PROVIDER".into(), "tcp".into());
    let o = DoctorOptions {
        plan: Some(n.plan.clone()),
        ..DoctorOptions::default()
    };
    let r = examine(&o, &hidden, &|| p5_facts(2));
    let e = find(&r, "efa.env");
    assert_eq!(e.status, Status::Fail);
    assert!(
        e.evidence.contains("FI_PROVIDER=tcp (environment)"),
        "{}",
        e.evidence
    );
    assert_eq!(e.action, "FI_PROVIDER=tcp hides efa: unset it");
}

#[test]
fn a_gpu_whose_nics_sit_across_the_cpu_interconnect_warns() {
    let dir = tempfile::tempdir().unwrap();
    let f = crate::topo::fake::FakeSysfs::new(&dir.path().join("sys")).unwrap();
    f.gpu("pci0000:00", &["0000:00:01.0", "0000:01:00.0"], 0)
        .unwrap();
    f.nic(
        "infiniband",
        "rdmap0s0",
        "pci0000:80",
        &["0000:80:01.0", "0000:81:00.0"],
        1,
    )
    .unwrap();
    std::fs::write(
        dir.path()
            .join("sys/class/infiniband/rdmap0s0/device/device"),
        "0xefa2\n",
    )
    .unwrap();
    let proc = FakeProc::new(&dir.path().join("proc")).unwrap();
    let host = Host::under(f.root(), proc.root());
    let r = examine(&DoctorOptions::default(), &host, &no_facts);
    let g = find(&r, "gpu.nic");
    assert_eq!(g.status, Status::Warn, "{g:#?}");
    assert_eq!(
        g.evidence,
        "GPU 0000:01:00.0: rdmap0s0 (SYS, sysfs PCI tree)"
    );
    // No driver here: the module's absence fails the driver check (no plan: the node's).
    assert_eq!(find(&r, "gpu.driver").status, Status::Fail);
}

#[test]
fn missing_tools_and_etcd_starters_name_the_patterns_that_cannot_run() {
    let n = p5_node();
    let bin = PathBuf::from(n.host.var("PATH").unwrap());
    std::fs::remove_file(bin.join("nixlbench")).unwrap();
    std::fs::remove_file(bin.join("docker")).unwrap();
    let r = run(&n, p5_facts(2));
    let t = find(&r, "tools.nixlbench");
    assert_eq!(t.status, Status::Fail);
    assert_eq!(t.evidence, "nixlbench: not on PATH");
    assert_eq!(t.patterns.as_ref().unwrap().len(), 12);
    let e = find(&r, "etcd");
    assert_eq!(e.status, Status::Fail, "{e:#?}");
    assert!(
        e.evidence
            .ends_with("the plan cannot start it: docker is not on PATH"),
        "{}",
        e.evidence
    );
    // A twin's NIXL engine missing only skips the twin rounds.
    let dir = tempfile::tempdir().unwrap();
    let mut p = plan("loopback.json", dir.path());
    p["infrastructure"]["tools"]["nixl_python"] = "no/such/python".into();
    let o = DoctorOptions {
        plan: Some(p),
        ..DoctorOptions::default()
    };
    let r = examine(&o, &n.host, &no_facts);
    let t = find(&r, "tools.nixl_python");
    assert_eq!(t.status, Status::Warn, "{t:#?}");
    assert!(
        t.action
            .starts_with("the NIXL twin rounds of pll-lo-xfer-nixl-tcp-55m"),
        "{}",
        t.action
    );
}

#[test]
fn an_mtu_below_aws_jumbo_frames_warns_for_the_tcp_patterns() {
    let n = p5_node();
    std::fs::write(n.sysfs.join("class/net/ens32/mtu"), "1500\n").unwrap();
    let r = run(&n, p5_facts(2));
    let m = find(&r, "tcp.mtu");
    assert_eq!(m.status, Status::Warn);
    assert!(
        m.action.contains("at 1500 TCP moves 6x the packets"),
        "{}",
        m.action
    );
    assert!(m
        .patterns
        .as_ref()
        .unwrap()
        .contains(&"pll-nixlbench-tcp-55m".to_string()));
    assert!(!m
        .patterns
        .as_ref()
        .unwrap()
        .iter()
        .any(|i| i.contains("-efa-")));
}

#[test]
fn huge_pages_asked_for_and_not_given_warn_with_the_probe_s_figure() {
    let n = p5_node();
    std::fs::write(
        n.sysfs.join("kernel/mm/transparent_hugepage/defrag"),
        "always defer defer+madvise madvise [never]\n",
    )
    .unwrap();
    let mut facts = p5_facts(2);
    facts.huge_pages = Some(crate::mem::Backing {
        mapped_bytes: 4 << 20,
        huge_bytes: 0,
    });
    let r = run(&n, facts.clone());
    let h = find(&r, "memory.huge_pages");
    assert_eq!(h.status, Status::Warn, "{h:#?}");
    assert!(
        h.evidence.contains("madvise, defrag never")
            && h.evidence
                .contains("a 4.0 MiB buffer asking for them got 0 B in huge pages"),
        "{}",
        h.evidence
    );
    assert!(h.action.contains("the kernel gave none"), "{}", h.action);
    // One huge page of two is a host that gives them: no warning.
    facts.huge_pages = Some(crate::mem::Backing {
        mapped_bytes: 4 << 20,
        huge_bytes: 2 << 20,
    });
    let h = run(&n, facts.clone()).findings;
    let h = h.iter().find(|f| f.check == "memory.huge_pages").unwrap();
    assert_eq!(h.status, Status::Ok, "{h:#?}");
    assert!(h.evidence.contains("got 2097152 B"), "{}", h.evidence);
    // No probe: the setting alone decides, and the evidence says the probe is missing.
    facts.huge_pages = None;
    let h = run(&n, facts).findings;
    let h = h.iter().find(|f| f.check == "memory.huge_pages").unwrap();
    assert_eq!(h.status, Status::Ok, "{h:#?}");
    assert!(h.evidence.contains("no probe"), "{}", h.evidence);
}

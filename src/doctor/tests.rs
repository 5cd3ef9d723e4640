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

//! GPUs: the driver loads, memory free, GPUDirect RDMA possible (nvidia_peermem, or dmabuf:
//! kernel 5.12+, NVIDIA's open kernel module, libfabric 1.20+), each GPU's nearest RDMA NIC
//! and its PCIe distance.

use std::time::Duration;

use super::host::{kernel_version, major_minor, run_briefly};
use super::{bytes, list, Ctx, Finding, Host, PatternNeed};
use crate::topo::{Distance, GpuListing, Topology};

/// Free and total memory of each GPU (`smi`: what [`smi_memory`] read).
pub(super) fn check(c: &Ctx<'_>, smi: Option<Vec<SmiRow>>) -> Vec<Finding> {
    let topo = Topology::scan(&c.host.sysfs);
    let vram = c.ids(|n| n.vram);
    if topo.gpus.is_empty() {
        let why = format!(
            "no NVIDIA GPU under {}",
            c.host.sys_path("bus/pci/devices").display()
        );
        let f = if vram.is_empty() {
            Finding::skip("gpu.driver", format!("{why}: GPU checks do not apply"))
        } else {
            Finding::fail(
                "gpu.driver",
                why,
                "run the GPU-memory patterns on a GPU node, or leave them out (--pattern, --layer)",
            )
            .about(vram)
        };
        return vec![f];
    }
    let listing = GpuListing::build(&topo, c.facts.gpus.clone());
    let mut out = vec![driver(c, &listing), memory(c, smi), gpudirect(c)];
    out.extend(nearest_nics(c, &topo, &listing));
    out
}

/// The kernel module's version line (`<proc>/driver/nvidia/version`): (version, open module).
pub(crate) fn module(c: &Ctx<'_>) -> Option<(String, bool)> {
    let text = c.host.proc("driver/nvidia/version")?;
    let line = text.lines().next()?;
    let version = line
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|ch| ch.is_ascii_digit()) && w.contains('.'))
        .unwrap_or("unknown")
        .to_string();
    Some((version, line.contains("Open Kernel Module")))
}

fn driver(c: &Ctx<'_>, l: &GpuListing) -> Finding {
    const CHECK: &str = "gpu.driver";
    let vram = c.ids(|n| n.vram);
    let Some((version, open)) = module(c) else {
        return Finding::fail(
            CHECK,
            format!(
                "{} NVIDIA GPU(s) on the PCI bus, no kernel module ({} absent)",
                l.gpus.len(),
                c.host.proc_path("driver/nvidia/version").display()
            ),
            "install the NVIDIA driver and load it (modprobe nvidia; nvidia-smi must list the GPUs)",
        )
        .about_if(c, vram);
    };
    let module = format!(
        "NVIDIA {} kernel module {version}",
        if open { "open" } else { "proprietary" }
    );
    let opened = l.gpus.iter().filter(|g| g.ordinal.is_some()).count();
    match &l.driver_error {
        None => Finding::ok(CHECK, format!("{module}; the CUDA driver opens {opened} GPU(s)")),
        // A build without the `cuda` feature cannot ask the driver at all.
        Some(e) if !cfg!(feature = "cuda") => {
            let f = Finding::warn(
                CHECK,
                format!("{module}; {} GPU(s) on the PCI bus; kvxfer {e}", l.gpus.len()),
                "kvxfer's own VRAM measurements are skipped: cargo build --release --features cuda",
            );
            if c.has_plan() && vram.is_empty() {
                Finding::ok(CHECK, f.evidence)
            } else {
                f.about_if(c, vram)
            }
        }
        Some(e) => Finding::fail(
            CHECK,
            format!("{module}; the CUDA driver opens none: {e}"),
            "nvidia-smi says why (a driver and library of different versions, a GPU in a bad state)",
        )
        .about_if(c, vram),
    }
}

/// One GPU as nvidia-smi tells it: (bus id, total MiB, free MiB).
pub(crate) type SmiRow = (String, u64, u64);

/// Free and total memory of each GPU from nvidia-smi, where sysfs shows NVIDIA GPUs.
pub(crate) fn smi_memory(host: &Host) -> Option<Vec<SmiRow>> {
    if Topology::scan(&host.sysfs).gpus.is_empty() {
        return None;
    }
    let smi = host.which("nvidia-smi")?;
    let args = [
        "--query-gpu=pci.bus_id,memory.total,memory.free",
        "--format=csv,noheader,nounits",
    ];
    let text = run_briefly(host, &smi, &args, Duration::from_secs(1))?;
    let rows: Vec<SmiRow> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split(',').map(str::trim);
            Some((
                f.next()?.to_string(),
                f.next()?.parse().ok()?,
                f.next()?.parse().ok()?,
            ))
        })
        .collect();
    (!rows.is_empty()).then_some(rows)
}

fn memory(c: &Ctx<'_>, smi: Option<Vec<SmiRow>>) -> Finding {
    const CHECK: &str = "gpu.memory";
    const MIB: u64 = 1 << 20;
    let Some(rows) = smi else {
        return Finding::warn(
            CHECK,
            "free GPU memory unknown (nvidia-smi not found or silent)",
            "put nvidia-smi on PATH",
        );
    };
    let shown: Vec<String> = rows
        .iter()
        .map(|(bus, total, free)| format!("{bus} {free}/{total} MiB free"))
        .collect();
    let evidence = format!("{} (nvidia-smi)", list(&shown, 2));
    let best = rows
        .iter()
        .map(|r| r.2.saturating_mul(MIB))
        .max()
        .unwrap_or(0);
    match c.needs.largest(|n| n.vram) {
        Some((p, _)) if p.bytes > best => Finding::fail(
            CHECK,
            format!("{evidence}; {} needs {} on one GPU", p.id, bytes(p.bytes)),
            "free the GPU (nvidia-smi lists what holds it), or a smaller pattern",
        )
        .about(c.ids(|n| n.vram && n.bytes > best)),
        _ => Finding::ok(CHECK, evidence),
    }
}

fn gpudirect(c: &Ctx<'_>) -> Finding {
    const CHECK: &str = "gpu.gpudirect";
    let peermem = c.host.sys_path("module/nvidia_peermem");
    let kernel = c.host.kernel().unwrap_or_else(|| "unknown".into());
    let open = module(c).is_some_and(|m| m.1);
    let lf = &c.facts.libfabric.version;
    let kernel_ok = kernel_version(&kernel).is_some_and(|v| v >= (5, 12));
    let lf_ok = major_minor(lf).is_some_and(|v| v >= (1, 20));
    let evidence = format!(
        "nvidia_peermem {} ({}); dmabuf: kernel {kernel}, {} kernel module, libfabric {lf}",
        if peermem.exists() { "loaded" } else { "absent" },
        peermem.display(),
        if open { "open" } else { "proprietary" }
    );
    if peermem.exists() {
        return Finding::ok(CHECK, evidence);
    }
    if kernel_ok && open && lf_ok {
        return Finding::ok(CHECK, format!("{evidence}: dmabuf"));
    }
    let mut missing = Vec::new();
    if !kernel_ok {
        missing.push(format!("a kernel of 5.12 or later (here {kernel})"));
    }
    if !open {
        missing.push("NVIDIA's open kernel module".to_string());
    }
    if !lf_ok {
        missing.push(format!("libfabric 1.20 or later (here {lf})"));
    }
    let action = format!(
        "load nvidia_peermem (sudo modprobe nvidia_peermem), or use dmabuf: {}",
        missing.join(", ")
    );
    let needed = c.ids(|n| n.vram && n.rdma());
    if c.has_plan() && needed.is_empty() {
        return Finding::warn(
            CHECK,
            evidence,
            format!("no pattern needs it now; {action}"),
        );
    }
    Finding::fail(CHECK, evidence, action).about_if(c, needed)
}

/// Each GPU's nearest RDMA NIC: PIX and PXB are one PCIe switch tree away, farther warns.
fn nearest_nics(c: &Ctx<'_>, topo: &Topology, l: &GpuListing) -> Vec<Finding> {
    const CHECK: &str = "gpu.nic";
    let rdma: Vec<String> = topo
        .nics
        .iter()
        .filter(|n| n.class == "infiniband")
        .map(|n| n.name.clone())
        .collect();
    if rdma.is_empty() {
        return vec![Finding::skip(
            CHECK,
            format!(
                "no RDMA NIC under {}: a GPU's nearest NIC matters to GPUDirect only",
                c.host.sys_path("class/infiniband").display()
            ),
        )];
    }
    let needed = c.ids(|n: &PatternNeed| n.vram && n.rdma());
    l.gpus
        .iter()
        .filter_map(|g| {
            let near = topo.nearest_domains(g.place()?, &rdma)?;
            let name = g
                .ordinal
                .map_or_else(|| "GPU".to_string(), |o| format!("GPU{o}"));
            let evidence = format!(
                "{name} {}: {} ({}, sysfs PCI tree)",
                g.pci_bus_id,
                list(&near.domains, 4),
                near.distance.name()
            );
            Some(if near.distance <= Distance::Pxb {
                Finding::ok(CHECK, evidence)
            } else {
                Finding::warn(
                    CHECK,
                    evidence,
                    "GPUDirect traffic crosses the host bridge or the CPU interconnect: pin the \
                     run to a GPU with a NIC under its PCIe switch (--gpu, --rails auto)",
                )
                .about_if(c, needed.clone())
            })
        })
        .collect()
}

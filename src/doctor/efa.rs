//! EFA devices: present, ports ACTIVE, link rates, device RDMA, and the FI_* variables that
//! contradict what the device or the plan does.

use super::{list, Ctx, Finding, PatternNeed};

/// One EFA device under `<sysfs>/class/infiniband`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EfaDevice {
    pub name: String,
    /// PCI device id (`0xefa2`).
    pub pci_id: String,
    /// Each port's state line (`4: ACTIVE`).
    pub states: Vec<String>,
    /// Each port's rate line (`100 Gb/sec (4X EDR)`).
    pub rates: Vec<String>,
}

/// Device RDMA an EFA generation offers, by PCI device id: generation 1 (0xefa0) none,
/// generation 2 (0xefa1, p4d) RDMA read, generation 3 on (0xefa2 and later, p5 on) RDMA read
/// and write. None: an id this table does not know.
pub(crate) fn device_rdma(pci_id: &str) -> Option<(bool, bool)> {
    match pci_id {
        "0xefa0" => Some((false, false)),
        "0xefa1" => Some((true, false)),
        "0xefa2" | "0xefa3" | "0xefa4" => Some((true, true)),
        _ => None,
    }
}

/// The EFA devices of the host, by name.
pub(crate) fn devices(c: &Ctx<'_>) -> Vec<EfaDevice> {
    let h = c.host;
    h.sys_entries("class/infiniband")
        .into_iter()
        .filter_map(|name| {
            let dev = format!("class/infiniband/{name}/device");
            let vendor = h.sys(&format!("{dev}/vendor")).unwrap_or_default();
            let pci_id = h.sys(&format!("{dev}/device")).unwrap_or_default();
            let driver = std::fs::read_link(h.sys_path(&format!("{dev}/driver")))
                .ok()
                .and_then(|p| Some(p.file_name()?.to_str()?.to_string()));
            let efa = driver.as_deref() == Some("efa")
                || (vendor == "0x1d0f" && pci_id.starts_with("0xefa"));
            if !efa {
                return None;
            }
            let ports = h.sys_entries(&format!("class/infiniband/{name}/ports"));
            let read = |f: &str| -> Vec<String> {
                ports
                    .iter()
                    .filter_map(|p| h.sys(&format!("class/infiniband/{name}/ports/{p}/{f}")))
                    .collect()
            };
            Some(EfaDevice {
                states: read("state"),
                rates: read("rate"),
                name,
                pci_id,
            })
        })
        .collect()
}

pub(super) fn check(c: &Ctx<'_>) -> Vec<Finding> {
    let devs = devices(c);
    let root = c.host.sys_path("class/infiniband");
    let ids = c.ids(PatternNeed::efa);
    if devs.is_empty() {
        let why = format!("no EFA device under {}", root.display());
        let f = if c.wants_efa() {
            Finding::fail(
                "efa.devices",
                why,
                "an instance type with EFA, the EFA enabled on its network interfaces, the efa \
                 driver loaded (modprobe efa)",
            )
            .about_if(c, ids)
        } else {
            Finding::skip("efa.devices", format!("{why}: EFA checks do not apply"))
        };
        return vec![f, env(c, &devs)];
    }
    let names: Vec<String> = devs.iter().map(|d| d.name.clone()).collect();
    vec![
        Finding::ok(
            "efa.devices",
            format!(
                "{} EFA device(s): {} ({})",
                devs.len(),
                list(&names, 4),
                root.display()
            ),
        ),
        ports(c, &devs, ids.clone()),
        rates(&devs),
        rdma(c, &devs),
        env(c, &devs),
    ]
}

fn ports(c: &Ctx<'_>, devs: &[EfaDevice], ids: Vec<String>) -> Finding {
    let down: Vec<String> = devs
        .iter()
        .filter(|d| d.states.is_empty() || d.states.iter().any(|s| !s.ends_with("ACTIVE")))
        .map(|d| {
            format!(
                "{} {}",
                d.name,
                d.states.first().map_or("no port", String::as_str)
            )
        })
        .collect();
    let total: usize = devs.iter().map(|d| d.states.len()).sum();
    if down.is_empty() {
        return Finding::ok(
            "efa.ports",
            format!("{total} port(s) ACTIVE (ports/*/state)"),
        );
    }
    Finding::fail(
        "efa.ports",
        format!("not ACTIVE: {} (ports/*/state)", list(&down, 4)),
        "check the link (`ibv_devinfo`), the security group (all traffic within itself) and \
         the efa driver (dmesg)",
    )
    .about_if(c, ids)
}

fn rates(devs: &[EfaDevice]) -> Finding {
    let mut rates: Vec<String> = devs.iter().flat_map(|d| d.rates.iter().cloned()).collect();
    let total_gbps: f64 = rates
        .iter()
        .filter_map(|r| r.split_whitespace().next()?.parse::<f64>().ok())
        .sum();
    rates.sort();
    rates.dedup();
    if rates.is_empty() {
        return Finding::warn(
            "efa.rate",
            "no port rate (ports/*/rate)",
            "check the efa driver",
        );
    }
    Finding::ok(
        "efa.rate",
        format!(
            "{} per port, {total_gbps:.0} Gb/s in all (ports/*/rate)",
            rates.join(" / ")
        ),
    )
}

fn rdma(c: &Ctx<'_>, devs: &[EfaDevice]) -> Finding {
    const CHECK: &str = "efa.rdma";
    let d = &devs[0];
    let rma = c.ids(|n| n.efa() && (n.tool == "fi_rma_pingpong" || !n.tool.contains("pingpong")));
    match device_rdma(&d.pci_id) {
        Some((true, write)) => Finding::ok(
            CHECK,
            format!(
                "PCI device {}: device RDMA read{} ({}/device/device)",
                d.pci_id,
                if write {
                    " and write"
                } else {
                    ", no RDMA write (writes emulated)"
                },
                d.name
            ),
        ),
        Some((false, _)) => Finding::warn(
            CHECK,
            format!("PCI device {} (EFA generation 1): no device RDMA", d.pci_id),
            "RMA is emulated with sends: RMA figures are the emulation's; an instance with \
             EFA generation 2 or later (p4d, p5) has device RDMA",
        )
        .about_if(c, rma),
        None => Finding::warn(
            CHECK,
            format!(
                "PCI device {:?}: an EFA generation kvxfer does not know",
                d.pci_id
            ),
            "`fi_info -p efa -v` tells whether the device offers RDMA read and write",
        ),
    }
}

/// Variables as the run sees them that contradict the device or the plan.
fn env(c: &Ctx<'_>, devs: &[EfaDevice]) -> Finding {
    const CHECK: &str = "efa.env";
    let efa_ids = c.ids(PatternNeed::efa);
    let set: Vec<String> = [
        "FI_PROVIDER",
        "FI_EFA_USE_DEVICE_RDMA",
        "FI_EFA_ENABLE_SHM_TRANSFER",
        "FI_HMEM_DISABLE_P2P",
        "FI_EFA_FORK_SAFE",
    ]
    .iter()
    .filter_map(|k| c.var(k).map(|(v, from)| format!("{k}={v} ({from})")))
    .collect();
    if devs.is_empty() && !c.wants_efa() && set.is_empty() {
        return Finding::skip(CHECK, "no EFA device and no FI_EFA_* variable");
    }
    let evidence = if set.is_empty() {
        "no FI_EFA_* variable set".to_string()
    } else {
        set.join(", ")
    };
    let on = |k: &str| c.var(k).map(|(v, _)| v);
    let rdma_read = devs
        .first()
        .and_then(|d| device_rdma(&d.pci_id))
        .map(|(r, _)| r);
    if let Some(p) = on("FI_PROVIDER") {
        if c.wants_efa() && !p.split(',').any(|x| x.trim() == "efa") {
            return Finding::fail(
                CHECK,
                evidence,
                format!("FI_PROVIDER={p} hides efa: unset it"),
            )
            .about_if(c, efa_ids);
        }
    }
    match (on("FI_EFA_USE_DEVICE_RDMA").as_deref(), rdma_read) {
        (Some("1"), Some(false)) => {
            return Finding::fail(
                CHECK,
                evidence,
                "FI_EFA_USE_DEVICE_RDMA=1 on a device without RDMA read: the efa provider \
                 refuses to start; unset it (or 0)",
            )
            .about_if(c, efa_ids)
        }
        (Some("0"), Some(true)) => {
            return Finding::warn(
                CHECK,
                evidence,
                "FI_EFA_USE_DEVICE_RDMA=0 emulates RMA although the device has RDMA read: the \
                 figures are not the device's; set 1",
            )
            .about_if(c, efa_ids)
        }
        _ => {}
    }
    let one_host = c.needs.sides == 2;
    if one_host && !efa_ids.is_empty() && on("FI_EFA_ENABLE_SHM_TRANSFER").as_deref() != Some("0") {
        return Finding::warn(
            CHECK,
            evidence,
            "both sides on one host: efa sends through shm, not the device (and CUDA buffers \
             over that path have crashed): FI_EFA_ENABLE_SHM_TRANSFER=0",
        )
        .about(efa_ids);
    }
    let gpu = c.ids(|n| n.efa() && n.vram);
    if on("FI_HMEM_DISABLE_P2P").as_deref() == Some("1") && (!gpu.is_empty() || !c.has_plan()) {
        return Finding::warn(
            CHECK,
            evidence,
            "FI_HMEM_DISABLE_P2P=1 stages GPU buffers through host memory: the figures are not \
             GPUDirect's; unset it",
        )
        .about_if(c, gpu);
    }
    Finding::ok(CHECK, evidence)
}

#[cfg(test)]
mod tests {
    use super::device_rdma;

    #[test]
    fn generations_say_what_device_rdma_there_is() {
        assert_eq!(device_rdma("0xefa0"), Some((false, false)));
        assert_eq!(device_rdma("0xefa1"), Some((true, false)));
        assert_eq!(device_rdma("0xefa2"), Some((true, true)));
        assert_eq!(device_rdma("0x2335"), None);
    }
}

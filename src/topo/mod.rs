//! PCIe topology from sysfs: NVIDIA GPUs, NICs, and the distance between a GPU and a NIC in the
//! terms `nvidia-smi topo -m` uses (PIX, PXB, PHB, NODE, SYS).
//!
//! The sysfs root is `/sys`, or `$KVXFER_SYSFS_ROOT` (tests build a fake tree in a temporary
//! folder); the procfs root, `/proc` or `$KVXFER_PROC_ROOT`, the same way. Nothing here fails: a
//! missing folder or file means fewer devices or an unknown field.

use std::path::{Path, PathBuf};

use serde::Serialize;

pub mod fake;
mod gpus;

pub use gpus::{driver_gpus, Affinity, DriverGpu, GpuEntry, GpuListing};

/// The environment variable that moves the sysfs root (for tests and inspection of a copied tree).
pub const SYSFS_ENV: &str = "KVXFER_SYSFS_ROOT";

/// The sysfs root this process reads.
pub fn sysfs_root() -> PathBuf {
    std::env::var_os(SYSFS_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/sys"))
}

/// The environment variable that moves the procfs root, as [`SYSFS_ENV`] moves sysfs.
pub const PROC_ENV: &str = "KVXFER_PROC_ROOT";

/// The procfs root this process reads.
pub fn proc_root() -> PathBuf {
    std::env::var_os(PROC_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/proc"))
}

/// How far apart two PCI devices are, nearest first (`nvidia-smi topo -m`'s legend).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Distance {
    /// At most a single PCIe bridge (one switch) between them.
    Pix,
    /// Several PCIe bridges, without the host bridge.
    Pxb,
    /// Through the PCIe host bridge (same root complex).
    Phb,
    /// Between host bridges of one NUMA node.
    Node,
    /// Across NUMA nodes (the SMP interconnect).
    Sys,
}

impl Distance {
    /// The legend's name.
    pub fn name(self) -> &'static str {
        match self {
            Distance::Pix => "PIX",
            Distance::Pxb => "PXB",
            Distance::Phb => "PHB",
            Distance::Node => "NODE",
            Distance::Sys => "SYS",
        }
    }
}

/// Where a PCI function sits: its root complex and the chain of functions down to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciPlace {
    /// The host bridge's folder (`pci0000:00`).
    pub root: String,
    /// Bus ids from the root port down to the function itself.
    pub chain: Vec<String>,
    /// The NUMA node sysfs reports (None for -1 or absent).
    pub numa_node: Option<i32>,
}

impl PciPlace {
    /// The function's bus id (`0000:18:00.0`).
    pub fn bus_id(&self) -> &str {
        self.chain.last().map_or("", String::as_str)
    }

    /// The distance to `other`, as nvidia-smi names it. A PCIe switch shows in sysfs as an
    /// upstream port with downstream ports below it: both ends at most two levels below their
    /// common ancestor means one switch (PIX).
    pub fn distance(&self, other: &PciPlace) -> Distance {
        if self.root != other.root {
            return match (self.numa_node, other.numa_node) {
                (Some(a), Some(b)) if a != b => Distance::Sys,
                _ => Distance::Node,
            };
        }
        let common = self
            .chain
            .iter()
            .zip(&other.chain)
            .take_while(|(a, b)| a == b)
            .count();
        if common == 0 {
            return Distance::Phb;
        }
        if self.chain.len() - common <= 2 && other.chain.len() - common <= 2 {
            Distance::Pix
        } else {
            Distance::Pxb
        }
    }
}

/// An NVIDIA GPU found on the PCI bus.
#[derive(Debug, Clone, Serialize)]
pub struct PciGpu {
    /// Bus id (`0000:18:00.0`).
    pub pci_bus_id: String,
    /// PCI device id (`0x2335`).
    pub device_id: String,
    /// NUMA node, when the platform reports one.
    pub numa_node: Option<i32>,
    #[serde(skip)]
    place: PciPlace,
}

impl PciGpu {
    /// Where the GPU sits.
    pub fn place(&self) -> &PciPlace {
        &self.place
    }
}

/// A network device with a PCI function behind it.
#[derive(Debug, Clone, Serialize)]
pub struct Nic {
    /// Its name (`rdmap16s27`, `mlx5_0`, `eth0`).
    pub name: String,
    /// `infiniband` (verbs devices, EFA) or `net` (an interface).
    pub class: &'static str,
    /// Bus id of its PCI function.
    pub pci_bus_id: String,
    /// NUMA node, when the platform reports one.
    pub numa_node: Option<i32>,
    #[serde(skip)]
    place: PciPlace,
}

impl Nic {
    /// Where the NIC sits.
    pub fn place(&self) -> &PciPlace {
        &self.place
    }
}

/// The GPUs and NICs under one sysfs root.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    /// NVIDIA GPUs, in PCI bus id order (CUDA's order under CUDA_DEVICE_ORDER=PCI_BUS_ID).
    pub gpus: Vec<PciGpu>,
    /// Verbs devices first, then network interfaces, each sorted by name.
    pub nics: Vec<Nic>,
}

const NVIDIA: &str = "0x10de";

impl Topology {
    /// Reads the tree under `root`.
    pub fn scan(root: &Path) -> Topology {
        let base = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        let mut gpus: Vec<PciGpu> = entries(&base.join("bus/pci/devices"))
            .into_iter()
            .filter_map(|(name, dev)| {
                let vendor = read_trim(&dev.join("vendor"))?;
                let class = read_trim(&dev.join("class"))?;
                // 0x0300xx VGA, 0x0302xx 3D controller (datacenter GPUs).
                let display = class.starts_with("0x0300") || class.starts_with("0x0302");
                if vendor != NVIDIA || !display {
                    return None;
                }
                let place = place_of(&base, &dev)?;
                Some(PciGpu {
                    pci_bus_id: name,
                    device_id: read_trim(&dev.join("device")).unwrap_or_default(),
                    numa_node: place.numa_node,
                    place,
                })
            })
            .collect();
        gpus.sort_by(|a, b| a.pci_bus_id.cmp(&b.pci_bus_id));
        let mut nics = Vec::new();
        for class in ["infiniband", "net"] {
            let mut found: Vec<Nic> = entries(&base.join("class").join(class))
                .into_iter()
                .filter_map(|(name, dir)| {
                    let place = place_of(&base, &dir.join("device"))?;
                    Some(Nic {
                        name,
                        class,
                        pci_bus_id: place.bus_id().to_string(),
                        numa_node: place.numa_node,
                        place,
                    })
                })
                .collect();
            found.sort_by(|a, b| a.name.cmp(&b.name));
            nics.extend(found);
        }
        Topology { gpus, nics }
    }

    /// Reads the tree under [`sysfs_root`].
    pub fn scan_host() -> Topology {
        Topology::scan(&sysfs_root())
    }

    /// The GPU with this bus id (any case, with an 8-digit or 4-digit domain).
    pub fn gpu(&self, bus_id: &str) -> Option<&PciGpu> {
        let want = normalize_bus_id(bus_id)?;
        self.gpus.iter().find(|g| g.pci_bus_id == want)
    }

    /// The NIC behind a libfabric domain name: the name itself (`mlx5_0`, `eth0`) or the name
    /// before the last `-` (EFA's `rdmap16s27-rdm`).
    pub fn nic_for_domain(&self, domain: &str) -> Option<&Nic> {
        let find = |n: &str| self.nics.iter().find(|x| x.name == n);
        find(domain).or_else(|| find(domain.rsplit_once('-')?.0))
    }

    /// Of `domains`, those whose NIC is nearest to `gpu` (all of equal, smallest distance), with
    /// that distance; None when no domain has a known PCI place.
    pub fn nearest_domains(&self, gpu: &PciPlace, domains: &[String]) -> Option<NearestDomains> {
        let placed: Vec<(&String, Distance)> = domains
            .iter()
            .filter_map(|d| Some((d, gpu.distance(self.nic_for_domain(d)?.place()))))
            .collect();
        let best = placed.iter().map(|(_, dist)| *dist).min()?;
        Some(NearestDomains {
            domains: placed
                .into_iter()
                .filter(|(_, dist)| *dist == best)
                .map(|(d, _)| d.clone())
                .collect(),
            distance: best,
        })
    }
}

/// The domains [`Topology::nearest_domains`] chose and how near they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NearestDomains {
    /// The chosen domains, in the order given.
    pub domains: Vec<String>,
    /// Their distance to the GPU.
    pub distance: Distance,
}

/// A PCI bus id in sysfs's form (`0000:18:00.0`, lower case): CUDA writes `00000000:18:00.0`.
pub fn normalize_bus_id(id: &str) -> Option<String> {
    let (domain, rest) = id.trim().split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (dev, func) = rest.split_once('.')?;
    let hex = |s: &str| u32::from_str_radix(s, 16).ok();
    Some(format!(
        "{:04x}:{:02x}:{:02x}.{:x}",
        hex(domain)?,
        hex(bus)?,
        hex(dev)?,
        hex(func)?
    ))
}

/// The default GPU for a process: its local rank modulo the GPU count, else 0.
pub fn default_gpu(local_rank: Option<u32>, gpu_count: usize) -> i32 {
    match (local_rank, gpu_count) {
        (Some(r), n) if n > 0 => (r as usize % n) as i32,
        _ => 0,
    }
}

/// The folder's entries as (name, path), sorted by name; empty when it cannot be read.
fn entries(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf)> = rd
        .filter_map(|e| {
            let e = e.ok()?;
            Some((e.file_name().to_str()?.to_string(), e.path()))
        })
        .collect();
    out.sort();
    out
}

fn read_trim(p: &Path) -> Option<String> {
    Some(std::fs::read_to_string(p).ok()?.trim().to_string())
}

fn is_bus_id(s: &str) -> bool {
    normalize_bus_id(s).as_deref() == Some(s)
}

/// The place of the PCI function `link` resolves to: `<root>/devices/pciDDDD:BB/<bus ids>...`
/// (a virtio or other child below the last function is ignored).
fn place_of(root: &Path, link: &Path) -> Option<PciPlace> {
    let real = std::fs::canonicalize(link).ok()?;
    let rel = real.strip_prefix(root.join("devices")).ok()?;
    let mut parts = rel.iter().filter_map(|c| c.to_str());
    let host = parts.next()?.to_string();
    if !host.starts_with("pci") {
        return None;
    }
    let chain: Vec<String> = parts
        .take_while(|c| is_bus_id(c))
        .map(str::to_string)
        .collect();
    let last = chain.last()?;
    let mut func = root.join("devices").join(&host);
    func.extend(chain.iter());
    debug_assert!(func.ends_with(last));
    let numa_node = read_trim(&func.join("numa_node"))
        .and_then(|s| s.parse::<i32>().ok())
        .filter(|&n| n >= 0);
    Some(PciPlace {
        root: host,
        chain,
        numa_node,
    })
}

#[cfg(test)]
mod tests;

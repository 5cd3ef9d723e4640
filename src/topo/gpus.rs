//! The GPUs of this host, from the CUDA driver (name, memory) and sysfs (NUMA node, place), with
//! their distance to every NIC: what `kvxfer info --gpu` prints and `--gpu` / `--rails auto`
//! choose by.

use serde::Serialize;

use super::{default_gpu, normalize_bus_id, Distance, Nic, PciPlace, Topology};

/// One GPU as listed.
#[derive(Debug, Clone, Serialize)]
pub struct GpuEntry {
    /// CUDA ordinal (None when the driver does not list it).
    pub ordinal: Option<i32>,
    /// Name from the driver.
    pub name: Option<String>,
    /// Total memory from the driver, bytes.
    pub memory_bytes: Option<u64>,
    /// PCI bus id, sysfs's spelling.
    pub pci_bus_id: String,
    /// NUMA node from sysfs.
    pub numa_node: Option<i32>,
    #[serde(skip)]
    place: Option<PciPlace>,
}

impl GpuEntry {
    /// Where the GPU sits on the PCI bus, when sysfs shows it.
    pub fn place(&self) -> Option<&PciPlace> {
        self.place.as_ref()
    }
}

/// One cell of the affinity matrix.
#[derive(Debug, Clone, Serialize)]
pub struct Affinity {
    /// The GPU's bus id.
    pub gpu: String,
    /// The NIC's name.
    pub nic: String,
    /// Their PCIe distance.
    pub distance: Distance,
}

/// The GPUs, the NICs and the distances between them.
#[derive(Debug, Clone, Serialize)]
pub struct GpuListing {
    /// Every GPU the driver or sysfs shows, by CUDA ordinal, then sysfs-only ones.
    pub gpus: Vec<GpuEntry>,
    /// NICs with a PCI function.
    pub nics: Vec<Nic>,
    /// GPU x NIC distances (GPUs with a known place only).
    pub affinity: Vec<Affinity>,
    /// Why the driver listed nothing, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver_error: Option<String>,
}

/// A device as the driver describes it (the `cuda` build fills these).
#[derive(Debug, Clone)]
pub struct DriverGpu {
    /// CUDA ordinal.
    pub ordinal: i32,
    /// Name.
    pub name: String,
    /// Total memory, bytes.
    pub memory_bytes: u64,
    /// Bus id in the driver's spelling.
    pub pci_bus_id: String,
}

impl GpuListing {
    /// Joins the driver's devices (or the reason there are none) with the sysfs topology.
    pub fn build(topo: &Topology, driver: Result<Vec<DriverGpu>, String>) -> GpuListing {
        let (driver, driver_error) = match driver {
            Ok(d) => (d, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        let mut gpus: Vec<GpuEntry> = driver
            .into_iter()
            .map(|d| {
                let bus = normalize_bus_id(&d.pci_bus_id).unwrap_or(d.pci_bus_id);
                let pci = topo.gpu(&bus);
                GpuEntry {
                    ordinal: Some(d.ordinal),
                    name: Some(d.name),
                    memory_bytes: Some(d.memory_bytes),
                    numa_node: pci.and_then(|p| p.numa_node),
                    place: pci.map(|p| p.place().clone()),
                    pci_bus_id: bus,
                }
            })
            .collect();
        for g in &topo.gpus {
            if !gpus.iter().any(|e| e.pci_bus_id == g.pci_bus_id) {
                gpus.push(GpuEntry {
                    ordinal: None,
                    name: None,
                    memory_bytes: None,
                    pci_bus_id: g.pci_bus_id.clone(),
                    numa_node: g.numa_node,
                    place: Some(g.place().clone()),
                });
            }
        }
        let affinity = gpus
            .iter()
            .filter_map(|g| Some((g, g.place.as_ref()?)))
            .flat_map(|(g, place)| {
                topo.nics.iter().map(move |n| Affinity {
                    gpu: g.pci_bus_id.clone(),
                    nic: n.name.clone(),
                    distance: place.distance(n.place()),
                })
            })
            .collect();
        GpuListing {
            gpus,
            nics: topo.nics.clone(),
            affinity,
            driver_error,
        }
    }

    /// This host's listing: the driver's devices (in the `cuda` build) and [`Topology::scan_host`].
    pub fn host() -> GpuListing {
        GpuListing::build(&Topology::scan_host(), driver_gpus())
    }

    /// The GPU of CUDA ordinal `gpu`; without a driver, the `gpu`-th in PCI bus order.
    pub fn by_ordinal(&self, gpu: i32) -> Option<&GpuEntry> {
        if self.gpus.iter().any(|g| g.ordinal.is_some()) {
            self.gpus.iter().find(|g| g.ordinal == Some(gpu))
        } else {
            self.gpus.get(usize::try_from(gpu).ok()?)
        }
    }

    /// The default `--gpu`: the launcher's local rank modulo the GPU count, else 0.
    pub fn default_gpu(&self) -> i32 {
        default_gpu(
            crate::bootstrap::launcher::local_rank(|k| std::env::var(k).ok()),
            self.gpus.len(),
        )
    }
}

/// The driver's devices, or why there are none.
#[cfg(feature = "cuda")]
pub fn driver_gpus() -> Result<Vec<DriverGpu>, String> {
    crate::mem::cuda::devices()
        .map(|list| {
            list.into_iter()
                .map(|d| DriverGpu {
                    ordinal: d.ordinal,
                    name: d.name,
                    memory_bytes: d.memory_bytes,
                    pci_bus_id: d.pci_bus_id,
                })
                .collect()
        })
        .map_err(|e| e.to_string())
}

/// The driver's devices, or why there are none.
#[cfg(not(feature = "cuda"))]
pub fn driver_gpus() -> Result<Vec<DriverGpu>, String> {
    Err("built without the `cuda` feature (cargo build --features cuda)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topo::fake::two_socket;

    #[test]
    fn driver_devices_join_sysfs_by_bus_id_and_sysfs_only_gpus_stay_listed() {
        let dir = tempfile::tempdir().unwrap();
        let topo = Topology::scan(two_socket(dir.path()).unwrap().root());
        let driver = vec![DriverGpu {
            ordinal: 0,
            name: "NVIDIA H200".into(),
            memory_bytes: 150_754_820_096,
            pci_bus_id: "00000000:81:00.0".into(),
        }];
        let l = GpuListing::build(&topo, Ok(driver));
        assert_eq!(l.gpus.len(), 2);
        assert_eq!(l.gpus[0].ordinal, Some(0));
        assert_eq!(l.gpus[0].pci_bus_id, "0000:81:00.0");
        assert_eq!(l.gpus[0].numa_node, Some(1));
        assert_eq!((l.gpus[1].ordinal, l.gpus[1].name.as_deref()), (None, None));
        assert_eq!(l.by_ordinal(0).unwrap().pci_bus_id, "0000:81:00.0");
        assert!(l.by_ordinal(1).is_none());
        // 2 GPUs x 5 NICs; GPU0 of the driver is the node-1 GPU: PHB to rdmap3.
        assert_eq!(l.affinity.len(), 10);
        let cell = l.affinity.iter().find(|a| a.nic == "rdmap3").unwrap();
        assert_eq!(
            (cell.gpu.as_str(), cell.distance),
            ("0000:81:00.0", Distance::Phb)
        );
        let json = serde_json::to_value(&l).unwrap();
        assert_eq!(json["affinity"][0]["distance"], "SYS");
        assert!(json.get("driver_error").is_none());
    }

    #[test]
    fn without_a_driver_sysfs_gpus_are_listed_by_bus_order_and_the_reason_kept() {
        let dir = tempfile::tempdir().unwrap();
        let topo = Topology::scan(two_socket(dir.path()).unwrap().root());
        let l = GpuListing::build(&topo, Err("no CUDA driver".into()));
        assert_eq!(l.gpus.len(), 2);
        assert_eq!(l.by_ordinal(1).unwrap().pci_bus_id, "0000:81:00.0");
        assert_eq!(l.driver_error.as_deref(), Some("no CUDA driver"));
        let empty = GpuListing::build(&Topology::default(), Err("x".into()));
        assert!(empty.gpus.is_empty() && empty.affinity.is_empty());
        assert_eq!(empty.default_gpu(), 0);
    }
}

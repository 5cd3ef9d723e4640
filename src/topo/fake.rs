//! A sysfs tree written into a folder, shaped like the kernel's: for tests of the topology
//! code and of `kvxfer info --gpu` on machines without GPUs or NICs of their own.

use std::io;
use std::path::{Path, PathBuf};

/// A fake sysfs root being built.
pub struct FakeSysfs {
    root: PathBuf,
}

impl FakeSysfs {
    /// Starts an empty tree under `root`.
    pub fn new(root: &Path) -> io::Result<FakeSysfs> {
        for d in [
            "devices",
            "bus/pci/devices",
            "class/infiniband",
            "class/net",
        ] {
            std::fs::create_dir_all(root.join(d))?;
        }
        Ok(FakeSysfs {
            root: root.to_path_buf(),
        })
    }

    /// The root to point `KVXFER_SYSFS_ROOT` at.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Adds the PCI function at the end of `chain` (bus ids from the root port down) under host
    /// bridge `host` (`pci0000:00`), with its ids and NUMA node; returns its folder.
    pub fn pci(
        &self,
        host: &str,
        chain: &[&str],
        vendor: &str,
        class: &str,
        numa_node: i32,
    ) -> io::Result<PathBuf> {
        let mut dir = self.root.join("devices").join(host);
        for id in chain {
            dir.push(id);
            std::fs::create_dir_all(&dir)?;
        }
        std::fs::write(dir.join("vendor"), format!("{vendor}\n"))?;
        std::fs::write(dir.join("class"), format!("{class}\n"))?;
        std::fs::write(dir.join("device"), "0x2335\n")?;
        std::fs::write(dir.join("numa_node"), format!("{numa_node}\n"))?;
        let id = chain.last().copied().unwrap_or_default();
        let link = self.root.join("bus/pci/devices").join(id);
        if !link.exists() {
            std::os::unix::fs::symlink(&dir, link)?;
        }
        Ok(dir)
    }

    /// Adds an NVIDIA 3D controller (a datacenter GPU).
    pub fn gpu(&self, host: &str, chain: &[&str], numa_node: i32) -> io::Result<PathBuf> {
        self.pci(host, chain, "0x10de", "0x030200", numa_node)
    }

    /// Adds a NIC of `class` (`infiniband` or `net`) named `name`, a function of its own.
    pub fn nic(
        &self,
        class: &str,
        name: &str,
        host: &str,
        chain: &[&str],
        numa_node: i32,
    ) -> io::Result<()> {
        let dev = self.pci(host, chain, "0x1d0f", "0x020000", numa_node)?;
        let dir = self.root.join("class").join(class).join(name);
        std::fs::create_dir_all(&dir)?;
        std::os::unix::fs::symlink(dev, dir.join("device"))
    }

    /// Adds a network interface with no device behind it (`lo`).
    pub fn virtual_net(&self, name: &str) -> io::Result<()> {
        std::fs::create_dir_all(self.root.join("class/net").join(name))
    }

    /// Gives interface `name` its traffic counters (`statistics/tx_bytes`, ...) and, when
    /// `speed_mbps` is given, its line rate.
    pub fn net_counters(
        &self,
        name: &str,
        counters: &[(&str, u64)],
        speed_mbps: Option<u64>,
    ) -> io::Result<()> {
        let dir = self.root.join("class/net").join(name);
        std::fs::create_dir_all(dir.join("statistics"))?;
        for (c, v) in counters {
            write_counter(&dir.join("statistics").join(c), *v)?;
        }
        if let Some(s) = speed_mbps {
            std::fs::write(dir.join("speed"), format!("{s}\n"))?;
        }
        Ok(())
    }

    /// Gives port `port` of RDMA device `name` its `rate` ("100 Gb/sec (4X EDR)") and hardware
    /// counters; returns the port's folder.
    pub fn rdma_port(
        &self,
        name: &str,
        port: u32,
        rate: &str,
        hw_counters: &[(&str, u64)],
    ) -> io::Result<PathBuf> {
        let dir = self
            .root
            .join("class/infiniband")
            .join(name)
            .join("ports")
            .join(port.to_string());
        std::fs::create_dir_all(dir.join("hw_counters"))?;
        std::fs::write(dir.join("rate"), format!("{rate}\n"))?;
        for (c, v) in hw_counters {
            write_counter(&dir.join("hw_counters").join(c), *v)?;
        }
        Ok(dir)
    }
}

/// Writes a counter file as the kernel shows it, replacing it whole (a reader never sees half
/// a number; the hidden file it renames is no counter to one listing the folder).
pub fn write_counter(path: &Path, value: u64) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.new"));
    std::fs::write(&tmp, format!("{value}\n"))?;
    std::fs::rename(tmp, path)
}

/// A two-socket host: GPU0 behind a switch with rdmap0 (PIX), rdmap1 behind a second switch
/// below the same one (PXB), eth0 on another root port (PHB), rdmap2 on a second host bridge of
/// node 0 (NODE), GPU1 and rdmap3 on node 1 (SYS from GPU0).
pub fn two_socket(dir: &Path) -> io::Result<FakeSysfs> {
    let f = FakeSysfs::new(dir)?;
    let sw = ["0000:00:01.0", "0000:01:00.0"];
    f.gpu(
        "pci0000:00",
        &[sw[0], sw[1], "0000:02:00.0", "0000:03:00.0"],
        0,
    )?;
    f.nic(
        "infiniband",
        "rdmap0",
        "pci0000:00",
        &[sw[0], sw[1], "0000:02:01.0", "0000:04:00.0"],
        0,
    )?;
    let nested = [
        sw[0],
        sw[1],
        "0000:02:02.0",
        "0000:05:00.0",
        "0000:06:00.0",
        "0000:07:00.0",
    ];
    f.nic("infiniband", "rdmap1", "pci0000:00", &nested, 0)?;
    f.nic(
        "net",
        "eth0",
        "pci0000:00",
        &["0000:00:02.0", "0000:08:00.0"],
        0,
    )?;
    f.nic(
        "infiniband",
        "rdmap2",
        "pci0000:10",
        &["0000:10:01.0", "0000:11:00.0"],
        0,
    )?;
    f.gpu("pci0000:80", &["0000:80:01.0", "0000:81:00.0"], 1)?;
    f.nic(
        "infiniband",
        "rdmap3",
        "pci0000:80",
        &["0000:80:02.0", "0000:82:00.0"],
        1,
    )?;
    // Not GPUs: another vendor's display controller, an NVIDIA audio function.
    f.pci("pci0000:00", &["0000:00:03.0"], "0x1234", "0x030000", 0)?;
    f.pci(
        "pci0000:80",
        &["0000:80:01.0", "0000:81:00.1"],
        "0x10de",
        "0x040300",
        1,
    )?;
    f.virtual_net("lo")?;
    Ok(f)
}

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
}

//! Fake procfs and sysfs trees for the doctor's tests: a healthy node to start from, each
//! troubleshooting case one call away.

use std::io;
use std::path::{Path, PathBuf};

use crate::topo::fake::FakeSysfs;

/// A procfs tree being built under a folder.
pub struct FakeProc {
    root: PathBuf,
}

impl FakeProc {
    /// A healthy node's procfs: kernel 6.8, memlock unlimited, 1 TiB available, an idle CPU,
    /// TCP with slow start after idle off, cubic, 16 MiB buffers, a default route on ens32.
    pub fn new(root: &Path) -> io::Result<FakeProc> {
        let f = FakeProc {
            root: root.to_path_buf(),
        };
        f.kernel("6.8.0-1015-aws")?;
        f.memlock(None)?;
        f.write(
            "meminfo",
            "MemTotal:       2113500000 kB\nMemAvailable:   1073741824 kB\nHugePages_Total:       0\n",
        )?;
        f.write("loadavg", "0.05 0.03 0.01 1/900 4242\n")?;
        f.slow_start_after_idle(0)?;
        f.write("sys/net/ipv4/tcp_congestion_control", "cubic\n")?;
        f.write(
            "sys/net/ipv4/tcp_available_congestion_control",
            "reno cubic\n",
        )?;
        f.write("sys/net/ipv4/tcp_rmem", "4096\t131072\t16777216\n")?;
        f.write("sys/net/ipv4/tcp_wmem", "4096\t16384\t16777216\n")?;
        f.write(
            "net/route",
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             ens32\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
             ens32\t0000000A\t00000000\t0001\t0\t0\t100\t0000FFFF\t0\t0\t0\n",
        )?;
        Ok(f)
    }

    /// The root to point `KVXFER_PROC_ROOT` at.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes `text` to `rel` under the root, making its folders.
    pub fn write(&self, rel: &str, text: &str) -> io::Result<()> {
        let p = self.root.join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(p, text)
    }

    /// The kernel release.
    pub fn kernel(&self, release: &str) -> io::Result<()> {
        self.write("sys/kernel/osrelease", &format!("{release}\n"))
    }

    /// RLIMIT_MEMLOCK, soft and hard (None: unlimited), as `self/limits` shows it.
    pub fn memlock(&self, bytes: Option<u64>) -> io::Result<()> {
        let v = bytes.map_or("unlimited".to_string(), |b| b.to_string());
        self.write(
            "self/limits",
            &format!(
                "Limit                     Soft Limit           Hard Limit           Units     \n\
                 Max open files            1048576              1048576              files     \n\
                 Max locked memory         {v:<20} {v:<20} bytes     \n"
            ),
        )
    }

    /// `net.ipv4.tcp_slow_start_after_idle`.
    pub fn slow_start_after_idle(&self, v: u32) -> io::Result<()> {
        self.write("sys/net/ipv4/tcp_slow_start_after_idle", &format!("{v}\n"))
    }

    /// The NVIDIA kernel module's version file (open or proprietary).
    pub fn nvidia(&self, version: &str, open: bool) -> io::Result<()> {
        let kind = if open {
            "Open Kernel Module"
        } else {
            "Kernel Module"
        };
        self.write(
            "driver/nvidia/version",
            &format!("NVRM version: NVIDIA UNIX {kind} for x86_64  {version}  Release Build\nGCC version:  gcc 12\n"),
        )
    }
}

/// A p5-like node: `gpus` GPUs (each behind a PCIe switch with four EFA devices of generation
/// 3, ports ACTIVE at 100 Gb/s), nvidia_peermem loaded, ens32 at MTU 9001, the performance
/// governor, transparent huge pages on madvise.
pub fn p5_like(dir: &Path, gpus: usize) -> io::Result<FakeSysfs> {
    let f = FakeSysfs::new(dir)?;
    for g in 0..gpus {
        let host = format!("pci{:04x}:{:02x}", 0, g * 0x10);
        let root_port = format!("0000:{:02x}:01.0", g * 0x10);
        let up = format!("0000:{:02x}:00.0", g * 0x10 + 1);
        let down = |d: usize| format!("0000:{:02x}:{d:02x}.0", g * 0x10 + 2);
        let dev = |d: usize| format!("0000:{:02x}:00.0", g * 0x10 + 3 + d);
        f.gpu(&host, &[&root_port, &up, &down(0), &dev(0)], (g / 4) as i32)?;
        for e in 0..4 {
            let name = format!("rdmap{}s0", g * 4 + e);
            f.nic(
                "infiniband",
                &name,
                &host,
                &[&root_port, &up, &down(e + 1), &dev(e + 1)],
                (g / 4) as i32,
            )?;
            let ib = dir.join("class/infiniband").join(&name);
            std::fs::write(ib.join("device/device"), "0xefa2\n")?;
            std::fs::create_dir_all(ib.join("ports/1"))?;
            std::fs::write(ib.join("ports/1/state"), "4: ACTIVE\n")?;
            std::fs::write(ib.join("ports/1/rate"), "100 Gb/sec (4X EDR)\n")?;
        }
    }
    f.virtual_net("ens32")?;
    std::fs::write(dir.join("class/net/ens32/mtu"), "9001\n")?;
    std::fs::create_dir_all(dir.join("module/nvidia_peermem"))?;
    std::fs::create_dir_all(dir.join("devices/system/cpu/cpu0/cpufreq"))?;
    std::fs::write(
        dir.join("devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "performance\n",
    )?;
    std::fs::write(dir.join("devices/system/cpu/online"), "0-191\n")?;
    std::fs::create_dir_all(dir.join("kernel/mm/transparent_hugepage"))?;
    std::fs::write(
        dir.join("kernel/mm/transparent_hugepage/enabled"),
        "always [madvise] never\n",
    )?;
    Ok(f)
}

//! The kernel's counters of this host, read in one pass around a timed span: every network
//! device's traffic (sysfs), the host's TCP counters and CPU ticks (`/proc`), and this
//! process's CPU time. A counter that cannot be read is unknown, never zero.
//!
//! The sysfs root follows `KVXFER_SYSFS_ROOT` (as the topology does) and the proc root
//! `KVXFER_PROC_ROOT`, so tests build fake trees.

pub mod cpu;
pub mod devices;
pub mod tcp;

use std::path::{Path, PathBuf};
use std::time::Instant;

pub use self::cpu::{HostCpu, ProcessCpu};
pub use self::devices::{Device, DeviceClass, Reading, Unknown};
pub use self::tcp::TcpCounters;

/// The environment variable that moves the proc root (for tests).
pub const PROC_ENV: &str = "KVXFER_PROC_ROOT";

/// Where the counters are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// `/sys`, or `$KVXFER_SYSFS_ROOT`.
    pub sysfs: PathBuf,
    /// `/proc`, or `$KVXFER_PROC_ROOT`.
    pub proc: PathBuf,
}

impl Roots {
    /// This process's roots, as the environment sets them.
    pub fn host() -> Roots {
        Roots {
            sysfs: crate::topo::sysfs_root(),
            proc: std::env::var_os(PROC_ENV)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/proc")),
        }
    }
}

/// Every counter file of a host, found once; [`CounterReader::read`] then opens each file once.
#[derive(Debug, Clone)]
pub struct CounterReader {
    proc: PathBuf,
    devices: Vec<Device>,
}

/// One reading of every counter.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When the reading began.
    pub at: Instant,
    /// How long it took, ns.
    pub read_ns: u64,
    /// Per device (in [`CounterReader::devices`] order), per counter file.
    pub devices: Vec<Vec<Reading>>,
    /// The host's TCP counters.
    pub tcp: Option<TcpCounters>,
    /// The host's CPU ticks.
    pub host_cpu: Option<HostCpu>,
    /// This process's CPU time.
    pub process_cpu: Option<ProcessCpu>,
}

impl CounterReader {
    /// Finds the devices and their counter files under `roots`.
    pub fn discover(roots: &Roots) -> CounterReader {
        CounterReader {
            proc: roots.proc.clone(),
            devices: devices::discover(&roots.sysfs),
        }
    }

    /// The reader of this host's counters (the roots the environment sets).
    pub fn host() -> CounterReader {
        CounterReader::discover(&Roots::host())
    }

    /// The devices found.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// The proc root.
    pub fn proc_root(&self) -> &Path {
        &self.proc
    }

    /// Reads every counter once.
    pub fn read(&self) -> Snapshot {
        let at = Instant::now();
        let mut buf = [0u8; 64];
        let process_cpu = ProcessCpu::now();
        let host_cpu = HostCpu::read(&self.proc);
        let devices = self.devices.iter().map(|d| d.read(&mut buf)).collect();
        let tcp = TcpCounters::read(&self.proc);
        Snapshot {
            at,
            read_ns: at.elapsed().as_nanos() as u64,
            devices,
            tcp,
            host_cpu,
            process_cpu,
        }
    }
}

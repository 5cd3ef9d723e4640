//! CPU time: this process's (user and system, `getrusage`) and the whole host's busy and idle
//! ticks (`/proc/stat`), for what a run cost the CPU over its timed span.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// This process's CPU time so far, microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessCpu {
    /// In user mode.
    pub user_us: u64,
    /// In the kernel on the process's behalf.
    pub system_us: u64,
}

impl ProcessCpu {
    /// This process's CPU time now, every thread included (None if getrusage fails).
    pub fn now() -> Option<ProcessCpu> {
        use nix::sys::resource::{getrusage, UsageWho};
        let u = getrusage(UsageWho::RUSAGE_SELF).ok()?;
        let us = |t: nix::sys::time::TimeVal| {
            (t.tv_sec() as u64).saturating_mul(1_000_000) + t.tv_usec() as u64
        };
        Some(ProcessCpu {
            user_us: us(u.user_time()),
            system_us: us(u.system_time()),
        })
    }
}

/// The host's CPU ticks so far, summed over its CPUs (the `cpu` line of `/proc/stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCpu {
    /// Ticks spent running anything: user, nice, system, irq, softirq, steal.
    pub busy: u64,
    /// Every tick: busy, idle and I/O wait.
    pub total: u64,
    /// CPUs listed (`cpuN` lines).
    pub cpus: usize,
}

impl HostCpu {
    /// Reads `stat` under the proc root `proc` (None when it is missing or malformed).
    pub fn read(proc: &Path) -> Option<HostCpu> {
        HostCpu::parse(&std::fs::read_to_string(proc.join("stat")).ok()?)
    }

    /// The ticks in the text of `/proc/stat`.
    pub fn parse(text: &str) -> Option<HostCpu> {
        let line = text.lines().find(|l| l.starts_with("cpu "))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        // user nice system idle iowait irq softirq steal [guest guest_nice]: the guest times are
        // already inside user and nice.
        if v.len() < 4 {
            return None;
        }
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        let idle = at(3) + at(4);
        let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
        let cpus = text
            .lines()
            .filter(|l| {
                l.strip_prefix("cpu")
                    .and_then(|r| r.chars().next())
                    .is_some_and(|c| c.is_ascii_digit())
            })
            .count();
        Some(HostCpu {
            busy,
            total: busy + idle,
            cpus,
        })
    }

    /// The busy fraction of the host's CPUs from `earlier` to these ticks (None when no tick
    /// passed or the counters went back).
    pub fn busy_since(&self, earlier: &HostCpu) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let busy = self.busy.checked_sub(earlier.busy)?;
        (total > 0).then(|| busy as f64 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "\
cpu  100 5 50 800 20 3 2 10 0 0
cpu0 50 2 25 400 10 1 1 5 0 0
cpu1 50 3 25 400 10 2 1 5 0 0
intr 123 0 0
ctxt 456
";

    #[test]
    fn busy_and_idle_ticks_and_the_fraction_between_two_readings() {
        let a = HostCpu::parse(STAT).unwrap();
        assert_eq!((a.busy, a.total, a.cpus), (170, 990, 2));
        let later = STAT.replace("cpu  100 5 50 800 20", "cpu  160 5 80 830 30");
        let b = HostCpu::parse(&later).unwrap();
        // 90 busy ticks of 130.
        let f = b.busy_since(&a).unwrap();
        assert!((f - 90.0 / 130.0).abs() < 1e-12, "{f}");
        assert_eq!(a.busy_since(&a), None);
        assert_eq!(a.busy_since(&b), None);
        assert_eq!(HostCpu::parse("intr 1\n"), None);
        assert_eq!(HostCpu::parse("cpu  1 2 x 4\n"), None);
    }

    #[test]
    fn this_process_and_host_have_cpu_times() {
        let a = ProcessCpu::now().unwrap();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = ProcessCpu::now().unwrap();
        assert!(b.user_us + b.system_us > a.user_us + a.system_us);
        let h = HostCpu::read(Path::new("/proc")).unwrap();
        assert!(h.cpus >= 1 && h.total > h.busy);
    }
}

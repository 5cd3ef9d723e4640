//! Noise: the CPU frequency governor, the load average, and other measurements or busy
//! pollers on the host.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{list, Ctx, Finding, Host};

/// How long the processes' CPU time is watched.
const WINDOW: Duration = Duration::from_millis(200);

/// Clock ticks per second of `/proc/PID/stat` times (USER_HZ, 100 on Linux's ABIs).
const TICKS: f64 = 100.0;

/// Programs that measure the network, as their `comm` names show.
const MEASURERS: &[&str] = &[
    "kvxfer",
    "fi_pingpong",
    "fi_rma_pingpong",
    "ucx_perftest",
    "nixlbench",
];

/// One process as sampled.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Proc {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    /// CPU time used over the window, percent of one CPU.
    pub busy: f64,
}

/// The processes of the host, watched over [`WINDOW`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    pub procs: Vec<Proc>,
}

/// (pid, ppid, comm, utime + stime) of each `<proc>/PID/stat`.
fn snapshot(host: &Host) -> BTreeMap<u32, (u32, String, u64)> {
    host.proc_entries("")
        .into_iter()
        .filter_map(|e| {
            let pid: u32 = e.parse().ok()?;
            let stat = std::fs::read_to_string(host.proc_path(&format!("{pid}/stat"))).ok()?;
            let (head, tail) = stat.rsplit_once(')')?;
            let comm = head.split_once('(')?.1.to_string();
            let f: Vec<&str> = tail.split_whitespace().collect();
            let ppid = f.get(1)?.parse().ok()?;
            let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some((pid, (ppid, comm, ticks)))
        })
        .collect()
}

/// Watches the processes for [`WINDOW`].
pub(crate) fn sample(host: &Host) -> Sample {
    let before = snapshot(host);
    std::thread::sleep(WINDOW);
    let after = snapshot(host);
    let procs = after
        .into_iter()
        .map(|(pid, (ppid, comm, t))| {
            let used = before.get(&pid).map_or(0, |b| t.saturating_sub(b.2));
            Proc {
                pid,
                ppid,
                comm,
                busy: used as f64 / (WINDOW.as_secs_f64() * TICKS) * 100.0,
            }
        })
        .collect();
    Sample { procs }
}

pub(super) fn check(c: &Ctx<'_>, s: Sample) -> Vec<Finding> {
    vec![governor(c), load(c), others(&s, std::process::id())]
}

fn governor(c: &Ctx<'_>) -> Finding {
    const CHECK: &str = "noise.governor";
    let mut found: BTreeMap<String, usize> = BTreeMap::new();
    for cpu in c.host.sys_entries("devices/system/cpu") {
        let digits = cpu
            .strip_prefix("cpu")
            .is_some_and(|n| n.parse::<u32>().is_ok());
        if !digits {
            continue;
        }
        let rel = format!("devices/system/cpu/{cpu}/cpufreq/scaling_governor");
        if let Some(g) = c.host.sys(&rel) {
            *found.entry(g).or_default() += 1;
        }
    }
    if found.is_empty() {
        return Finding::skip(
            CHECK,
            format!(
                "no cpufreq under {} (a VM, or no frequency scaling)",
                c.host.sys_path("devices/system/cpu").display()
            ),
        );
    }
    let shown: Vec<String> = found
        .iter()
        .map(|(g, n)| format!("{g} on {n} CPU(s)"))
        .collect();
    let evidence = format!("{} (cpu*/cpufreq/scaling_governor)", shown.join(", "));
    if found.keys().all(|g| g == "performance") {
        return Finding::ok(CHECK, evidence);
    }
    Finding::warn(
        CHECK,
        evidence,
        "the clock follows the load: latency figures swing with it; cpupower frequency-set -g \
         performance",
    )
}

fn load(c: &Ctx<'_>) -> Finding {
    const CHECK: &str = "noise.load";
    let Some(text) = c.host.proc("loadavg") else {
        return Finding::skip(
            CHECK,
            format!("no {}", c.host.proc_path("loadavg").display()),
        );
    };
    let one: f64 = text
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let cpus = c.host.cpus();
    let evidence = format!(
        "load average {one:.2} over 1 min on {cpus} CPU(s) ({})",
        c.host.proc_path("loadavg").display()
    );
    if one > cpus as f64 * 0.5 {
        return Finding::warn(
            CHECK,
            evidence,
            "other work competes with busy polling: latency and bandwidth figures suffer; measure \
             on an idle node",
        );
    }
    Finding::ok(CHECK, evidence)
}

/// Other measurements and busy pollers: processes named like a measuring tool, or using most
/// of a CPU, other than `me` and its ancestors (the `kvxfer run` that started it).
pub(crate) fn others(s: &Sample, me: u32) -> Finding {
    const CHECK: &str = "noise.processes";
    let by_pid: BTreeMap<u32, &Proc> = s.procs.iter().map(|p| (p.pid, p)).collect();
    let mut mine = vec![me];
    let mut at = me;
    while let Some(p) = by_pid.get(&at) {
        if p.ppid == 0 || mine.contains(&p.ppid) {
            break;
        }
        mine.push(p.ppid);
        at = p.ppid;
    }
    let shown: Vec<String> = s
        .procs
        .iter()
        .filter(|p| !mine.contains(&p.pid))
        .filter(|p| MEASURERS.contains(&p.comm.as_str()) || p.busy >= 80.0)
        .map(|p| format!("{} (pid {}, {:.0}% CPU)", p.comm, p.pid, p.busy))
        .collect();
    let watched = format!(
        "{} process(es) watched for {} ms (/proc/PID/stat)",
        s.procs.len(),
        WINDOW.as_millis()
    );
    if shown.is_empty() {
        return Finding::ok(
            CHECK,
            format!("no other measurement or busy poller; {watched}"),
        );
    }
    Finding::warn(
        CHECK,
        format!("{}; {watched}", list(&shown, 3)),
        "another measurement or a busy process shares the CPUs and the NIC: wait for it or stop it",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: u32, ppid: u32, comm: &str, busy: f64) -> Proc {
        Proc {
            pid,
            ppid,
            comm: comm.into(),
            busy,
        }
    }

    #[test]
    fn measurers_and_busy_pollers_are_named_but_not_this_run_or_its_parents() {
        let s = Sample {
            procs: vec![
                p(1, 0, "init", 0.0),
                p(10, 1, "kvxfer", 3.0),
                p(11, 10, "sh", 0.0),
                p(12, 11, "kvxfer", 1.0),
                p(20, 1, "fi_pingpong", 99.0),
                p(30, 1, "rustc", 95.0),
                p(40, 1, "bash", 10.0),
            ],
        };
        let f = others(&s, 12);
        assert_eq!(f.status, super::super::Status::Warn);
        assert!(
            f.evidence
                .starts_with("fi_pingpong (pid 20, 99% CPU), rustc (pid 30, 95% CPU);"),
            "{}",
            f.evidence
        );
        assert!(
            !f.evidence.contains("pid 10"),
            "the kvxfer run above this one: {}",
            f.evidence
        );
        let calm = Sample {
            procs: vec![p(1, 0, "init", 0.0), p(12, 1, "kvxfer", 50.0)],
        };
        assert_eq!(others(&calm, 12).status, super::super::Status::Ok);
    }
}

//! SIGINT and SIGTERM as a request to stop: a command that catches them ([`catch`]) finds the
//! request in [`requested`] at its loops and waits, ends them, keeps what it finished and
//! exits with 128 + the signal's number. A second signal, a second or more after the first,
//! ends the process at once (and the process groups of its children with it).

use std::sync::atomic::Ordering;

use crate::fabric::signals::{CHILD_GROUPS, RECEIVED};

/// A signal that stops a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal(i32);

impl Signal {
    /// SIGINT (Ctrl-C).
    pub const INT: Signal = Signal(libc::SIGINT);
    /// SIGTERM (kill, timeout).
    pub const TERM: Signal = Signal(libc::SIGTERM);

    /// The signal's number.
    pub fn number(self) -> i32 {
        self.0
    }

    /// The exit status of a process this signal stopped: 128 + its number (130, 143).
    pub fn exit_code(self) -> u8 {
        (128 + self.0).clamp(0, 255) as u8
    }

    /// Its name, `SIGINT` or `SIGTERM`.
    pub fn name(self) -> &'static str {
        match self.0 {
            libc::SIGINT => "SIGINT",
            libc::SIGTERM => "SIGTERM",
            _ => "a signal",
        }
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A run ended early because a signal asked it to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stopped by {0}")]
pub struct Stopped(pub Signal);

/// The signal that asked this process to stop, if one has: one relaxed load, cheap enough for
/// every iteration of a loop.
#[inline]
pub fn requested() -> Option<Signal> {
    match RECEIVED.load(Ordering::Relaxed) {
        0 => None,
        n => Some(Signal(n)),
    }
}

/// `Err(Stopped)` once a signal asked this process to stop.
#[inline]
pub fn check() -> Result<(), Stopped> {
    match requested() {
        None => Ok(()),
        Some(s) => Err(Stopped(s)),
    }
}

/// Makes SIGINT and SIGTERM requests to stop (the caller's loops look at [`requested`]).
/// Libraries loaded with libfabric take these signals over when they load (Debian's
/// libinfinipath sets a handler that calls `exit(1)`): call this after they loaded, in `main`.
pub fn catch() -> std::io::Result<()> {
    crate::fabric::signals::install()
}

/// Gives SIGINT and SIGTERM back their default action (the process ends), undoing what the
/// libraries set when they loaded: for commands that have no loop to stop.
pub fn default_action() -> std::io::Result<()> {
    crate::fabric::signals::restore_default()
}

/// A child's process group, killed by a second signal while it is registered; see
/// [`ChildGroup::register`].
#[derive(Debug)]
pub struct ChildGroup {
    slot: Option<usize>,
    pgid: i32,
}

impl ChildGroup {
    /// Registers the process group `pgid` (a child started as a group leader) until the
    /// returned value is dropped.
    pub fn register(pgid: i32) -> ChildGroup {
        let slot = CHILD_GROUPS.iter().position(|s| {
            s.compare_exchange(0, pgid, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        });
        ChildGroup { slot, pgid }
    }

    /// Sends `signal` to the group, and to the leader of every process group its members
    /// started (a `timeout` or `setsid` below it leads one of its own, and passes the signal
    /// on to its members itself; a group whose leader is gone gets it whole): each process
    /// hears it once from here.
    pub fn forward(&self, signal: Signal) {
        let below = descendant_groups(self.pgid);
        crate::fabric::signals::signal_group(self.pgid, signal.number());
        for (pgid, leader_alive) in below {
            match leader_alive {
                true => crate::fabric::signals::signal_process(pgid, signal.number()),
                false => crate::fabric::signals::signal_group(pgid, signal.number()),
            }
        }
    }
}

impl Drop for ChildGroup {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            CHILD_GROUPS[i].store(0, Ordering::SeqCst);
        }
    }
}

/// The process groups of the processes below the members of group `pgid` (by /proc's parent
/// links), other than `pgid` itself, each with whether its leader is among them.
fn descendant_groups(pgid: i32) -> std::collections::BTreeMap<i32, bool> {
    // (pid, ppid, pgrp) of every process; those that vanish while read are skipped.
    let procs: Vec<(i32, i32, i32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // After the command's closing parenthesis: state, ppid, pgrp.
            let rest = &stat[stat.rfind(')')? + 1..];
            let mut f = rest.split_whitespace().skip(1);
            let ppid = f.next()?.parse().ok()?;
            let pgrp = f.next()?.parse().ok()?;
            Some((pid, ppid, pgrp))
        })
        .collect();
    let mut below: std::collections::BTreeSet<i32> =
        procs.iter().filter(|p| p.2 == pgid).map(|p| p.0).collect();
    loop {
        let more: Vec<i32> = procs
            .iter()
            .filter(|p| below.contains(&p.1) && !below.contains(&p.0))
            .map(|p| p.0)
            .collect();
        if more.is_empty() {
            break;
        }
        below.extend(more);
    }
    let mut groups = std::collections::BTreeMap::new();
    for p in procs.iter().filter(|p| below.contains(&p.0) && p.2 != pgid) {
        *groups.entry(p.2).or_insert(false) |= p.0 == p.2;
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_and_names_follow_the_shell() {
        assert_eq!(Signal::INT.exit_code(), 130);
        assert_eq!(Signal::TERM.exit_code(), 143);
        assert_eq!(Stopped(Signal::TERM).to_string(), "stopped by SIGTERM");
    }

    #[test]
    fn a_group_started_below_a_child_is_found() {
        use std::os::unix::process::CommandExt;
        // A shell leading its own group starts `setsid sleep`, which leads another.
        let mut child = std::process::Command::new("bash")
            .args(["-c", "setsid sleep 30 & sleep 30"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id() as i32;
        let mut found = Default::default();
        for _ in 0..100 {
            found = descendant_groups(pgid);
            if !found.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let g = ChildGroup::register(pgid);
        g.forward(Signal::TERM);
        let status = child.wait().unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(!found.contains_key(&pgid));
        // The setsid'd sleep leads its group, and got the signal too: it is gone.
        let (&leader, &alive) = found.iter().next().unwrap();
        assert!(alive);
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            !std::path::Path::new(&format!("/proc/{leader}")).exists()
                || std::fs::read_to_string(format!("/proc/{leader}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "the setsid'd sleep still runs"
        );
        assert!(!status.success());
    }
}

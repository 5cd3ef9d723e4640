//! What the doctor reads of the host: files under a sysfs and a procfs root (moved by
//! `KVXFER_SYSFS_ROOT` and `KVXFER_PROC_ROOT`, so tests read fake trees), the environment and
//! the working folder. Nothing here fails: a file that cannot be read is None.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The host as the checks see it.
#[derive(Debug, Clone)]
pub struct Host {
    /// The sysfs root (`/sys`).
    pub sysfs: PathBuf,
    /// The procfs root (`/proc`).
    pub proc: PathBuf,
    /// The environment variables of the run (this process's, for the real host).
    pub env: BTreeMap<String, String>,
    /// The folder relative tool paths are taken from.
    pub cwd: PathBuf,
}

impl Host {
    /// This host: the roots from the environment, this process's variables and folder.
    pub fn current() -> Host {
        Host {
            sysfs: crate::topo::sysfs_root(),
            proc: crate::topo::proc_root(),
            env: std::env::vars().collect(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        }
    }

    /// A host under these roots with no variables, in the current folder (for tests).
    pub fn under(sysfs: &Path, proc: &Path) -> Host {
        Host {
            sysfs: sysfs.to_path_buf(),
            proc: proc.to_path_buf(),
            env: BTreeMap::new(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        }
    }

    /// The path of `rel` under the sysfs root.
    pub fn sys_path(&self, rel: &str) -> PathBuf {
        self.sysfs.join(rel)
    }

    /// The path of `rel` under the procfs root.
    pub fn proc_path(&self, rel: &str) -> PathBuf {
        self.proc.join(rel)
    }

    /// A sysfs file's text, trimmed.
    pub fn sys(&self, rel: &str) -> Option<String> {
        read_trim(&self.sys_path(rel))
    }

    /// A procfs file's text, trimmed.
    pub fn proc(&self, rel: &str) -> Option<String> {
        read_trim(&self.proc_path(rel))
    }

    /// A procfs file's first number (`/proc/sys/net/ipv4/tcp_slow_start_after_idle`).
    pub fn proc_number(&self, rel: &str) -> Option<u64> {
        self.proc(rel)?.split_whitespace().next()?.parse().ok()
    }

    /// The names in a sysfs folder, sorted; empty when it cannot be read.
    pub fn sys_entries(&self, rel: &str) -> Vec<String> {
        entries(&self.sys_path(rel))
    }

    /// The names in a procfs folder, sorted; empty when it cannot be read.
    pub fn proc_entries(&self, rel: &str) -> Vec<String> {
        entries(&self.proc_path(rel))
    }

    /// An environment variable of the run.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(String::as_str)
    }

    /// The kernel release (`6.8.0-1015-aws`).
    pub fn kernel(&self) -> Option<String> {
        self.proc("sys/kernel/osrelease")
    }

    /// Where `program` is: a path with a `/` taken from the working folder, else the first
    /// executable file of that name on the run's PATH.
    pub fn which(&self, program: &str) -> Option<PathBuf> {
        if program.contains('/') {
            let p = self.cwd.join(program);
            return p.exists().then_some(p);
        }
        self.var("PATH")?
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(program))
            .find(|p| is_executable(p))
    }

    /// Online CPUs (`<sysfs>/devices/system/cpu/online`: `0-95`), else this process's count.
    pub fn cpus(&self) -> usize {
        self.sys("devices/system/cpu/online")
            .and_then(|s| count_cpu_list(&s))
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

/// The number of CPUs in a list like `0-3,8-11,16`.
pub fn count_cpu_list(list: &str) -> Option<usize> {
    let mut n = 0usize;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                n += b.checked_sub(a)? + 1;
            }
            None => {
                part.parse::<usize>().ok()?;
                n += 1;
            }
        }
    }
    (n > 0).then_some(n)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `program args` with the run's PATH and returns what it printed (stdout, then stderr),
/// or None when it could not start or did not finish within `limit` (it is killed then).
pub fn run_briefly(host: &Host, program: &Path, args: &[&str], limit: Duration) -> Option<String> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(&host.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = host.var("PATH") {
        cmd.env("PATH", path);
    }
    let mut child = cmd.spawn().ok()?;
    let mut out = child.stdout.take()?;
    let mut err = child.stderr.take()?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        let _ = err.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    reader.join().ok()
}

fn read_trim(p: &Path) -> Option<String> {
    Some(std::fs::read_to_string(p).ok()?.trim().to_string())
}

fn entries(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = rd
        .filter_map(|e| e.ok()?.file_name().to_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

/// A kernel release's (major, minor): `5.10.0-28-cloud-amd64` is (5, 10).
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// A "major.minor[.patch]" version's (major, minor).
pub fn major_minor(version: &str) -> Option<(u32, u32)> {
    kernel_version(version.trim_start_matches(|c: char| !c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_and_versions_are_read() {
        assert_eq!(count_cpu_list("0-95\n"), Some(96));
        assert_eq!(count_cpu_list("0-3,8-11,16"), Some(9));
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list("3-1"), None);
        assert_eq!(count_cpu_list(""), None);
        assert_eq!(kernel_version("5.10.0-28-cloud-amd64"), Some((5, 10)));
        assert_eq!(kernel_version("6.18.44-fc-v1300"), Some((6, 18)));
        assert_eq!(kernel_version("garbage"), None);
        assert_eq!(major_minor("v1.22.0"), Some((1, 22)));
        assert_eq!(major_minor("1.17"), Some((1, 17)));
    }
}

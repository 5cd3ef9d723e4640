//! A local runner with the team's task-runner contract: `{{KEY}}` replaced from `variables`, all
//! commands of a definition in one shell (so shell variables persist), `skip_if`, per-task state
//! with timestamps in a state file, resume (`--from`, `--reset`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{PlanError, TaskDefinition};
use crate::report::schema::now_rfc3339;
use crate::report::write_atomic;

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Not run yet.
    Pending,
    /// Started, not finished (a crash leaves it so; it runs again on resume).
    Running,
    /// Done, or skipped because its `skip_if` succeeded.
    Success,
    /// A command failed.
    Failed,
}

/// One task's recorded state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskState {
    /// Where it stands.
    pub status: TaskStatus,
    /// When the status last changed (RFC 3339).
    pub updated_at: String,
    /// True when `skip_if` succeeded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
}

/// The state file: per definition name, per task id.
pub type StateFile = BTreeMap<String, BTreeMap<String, TaskState>>;

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Start at this task; earlier tasks are left as they are.
    pub from: Option<String>,
    /// Forget the recorded state of this definition first.
    pub reset: bool,
    /// State file; default `/tmp/task-state-<hostname>.json`.
    pub state: Option<PathBuf>,
    /// Forward the commands' output to stderr instead of stdout (a caller whose stdout
    /// carries its own results).
    pub output_to_stderr: bool,
}

/// What a run did, per task id in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// (task id, outcome) in run order: `ran`, `skipped`, `done before`, `failed`.
    pub outcomes: Vec<(String, &'static str)>,
}

/// The default state file of this host.
pub fn default_state_path() -> PathBuf {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    PathBuf::from(format!("/tmp/task-state-{host}.json"))
}

/// Replaces `{{KEY}}` from `variables`, then from the environment (a launcher exports
/// NODE1_PRIVATE and friends); an unresolved key is an error. Every value is shell-quoted, so it
/// stays one word whatever it holds, and values of a known shape (`*_IP`, `*_PRIVATE`,
/// `*_HOST`: an address or host name; `*_PORT`: a port) are checked against it.
pub fn expand(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed {{{{ in {text:?}"))?;
        let key = after[..end].trim();
        let value = vars
            .get(key)
            .filter(|v| !v.is_empty())
            .cloned()
            .or_else(|| std::env::var(key).ok())
            .ok_or_else(|| format!("variable {key} is not set (variables or environment)"))?;
        check_shape(key, &value)?;
        out.push_str(&super::shell_quote(&value));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Checks a variable whose name says what it holds: a host (`*_IP`, `*_PRIVATE`, `*_HOST`)
/// is an IP address or a DNS name, a `*_PORT` is 1..=65535.
fn check_shape(key: &str, value: &str) -> Result<(), String> {
    let host = ["_IP", "_PRIVATE", "_HOST"]
        .iter()
        .any(|s| key.ends_with(s));
    if host && !is_host(value) {
        return Err(format!(
            "variable {key} is {value:?}, which is neither an IP address nor a host name"
        ));
    }
    if key.ends_with("_PORT") && !matches!(value.parse::<u16>(), Ok(p) if p > 0) {
        return Err(format!(
            "variable {key} is {value:?}, which is not a port (1 to 65535)"
        ));
    }
    Ok(())
}

/// An IP address (v4 or v6) or a DNS name (letters, digits, `-` and `.`, at most 253 bytes).
fn is_host(s: &str) -> bool {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// One shell for the whole definition, leading a process group of its own: a signal that
/// stops the run reaches it (and every group started below it) once, from [`StopWatch`].
struct Shell {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    marker: String,
    to_stderr: bool,
    _watch: StopWatch,
}

impl Shell {
    fn start(to_stderr: bool) -> Result<Shell, PlanError> {
        let mut child = Command::new("bash")
            .args(["--noprofile", "--norc"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| PlanError::Run(format!("cannot start bash: {e}")))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let marker = format!("__kvxfer_task_rc_{}_{}", std::process::id(), now_nanos());
        let watch = StopWatch::start(child.id() as i32);
        Ok(Shell {
            child,
            stdin,
            stdout,
            marker,
            to_stderr,
            _watch: watch,
        })
    }

    /// Runs one command in the shell (stdin from /dev/null); returns its exit status.
    /// Output is forwarded unless `quiet`.
    fn run(&mut self, command: &str, quiet: bool) -> Result<i32, PlanError> {
        let redirect = if quiet { " >/dev/null 2>&1" } else { "" };
        let script = format!(
            "{{ {command}\n}} </dev/null{redirect}\nprintf '\\n{} %d\\n' \"$?\"\n",
            self.marker
        );
        let dead = |e: std::io::Error| PlanError::Run(format!("the task shell went away: {e}"));
        self.stdin.write_all(script.as_bytes()).map_err(dead)?;
        self.stdin.flush().map_err(dead)?;
        let mut held_blank = false;
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).map_err(dead)?;
            if n == 0 {
                let status = self.child.wait().ok().and_then(|s| s.code());
                return Err(PlanError::Run(format!(
                    "the task shell exited (status {status:?}) while running: {command}"
                )));
            }
            if let Some(rc) = line.trim_end().strip_prefix(&self.marker) {
                return Ok(rc.trim().parse().unwrap_or(1));
            }
            // The marker's leading newline: hold one blank line back until we know.
            if held_blank {
                self.forward("\n");
            }
            held_blank = line == "\n";
            if !held_blank {
                self.forward(&line);
            }
        }
    }
}

impl Shell {
    /// Passes a line of the commands' output on.
    fn forward(&self, text: &str) {
        if self.to_stderr {
            eprint!("{text}");
        } else {
            crate::out!("{text}");
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Passes a signal's request to stop on to the shell's process group and the groups below it
/// (`timeout` leads one of its own), once; a second signal kills them (see [`crate::stop`]).
struct StopWatch {
    done: Arc<AtomicBool>,
    /// Registered while the shell lives, so that a second signal kills its group.
    _group: Arc<crate::stop::ChildGroup>,
}

impl StopWatch {
    /// How often the watcher looks for a request to stop.
    const POLL: Duration = Duration::from_millis(50);

    fn start(pgid: i32) -> StopWatch {
        let done = Arc::new(AtomicBool::new(false));
        let group = Arc::new(crate::stop::ChildGroup::register(pgid));
        let (seen, forward) = (done.clone(), group.clone());
        // Without the thread a signal still stops the run, only later: at the command's end.
        let _ = std::thread::Builder::new()
            .name("kvxfer-task-stop".into())
            .spawn(move || {
                while !seen.load(Ordering::SeqCst) {
                    if let Some(s) = crate::stop::requested() {
                        forward.forward(s);
                        break;
                    }
                    std::thread::sleep(Self::POLL);
                }
            });
        StopWatch {
            done,
            _group: group,
        }
    }
}

impl Drop for StopWatch {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
    }
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Largest state file read (a state file holds a few lines per task).
const MAX_STATE_BYTES: u64 = 16 << 20;

/// The state file's path at the end of its links: it is read and rewritten, so a FIFO or a
/// device (which would block the read or take no rewrite) is refused before any task runs.
fn state_file(path: &Path) -> Result<PathBuf, PlanError> {
    match crate::report::destination(path) {
        Ok(crate::report::Destination::File(p)) => Ok(p),
        Ok(crate::report::Destination::Stream(p)) => Err(PlanError::Run(format!(
            "--state {}: {} is a FIFO, device or descriptor, not a file a state can be kept in",
            path.display(),
            p.display()
        ))),
        Err(e) => Err(PlanError::Run(format!("--state {e}"))),
    }
}

fn load_state(path: &Path) -> Result<StateFile, PlanError> {
    use crate::report::folder::{read_regular, ReadError};
    match read_regular(path, MAX_STATE_BYTES) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| PlanError::Run(format!("{}: not a task state file: {e}", path.display()))),
        Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(StateFile::new()),
        Err(ReadError::Io(err)) => Err(PlanError::Io {
            path: path.to_path_buf(),
            err,
        }),
        Err(e) => Err(PlanError::Run(format!("--state {}: {e}", path.display()))),
    }
}

fn save_state(path: &Path, state: &StateFile) -> Result<(), PlanError> {
    let mut bytes = serde_json::to_vec_pretty(state).expect("state serialises");
    bytes.push(b'\n');
    write_atomic(path, &bytes).map_err(|e| PlanError::Io {
        path: path.to_path_buf(),
        err: e,
    })
}

/// Runs `def` on this host; stops at the first failing task.
pub fn run(def: &TaskDefinition, opts: &RunOptions) -> Result<RunReport, PlanError> {
    def.check()?;
    let state_path = state_file(&opts.state.clone().unwrap_or_else(default_state_path))?;
    let mut state = load_state(&state_path)?;
    if opts.reset {
        state.remove(&def.name);
    }
    let start =
        match &opts.from {
            None => 0,
            Some(id) => def.tasks.iter().position(|t| &t.id == id).ok_or_else(|| {
                PlanError::Run(format!("--from {id}: no such task in {}", def.name))
            })?,
        };
    // Expand everything before running anything: an unset variable fails early.
    let mut expanded = Vec::new();
    for t in &def.tasks {
        let ex = |s: &String| {
            expand(s, &def.variables).map_err(|e| PlanError::Run(format!("task {}: {e}", t.id)))
        };
        let cmds = t.commands.iter().map(ex).collect::<Result<Vec<_>, _>>()?;
        let skip = t.skip_if.as_ref().map(ex).transpose()?;
        expanded.push((cmds, skip));
    }
    let mut shell = Shell::start(opts.output_to_stderr)?;
    let mut report = RunReport {
        outcomes: Vec::new(),
    };
    let set = |state: &mut StateFile, id: &str, status, skipped| -> Result<(), PlanError> {
        state.entry(def.name.clone()).or_default().insert(
            id.to_string(),
            TaskState {
                status,
                updated_at: now_rfc3339(),
                skipped,
            },
        );
        save_state(&state_path, state)
    };
    for (t, (cmds, skip)) in def.tasks.iter().zip(&expanded).skip(start) {
        if let Some(signal) = crate::stop::requested() {
            return Err(PlanError::Stopped {
                task: t.id.clone(),
                signal,
            });
        }
        let done = state
            .get(&def.name)
            .and_then(|m| m.get(&t.id))
            .is_some_and(|s| s.status == TaskStatus::Success);
        if done && opts.from.as_deref() != Some(t.id.as_str()) {
            report.outcomes.push((t.id.clone(), "done before"));
            continue;
        }
        if let Some(test) = skip {
            if shell.run(test, true)? == 0 {
                let why = if t.description.is_empty() {
                    &t.name
                } else {
                    &t.description
                };
                eprintln!(
                    "kvxfer task: [{}] skipped ({why}): skip_if succeeded: {test}",
                    t.id
                );
                set(&mut state, &t.id, TaskStatus::Success, true)?;
                report.outcomes.push((t.id.clone(), "skipped"));
                continue;
            }
        }
        eprintln!("kvxfer task: [{}] {}", t.id, t.name);
        set(&mut state, &t.id, TaskStatus::Running, false)?;
        for c in cmds {
            let ran = shell.run(c, false);
            if let Some(signal) = crate::stop::requested() {
                set(&mut state, &t.id, TaskStatus::Failed, false)?;
                return Err(PlanError::Stopped {
                    task: t.id.clone(),
                    signal,
                });
            }
            let rc = match ran {
                Ok(rc) => rc,
                Err(e) => {
                    set(&mut state, &t.id, TaskStatus::Failed, false)?;
                    return Err(e);
                }
            };
            if rc != 0 {
                set(&mut state, &t.id, TaskStatus::Failed, false)?;
                return Err(PlanError::Run(format!(
                    "task {} failed: exit status {rc} from: {c}",
                    t.id
                )));
            }
        }
        set(&mut state, &t.id, TaskStatus::Success, false)?;
        report.outcomes.push((t.id.clone(), "ran"));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_uses_variables_then_environment() {
        let mut v = BTreeMap::new();
        v.insert("A".to_string(), "1".to_string());
        v.insert("EMPTY".to_string(), String::new());
        assert_eq!(expand("x{{A}}y{{ A }}", &v).unwrap(), "x1y1");
        let e = expand("{{KVXFER_SURELY_UNSET_VAR}}", &v).unwrap_err();
        assert!(e.contains("KVXFER_SURELY_UNSET_VAR"), "{e}");
        assert!(
            expand("{{EMPTY}}", &v).is_err(),
            "an empty variable is unset"
        );
        assert!(expand("{{A", &v).is_err());
    }

    #[test]
    fn substituted_values_stay_one_shell_word() {
        let mut v = BTreeMap::new();
        for value in ["a b;touch /tmp/x;#'", "$(id)`id`", "x\"y\" *", "plain"] {
            v.insert("MSG".to_string(), value.to_string());
            let cmd = expand("printf '%s|' {{MSG}}", &v).unwrap();
            let out = Command::new("bash").args(["-c", &cmd]).output().unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{value}|"));
        }
    }

    #[test]
    fn hosts_and_ports_are_checked_by_their_shape() {
        let mut v = BTreeMap::new();
        for ok in ["127.0.0.1", "::1", "node-1.cluster.local", "ip-10-0-0-1"] {
            v.insert("PEER_IP".to_string(), ok.to_string());
            assert!(expand("{{PEER_IP}}", &v).is_ok(), "{ok}");
        }
        for bad in [
            "127.0.0.1;touch /tmp/x;#",
            "a b",
            "-oProxyCommand=x",
            "h..x",
            "$(id)",
        ] {
            v.insert("PEER_IP".to_string(), bad.to_string());
            let e = expand("{{PEER_IP}}", &v).unwrap_err();
            assert!(e.contains("PEER_IP"), "{e}");
        }
        for (port, ok) in [
            ("47590", true),
            ("0", false),
            ("70000", false),
            ("1;id", false),
        ] {
            v.insert("CONTROL_PORT".to_string(), port.to_string());
            assert_eq!(expand("{{CONTROL_PORT}}", &v).is_ok(), ok, "{port}");
        }
    }
}

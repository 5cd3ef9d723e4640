//! SIGINT and SIGTERM (issue 29, item 3): every command that measures stops its loops, keeps
//! what it finished as a partial result, says so in one line and exits 128 + the signal; a
//! second signal ends it at once; `task run` passes the signal to its commands (and the
//! process groups below them), waits for them and marks the task failed.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use kvxfer::report::Status;

/// Sends `sig` (INT, TERM) to process `pid`.
fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// Waits for `child` at most `limit`: its exit code, its stderr (as written to `log`), and how
/// long it took.
fn finish(mut child: Child, log: &Path, limit: Duration) -> (Option<i32>, String, Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let took = start.elapsed();
            // What it wrote (a process it left behind would hold the pipe open: not waited for).
            let err = std::fs::read_to_string(log).unwrap_or_default();
            assert!(!err.contains("panicked"), "panic: {err}");
            return (status.code(), err, took);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running {limit:?} after the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last line of `err` that is not empty.
fn last_line(err: &str) -> String {
    err.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .to_string()
}

/// Runs kvxfer `args`, sends `sig` after `after`, and returns the exit code, the last line of
/// stderr and how long it took to end after the signal.
fn interrupted(args: &[&str], sig: &str, after: Duration) -> (Option<i32>, String, Duration) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let child = Command::new(kvxfer_path())
        .args(args)
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    signal(child.id(), sig);
    let (code, err, took) = finish(child, log.path(), Duration::from_secs(30));
    (code, last_line(&err), took)
}

/// As [`interrupted`], checking that the command ended with 128 + the signal within 10 s of
/// it; the last line of its stderr.
fn stopped(args: &[&str], sig: &str, after: Duration) -> String {
    let (code, line, took) = interrupted(args, sig, after);
    let want = if sig == "INT" { 130 } else { 143 };
    assert_eq!(code, Some(want), "{line}");
    assert!(
        took < Duration::from_secs(10),
        "ended {took:?} after SIG{sig}"
    );
    line
}

/// Whether a process other than a zombie still has `needle` on its command line.
fn running_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        });
        if cmd.contains(needle) && !zombie && pid != std::process::id() {
            found.push(format!("{pid}: {cmd}"));
        }
    }
    found
}

#[test]
fn sigint_keeps_the_pingpong_sizes_finished() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let sizes = [64u64, 128, 256, 512, 1024, 8 << 20];
    // The small sizes take milliseconds, the last one many seconds: the signal lands in it
    // (later tries wait longer on a slow host).
    for wait in [2, 4, 8, 16] {
        let _ = std::fs::remove_file(&json);
        let line = stopped(
            &[
                "pingpong",
                "--domain",
                "lo",
                "--sizes",
                "64,128,256,512,1K,8M",
                "--iterations",
                "3000",
                "--json",
                json.to_str().unwrap(),
            ],
            "INT",
            Duration::from_secs(wait),
        );
        let doc = read_doc(&json);
        if doc.results.is_empty() {
            assert_eq!(doc.status, Status::Failed);
            assert!(
                line.contains("nothing") || line.contains("0 result"),
                "{line}"
            );
            continue;
        }
        println!("after {wait} s: {line}");
        assert!(line.starts_with("kvxfer: stopped by SIGINT"), "{line}");
        assert!(line.contains("kept in"), "{line}");
        assert_eq!(doc.status, Status::Partial);
        assert_eq!(doc.errors.last().unwrap().message, "stopped by SIGINT");
        // The sizes finished, in order, each with all its iterations; the last one was not.
        let got: Vec<u64> = doc.results.iter().map(|r| r.message_size).collect();
        assert!(got.len() < sizes.len(), "{got:?}");
        assert_eq!(got, sizes[..got.len()]);
        for r in &doc.results {
            assert_eq!(r.iterations, 3000);
            assert!(r.latency_us.unwrap().p50 > 0.0);
        }
        return;
    }
    panic!("no size finished within 16 s");
}

#[test]
fn sigint_keeps_the_pingpong_rounds_finished() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    // Each round takes seconds (its 8M size), the 64 B size milliseconds: once a round has
    // finished, the signal lands in a later one (later tries wait longer on a slow host: a
    // clean CI run once took more than 16 s over one round of 500 at 8M). Twenty rounds, so
    // no try outlives the run however fast the host (another clean run finished four rounds
    // of 200 within 8 s).
    for wait in [2, 4, 8, 16, 32] {
        let _ = std::fs::remove_file(&json);
        let args = [
            "pingpong",
            "--domain",
            "lo",
            "--sizes",
            "64,8M",
            "--iterations",
            "200",
            "--rounds",
            "20",
            "--json",
            json.to_str().unwrap(),
        ];
        let line = stopped(&args, "INT", Duration::from_secs(wait));
        let doc = read_doc(&json);
        println!("after {wait} s: {line}");
        assert_ne!(doc.status, Status::Complete);
        // The sizes each with the rounds it finished, in order: the first size as many as
        // the last or one more, the last never all twenty.
        let got: Vec<u64> = doc.results.iter().map(|r| r.message_size).collect();
        assert_eq!(got, [64, 8 << 20][..got.len()]);
        let rounds: Vec<u64> = doc
            .results
            .iter()
            .map(|r| {
                let p = &r.extra["precision"]["rounds"]["p50_us"];
                p.as_array().map_or(1, |a| a.len() as u64)
            })
            .collect();
        for (r, n) in doc.results.iter().zip(&rounds) {
            assert_eq!(r.iterations, 200 * n);
        }
        assert!(
            rounds.windows(2).all(|w| w[0] >= w[1] && w[0] - w[1] <= 1),
            "{rounds:?}"
        );
        if rounds.first().is_some_and(|&n| n >= 2) {
            // A round after the first had begun: the first round's every size is kept.
            assert_eq!(doc.status, Status::Partial);
            assert_eq!(got.len(), 2);
            assert!(
                rounds[1] < 20,
                "the last size never finished every round: {rounds:?}"
            );
            return;
        }
    }
    panic!("no second round began within 32 s");
}

#[test]
fn sigterm_keeps_the_xfer_iterations_finished() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("x.json");
    for wait in [2, 5, 10, 20] {
        let line = stopped(
            &[
                "xfer",
                "-s",
                "1M",
                "-I",
                "1000000",
                "-w",
                "1",
                "--domain",
                "lo",
                "--json",
                json.to_str().unwrap(),
            ],
            "TERM",
            Duration::from_secs(wait),
        );
        if !json.exists() {
            assert!(line.contains("nothing was measured"), "{line}");
            continue;
        }
        let doc = read_doc(&json);
        assert!(line.starts_with("kvxfer: stopped by SIGTERM"), "{line}");
        assert_eq!(doc.status, Status::Partial, "{:?}", doc.errors);
        let r = &doc.results[0];
        assert!(
            r.iterations > 0 && r.iterations < 1_000_000,
            "{}",
            r.iterations
        );
        let h = kvxfer::stats::decode_histogram(r.histogram.as_ref().unwrap()).unwrap();
        assert_eq!(h.len(), r.iterations);
        return;
    }
    panic!("no iteration finished within 20 s");
}

#[test]
fn sigint_keeps_the_memcpy_copies_timed() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("m.json");
    let line = stopped(
        &[
            "memcpy",
            "-s",
            "16M",
            "-I",
            "100000000",
            "-w",
            "1",
            "--json",
            json.to_str().unwrap(),
        ],
        "INT",
        Duration::from_secs(3),
    );
    assert!(line.starts_with("kvxfer: stopped by SIGINT: "), "{line}");
    let doc = read_doc(&json);
    assert_eq!(doc.status, Status::Partial);
    let r = &doc.results[0];
    assert!(r.iterations > 0 && r.iterations < 100_000_000);
    assert!(line.contains(&format!("{} of 100000000 timed copies", r.iterations)));
    let h = kvxfer::stats::decode_histogram(r.histogram.as_ref().unwrap()).unwrap();
    assert_eq!(h.len(), r.iterations);
}

/// A task definition with one task running `command`, in `dir`.
fn definition(dir: &Path, command: &str) -> std::path::PathBuf {
    let def = serde_json::json!({
        "name": "sig",
        "description": "",
        "variables": {},
        "tasks": [{"id": "a", "name": "a", "commands": [command]}],
    });
    let path = dir.join("def.json");
    std::fs::write(&path, def.to_string()).unwrap();
    path
}

/// Starts `kvxfer task run` on a definition in `dir` of one task running `command`, its state
/// in `dir/state.json`, its stderr in `dir/err`.
fn task_run(dir: &Path, command: &str) -> Child {
    Command::new(kvxfer_path())
        .args(["task", "run"])
        .arg(definition(dir, command))
        .arg("--state")
        .arg(dir.join("state.json"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("err")).unwrap())
        .spawn()
        .unwrap()
}

/// The recorded status of task `a` of definition `sig`.
fn task_status(state: &Path) -> String {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(state).unwrap()).unwrap();
    v["sig"]["a"]["status"].as_str().unwrap().to_string()
}

#[test]
fn task_run_passes_sigterm_below_timeout_waits_and_marks_the_task_failed() {
    let _g = fabric_lock();
    // A measurement that had not begun when the signal came keeps nothing (it says so, and
    // writes no result): on a busy host its set-up can outlast the first wait, so longer ones
    // follow, as for xfer alone above.
    for wait in [3, 8, 16, 30] {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("t.json");
        // `timeout` leads a process group of its own, as in the plans' commands.
        let command = format!(
            "timeout 900 {} xfer -s 1M -I 1000000 -w 1 --domain lo --json {}",
            kvxfer_path().display(),
            json.display()
        );
        let state = dir.path().join("state.json");
        let child = task_run(dir.path(), &command);
        std::thread::sleep(Duration::from_secs(wait));
        assert_eq!(task_status(&state), "running");
        signal(child.id(), "TERM");
        let (code, err, took) = finish(child, &dir.path().join("err"), Duration::from_secs(30));
        let line = last_line(&err);
        assert_eq!(code, Some(143), "{err}");
        assert!(
            took < Duration::from_secs(15),
            "ended {took:?} after SIGTERM"
        );
        assert!(line.starts_with("kvxfer: stopped by SIGTERM"), "{line}");
        assert!(line.contains("task a"), "{line}");
        assert_eq!(task_status(&state), "failed");
        let left = running_with(&json.display().to_string());
        assert!(left.is_empty(), "left running: {left:?}");
        if !json.exists() {
            assert!(err.contains("nothing was measured"), "{err}");
            continue;
        }
        // The measurement below `timeout` got the signal, kept its iterations and ended.
        let doc = read_doc(&json);
        assert_eq!(doc.status, Status::Partial, "{:?}", doc.errors);
        assert!(doc.results[0].iterations > 0);
        return;
    }
    panic!("no iteration finished within 30 s");
}

#[test]
fn a_second_signal_ends_task_run_and_its_commands_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("sleep.pid");
    // A command that ignores SIGINT: the first signal cannot end it.
    let command = format!(
        "trap '' INT; sleep 300 & echo $! > {}; wait",
        pidfile.display()
    );
    let mut child = task_run(dir.path(), &command);
    std::thread::sleep(Duration::from_secs(2));
    let pid = child.id();
    signal(pid, "INT");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first SIGINT ended task run while its command ignores it"
    );
    signal(pid, "INT");
    let (code, err, took) = finish(child, &dir.path().join("err"), Duration::from_secs(5));
    assert_eq!(code, Some(130), "{err}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(err.contains("second signal"), "{err}");
    // The command's process group was killed with it.
    let sleep: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let alive = std::fs::read_to_string(format!("/proc/{sleep}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    });
    assert!(!alive, "the command's sleep {sleep} still runs");
}

#[test]
fn kvxfer_run_stopped_mid_pattern_leaves_nothing_running() {
    if !have("fi_pingpong") {
        skip(
            "kvxfer_run_stopped_mid_pattern_leaves_nothing_running",
            "no fi_pingpong (Debian's libfabric-bin), which the loopback plan's L0 runs",
        );
        return;
    }
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let state = dir.path().join("state.json");
    let plan = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/loopback.json");
    let log = dir.path().join("err");
    let child = Command::new(kvxfer_path())
        .args(["run", "--layer", "L0", "--plan"])
        .arg(&plan)
        .arg("--out")
        .arg(&out)
        .arg("--state")
        .arg(&state)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Stopped mid-task: once a measuring round (a task `*-rN`, seconds long) is running.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !round_running(&state) {
        assert!(
            std::time::Instant::now() < deadline,
            "no round running after 90 s: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(child.id(), "TERM");
    let (code, err, took) = finish(child, &log, Duration::from_secs(30));
    let line = last_line(&err);
    assert_eq!(code, Some(143), "{err}");
    assert!(
        took < Duration::from_secs(15),
        "ended {took:?} after SIGTERM"
    );
    assert!(
        line.starts_with("kvxfer: stopped by SIGTERM: plan "),
        "{line}"
    );
    assert!(line.contains("was stopped"), "{line}");
    // The task that ran is marked failed, none is left running, and so is no process.
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let statuses: Vec<&str> = v
        .as_object()
        .unwrap()
        .values()
        .flat_map(|tasks| tasks.as_object().unwrap().values())
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert!(statuses.contains(&"failed"), "{statuses:?}");
    assert!(!statuses.contains(&"running"), "{statuses:?}");
    std::thread::sleep(Duration::from_millis(500));
    let left = running_with(&out.display().to_string());
    assert!(left.is_empty(), "left running: {left:?}");
}

/// Whether the task state file at `state` shows a measuring round (`*-rN`) running.
fn round_running(state: &std::path::Path) -> bool {
    let Ok(bytes) = std::fs::read(state) else {
        return false;
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return false;
    };
    v.as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .any(|tasks| {
            tasks.as_object().is_some_and(|t| {
                t.iter().any(|(id, s)| {
                    let round = id.rsplit_once("-r").is_some_and(|(_, n)| {
                        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
                    });
                    round && s["status"] == "running"
                })
            })
        })
}

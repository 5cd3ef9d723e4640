//! Faults and hostile input (issue 16): every case a hostile user or a failing peer can cause
//! ends within its time-out with one clear line and a non-zero exit, keeps what was measured,
//! and never panics.

mod common;

use common::*;

/// The stderr of a finished command, checked to hold no panic.
fn no_panic(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(!err.contains("Caught signal"), "crash: {err}");
    assert!(!err.contains("Fatal:"), "abort: {err}");
    err
}

// Case 3: a --timeout a Duration cannot hold is refused when the options are parsed.
#[test]
fn huge_timeouts_are_refused_at_parse_time() {
    let cases: &[&[&str]] = &[
        &[
            "pingpong",
            "--domain",
            "lo",
            "--sizes",
            "64",
            "--timeout",
            "1e300",
        ],
        &[
            "rma-pingpong",
            "--domain",
            "lo",
            "--sizes",
            "64",
            "--timeout",
            "1e300",
        ],
        &["xfer", "-s", "4K", "--timeout", "18446744073709551615"],
        &["ucx-perf", "-s", "64", "--timeout", "1e300"],
        &[
            "kv",
            "profile",
            "--model",
            "qwen2.5-7b",
            "--tokens",
            "16",
            "--timeout",
            "1e300",
        ],
        &["pingpong", "--sizes", "64", "--timeout=-3"],
    ];
    for args in cases {
        let out = kvxfer()
            .args(*args)
            .timeout(std::time::Duration::from_secs(20))
            .output()
            .unwrap();
        let err = no_panic(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("--timeout"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

/// A one-process loopback ping-pong of 64 bytes, quick enough to run many times.
fn tiny_pingpong() -> assert_cmd::Command {
    let mut c = kvxfer();
    c.args([
        "pingpong", "--domain", "lo", "--sizes", "64", "-I", "20", "-w", "1",
    ])
    .args(["--timeout", "20"])
    .timeout(std::time::Duration::from_secs(60));
    c
}

// Case 5: outputs that cannot be written are refused before anything is measured.
#[test]
fn unwritable_outputs_are_refused_before_measuring() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir/r.json");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--json".into(), missing.display().to_string()],
            "no directory",
        ),
        (
            vec!["--json".into(), dir.path().display().to_string()],
            "is a directory",
        ),
        (
            vec!["--mlflow-uri".into(), "notaurl".into()],
            "--mlflow-uri",
        ),
    ];
    for (extra, says) in &cases {
        for cmd in ["pingpong", "xfer", "kv"] {
            let mut c = if cmd == "pingpong" {
                tiny_pingpong()
            } else if cmd == "kv" {
                let mut c = kvxfer();
                c.args(["kv", "profile", "--model", "qwen2.5-7b", "--tokens", "16"])
                    .args(["--domain", "lo", "-I", "1", "-w", "0"])
                    .timeout(std::time::Duration::from_secs(60));
                c
            } else {
                let mut c = kvxfer();
                c.args(["xfer", "-s", "4K", "-I", "2", "-w", "0", "--domain", "lo"])
                    .timeout(std::time::Duration::from_secs(60));
                c
            };
            let out = c.args(extra).output().unwrap();
            let err = no_panic(&out);
            assert!(!out.status.success(), "{cmd} {extra:?}");
            assert!(err.contains(says), "{cmd} {extra:?}: {err}");
            // Nothing was measured: no table, no progress line of a run.
            assert!(out.stdout.is_empty(), "{cmd} {extra:?} measured first");
            assert!(!err.contains("host memory"), "{cmd} {extra:?}: {err}");
        }
    }
}

// Case 5: when recording fails, the measurement stays on disk (in --json, or in a file named
// in the error when no --json was given).
#[test]
fn a_failed_recording_keeps_the_result() {
    // No fabric turn: the 20 iterations take milliseconds, the recording's retries the rest.
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("http://127.0.0.1:{}", free_port());
    let json = dir.path().join("r.json");
    let out = tiny_pingpong()
        .args(["--mlflow-uri", &uri, "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let err = no_panic(&out);
    assert!(!out.status.success());
    assert!(err.contains("kept in"), "{err}");
    assert_eq!(read_doc(&json).results.len(), 1);

    let out = tiny_pingpong()
        .current_dir(dir.path())
        .args(["--mlflow-uri", &uri])
        .output()
        .unwrap();
    let err = no_panic(&out);
    assert!(!out.status.success());
    let kept: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("kvxfer-pingpong-")
        })
        .collect();
    assert_eq!(kept.len(), 1, "{err}");
    assert!(
        err.contains(&*kept[0].file_name().unwrap().to_string_lossy()),
        "{err}"
    );
    assert_eq!(read_doc(&kept[0]).results.len(), 1);
}

// Case 7: a value from the environment or from `variables` never becomes shell syntax.
#[test]
fn substituted_values_cannot_inject_commands() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let marker = dir.path().join("injected");
    let def = dir.path().join("def.json");
    let evil = format!("127.0.0.1;touch {};#", marker.display());
    std::fs::write(
        &def,
        serde_json::json!({
            "name": "inject", "description": "",
            "variables": {"PEER_IP": "", "WORD": format!("$(touch {m})`touch {m}`;touch {m}", m = marker.display())},
            "tasks": [
                {"id": "word", "name": "word", "commands": [format!("echo {{{{WORD}}}} > {d}/word")]},
                {"id": "peer", "name": "peer", "commands": ["echo --peer {{PEER_IP}}:47590"]}
            ]
        })
        .to_string(),
    )
    .unwrap();
    let state = dir.path().join("state.json");
    let run = |peer: &str| {
        kvxfer()
            .env("PEER_IP", peer)
            .args(["task", "run"])
            .arg(&def)
            .arg("--state")
            .arg(&state)
            .output()
            .unwrap()
    };
    // A host-shaped variable that is not a host stops the run before any task.
    let out = run(&evil);
    let err = no_panic(&out);
    assert!(!out.status.success());
    assert!(err.contains("PEER_IP"), "{err}");
    assert!(!marker.exists(), "PEER_IP was run as a command");
    assert!(
        !dir.path().join("word").exists(),
        "a task ran before the check"
    );
    // A free-form value is pasted as one word, never run.
    let out = run("127.0.0.1");
    let err = no_panic(&out);
    assert!(out.status.success(), "{err}");
    assert!(!marker.exists(), "WORD was run as a command");
    let word = std::fs::read_to_string(dir.path().join("word")).unwrap();
    assert!(word.starts_with("$(touch "), "{word}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("--peer 127.0.0.1:47590"));
}

// Case 9: plan validation names the field of each gap, before anything is generated.
#[test]
fn plan_validation_names_each_field() {
    let dir = tempfile::tempdir().unwrap();
    let base: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/plans/loopback.json"))
            .unwrap(),
    )
    .unwrap();
    let edits: &[(&str, serde_json::Value, &str)] = &[
        (
            "/common/control_port",
            serde_json::json!("47600; id"),
            "$.common.control_port",
        ),
        (
            "/common/control_port",
            serde_json::json!(99999),
            "$.common.control_port",
        ),
        (
            "/infrastructure/tools/kvxfer",
            serde_json::Value::Null,
            "$.infrastructure.tools.kvxfer",
        ),
        (
            "/validation_targets/crosscheck_tolerance",
            serde_json::json!(-0.5),
            "$.validation_targets.crosscheck_tolerance",
        ),
    ];
    for (at, value, field) in edits {
        let mut plan = base.clone();
        let (parent, key) = at.rsplit_once('/').unwrap();
        let obj = plan.pointer_mut(parent).unwrap().as_object_mut().unwrap();
        if value.is_null() {
            obj.remove(key);
        } else {
            obj.insert(key.to_string(), value.clone());
        }
        let path = dir.path().join("plan.json");
        std::fs::write(&path, plan.to_string()).unwrap();
        for sub in ["validate", "generate"] {
            let mut c = kvxfer();
            c.args(["plan", sub]).arg(&path);
            if sub == "generate" {
                c.arg("--out").arg(dir.path().join("defs")).args([
                    "--templates",
                    concat!(env!("CARGO_MANIFEST_DIR"), "/templates"),
                ]);
            }
            let out = c.output().unwrap();
            let err = no_panic(&out);
            assert!(!out.status.success(), "{sub} {at}");
            assert!(err.contains(field), "{sub} {at}: {err}");
            assert!(!dir.path().join("defs").exists(), "{sub} {at} generated");
        }
    }
}

/// What the surviving side of a two-sided run did after its peer was signalled mid-run.
struct Faulted {
    out: std::process::Output,
    took: std::time::Duration,
    doc: Option<kvxfer::report::ResultDoc>,
}

/// Waits until something listens on 127.0.0.1:`port` (a probe that connects and closes at
/// once, which a target drops), at most `limit`.
fn wait_listening(port: u16, limit: std::time::Duration) {
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < limit, "nothing listens on {port}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Bytes the TCP sockets of process `pid` have sent and received, as `ss -tinp` reports them
/// (the kernel's own per-socket counts); None where `ss` cannot tell.
fn socket_bytes(pid: u32) -> Option<u64> {
    let out = std::process::Command::new("ss")
        .args(["-tinpH"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mine = format!("pid={pid},");
    let mut total = 0;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if !line.contains(&mine) {
            continue;
        }
        let info = lines.next().unwrap_or_default();
        for field in info.split_whitespace() {
            for key in ["bytes_sent:", "bytes_received:"] {
                if let Some(v) = field.strip_prefix(key).and_then(|v| v.parse::<u64>().ok()) {
                    total += v;
                }
            }
        }
    }
    Some(total)
}

/// Waits until the initiator has moved `bytes` through its sockets: past its set-up and into
/// the part of the run the fault must interrupt, however loaded the host is (a fixed sleep let
/// a slow start end up with nothing measured). Where `ss` cannot tell, waits 4 s instead. When
/// it had not within 90 s, or ended first: the bytes it had moved, and whether it ended.
fn wait_moved(initiator: &mut std::process::Child, bytes: u64) -> Result<(), (u64, bool)> {
    let start = std::time::Instant::now();
    let pid = initiator.id();
    if socket_bytes(pid).is_none() {
        std::thread::sleep(std::time::Duration::from_secs(4));
        return Ok(());
    }
    loop {
        let ended = !matches!(initiator.try_wait(), Ok(None));
        match socket_bytes(pid) {
            Some(b) if b < bytes => {
                if ended || start.elapsed() > std::time::Duration::from_secs(90) {
                    return Err((b, ended));
                }
            }
            _ => return Ok(()),
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// How a side ended once killed, and the last lines it printed (for a failed test).
fn last_words(name: &str, child: std::process::Child) -> String {
    let mut child = child;
    let running = matches!(child.try_wait(), Ok(None));
    let _ = child.kill();
    let Ok(out) = child.wait_with_output() else {
        return format!("{name}: its output could not be read");
    };
    let tail = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(6)..].join("\n")
    };
    let state = if running {
        "was still running".to_string()
    } else {
        format!("had ended ({})", out.status)
    };
    format!(
        "{name} {state}; its stdout ends:\n{}\nits stderr ends:\n{}",
        tail(&out.stdout),
        tail(&out.stderr)
    )
}

/// Runs `ARGS --listen` (the target) and `ARGS --peer` (the initiator) with `--timeout T` and
/// `--json`, both processes this test starts; once the initiator has moved `moved` bytes, sends
/// `signal` (STOP or KILL) to the target (`kill_target`) or to the initiator, and returns how
/// the other side ended and how long after the fault. The signalled process is killed
/// afterwards.
fn fault_run(
    env: &[(&str, &str)],
    args: &[&str],
    kill_target: bool,
    signal: &str,
    moved: u64,
    timeout_s: u64,
) -> Faulted {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let t = timeout_s.to_string();
    let side = |role: &str, addr: String, json: &std::path::Path| {
        std::process::Command::new(kvxfer_path())
            .current_dir(dir.path())
            .env("UCX_LOG_FILE", "stderr")
            .envs(env.iter().copied())
            .args(args)
            .args(["--timeout", &t, role, &addr, "--json"])
            .arg(json)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (tjson, ijson) = (dir.path().join("t.json"), dir.path().join("i.json"));
    // A run that ends before the fault (its first transfer starved past --timeout by the
    // busy-polling processes of the tests beside it) says nothing of the fault: it is run
    // again, twice at most, with a line saying so.
    let mut attempt = 1;
    let (target, initiator) = loop {
        let target = side("--listen", format!("127.0.0.1:{port}"), &tjson);
        wait_listening(port, std::time::Duration::from_secs(60));
        let mut initiator = side("--peer", format!("127.0.0.1:{port}"), &ijson);
        match wait_moved(&mut initiator, moved) {
            Ok(()) => break (target, initiator),
            Err((seen, true)) if attempt < 3 => {
                let words = last_words("the initiator", initiator);
                let _ = last_words("the target", target);
                // What the failed attempt wrote is not the next one's.
                let _ = std::fs::remove_file(&tjson);
                let _ = std::fs::remove_file(&ijson);
                eprintln!(
                    "{args:?}: attempt {attempt} ended before the fault, having moved {seen} \
                     of {moved} bytes; running it again\n{words}"
                );
                attempt += 1;
            }
            Err((seen, _)) => {
                // Neither busy-polling process may outlive the failed test; both say how far
                // they got.
                panic!(
                    "{args:?}: the initiator moved {seen} of {moved} bytes (attempt {attempt})\n{}\n{}",
                    last_words("the initiator", initiator),
                    last_words("the target", target)
                );
            }
        }
    };
    let (victim, survivor, json) = if kill_target {
        (target, initiator, ijson)
    } else {
        (initiator, target, tjson)
    };
    let start = std::time::Instant::now();
    let pid = victim.id().to_string();
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {pid}");
    let out = survivor.wait_with_output().unwrap();
    let took = start.elapsed();
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status();
    let _ = victim.wait_with_output();
    let doc = json
        .exists()
        .then(|| kvxfer::report::ResultDoc::from_json(&std::fs::read(&json).unwrap()).unwrap());
    Faulted { out, took, doc }
}

/// [`fault_run`] with the target signalled.
fn fault_target(
    env: &[(&str, &str)],
    args: &[&str],
    signal: &str,
    moved: u64,
    timeout_s: u64,
) -> Faulted {
    fault_run(env, args, true, signal, moved, timeout_s)
}

/// Checks a faulted initiator: ended within its time-out of the fault (plus a margin), one
/// error line, non-zero exit, and a partial document holding what was measured.
fn assert_partial(f: &Faulted, timeout_s: u64, what: &str) {
    let err = no_panic(&f.out);
    assert!(!f.out.status.success(), "{what}: {err}");
    let limit = std::time::Duration::from_secs(timeout_s + 6);
    assert!(
        f.took < limit,
        "{what}: took {:?} (limit {limit:?}): {err}",
        f.took
    );
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("kvxfer: error: "), "{what}: {err}");
    assert!(last.contains("with status partial"), "{what}: {err}");
    let doc = f
        .doc
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: no JSON: {err}"));
    assert_eq!(doc.status, kvxfer::report::Status::Partial, "{what}");
    assert!(!doc.results.is_empty(), "{what}");
    assert!(doc.results.iter().all(|r| r.iterations > 0), "{what}");
    assert_eq!(doc.errors.len(), 1, "{what}");
    assert!(
        !String::from_utf8_lossy(&f.out.stdout).is_empty(),
        "{what}: nothing printed"
    );
}

const PINGPONG_LONG: &[&str] = &[
    "pingpong", "--domain", "lo", "--sizes", "64,16M", "-I", "2000", "-w", "1",
];
const XFER_LONG: &[&str] = &[
    "xfer", "--domain", "lo", "-s", "64K", "-I", "10000000", "-w", "1",
];
/// What an initiator of the `*_LONG` runs has moved once its first size is done and its
/// second started (pingpong, rma-pingpong, tag_lat: 16M; tag_bw: 64M), or, for xfer, once a
/// few timed 64K iterations are.
const PAST_FIRST_SIZE: u64 = 16 << 20;
const PAST_FIRST_SIZE_BW: u64 = 64 << 20;
const SOME_ITERATIONS: u64 = 64 << 14;

/// The --timeout of the fault runs: a stopped peer is given up after it, so each run waits it
/// out once; long enough for a debug build's set-up on a busy host.
const FAULT_TIMEOUT_S: u64 = 3;

// Cases 2 and 4: a target killed or stopped mid-run ends the initiator within --timeout,
// with what was measured kept (pingpong: the sizes done; xfer: the iterations done).
#[test]
fn killed_or_stopped_targets_leave_partial_results_in_time() {
    let _g = fabric_lock();
    let cases: &[Case] = &[
        (&[], PINGPONG_LONG, PAST_FIRST_SIZE),
        (&[], XFER_LONG, SOME_ITERATIONS),
    ];
    let mut runs = every_case(cases, |(env, args, moved), s| {
        fault_target(env, args, s, *moved, FAULT_TIMEOUT_S)
    })
    .into_iter();
    for (signal, f) in runs.next().unwrap() {
        assert_partial(&f, FAULT_TIMEOUT_S, &format!("pingpong, target {signal}"));
        let doc = f.doc.unwrap();
        assert_eq!(doc.results.len(), 1);
        assert_eq!(doc.results[0].message_size, 64);
        assert_eq!(doc.results[0].iterations, 2000);
    }
    for (signal, f) in runs.next().unwrap() {
        assert_partial(&f, FAULT_TIMEOUT_S, &format!("xfer, target {signal}"));
        let doc = f.doc.unwrap();
        assert!(doc.results[0].iterations < 10_000_000);
    }
}

/// `run` with KILL and with STOP, side by side (each mostly waits out its survivor's
/// --timeout): (signal, what it gave), KILL first.
fn both_signals(run: impl Fn(&'static str) -> Faulted + Sync) -> [(&'static str, Faulted); 2] {
    std::thread::scope(|s| {
        let stop = s.spawn(|| run("STOP"));
        let kill = run("KILL");
        [("KILL", kill), ("STOP", stop.join().unwrap())]
    })
}

/// [`both_signals`] for every case, all cases side by side too: per case, in order.
fn every_case<C: Sync>(
    cases: &[C],
    run: impl Fn(&C, &'static str) -> Faulted + Sync,
) -> Vec<[(&'static str, Faulted); 2]> {
    std::thread::scope(|s| {
        let runs: Vec<_> = cases
            .iter()
            .map(|c| s.spawn(|| both_signals(|signal| run(c, signal))))
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    })
}

// Case 6: `kvxfer record` against a server that accepts and never answers ends at its
// --timeout with one line.
#[test]
fn record_gives_up_on_a_silent_server() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept() {
            held.push(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut doc = kvxfer::report::ResultDoc::new("kvxfer", "pingpong", "L0");
    doc.status = kvxfer::report::Status::Complete;
    std::fs::write(dir.path().join("r.json"), doc.to_json()).unwrap();
    let start = std::time::Instant::now();
    let out = kvxfer()
        .args(["record", "--results"])
        .arg(dir.path())
        .args(["--mlflow-uri", &uri, "--timeout", "3"])
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    let took = start.elapsed();
    let err = no_panic(&out);
    assert!(!out.status.success(), "{err}");
    assert!(took < std::time::Duration::from_secs(8), "{took:?}: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains(&uri), "{err}");
}

const RMA_LONG: &[&str] = &[
    "rma-pingpong",
    "--domain",
    "lo",
    "--sizes",
    "64,16M",
    "-I",
    "2000",
    "-w",
    "1",
];
const UCX_LAT_LONG: &[&str] = &["ucx-perf", "-t", "tag_lat", "-s", "64,16M", "-n", "2000"];
const UCX_BW_LONG: &[&str] = &["ucx-perf", "-t", "tag_bw", "-s", "64,64M", "-n", "2000"];
const UCX_TCP: &[(&str, &str)] = &[("UCX_TLS", "tcp"), ("UCX_NET_DEVICES", "lo")];

/// A command's environment.
type Env = &'static [(&'static str, &'static str)];
/// A command's environment, its arguments, and what its initiator moves before the fault.
type Case = (Env, &'static [&'static str], u64);

// Cases 2 and 4 on rma-pingpong and ucx-perf: the same with their targets.
#[test]
fn rma_and_ucx_targets_killed_or_stopped_leave_partial_results_in_time() {
    let _g = fabric_lock();
    let cases: &[Case] = &[
        (&[], RMA_LONG, PAST_FIRST_SIZE),
        (UCX_TCP, UCX_LAT_LONG, PAST_FIRST_SIZE),
        (UCX_TCP, UCX_BW_LONG, PAST_FIRST_SIZE_BW),
    ];
    let runs = every_case(cases, |(env, args, moved), s| {
        fault_target(env, args, s, *moved, FAULT_TIMEOUT_S)
    });
    for ((_, args, _), both) in cases.iter().zip(runs) {
        for (signal, f) in both {
            assert_partial(&f, FAULT_TIMEOUT_S, &format!("{args:?}, target {signal}"));
            assert_eq!(f.doc.unwrap().results[0].message_size, 64);
        }
    }
}

// Case 2 seen from the target: an initiator killed or stopped mid-run ends the target within
// --timeout, with one line and a non-zero exit.
#[test]
fn killed_or_stopped_initiators_end_their_targets_in_time() {
    let _g = fabric_lock();
    let cases: &[Case] = &[
        (&[], PINGPONG_LONG, PAST_FIRST_SIZE),
        (&[], RMA_LONG, PAST_FIRST_SIZE),
        (&[], XFER_LONG, SOME_ITERATIONS),
        (UCX_TCP, UCX_LAT_LONG, PAST_FIRST_SIZE),
        (UCX_TCP, UCX_BW_LONG, PAST_FIRST_SIZE_BW),
    ];
    let runs = every_case(cases, |(env, args, moved), s| {
        fault_run(env, args, false, s, *moved, FAULT_TIMEOUT_S)
    });
    for ((_, args, _), both) in cases.iter().zip(runs) {
        for (signal, f) in both {
            let what = format!("{} target, initiator {signal}", args[0]);
            let err = no_panic(&f.out);
            assert!(!f.out.status.success(), "{what}: {err}");
            let limit = std::time::Duration::from_secs(FAULT_TIMEOUT_S + 6);
            assert!(f.took < limit, "{what}: took {:?}: {err}", f.took);
            let last = err.lines().last().unwrap_or_default();
            assert!(last.starts_with("kvxfer: error: "), "{what}: {err}");
        }
    }
}

// Case 8: stray connections (a health check, an HTTP probe, a silent one) do not end a
// listening target; the real initiator then runs with it.
#[test]
fn stray_connections_leave_a_target_waiting() {
    use std::io::Write;
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let args = [
        "pingpong", "--domain", "lo", "--sizes", "64", "-I", "50", "-w", "1",
    ];
    let target = std::process::Command::new(kvxfer_path())
        .args(args)
        .args([
            "--timeout",
            "30",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--json",
        ])
        .arg(dir.path().join("t.json"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_listening(port, std::time::Duration::from_secs(60));
    let mut http = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    http.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    drop(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
    let ini = kvxfer()
        .args(args)
        .args([
            "--timeout",
            "30",
            "--peer",
            &format!("127.0.0.1:{port}"),
            "--json",
        ])
        .arg(dir.path().join("i.json"))
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    drop((http, silent));
    let t = target.wait_with_output().unwrap();
    assert!(ini.status.success(), "{}", no_panic(&ini));
    assert!(t.status.success(), "{}", no_panic(&t));
    assert_eq!(
        read_doc(&dir.path().join("i.json")).results[0].iterations,
        50
    );
    assert_eq!(
        read_doc(&dir.path().join("t.json")).results[0].iterations,
        50
    );
}

/// MemAvailable in bytes.
fn available_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

// Case 1: a run the machine cannot hold is refused in one line before anything is allocated:
// per-endpoint costs (a tcp endpoint holds about 88 MB) count, and every command checks.
#[test]
fn runs_larger_than_memory_are_refused_before_allocating() {
    // A quarter more than is available now, on each command's arithmetic: memory other tests
    // free meanwhile must not make a run fit (it did: with one endpoint pair to spare, a run
    // of 109 workers found 20.4 of 20.5 GiB and ran, starving the tests beside it), and a
    // command that left out any of the counted buffers or endpoints would still let it run.
    let avail = available_bytes() / 4 * 5;
    let gib = |bytes: u64| format!("{}G", bytes.div_ceil(1 << 30));
    let endpoints = (avail / (96 << 20) / 2 + 1).to_string();
    let words = |s: String| s.split_whitespace().map(String::from).collect::<Vec<_>>();
    let cases: Vec<(Vec<String>, Env)> = vec![
        // 4K transfers, but each tcp worker's two endpoints hold ~190 MB.
        (
            words(format!("xfer -s 4K --domain lo -I 2 -w 1 -c {endpoints}")),
            &[],
        ),
        // Four buffers of the size (a send and a receive buffer per side).
        (
            words(format!(
                "pingpong --domain lo -I 1 -w 0 --sizes {}",
                gib(avail / 4 + 1)
            )),
            &[],
        ),
        // Rounds hold their own buffers: eight times the four, where the four alone fit.
        (
            words(format!(
                "pingpong --domain lo -I 1 -w 0 --rounds 8 --sizes {}",
                gib(avail / 16 + 1)
            )),
            &[],
        ),
        (
            words(format!(
                "rma-pingpong --domain lo -I 1 -w 0 --sizes {}",
                gib(avail / 4 + 1)
            )),
            &[],
        ),
        // tag_bw: a send buffer on one side, a receive buffer on the other.
        (
            words(format!(
                "ucx-perf -t tag_bw -n 1 -w 0 -s {}",
                gib(avail / 2 + 1)
            )),
            &[("UCX_TLS", "posix,cma")],
        ),
    ];
    for (args, env) in &cases {
        let start = std::time::Instant::now();
        let out = kvxfer()
            .envs(env.iter().copied())
            .args(args)
            .timeout(std::time::Duration::from_secs(60))
            .output()
            .unwrap();
        let err = no_panic(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        assert!(lines[0].contains("of host memory"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "{args:?}"
        );
    }
}

// Case 2: -c 10000 transfers outstanding on one endpoint are refused before the run (they
// used to wait the whole --timeout for room in the receive queue).
#[test]
fn outstanding_transfers_beyond_the_receive_queue_are_refused() {
    let start = std::time::Instant::now();
    let out = kvxfer()
        .args([
            "xfer",
            "-s",
            "4K",
            "-c",
            "10000",
            "--concurrency-mode",
            "outstanding",
        ])
        .args(["--domain", "lo", "-I", "2", "-w", "1", "--timeout", "20"])
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    let err = no_panic(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("receive queue holds"), "{err}");
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
}

// Case 11: `kvxfer parse` reads at most 16 MiB (one clear line past it, from a file or from
// a stdin that keeps coming), and a document keeps at most 256 KiB of the raw output.
#[test]
fn parse_input_and_raw_output_are_bounded() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let table = "bytes   #sent   #ack     total       time     MB/sec    usec/xfer   Mxfers/sec\n\
                 64      20      =20      2.5k        0.00s      2.77      23.10       0.04\n";
    // Under the cap: a table after 4 MiB of chatter parses; the document stays small.
    let noise =
        "libfabric:1234:1700000000::tcp:core:progress(): a warning line\n".repeat(4 << 20 >> 6);
    let big = dir.path().join("big.txt");
    std::fs::write(&big, format!("{noise}{table}")).unwrap();
    let json = dir.path().join("big.json");
    let out = kvxfer()
        .args(["parse", "--tool", "fi_pingpong"])
        .arg(&big)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", no_panic(&out));
    let doc = read_doc(&json);
    assert_eq!(doc.results.len(), 1);
    let raw = doc.raw_output.unwrap();
    assert!(
        raw.len() <= kvxfer::reference::MAX_RAW_OUTPUT + 64,
        "{}",
        raw.len()
    );
    assert!(raw.contains("bytes of output left out"));
    assert!(raw.ends_with(table), "the tail with the table is kept");
    assert!(std::fs::metadata(&json).unwrap().len() < 1 << 20);
    // Over the cap: a file, then an endless stdin.
    let huge = dir.path().join("huge.txt");
    std::fs::write(&huge, "x".repeat((16 << 20) + 1)).unwrap();
    let out = kvxfer()
        .args(["parse", "--tool", "fi_pingpong"])
        .arg(&huge)
        .output()
        .unwrap();
    let err = no_panic(&out);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("more than 16 MiB"), "{err}");
    let start = std::time::Instant::now();
    let mut child = std::process::Command::new(kvxfer_path())
        .args(["parse", "--tool", "fi_pingpong", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'y'; 1 << 20];
        // 2 GiB, or until kvxfer stops reading.
        for _ in 0..2048 {
            if stdin.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let err = no_panic(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("standard input holds more than 16 MiB"),
        "{err}"
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
}

// Case 10: messages say what is wrong, once: another subcommand on the peer, FI_PROVIDER,
// a port out of range, OS errors (ports, plan files, --state, --out) printed once.
#[test]
fn messages_name_the_cause_once() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let one_line = |out: &std::process::Output| -> String {
        let err = no_panic(out);
        assert!(!out.status.success(), "{err}");
        let last = err.lines().last().unwrap_or_default().to_string();
        assert!(last.starts_with("kvxfer: error: "), "{err}");
        last
    };
    // pingpong meets an xfer target.
    let port = free_port();
    let target = std::process::Command::new(kvxfer_path())
        .args(["xfer", "-s", "4K", "-I", "2", "--timeout", "4"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ini = kvxfer()
        .args(["pingpong", "--sizes", "64", "--timeout", "20"])
        .args(["--peer", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    let t = target.wait_with_output().unwrap();
    let e = one_line(&ini);
    assert!(
        e.contains("the peer runs `kvxfer xfer`, this side `kvxfer pingpong`"),
        "{e}"
    );
    let e = one_line(&t);
    assert!(
        e.contains("the peer runs `kvxfer pingpong`, this side `kvxfer xfer`"),
        "{e}"
    );
    // FI_PROVIDER narrows libfabric to nothing.
    let out = kvxfer()
        .env("FI_PROVIDER", "bogus")
        .args(["pingpong", "--domain", "lo", "--sizes", "64"])
        .output()
        .unwrap();
    let e = one_line(&out);
    assert!(e.contains("FI_PROVIDER=\"bogus\""), "{e}");
    // A port out of range.
    let out = kvxfer()
        .args(["xfer", "--listen", "127.0.0.1:70000"])
        .output()
        .unwrap();
    let e = one_line(&out);
    assert!(e.contains("\"70000\" is not a port number"), "{e}");
    // OS errors once.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let state = dir.path().join("no/dir/state.json");
    let def = dir.path().join("def.json");
    std::fs::write(
        &def,
        r#"{"name": "d", "description": "", "variables": {}, "tasks": [{"id": "a", "name": "a", "commands": ["true"]}]}"#,
    )
    .unwrap();
    let missing = dir.path().join("missing-plan.json");
    let runs: Vec<Vec<std::ffi::OsString>> = vec![
        vec!["pingpong".into(), "--listen".into(), addr.clone().into()],
        vec!["plan".into(), "validate".into(), missing.clone().into()],
        vec![
            "task".into(),
            "run".into(),
            def.clone().into(),
            "--state".into(),
            state.into(),
        ],
        vec![
            "plan".into(),
            "generate".into(),
            concat!(env!("CARGO_MANIFEST_DIR"), "/plans/loopback.json").into(),
            "--out".into(),
            "/proc/kvxfer-cannot-be-here".into(),
        ],
    ];
    for args in runs {
        let out = kvxfer().args(&args).output().unwrap();
        let e = one_line(&out);
        if args[0] == "task" {
            // The state file's folder is checked before any task runs (issue 29, item 14).
            assert!(e.contains("--state") && e.contains("no directory"), "{e}");
            assert!(e.matches("(os error").count() <= 1, "{args:?}: {e}");
        } else {
            assert_eq!(e.matches("(os error").count(), 1, "{args:?}: {e}");
        }
    }
    drop(busy);
    // A folder of garbage says what it skipped.
    let garbage = dir.path().join("results");
    std::fs::create_dir(&garbage).unwrap();
    std::fs::write(garbage.join("x.json"), "garbage").unwrap();
    let out = kvxfer().arg("crosscheck").arg(&garbage).output().unwrap();
    let err = no_panic(&out);
    assert!(
        err.contains("skipped x.json: not a kvxfer.result/v1 document"),
        "{err}"
    );
}

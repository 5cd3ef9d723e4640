//! A hostile user (issue 29): `--json` paths that are links or special files, counts that
//! overflow, and the smaller cases of item 14. Each test checks what happened to the files
//! and the exit status, not only the message.

mod common;

use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::Duration;

use common::*;

/// A 10-iteration loopback ping-pong of 64 bytes, with `--json PATH`.
fn pingpong_json(path: &Path) -> std::process::Output {
    kvxfer()
        .args(["pingpong", "--domain", "lo", "--sizes", "64", "-I", "10"])
        .args(["-w", "1", "--timeout", "20", "--json"])
        .arg(path)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap()
}

/// The stderr, checked to hold no panic.
fn stderr(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "panic: {err}");
    err
}

// Item 4: a link to a file is written through (the link stays); a FIFO and a character
// device are written as streams (they stay what they are); /dev/stdout carries the document.
#[test]
fn json_goes_through_links_and_into_streams_without_replacing_them() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.json");
    std::fs::write(&real, "old").unwrap();
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink("real.json", &link).unwrap();
    let out = pingpong_json(&link);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(read_doc(&real).results[0].iterations, 10);

    let fifo = dir.path().join("r.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let out = pingpong_json(&fifo);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = kvxfer::report::ResultDoc::from_json(&reader.join().unwrap()).unwrap();
    assert_eq!(got.results[0].iterations, 10);
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());

    // A character device of its own (the null device's numbers), where mknod is allowed.
    let dev = dir.path().join("mynull");
    let mknod = std::process::Command::new("mknod")
        .arg(&dev)
        .args(["c", "1", "3"])
        .output()
        .unwrap();
    if mknod.status.success() {
        let out = pingpong_json(&dev);
        assert!(out.status.success(), "{}", stderr(&out));
        let kind = std::fs::symlink_metadata(&dev).unwrap().file_type();
        assert!(kind.is_char_device(), "replaced by {kind:?}");
    } else {
        skip(
            "json_goes_through_links_and_into_streams (mknod)",
            "mknod not permitted",
        );
    }

    let out = pingpong_json(Path::new("/dev/stdout"));
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let start = stdout.find("{\n").expect("a JSON document on stdout");
    let doc = kvxfer::report::ResultDoc::from_json(stdout[start..].as_bytes()).unwrap();
    assert_eq!(doc.results[0].iterations, 10);
}

// Item 4: a socket is no place for a result: refused before anything is measured, left as it is.
#[test]
fn json_to_a_socket_is_refused_before_measuring() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("r.sock");
    let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let out = pingpong_json(&sock);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty(), "measured first: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("is a socket"), "{err}");
    assert!(std::fs::symlink_metadata(&sock)
        .unwrap()
        .file_type()
        .is_socket());
}

// Item 6: counts whose sum or product wraps are refused with exit 2 (clap) or 1 (the run's
// check) and nothing measured; before, they gave exit 0 with made-up figures (or a false
// "copy differs" from memcpy).
#[test]
fn counts_that_wrap_are_refused_and_nothing_is_measured() {
    let max = u64::MAX.to_string();
    let max2 = (u64::MAX - 2).to_string();
    let cases = [
        (
            format!("pingpong --domain lo --sizes 64 --iterations 5 --warmup {max}"),
            2,
        ),
        (format!("memcpy -s 1M -w {max}"), 2),
        (format!("memcpy -s 1M -w {max2}"), 2),
        (
            format!("pingpong --domain lo --sizes 64 --iterations {max} --warmup 1"),
            2,
        ),
        (format!("ucx-perf -t tag_lat -s 64 -n {max}"), 2),
        (format!("xfer -s 4K -w {max}"), 2),
        // Within the clap limits, but 10^12 round trips of 8 GiB count more bytes than 64 bits.
        (
            "pingpong --domain lo --sizes 8G -I 1000000000000".to_string(),
            1,
        ),
    ];
    for (line, code) in &cases {
        let args: Vec<&str> = line.split_whitespace().collect();
        let out = kvxfer()
            .args(&args)
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?} printed figures");
        assert!(
            err.contains("10^12") || err.contains("64-bit"),
            "{args:?}: {err}"
        );
    }
    // clap states the limits.
    for cmd in ["pingpong", "memcpy", "ucx-perf", "xfer"] {
        let out = kvxfer().args([cmd, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("1 to 10^12"), "{cmd}: {help}");
        assert!(help.contains("0 to 10^12"), "{cmd}: {help}");
    }
}

// Item 8: model geometry whose products wrap, a head dimension that does not divide, and more
// KV heads than attention heads are refused (exit 1, no table) from a HuggingFace config and
// a KVBench YAML; before, `kv size` printed e.g. 448 bytes per token with exit 0.
#[test]
fn model_geometry_that_wraps_or_does_not_divide_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hf = |extra: &str| {
        format!(
            r#"{{"num_hidden_layers": 28, "torch_dtype": "bfloat16", "hidden_size": 3584, {extra}}}"#
        )
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "head_dim.json",
            hf(
                r#""num_attention_heads": 28, "num_key_value_heads": 4, "head_dim": 2305843009213693953"#,
            ),
        ),
        (
            "head_dim62.json",
            hf(
                r#""num_attention_heads": 28, "num_key_value_heads": 4, "head_dim": 4611686018427387904"#,
            ),
        ),
        (
            "layers.json",
            r#"{"num_hidden_layers": 288230376151711745, "torch_dtype": "bfloat16",
                "num_attention_heads": 28, "num_key_value_heads": 4, "head_dim": 128}"#
                .to_string(),
        ),
        (
            "five_heads.json",
            hf(r#""num_attention_heads": 5, "num_key_value_heads": 5"#),
        ),
        (
            "kv_heads.json",
            hf(r#""num_attention_heads": 28, "num_key_value_heads": 100"#),
        ),
        (
            "layers.yaml",
            "model_name: x\nnum_layers: 288230376151711745\nnum_kv_heads: 8\n\
             query_head_dimension: 128\n"
                .to_string(),
        ),
        (
            "rope.yaml",
            "model_name: x\nnum_layers: 61\nrope_mla_dimension: 18446744073709551615\n\
             mla_latent_vector_dimension: 512\n"
                .to_string(),
        ),
        (
            "kv_heads.yaml",
            "model_name: x\nnum_layers: 32\nnum_query_heads_with_mha: 28\nnum_kv_heads: 100\n\
             query_head_dimension: 128\n"
                .to_string(),
        ),
    ];
    for (name, text) in &cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        for cmd in [["kv", "size"], ["kv", "plan"]] {
            let out = kvxfer()
                .args(cmd)
                .arg("--model")
                .arg(&path)
                .output()
                .unwrap();
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{name} {cmd:?}: {err}");
            assert!(out.stdout.is_empty(), "{name} {cmd:?}: printed a figure");
            assert_eq!(err.lines().count(), 1, "{name}: {err}");
        }
    }
    // The same files with sound numbers pass.
    let ok = dir.path().join("ok.json");
    std::fs::write(
        &ok,
        hf(r#""num_attention_heads": 28, "num_key_value_heads": 4"#),
    )
    .unwrap();
    let out = kvxfer()
        .args(["kv", "size", "--model"])
        .arg(&ok)
        .args(["--tokens", "1", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kv_bytes_per_token"], 57_344);
}

/// A flat E2E record with these TTFT and TPOT means (ms).
fn e2e_record(ttft: &str, tpot: &str) -> String {
    format!(
        r#"{{"backend": "tcp", "prompt_tokens": 4096, "concurrency": 1, "ttft_mean": {ttft}, "tpot_mean": {tpot}}}"#
    )
}

/// Makes a FIFO at `p`.
fn mkfifo(p: &Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(p)
        .status()
        .unwrap();
    assert!(made.success());
}

/// A sparse file of `len` bytes (no disk used, nothing to read in it).
fn sparse(p: &Path, len: u64) {
    std::fs::File::create(p).unwrap().set_len(len).unwrap();
}

// Item 10: analyze reads each file of its folder once, follows no link out of it, never opens
// a FIFO, and names every file it leaves out (too deep, too big, special, implausible); before,
// `self -> .` counted each record seven times, `loop -> ..` read the sibling folder, and the
// deep, big and FIFO files vanished without a word.
#[test]
fn analyze_reads_each_file_once_inside_its_folder_and_names_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let e2e = tmp.path().join("e2e");
    let sibling = tmp.path().join("sibling");
    std::fs::create_dir_all(e2e.join("sub")).unwrap();
    std::fs::create_dir_all(&sibling).unwrap();
    std::fs::write(e2e.join("a.json"), e2e_record("100", "12")).unwrap();
    std::fs::write(e2e.join("sub/b.json"), e2e_record("110", "12")).unwrap();
    std::fs::write(sibling.join("c.json"), e2e_record("120", "12")).unwrap();
    std::fs::write(e2e.join("neg.json"), e2e_record("100", "-5")).unwrap();
    std::fs::write(e2e.join("huge.json"), e2e_record("1e308", "12")).unwrap();
    std::os::unix::fs::symlink(".", e2e.join("self")).unwrap();
    std::os::unix::fs::symlink("..", e2e.join("loop")).unwrap();
    mkfifo(&e2e.join("f.run1.json"));
    sparse(&e2e.join("big.json"), 300 << 20);
    let mut deep = e2e.clone();
    for i in 0..12 {
        deep = deep.join(format!("d{i}"));
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("deep.json"), e2e_record("100", "12")).unwrap();

    let out_json = tmp.path().join("out/report.json");
    let out = kvxfer()
        .arg("analyze")
        .arg("--e2e-dir")
        .arg(&e2e)
        .arg("--no-plots")
        .arg("--out")
        .arg(&out_json)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out_json).unwrap()).unwrap();
    assert_eq!(report["e2e_records"], 2, "{err}");
    let skipped: Vec<String> = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}: {}",
                s["file"].as_str().unwrap(),
                s["reason"].as_str().unwrap()
            )
        })
        .collect();
    for (name, why) in [
        ("self/", "already read"),
        ("loop/", "outside"),
        ("f.run1.json", "FIFO"),
        ("big.json", "larger than"),
        ("neg.json", "tpot mean of -5 ms"),
        ("huge.json", "ttft mean of"),
        ("d0/d1/d2/d3/d4/d5/d6/d7/d8/", "deeper than 8"),
    ] {
        assert!(
            skipped
                .iter()
                .any(|s| s.starts_with(name) && s.contains(why)),
            "{name} ({why}) not among {skipped:#?}"
        );
    }
}

// Item 10: crosscheck DIR neither waits on a FIFO named like a run nor reads a 300 MB file; both
// are named in its report, which it writes.
#[test]
fn crosscheck_neither_waits_on_a_fifo_nor_reads_a_huge_file() {
    let dir = tempfile::tempdir().unwrap();
    mkfifo(&dir.path().join("p.run1.json"));
    sparse(&dir.path().join("p.run2.json"), 300 << 20);
    let start = std::time::Instant::now();
    let out = kvxfer()
        .arg("crosscheck")
        .arg(dir.path())
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(start.elapsed() < Duration::from_secs(30), "{err}");
    assert!(out.status.code().is_some(), "killed at the time-out: {err}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("crosscheck.json")).unwrap())
            .unwrap();
    let skipped = report["skipped"].to_string();
    assert!(
        skipped.contains("p.run1.json") && skipped.contains("FIFO"),
        "{skipped}"
    );
    assert!(
        skipped.contains("p.run2.json") && skipped.contains("larger than"),
        "{skipped}"
    );
}

// Item 10: analyze holds one input file at a time: six 40 MB files (each a JSON object with
// one long string) peak far below the 240 MB they hold together.
#[test]
fn analyze_holds_one_big_file_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let e2e = tmp.path().join("e2e");
    std::fs::create_dir_all(&e2e).unwrap();
    let body = format!(r#"{{"x": "{}"}}"#, "a".repeat(40 << 20));
    for i in 0..6 {
        std::fs::write(e2e.join(format!("big{i}.json")), &body).unwrap();
    }
    drop(body);
    let child = std::process::Command::new(kvxfer_path())
        .arg("analyze")
        .arg("--e2e-dir")
        .arg(&e2e)
        .arg("--no-plots")
        .arg("--out")
        .arg(tmp.path().join("out/r.json"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The peak resident size (VmHWM) as /proc shows it, read until the process ends.
    let mut child = child;
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_mib = 0u64;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        let hwm = std::fs::read_to_string(&status_file)
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .unwrap_or(0);
        peak_mib = peak_mib.max(hwm / 1024);
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success());
    assert!(peak_mib > 0, "no reading of the peak");
    assert!(peak_mib < 200, "peak RSS {peak_mib} MiB");
}

// Item 14: the smaller cases, each by its exit status and what happened (or did not).
#[test]
fn smaller_cases_say_the_first_cause_once_and_a_fifo_state_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let one_line = |out: &std::process::Output| {
        let err = stderr(out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(out.stdout.is_empty(), "{err}");
        lines[0].to_string()
    };
    // The provider before the memory: no EFA here is the first, cheaper fact.
    if kvxfer::fabric::available_providers()
        .iter()
        .any(|p| p == "efa")
    {
        skip("smaller_cases (efa before memory)", "this host has EFA");
    } else {
        let out = kvxfer()
            .args([
                "xfer",
                "--provider",
                "efa",
                "--size",
                "672M",
                "--concurrency",
                "16",
            ])
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        let e = one_line(&out);
        assert!(e.contains("provider \"efa\""), "{e}");
        assert!(!e.contains("memory"), "{e}");
    }
    // Non-UTF-8 input: the cause once.
    let bin = dir.path().join("bin.json");
    std::fs::write(&bin, b"\xff\xfe\x00bad").unwrap();
    let out = kvxfer()
        .args(["kv", "size", "--model"])
        .arg(&bin)
        .output()
        .unwrap();
    let e = one_line(&out);
    assert_eq!(e.matches("valid UTF-8").count(), 1, "{e}");
    // A YAML error in the file writer's terms, not the parser library's options.
    let dup = dir.path().join("dup.yaml");
    std::fs::write(
        &dup,
        "model_name: x\nnum_layers: 3\nnum_layers: 4\nnum_kv_heads: 8\nquery_head_dimension: 128\n",
    )
    .unwrap();
    let out = kvxfer()
        .args(["kv", "size", "--model"])
        .arg(&dup)
        .output()
        .unwrap();
    let e = one_line(&out);
    assert!(e.contains("duplicate") && e.contains("num_layers"), "{e}");
    assert!(!e.contains("Options") && !e.contains("Policy"), "{e}");
    // plan validate on 1e30 says what the value is.
    let mut plan: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/plans/loopback.json"))
            .unwrap(),
    )
    .unwrap();
    plan["common"]["timeout_s"] = serde_json::json!(1e30);
    let path = dir.path().join("plan.json");
    std::fs::write(&path, plan.to_string()).unwrap();
    let out = kvxfer()
        .args(["plan", "validate"])
        .arg(&path)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("$.common.timeout_s") && err.contains("1e30, past the largest whole number"),
        "{err}"
    );
    // A state file that is a FIFO: refused at once, no task runs, the FIFO stays.
    let fifo = dir.path().join("state.fifo");
    mkfifo(&fifo);
    let ran = dir.path().join("ran");
    let def = dir.path().join("def.json");
    std::fs::write(
        &def,
        serde_json::json!({"name": "d", "description": "", "variables": {}, "tasks": [
            {"id": "a", "name": "a", "commands": [format!("touch {}", ran.display())]}]})
        .to_string(),
    )
    .unwrap();
    let out = kvxfer()
        .args(["task", "run"])
        .arg(&def)
        .arg("--state")
        .arg(&fifo)
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "blocked or ran: {err}");
    assert!(!ran.exists(), "a task ran: {err}");
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
}

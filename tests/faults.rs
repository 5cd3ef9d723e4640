//! Faults and hostile input (issue 16): every case a hostile user or a failing peer can cause
//! ends within its time-out with one clear line and a non-zero exit, keeps what was measured,
//! and never panics.

mod common;

use common::*;

/// The stderr of a finished command, checked to hold no panic.
fn no_panic(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "panic: {err}");
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
        for cmd in ["pingpong", "xfer"] {
            let mut c = if cmd == "pingpong" {
                tiny_pingpong()
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
    let _g = fabric_lock();
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

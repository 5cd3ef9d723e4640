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

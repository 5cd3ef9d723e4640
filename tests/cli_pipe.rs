//! `kvxfer ... | head`: a reader that leaves early is no reason to panic.

mod common;

use std::process::{Command, Stdio};

#[test]
fn a_closed_stdout_pipe_ends_the_output_quietly() {
    let mut child = Command::new(common::kvxfer_path())
        .args(["kv", "size", "--model", "qwen2.5-7b"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The read end closes before kvxfer has started: its first write meets a broken pipe.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(err.is_empty(), "a closed pipe is not reported: {err}");
}

//! Building against a `UCX_DIR` that names no UCX stops with one line naming the variable.

use std::process::Command;

#[test]
fn ucx_dir_naming_nothing_is_one_clear_build_error() {
    let root = env!("CARGO_MANIFEST_DIR");
    let missing = tempfile::tempdir().unwrap();
    let nowhere = missing.path().join("no-ucx-here");
    // A target folder of its own: the main one keeps its build, and its lock is not ours.
    let out = Command::new(env!("CARGO"))
        .current_dir(root)
        .args(["check", "--offline", "--quiet", "-p", "ucx-sys"])
        .env("CARGO_TARGET_DIR", format!("{root}/target/ucx-dir-check"))
        .env("UCX_DIR", &nowhere)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let want = format!("error: ucx-sys: UCX_DIR={} names no UCX", nowhere.display());
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("UCX_DIR=")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].trim_start().starts_with(&want), "{err}");
    // Not a panic with a backtrace: the build script said it and stopped.
    assert!(!err.contains("panicked"), "{err}");
}

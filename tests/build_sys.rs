//! The sys crates' build scripts: a wrong `LIBFABRIC_DIR` is one clear build error, and where a
//! library was found is said only when `KVXFER_SYS_VERBOSE` asks for it.

use std::process::{Command, Output};

/// `cargo check -p <package>` with `envs`, in a target folder of its own (the main one keeps its
/// build, and its lock is not ours).
fn check(package: &str, envs: &[(&str, &str)], remove: &[&str]) -> Output {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(root)
        .args(["check", "--offline", "-p", package])
        .env("CARGO_TARGET_DIR", format!("{root}/target/ucx-dir-check"));
    for (k, v) in envs {
        cmd.env(k, v);
    }
    for k in remove {
        cmd.env_remove(k);
    }
    cmd.output().unwrap()
}

#[test]
fn libfabric_dir_naming_nothing_is_one_clear_build_error() {
    let missing = tempfile::tempdir().unwrap();
    let nowhere = missing.path().join("no-libfabric-here");
    let out = check(
        "libfabric-sys",
        &[("LIBFABRIC_DIR", nowhere.to_str().unwrap())],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let want = format!(
        "error: libfabric-sys: LIBFABRIC_DIR={} has no include/rdma/fabric.h",
        nowhere.display()
    );
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("LIBFABRIC_DIR="))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].trim_start().starts_with(&want), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn where_ucx_was_found_is_said_only_when_asked() {
    let quiet = check("ucx-sys", &[], &["KVXFER_SYS_VERBOSE", "UCX_DIR"]);
    let err = String::from_utf8_lossy(&quiet.stderr);
    assert!(quiet.status.success(), "{err}");
    assert!(!err.contains("warning: ucx-sys"), "{err}");

    let verbose = check("ucx-sys", &[("KVXFER_SYS_VERBOSE", "1")], &["UCX_DIR"]);
    let err = String::from_utf8_lossy(&verbose.stderr);
    assert!(verbose.status.success(), "{err}");
    assert!(
        err.contains("warning: ucx-sys@0.1.0: ucx-sys: using "),
        "{err}"
    );
}

#[test]
fn the_binary_knows_where_its_libraries_were_found() {
    assert!(
        libfabric_sys::FOUND.contains("libfabric"),
        "{}",
        libfabric_sys::FOUND
    );
    assert!(ucx_sys::FOUND.contains("UCX") || ucx_sys::FOUND.contains("ucx"));
}

//! libfabric is loaded on first use, not at start: a command that opens no fabric runs where no
//! usable libfabric is (and does not pay the start-up of the libraries it links), and one that
//! needs it says in one line that libfabric could not be loaded, and why.

mod common;

use std::time::Duration;

use common::{fabric_lock, kvxfer, read_doc};

/// The libraries whose initialisers ran in `kvxfer ARGS`, UCX over shared memory.
fn initialised(args: &[&str]) -> Vec<String> {
    common::initialised(&[("UCX_TLS", "posix,cma")], args)
}

/// libfabric, or a library only libfabric brings (PSM's, whose initialisers sleep 0.2 s here).
fn fabric_side(lib: &str) -> bool {
    [
        "libfabric",
        "libpsm",
        "libinfinipath",
        "libefa",
        "librdmacm",
    ]
    .iter()
    .any(|n| lib.contains(n))
}

#[test]
fn libfabric_is_loaded_only_by_the_commands_that_open_a_fabric() {
    let _g = fabric_lock();
    for args in [
        &["--version"][..],
        &["ucx-perf", "-t", "tag_lat", "-s", "64", "-n", "20"],
    ] {
        let libs = initialised(args);
        assert!(
            libs.iter().any(|l| l.contains("libc.so")),
            "{args:?}: {libs:?}"
        );
        let fabric: Vec<&String> = libs.iter().filter(|l| fabric_side(l)).collect();
        assert!(fabric.is_empty(), "{args:?} initialised {fabric:?}");
    }
    let libs = initialised(&["pingpong", "-p", "shm", "-S", "64", "-I", "20"]);
    assert!(
        libs.iter().any(|l| l.ends_with("/libfabric.so.1")),
        "a libfabric run without libfabric: {libs:?}"
    );
}

/// A folder whose `libfabric.so.1` is no library at all, for LD_LIBRARY_PATH (searched before
/// the loader's cache and any run path).
fn broken_libfabric() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("libfabric.so.1"), b"not a shared object\n").unwrap();
    dir
}

/// What `kvxfer info`, which needs libfabric, says on failing with `dir`'s `libfabric.so.1`
/// first in LD_LIBRARY_PATH.
fn info_fails_with(dir: &std::path::Path) -> String {
    let out = kvxfer()
        .env("LD_LIBRARY_PATH", dir)
        .args(["info", "-p", "tcp"])
        .assert()
        .failure();
    String::from_utf8_lossy(&out.get_output().stderr).into_owned()
}

#[test]
fn commands_that_open_no_fabric_run_without_a_usable_libfabric() {
    let broken = broken_libfabric();
    let out = kvxfer()
        .env("LD_LIBRARY_PATH", broken.path())
        .arg("--version")
        .assert()
        .success();
    let version = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(version.starts_with("kvxfer "), "{version}");

    // A measurement over UCX, one process, writes its document as usual.
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    kvxfer()
        .env("LD_LIBRARY_PATH", broken.path())
        .env("UCX_TLS", "posix,cma")
        .args([
            "ucx-perf", "-t", "tag_lat", "-s", "64", "-n", "200", "-w", "20",
        ])
        .arg("--json")
        .arg(&json)
        .timeout(Duration::from_secs(120))
        .assert()
        .success();
    let doc = read_doc(&json);
    assert_eq!(doc.results.len(), 1);
    assert_eq!(doc.results[0].iterations, 200);
    assert_eq!(doc.environment.libfabric_version, None);
}

#[test]
fn a_command_that_needs_libfabric_names_why_it_could_not_be_loaded() {
    let broken = broken_libfabric();
    let err = info_fails_with(broken.path());
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("libfabric could not be loaded"), "{err}");
    // The loader's own reason names the file it tried.
    assert!(
        err.contains(&format!("{}/libfabric.so.1", broken.path().display())),
        "{err}"
    );
}

#[test]
fn info_names_the_libfabric_it_loaded() {
    let out = kvxfer()
        .args(["info", "-p", "tcp", "--json"])
        .assert()
        .success();
    let doc: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let lib = doc["libfabric_library"].as_str().unwrap();
    assert!(lib.ends_with("/libfabric.so.1"), "{lib}");
    assert!(std::path::Path::new(lib).exists(), "{lib}");
    let version = doc["libfabric_version"].as_str().unwrap();
    assert!(version.starts_with("1."), "{version}");
}

#[test]
fn a_libfabric_without_the_versions_the_build_bound_is_refused_naming_the_function() {
    // A library of the right name whose fi_getinfo carries only the symbol version FABRIC_1.0:
    // what an older libfabric than the build's looks like to kvxfer, which asks for the
    // versions the build's own libfabric gives by default (the layout of struct fi_info its
    // headers describe).
    let test = "a_libfabric_without_the_versions_the_build_bound_is_refused_naming_the_function";
    if !common::have("cc") {
        println!("SKIPPED {test}: no C compiler (cc) here to build the old library");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("fake.c");
    // kvxfer asks for fi_getinfo first; the library needs no other function to be refused.
    let body = "int fi_getinfo(void) { return 0; }\n";
    std::fs::write(&src, body).unwrap();
    let map = dir.path().join("fake.map");
    std::fs::write(&map, "FABRIC_1.0 { global: fi_*; local: *; };\n").unwrap();
    let built = std::process::Command::new("cc")
        .args(["-shared", "-fPIC"])
        .arg(format!("-Wl,--version-script={}", map.display()))
        .arg("-o")
        .arg(dir.path().join("libfabric.so.1"))
        .arg(&src)
        .status()
        .unwrap();
    assert!(built.success());
    let err = info_fails_with(dir.path());
    assert!(
        err.contains("libfabric.so.1 has no fi_getinfo@FABRIC_1."),
        "{err}"
    );
    assert!(
        err.contains("older libfabric than kvxfer was built against"),
        "{err}"
    );
}

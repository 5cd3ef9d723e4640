//! `kvxfer xfer --initiator-seg/--target-seg DRAM|VRAM --gpu N [--vmm]`, and pingpong's and
//! rma-pingpong's same options: without a GPU, device memory is refused before any connection
//! with one line naming what is missing (the `cuda` feature, the driver or the device); with
//! one, UCX moves VRAM to VRAM (tcp + cuda_copy) and `--verify` checks it through host copies.
//! Each side skips the other's tests by name.

mod common;
mod xfer_support;

use std::time::Duration;

use common::*;
use predicates::prelude::*;
use xfer_support::*;

/// xfer's options before a test's own.
const XFER: &[&str] = &["xfer", "-s", "1M"];

/// rma-pingpong's options before a test's own: tcp on lo, 64 bytes.
const RMA: &[&str] = &["rma-pingpong", "-p", "tcp", "-d", "lo", "-S", "64"];

/// Runs kvxfer with `cmd` then `args`, expects failure with nothing on stdout, returns stderr.
fn refused_by(cmd: &[&str], args: &[&str]) -> String {
    let out = kvxfer()
        .args(cmd)
        .args(args)
        .timeout(Duration::from_secs(30))
        .assert()
        .failure()
        .stdout(predicate::str::is_empty());
    String::from_utf8_lossy(&out.get_output().stderr).to_string()
}

/// Prints `test`'s SKIPPED line and returns true where the build can reach a GPU at all
/// (then the missing-GPU refusals do not apply).
fn skipped_with_gpu(test: &str) -> bool {
    let reachable = cfg!(feature = "cuda")
        && ["/dev/nvidia0", "/dev/nvidiactl"]
            .iter()
            .any(|p| std::path::Path::new(p).exists());
    if reachable {
        skip(
            test,
            "a GPU device node is present: the missing-GPU lines do not apply",
        );
    }
    reachable
}

/// Whether `line` names what this build misses for VRAM: the `cuda` feature, or the driver
/// or device.
fn names_missing_gpu(line: &str) -> bool {
    if cfg!(feature = "cuda") {
        line.contains("no CUDA driver") || line.contains("no CUDA device")
    } else {
        line.contains("built without the `cuda` feature")
    }
}

/// Each of `cases` (a test's options, the option named) run after `cmd` is refused with one
/// line, for that option, naming what this build misses for VRAM.
fn assert_each_names_missing_gpu(cmd: &[&str], cases: &[(&[&str], &str)]) {
    for &(args, option) in cases {
        let err = refused_by(cmd, args);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(option), "{args:?}: {err}");
        assert!(names_missing_gpu(&err), "{args:?}: {err}");
    }
}

#[test]
fn vram_without_a_gpu_ends_with_one_line_naming_what_is_missing() {
    if skipped_with_gpu("vram_without_a_gpu_ends_with_one_line_naming_what_is_missing") {
        return;
    }
    let cases: &[(&[&str], &str)] = &[
        (
            &["--initiator-seg", "VRAM", "--target-seg", "VRAM"],
            "--initiator-seg VRAM",
        ),
        (&["--target-seg", "vram"], "--target-seg VRAM"),
        (
            &["-B", "ucx", "--initiator-seg", "Vram"],
            "--initiator-seg VRAM",
        ),
    ];
    assert_each_names_missing_gpu(XFER, cases);
}

#[test]
fn dram_is_spelled_any_case_and_bad_kinds_or_gpus_are_refused() {
    let refused = |args: &[&str]| refused_by(XFER, args);
    let err = refused(&["--initiator-seg", "HBM"]);
    assert!(err.contains("invalid value 'HBM'"), "{err}");
    let err = refused(&["--staging", "host"]);
    assert!(err.contains("--staging host bounces VRAM"), "{err}");
    let err = refused(&["--staging", "device"]);
    assert!(err.contains("invalid value 'device'"), "{err}");
    let err = refused(&["--target-seg", "VRAM", "--gpu", "-2"]);
    assert!(err.contains("--gpu must be 0 or more"), "{err}");
    // DRAM in any case is accepted: the run is refused later for a bad count, not the kind.
    let err = refused(&["--initiator-seg", "dRaM", "--target-seg", "DRAM", "-I", "0"]);
    assert!(err.contains("--iterations must be at least 1"), "{err}");
}

/// Prints `test`'s SKIPPED line and returns true where no GPU is usable.
fn skipped_without_gpu(test: &str) -> bool {
    let none = !gpu_usable();
    if none {
        skip(
            test,
            "no GPU the CUDA driver opens (kvxfer info --gpu --check)",
        );
    }
    none
}

/// Whether the CUDA driver opens a GPU for this kvxfer (`info --gpu --check`).
fn gpu_usable() -> bool {
    kvxfer()
        .args(["info", "--gpu", "--check"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// One local UCX xfer over tcp + cuda_copy on lo with `args`, checked and returned.
fn ucx_vram(name: &str, args: &[&str], size: u64) -> Option<kvxfer::report::ResultDoc> {
    if skipped_without_gpu(name) {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("x.json");
    let size_arg = size.to_string();
    let mut all = vec![
        "xfer", "-B", "ucx", "-s", &size_arg, "--verify", "-I", "3", "-w", "1",
    ];
    all.extend_from_slice(args);
    std::env::set_var("UCX_TLS", "tcp,cuda_copy");
    std::env::set_var("UCX_NET_DEVICES", "lo");
    let doc = local(&all, &json);
    assert_xfer_consistent(
        &doc,
        &Expect {
            size,
            iterations: 3,
            warmup: 1,
            transfers: 1,
            verify: true,
            op: "write",
        },
    );
    assert!(
        doc.config["verify_copies"]
            .as_str()
            .is_some_and(|v| v.contains("outside the timed span")),
        "{:?}",
        doc.config
    );
    Some(doc)
}

#[test]
fn ucx_vram_to_vram_with_verify_on_a_gpu() {
    let name = "ucx_vram_to_vram_with_verify_on_a_gpu";
    let args = [
        "--initiator-seg",
        "VRAM",
        "--target-seg",
        "VRAM",
        "--gpu",
        "0",
    ];
    let Some(doc) = ucx_vram(name, &args, 64 << 20) else {
        return;
    };
    assert_eq!(doc.config["mem"], "vram");
    assert_eq!(doc.config["vram_alloc"], "cuMemAlloc");
    let lanes = doc.environment.extra["ucx_endpoint_info"]
        .as_str()
        .unwrap_or("");
    assert!(lanes.contains("cuda_copy"), "UCX's lanes: {lanes}");
}

#[test]
fn ucx_vmm_memory_and_dram_to_vram_on_a_gpu() {
    let name = "ucx_vmm_memory_and_dram_to_vram_on_a_gpu";
    let args = ["--target-seg", "VRAM", "--vmm"];
    let Some(doc) = ucx_vram(name, &args, 8 << 20) else {
        return;
    };
    // One process runs both sides; its document is the initiator's, in DRAM.
    assert_eq!(doc.config["mem"], "dram");
    assert_eq!(doc.config["initiator_seg"], "DRAM");
    assert_eq!(doc.config["target_seg"], "VRAM");
    assert_eq!(doc.config["vram_alloc"], "cuMemCreate");
}

#[test]
fn staged_vram_over_libfabric_tcp_on_a_gpu() {
    let name = "staged_vram_over_libfabric_tcp_on_a_gpu";
    if skipped_without_gpu(name) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("x.json");
    let args = [
        "xfer",
        "--provider",
        "tcp",
        "--domain",
        "lo",
        "-s",
        "16M",
        "--verify",
        "-I",
        "3",
        "-w",
        "1",
        "--initiator-seg",
        "VRAM",
        "--target-seg",
        "VRAM",
        "--staging",
        "host",
    ];
    let doc = local(&args, &json);
    assert_xfer_consistent(
        &doc,
        &Expect {
            size: 16 << 20,
            iterations: 3,
            warmup: 1,
            transfers: 1,
            verify: true,
            op: "write",
        },
    );
    assert_eq!(doc.config["staging"], "host");
    assert_eq!(
        doc.config["mem_registration"], "host",
        "the network moved host memory"
    );
    let s = &doc.results[0].extra["staging"];
    assert_eq!(s["direction"], "device_to_host");
    assert_eq!(s["samples"], 3);
    assert!(s["copy_gbps_p50"].as_f64().unwrap() > 0.0, "{s}");
}

#[test]
fn pingpong_in_vram_runs_or_names_what_is_missing() {
    let out = kvxfer()
        .args([
            "pingpong", "-p", "tcp", "-d", "lo", "-S", "64,4096", "-I", "20", "--verify",
        ])
        .args(["--initiator-seg", "VRAM", "--target-seg", "vram"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    if out.status.success() {
        // A GPU and a provider with FI_HMEM: a real ping-pong in device memory.
        assert!(gpu_usable(), "VRAM ran without a usable GPU: {err}");
        return;
    }
    assert!(out.stdout.is_empty(), "results on a refusal");
    let line = err
        .trim_end()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert!(line.contains("--initiator-seg VRAM"), "{err}");
    let named = if gpu_usable() {
        line.contains("offers no FI_HMEM") && line.contains("--staging host")
    } else {
        names_missing_gpu(&line)
    };
    assert!(named, "{err}");
}

#[test]
fn rma_pingpong_vram_refuses_byte_polling_and_names_what_is_missing() {
    let rma_refused = |args: &[&str]| refused_by(RMA, args);
    // Checked before any device: the same in both builds, with or without a GPU.
    for args in [
        vec!["--target-seg", "VRAM"],
        vec![
            "-o",
            "write",
            "--initiator-seg",
            "vram",
            "--target-seg",
            "DRAM",
        ],
    ] {
        let err = rma_refused(&args);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains("polling the receive buffer's last byte"),
            "{err}"
        );
        assert!(err.contains("use --op writedata"), "{err}");
    }
    // DRAM keeps write mode: refused here for the iterations, not the memory.
    let err = rma_refused(&["-o", "write", "--initiator-seg", "DRAM", "-I", "0"]);
    assert!(err.contains("--iterations must be at least 1"), "{err}");
    if skipped_with_gpu("rma_pingpong_vram_refuses_byte_polling_and_names_what_is_missing") {
        return;
    }
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "-o",
                "writedata",
                "--initiator-seg",
                "VRAM",
                "--target-seg",
                "VRAM",
            ],
            "--initiator-seg VRAM",
        ),
        (&["-o", "read", "--target-seg", "Vram"], "--target-seg VRAM"),
    ];
    assert_each_names_missing_gpu(RMA, cases);
}

#[test]
fn rma_pingpong_writedata_in_vram_on_a_gpu() {
    let name = "rma_pingpong_writedata_in_vram_on_a_gpu";
    if skipped_without_gpu(name) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("rma.json");
    let out = kvxfer()
        .args(["rma-pingpong", "-p", "tcp", "-d", "lo", "-o", "writedata"])
        .args(["-S", "64,4096,1M", "-I", "20", "--verify"])
        .args(["--initiator-seg", "VRAM", "--target-seg", "VRAM"])
        .arg("--json")
        .arg(&json)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    if !out.status.success() {
        // Debian's libfabric has no FI_HMEM: the named refusal is the answer there.
        let line = err.trim_end().lines().last().unwrap_or_default();
        assert!(
            line.contains("offers no FI_HMEM") && line.contains("--initiator-seg VRAM"),
            "{err}"
        );
        skip(
            name,
            "provider tcp here offers no FI_HMEM (refusal checked)",
        );
        return;
    }
    let doc: kvxfer::report::ResultDoc =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(doc.config["op"], "writedata");
    assert_eq!(doc.config["mem"], "vram");
    assert_eq!(doc.config["verify"], true);
    let sizes: Vec<u64> = doc.results.iter().map(|r| r.message_size).collect();
    assert_eq!(sizes, [64, 4096, 1 << 20]);
    assert!(doc.results.iter().all(|r| r.iterations == 20), "{sizes:?}");
}

/// Runs kvxfer with `args` in a process whose transparent huge pages are switched off
/// (prctl PR_SET_THP_DISABLE, inherited across exec); its stdout.
fn without_huge_pages(args: &[&str]) -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import ctypes, os, sys\n\
             assert ctypes.CDLL(None, use_errno=True).prctl(41, 1, 0, 0, 0) == 0\n\
             os.execv(sys.argv[1], sys.argv[1:])",
        ])
        .arg(kvxfer_path())
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// Host buffers state how they are backed: with huge pages switched off for the process, both
// sides' share is 0 % in the document and the table, and the doctor's probe warns that it got
// none. (With them on, what the kernel grants depends on the host: only the range is checked.)
#[test]
fn host_buffers_state_their_huge_page_share() {
    let _g = fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let pct = |json: &std::path::Path| {
        let doc = read_doc(json);
        let c = &doc.results[0].extra["costs"];
        let get = |k: &str| c[k].as_f64().unwrap_or_else(|| panic!("{k}: {c}"));
        (
            get("registration_huge_page_pct"),
            get("target_registration_huge_page_pct"),
        )
    };
    let off = dir.path().join("off.json");
    let args = ["xfer", "-p", "tcp", "--domain", "lo", "-s", "8M", "-I", "3"];
    let mut with_json: Vec<&str> = args.to_vec();
    with_json.extend(["--json", off.to_str().unwrap()]);
    let table = without_huge_pages(&with_json);
    assert_eq!(pct(&off), (0.0, 0.0));
    assert!(
        table.contains("cached") && table.matches(", huge pages 0 %").count() == 2,
        "{table}"
    );
    let on = dir.path().join("on.json");
    kvxfer()
        .args(args)
        .args(["--json", on.to_str().unwrap()])
        .timeout(Duration::from_secs(60))
        .assert()
        .success();
    let (i, t) = pct(&on);
    assert!(
        (0.0..=100.0).contains(&i) && (0.0..=100.0).contains(&t),
        "{i} {t}"
    );
    let report = dir.path().join("doctor.json");
    without_huge_pages(&["doctor", "--json", report.to_str().unwrap()]);
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let h = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "memory.huge_pages")
        .unwrap();
    let never = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|t| t.contains("[never]"));
    assert_eq!(h["status"], "warn", "{h}");
    if !never {
        assert!(
            h["evidence"]
                .as_str()
                .unwrap()
                .contains("got 0 B in huge pages"),
            "{h}"
        );
        assert!(
            h["action"]
                .as_str()
                .unwrap()
                .contains("the kernel gave none"),
            "{h}"
        );
    }
}

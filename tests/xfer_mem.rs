//! `kvxfer xfer --initiator-seg/--target-seg DRAM|VRAM --gpu N`: device memory refused before
//! any connection with one line naming what is missing (the `cuda` feature, the driver or
//! the device); a GPU host skips these by name.

mod common;

use std::time::Duration;

use common::*;
use predicates::prelude::*;

/// Runs xfer with `args`, expects failure, returns stderr.
fn refused(args: &[&str]) -> String {
    let out = kvxfer()
        .args(["xfer", "-s", "1M"])
        .args(args)
        .timeout(Duration::from_secs(30))
        .assert()
        .failure()
        .stdout(predicate::str::is_empty());
    String::from_utf8_lossy(&out.get_output().stderr).to_string()
}

/// Whether the build can reach a GPU at all (then these refusals do not apply).
fn gpu_reachable() -> bool {
    cfg!(feature = "cuda")
        && ["/dev/nvidia0", "/dev/nvidiactl"]
            .iter()
            .any(|p| std::path::Path::new(p).exists())
}

#[test]
fn vram_without_a_gpu_ends_with_one_line_naming_what_is_missing() {
    if gpu_reachable() {
        skip(
            "vram_without_a_gpu_ends_with_one_line_naming_what_is_missing",
            "a GPU device node is present",
        );
        return;
    }
    for (args, option) in [
        (
            vec!["--initiator-seg", "VRAM", "--target-seg", "VRAM"],
            "--initiator-seg VRAM",
        ),
        (vec!["--target-seg", "vram"], "--target-seg VRAM"),
        (
            vec!["-B", "ucx", "--initiator-seg", "Vram"],
            "--initiator-seg VRAM",
        ),
    ] {
        let err = refused(&args);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(option), "{args:?}: {err}");
        let named = if cfg!(feature = "cuda") {
            err.contains("no CUDA driver") || err.contains("no CUDA device")
        } else {
            err.contains("built without the `cuda` feature")
        };
        assert!(named, "{args:?}: {err}");
    }
}

#[test]
fn dram_is_spelled_any_case_and_bad_kinds_or_gpus_are_refused() {
    let err = refused(&["--initiator-seg", "HBM"]);
    assert!(err.contains("invalid value 'HBM'"), "{err}");
    let err = refused(&["--target-seg", "VRAM", "--gpu", "-2"]);
    assert!(err.contains("--gpu must be 0 or more"), "{err}");
    // DRAM in any case is accepted: the run is refused later for a bad size, not the kind.
    let err = refused(&["--initiator-seg", "dRaM", "--target-seg", "DRAM", "-I", "0"]);
    assert!(err.contains("--iterations must be at least 1"), "{err}");
}

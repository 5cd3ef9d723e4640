//! scripts/device-check.sh, the one list of GPU checks, without a GPU: its limits add up to at
//! most seven minutes, and its GPU rows, run against a fake kvxfer that answers with real result
//! documents carrying known figures, pass, take the libfabric refusal for want of FI_HMEM as the
//! expected answer, and put each headline figure in summary.md and results.json.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use serde_json::{json, Value};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/device-check.sh")
}

#[test]
fn the_limits_of_the_rows_add_up_to_at_most_seven_minutes() {
    let out = Command::new("bash")
        .arg(script())
        .arg("--list")
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut total = 0;
    let mut rows = Vec::new();
    let mut sum = None;
    for l in text.lines().skip(1) {
        if let Some(s) = l.strip_prefix("sum of the limits, the GPU probe's 10s included: ") {
            sum = s.trim_end_matches('s').parse::<u64>().ok();
            continue;
        }
        let f: Vec<&str> = l.split_whitespace().collect();
        let limit: u64 = f[2].trim_end_matches('s').parse().unwrap();
        assert!(limit > 2, "{l}");
        total += limit;
        rows.push((f[0].to_string(), f[1] == "gpu"));
    }
    assert_eq!(Some(total + 10), sum, "{text}");
    assert!(total + 10 <= 420, "{text}");
    assert_eq!(rows.len(), 12, "{text}");
    let dram: Vec<&str> = rows.iter().filter(|r| !r.1).map(|r| r.0.as_str()).collect();
    assert_eq!(dram, ["ucx-dram", "fi-dram"], "{text}");
}

/// Sets the number at `path` (dotted, as check.sh reads it) of `doc`, which must be there.
fn set(doc: &mut Value, path: &str, v: Value) {
    let mut at = doc;
    for k in path.split('.') {
        at = match k.parse::<usize>() {
            Ok(i) => &mut at[i],
            Err(_) => &mut at[k],
        };
    }
    assert!(!at.is_null(), "{path} is not in the document");
    *at = v;
}

/// A real result document of `args` (kvxfer over UCX tcp on lo), with `figures` set.
fn doc(args: &[&str], figures: &[(&str, Value)]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("d.json");
    common::kvxfer()
        .args(args)
        .arg("--json")
        .arg(&json)
        .env("UCX_TLS", "tcp")
        .env("UCX_NET_DEVICES", "lo")
        .timeout(Duration::from_secs(120))
        .assert()
        .success();
    let mut d: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for (path, v) in figures {
        set(&mut d, path, v.clone());
    }
    d
}

/// The fake kvxfer: a GPU is present; xfer, ucx-perf write the canned document of their kind
/// to --json; the libfabric VRAM runs without staging, pingpong and rma-pingpong are refused
/// for want of FI_HMEM, as Debian's libfabric refuses them.
const FAKE: &str = r#"#!/bin/bash
docs="$(dirname "$0")/../docs"
case "$1 $2 $3" in
    "--version  ") echo "kvxfer 0.0.0 (fake)"; exit 0 ;;
    "info --gpu --check") echo "kvxfer: 1 GPU(s) usable through the CUDA driver" >&2; exit 0 ;;
    "info --gpu ") printf 'GPU   name\n0     Fake GPU\n'; exit 0 ;;
esac
json="" prev="" args=" $* "
for a in "$@"; do [ "$prev" = --json ] && json="$a"; prev="$a"; done
refuse() { echo "kvxfer: error: --initiator-seg VRAM: provider tcp offers no FI_HMEM" >&2; exit 1; }
case "$1" in
    pingpong | rma-pingpong) refuse ;;
    ucx-perf) [[ "$args" == *" tag_lat "* ]] && kind=tag-lat || kind=tag-bw ;;
    xfer)
        if [[ "$args" == *" -B ucx "* ]]; then kind=ucx
        elif [[ "$args" == *" --staging host "* ]]; then
            [[ "$args" == *" --op read "* ]] && kind=staging-read || kind=staging-write
        elif [[ "$args" == *" VRAM "* ]]; then refuse
        else kind=fi
        fi ;;
    *) echo "fake kvxfer: $*" >&2; exit 2 ;;
esac
echo "fake kvxfer: $kind"
cp "$docs/$kind.json" "$json"
"#;

/// A fake test executable printing `lines`, passing.
fn fake_tests(lines: &str) -> String {
    format!("#!/bin/bash\ncat <<'EOF'\n{lines}\nEOF\n")
}

fn write_exe(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    let st = std::process::Command::new("chmod")
        .arg("+x")
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn each_gpu_row_against_a_fake_kvxfer_passes_and_the_summary_prints_its_figures() {
    let _one = common::fabric_lock();
    let root = tempfile::tempdir().unwrap();
    for d in ["bin", "tests", "docs"] {
        std::fs::create_dir(root.path().join(d)).unwrap();
    }
    let r0 = "results.0";
    let costs = "results.0.extra.costs";
    let mut ucx = doc(
        &["xfer", "-B", "ucx", "-s", "1M", "-I", "2", "-w", "1"],
        &[
            (&format!("{r0}.bandwidth_gbps"), json!(12.5)),
            (&format!("{costs}.registration_first_us"), json!(345.6)),
            (&format!("{costs}.registration_cached_us"), json!(7.8)),
        ],
    );
    ucx["config"]["vram_alloc"] = json!("cuMemCreate");
    let fi_args = ["xfer", "--provider", "tcp", "--domain", "lo", "-s", "1M"];
    let fi = doc(
        &[&fi_args[..], &["-I", "2", "-w", "1"]].concat(),
        &[(&format!("{r0}.bandwidth_gbps"), json!(2.25))],
    );
    let staged = |direction: &str, gbps: f64| {
        let mut d = fi.clone();
        assert!(d["results"][0]["extra"].is_object());
        d["results"][0]["extra"]["staging"] = json!({
            "through": "host", "direction": direction, "copy_gbps_p50": gbps, "copy_ms_p50": 1.5
        });
        d
    };
    let lat = doc(
        &[
            "ucx-perf", "-t", "tag_lat", "-s", "8,65536", "-n", "50", "-w", "5",
        ],
        &[
            (&format!("{r0}.latency_us.p50"), json!(3.21)),
            ("results.1.latency_us.p50", json!(20.5)),
        ],
    );
    let bw = doc(
        &["ucx-perf", "-t", "tag_bw", "-s", "1M", "-n", "5", "-w", "1"],
        &[(&format!("{r0}.bandwidth_gbps"), json!(8.75))],
    );
    for (name, d) in [
        ("ucx", ucx),
        ("fi", fi.clone()),
        ("staging-write", staged("device_to_host", 9.5)),
        ("staging-read", staged("host_to_device", 11.25)),
        ("tag-lat", lat),
        ("tag-bw", bw),
    ] {
        let path = root.path().join("docs").join(format!("{name}.json"));
        std::fs::write(path, d.to_string()).unwrap();
    }
    write_exe(&root.path().join("bin/kvxfer"), FAKE);
    let allowed = "SKIPPED vram_without_a_gpu: a GPU device node is present: the missing-GPU lines do not apply";
    write_exe(
        &root.path().join("tests/lib"),
        &fake_tests("test result: ok. 2 passed; 0 failed; 0 ignored"),
    );
    write_exe(
        &root.path().join("tests/xfer_mem"),
        &fake_tests(&format!(
            "{allowed}\ntest result: ok. 7 passed; 0 failed; 0 ignored"
        )),
    );

    let out = root.path().join("out");
    let run = Command::new("bash")
        .arg(script())
        .arg(&out)
        .env("KVXFER_CHECK_ROOT", root.path())
        .timeout(Duration::from_secs(420))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr).to_string();
    let summary = std::fs::read_to_string(out.join("summary.md"))
        .unwrap_or_else(|e| panic!("summary.md ({e}): {stderr}"));
    assert_eq!(run.status.code(), Some(0), "{summary}\n{stderr}");
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["gpu"], true);
    for r in results["rows"].as_array().unwrap() {
        assert_eq!(r["status"], "pass", "{r}");
        let refused =
            ["fi-vram", "pingpong", "rma-pingpong"].contains(&r["name"].as_str().unwrap());
        let fig = r["figure"].as_str().unwrap();
        assert_eq!(fig.starts_with("refused as expected: "), refused, "{r}");
    }
    let row = |name: &str| {
        results["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()["figure"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        row("device-tests"),
        "9 tests passed, none skipped for want of a GPU"
    );
    assert!(row("ucx-vmm").contains("--vmm 12.50 GB/s (cuMemCreate) against cuMemAlloc 12.50"));
    let figures = &results["figures"];
    for (key, want) in [
        ("gpus", 1.0),
        ("ucx_vram_gbps_55M", 12.5),
        ("ucx_vram_gbps_672M", 12.5),
        ("ucx_dram_gbps_224M", 12.5),
        ("ucx_vmm_gbps_672M", 12.5),
        ("reg_vram_672M_cold_us", 345.6),
        ("reg_vram_672M_cached_us", 7.8),
        ("fi_dram_gbps_672M", 2.25),
        ("staging_device_to_host_gbps", 9.5),
        ("staging_host_to_device_gbps", 11.25),
        ("tag_lat_cuda_p50_us_8B", 3.21),
        ("tag_lat_cuda_p50_us_64KiB", 20.5),
        ("tag_bw_cuda_gbps_64M", 8.75),
    ] {
        assert_eq!(figures[key].as_f64(), Some(want), "{key}: {figures}");
    }
    for line in [
        "DRAM to DRAM: 55M 12.50 / 12.50, 224M 12.50 / 12.50, 672M 12.50 / 12.50",
        "672M VRAM by cuMemAlloc 12.50 GB/s, by --vmm 12.50 GB/s",
        "registration of 672M in VRAM: cold 345.60 us, cached 7.80 us",
        "device to host 9.50 GB/s, host to device 11.25 GB/s (libfabric tcp DRAM 672M: 2.25 GB/s)",
        "8 B 3.21 us, 64 KiB 20.50 us; tag_bw 64M 8.75 GB/s",
        "0     Fake GPU",
    ] {
        assert!(summary.contains(line), "{line}\n{summary}");
    }
    // What the terminal shows ends with the same figures.
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("cold 345.60 us"), "{stdout}");
}

#[test]
fn a_device_test_skipped_for_want_of_a_gpu_fails_its_row() {
    let root = tempfile::tempdir().unwrap();
    for d in ["bin", "tests"] {
        std::fs::create_dir(root.path().join(d)).unwrap();
    }
    write_exe(&root.path().join("bin/kvxfer"), FAKE);
    let skipped = "SKIPPED mem::cuda::tests::device_round_trip_through_staging: no CUDA device";
    write_exe(
        &root.path().join("tests/lib"),
        &fake_tests(&format!("{skipped}\ntest result: ok. 2 passed; 0 failed")),
    );
    write_exe(
        &root.path().join("tests/xfer_mem"),
        &fake_tests("test result: ok. 7 passed; 0 failed"),
    );
    let docs = tempfile::tempdir().unwrap();
    let run = Command::new("bash")
        .arg(script())
        .args(["--row", "device-tests"])
        .arg(docs.path())
        .env("KVXFER_CHECK_ROOT", root.path())
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(!run.status.success(), "{out}");
    assert!(
        out.contains(&format!("a device test skipped itself: {skipped}")),
        "{out}"
    );
}

//! The self-contained GPU bundle `.device/` (scripts/device-bundle.sh), checked on a host without
//! a GPU: its executables and libraries load nothing from outside it but the C runtime (and the
//! NVIDIA driver, absent here); its check.sh, run from a copy in an empty environment, passes the
//! DRAM rows with the bundled libraries and skips every GPU row naming why; hung GPU rows are
//! stopped at their limits and named. They are the slow group's (`scripts/test.sh --slow` builds
//! the bundle, minutes of release compilation, then runs them); without a bundle they skip by
//! name.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use serde_json::Value;

/// The C runtime, which the bundle leaves to the host (by library name).
const C_RUNTIME: &[&str] = &[
    "linux-vdso.so",
    "ld-linux-x86-64.so",
    "ld-linux-aarch64.so",
    "libc.so",
    "libm.so",
    "libdl.so",
    "libpthread.so",
    "librt.so",
    "libresolv.so",
    "libutil.so",
    "libstdc++.so",
    "libgcc_s.so",
];

/// The NVIDIA driver's libraries, which only a GPU host has.
const DRIVER: &[&str] = &["libcuda.so.1", "libnvidia-ml.so.1"];

/// The rows that need no GPU: they must pass anywhere.
const DRAM_ROWS: &[&str] = &["ucx-dram", "fi-dram"];

/// How much longer than on a GPU host the rows may take here: a busy two-core host moves
/// 672M over the loopback at a fraction of a GB/s.
const SCALE: u64 = 3;

/// The environment of the tests' check.sh runs: one iteration per transfer (enough to pass or
/// fail) and every limit times [`SCALE`].
fn light() -> Vec<String> {
    vec![
        "ITERS=1".to_string(),
        format!("KVXFER_CHECK_LIMIT_SCALE={SCALE}"),
    ]
}

/// One check.sh run at a time: each moves gigabytes over the loopback.
static CHECK: Mutex<()> = Mutex::new(());

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The built bundle, or None after printing `test`'s SKIPPED line.
fn bundle(test: &str) -> Option<PathBuf> {
    let dir = repo().join(".device");
    if dir.join("bin/kvxfer").exists() && dir.join("check.sh").exists() {
        return Some(dir);
    }
    common::skip(
        test,
        "no .device/ bundle here (bash scripts/device-bundle.sh builds it; scripts/test.sh --slow does)",
    );
    None
}

/// A copy of the bundle in a fresh temporary folder (as `<tmp>/b`), so that nothing of the
/// checkout is within reach of its rpaths.
fn copy_of(bundle: &Path) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().canonicalize().unwrap().join("b");
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(bundle)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a {}", bundle.display());
    (tmp, copy)
}

/// The library name of a path or soname: `libucp.so.0` for `/x/libucp.so.0`.
fn file_name(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn is_c_runtime(name: &str) -> bool {
    C_RUNTIME.iter().any(|c| file_name(name).starts_with(c))
}

/// A path with its `..` resolved (`$ORIGIN/../lib` gives `b/bin/../lib/...`).
fn real(p: &str) -> String {
    std::fs::canonicalize(p).map_or_else(|_| p.to_string(), |r| r.to_string_lossy().to_string())
}

/// Whether a file starts like an ELF object.
fn is_elf(p: &Path) -> bool {
    std::fs::read(p).is_ok_and(|b| b.starts_with(b"\x7fELF"))
}

/// Every ELF file of the bundle at `dir`.
fn elves(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["bin", "tests", "lib", "lib/ucx"] {
        let Ok(rd) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in rd.flatten() {
            if e.path().is_file() && is_elf(&e.path()) {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// What `ldd` resolves outside `inside` for `file`, in an empty environment, other than the C
/// runtime; the driver's libraries may be missing, nothing else.
fn outside_libraries(file: &Path, inside: &Path) -> Vec<String> {
    let out = Command::new("env")
        .args(["-i", "PATH=/usr/bin:/bin", "ldd"])
        .arg(file)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert!(out.status.success(), "ldd {}: {out:?}", file.display());
    let inside = inside.to_string_lossy();
    let mut bad = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((name, path)) = line.trim().split_once(" => ") else {
            continue; // the vdso and the loader itself
        };
        let path = path.split(" (").next().unwrap_or(path);
        if is_c_runtime(name) {
            continue;
        }
        if path == "not found" {
            if !DRIVER.contains(&name) {
                bad.push(format!("{}: {name} not found", file.display()));
            }
        } else if !real(path).starts_with(inside.as_ref()) {
            bad.push(format!("{}: {name} => {path}", file.display()));
        }
    }
    bad
}

#[test]
#[ignore = "slow group: checks the GPU bundle .device/, which scripts/test.sh --slow builds (minutes)"]
fn every_file_of_the_bundle_loads_nothing_from_outside_it_but_the_c_runtime() {
    let test = "every_file_of_the_bundle_loads_nothing_from_outside_it_but_the_c_runtime";
    let Some(bundle) = bundle(test) else {
        return;
    };
    let (_tmp, copy) = copy_of(&bundle);
    let files = elves(&copy);
    let names: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(&copy).unwrap().to_string_lossy().to_string())
        .collect();
    for must in [
        "bin/kvxfer",
        "tests/lib",
        "tests/xfer_mem",
        "lib/libucp.so.0",
        "lib/libfabric.so.1",
        "lib/ucx/libuct_cuda.so.0",
    ] {
        assert!(names.iter().any(|n| n == must), "{must} not in {names:?}");
    }
    let bad: Vec<String> = files
        .iter()
        .flat_map(|f| outside_libraries(f, &copy))
        .collect();
    assert!(
        bad.is_empty(),
        "loaded from outside the bundle:\n{}",
        bad.join("\n")
    );
}

/// The objects the loader initialised for one kvxfer run from `copy` in an empty environment
/// (`LD_DEBUG=libs`), after checking that the run succeeded.
fn loaded_by(copy: &Path, args: &[&str]) -> Vec<String> {
    let out = Command::new("env")
        .args([
            "-i",
            "PATH=/usr/bin:/bin",
            "UCX_TLS=tcp",
            "UCX_NET_DEVICES=lo",
            "LD_DEBUG=libs",
        ])
        .arg(copy.join("bin/kvxfer"))
        .args(args)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    common::initialised_libraries(args, &out)
        .iter()
        .map(|p| real(p))
        .collect()
}

#[test]
#[ignore = "slow group: checks the GPU bundle .device/, which scripts/test.sh --slow builds (minutes)"]
fn a_run_of_the_bundle_initialises_only_its_own_libraries_and_the_c_runtime() {
    let test = "a_run_of_the_bundle_initialises_only_its_own_libraries_and_the_c_runtime";
    let Some(bundle) = bundle(test) else {
        return;
    };
    let _one = CHECK.lock().unwrap_or_else(|p| p.into_inner());
    let (_tmp, copy) = copy_of(&bundle);
    let inside = copy.to_string_lossy().to_string();
    let ucx = loaded_by(
        &copy,
        &["xfer", "-B", "ucx", "-s", "1M", "-I", "2", "-w", "1"],
    );
    let fabric = loaded_by(
        &copy,
        &[
            "xfer",
            "--provider",
            "tcp",
            "--domain",
            "lo",
            "-s",
            "1M",
            "-I",
            "2",
            "-w",
            "1",
        ],
    );
    let all: Vec<&String> = ucx.iter().chain(&fabric).collect();
    let outside: Vec<&&String> = all
        .iter()
        .filter(|p| !p.starts_with(&inside) && !is_c_runtime(p))
        .collect();
    assert!(outside.is_empty(), "initialised from outside: {outside:?}");
    // UCX's modules are dlopened: the bundle's, found beside its libucs.
    for (what, list, must) in [
        ("ucx", &ucx, "lib/libucp.so.0"),
        ("ucx", &ucx, "lib/ucx/libuct_cma.so.0"),
        ("libfabric", &fabric, "lib/libfabric.so.1"),
    ] {
        let want = copy.join(must).to_string_lossy().to_string();
        assert!(list.contains(&want), "{what}: {want} not among {list:?}");
    }
}

#[test]
#[ignore = "slow group: checks the GPU bundle .device/, which scripts/test.sh --slow builds (minutes)"]
fn the_bundled_device_tests_run_from_a_copy_and_skip_their_gpu_tests_by_name() {
    let test = "the_bundled_device_tests_run_from_a_copy_and_skip_their_gpu_tests_by_name";
    let Some(bundle) = bundle(test) else {
        return;
    };
    if gpu_node_present(test) {
        return;
    }
    let _one = CHECK.lock().unwrap_or_else(|p| p.into_inner());
    let (_tmp, copy) = copy_of(&bundle);
    let kvxfer = format!("CARGO_BIN_EXE_kvxfer={}", copy.join("bin/kvxfer").display());
    for (exe, filter, skipped) in [
        (
            "lib",
            "mem::cuda",
            "SKIPPED mem::cuda::tests::device_round_trip_through_staging: no CUDA device",
        ),
        (
            "xfer_mem",
            "",
            "SKIPPED ucx_vram_to_vram_with_verify_on_a_gpu: no GPU",
        ),
    ] {
        let out = Command::new("env")
            .args(["-i", "PATH=/usr/bin:/bin", &kvxfer])
            .arg(copy.join("tests").join(exe))
            .args([filter, "--nocapture"].iter().filter(|a| !a.is_empty()))
            .current_dir("/")
            .timeout(Duration::from_secs(300))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{exe}: {text}");
        assert!(text.contains(skipped), "{exe}: {text}");
        let passed = text
            .lines()
            .find_map(|l| l.strip_prefix("test result: ok. "))
            .and_then(|l| l.split(' ').next())
            .and_then(|n| n.parse::<u32>().ok());
        assert!(passed.is_some_and(|n| n >= 2), "{exe}: {text}");
    }
}

/// Prints `test`'s SKIPPED line and returns true where a GPU device node is present (then the
/// GPU rows and tests would run instead of skipping).
fn gpu_node_present(test: &str) -> bool {
    let present = ["/dev/nvidia0", "/dev/nvidiactl"]
        .iter()
        .any(|p| Path::new(p).exists());
    if present {
        common::skip(test, "a GPU device node is present: the GPU rows would run");
    }
    present
}

/// Runs the copy's check.sh into `out` from an empty environment plus `env`; returns the exit
/// code, results.json, summary.md and the seconds it took.
fn check(copy: &Path, out: &Path, env: &[String]) -> (i32, Value, String, f64) {
    let t0 = Instant::now();
    let run = Command::new("env")
        .args(["-i", "PATH=/usr/bin:/bin"])
        .args(env)
        .arg("bash")
        .arg(copy.join("check.sh"))
        .arg(out)
        .current_dir("/")
        .timeout(Duration::from_secs(480))
        .output()
        .unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&run.stderr).to_string();
    let code = run
        .status
        .code()
        .unwrap_or_else(|| panic!("check.sh killed: {stderr}"));
    let results = std::fs::read_to_string(out.join("results.json"))
        .unwrap_or_else(|e| panic!("results.json ({e}): {stderr}"));
    let results: Value = serde_json::from_str(&results)
        .unwrap_or_else(|e| panic!("results.json is not JSON ({e}): {results}"));
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    (code, results, summary, secs)
}

/// The rows of a results.json.
fn rows(results: &Value) -> &Vec<Value> {
    results["rows"].as_array().expect("rows")
}

/// The names of the rows check.sh --list prints, with their limits in seconds.
fn listed_rows(script: &Path) -> (Vec<(String, bool, u64)>, u64) {
    let out = Command::new("bash")
        .arg(script)
        .arg("--list")
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut rows = Vec::new();
    let mut sum = None;
    for l in text.lines().skip(1) {
        if let Some(s) = l.strip_prefix("sum of the limits, the GPU probe's 10s included: ") {
            sum = s.trim_end_matches('s').parse().ok();
            continue;
        }
        let f: Vec<&str> = l.split_whitespace().collect();
        let limit = f[2].trim_end_matches('s').parse().unwrap();
        rows.push((f[0].to_string(), f[1] == "gpu", limit));
    }
    (rows, sum.expect("a sum line"))
}

#[test]
#[ignore = "slow group: checks the GPU bundle .device/, which scripts/test.sh --slow builds (minutes)"]
fn check_without_a_gpu_passes_the_dram_rows_and_skips_each_gpu_row_saying_why() {
    let test = "check_without_a_gpu_passes_the_dram_rows_and_skips_each_gpu_row_saying_why";
    let Some(bundle) = bundle(test) else {
        return;
    };
    if gpu_node_present(test) {
        return;
    }
    let _one = CHECK.lock().unwrap_or_else(|p| p.into_inner());
    let (tmp, copy) = copy_of(&bundle);
    let out = tmp.path().join("out");
    let (code, results, summary, _) = check(&copy, &out, &light());
    assert_eq!(code, 1, "exit status 1: no GPU\n{summary}");
    assert_eq!(results["exit_status"], 1);
    assert_eq!(results["gpu"], false);
    let (listed, _) = listed_rows(&copy.join("check.sh"));
    let rows = rows(&results);
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    let want: Vec<&str> = listed.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(names, want);
    for r in rows {
        let name = r["name"].as_str().unwrap();
        if r["needs_gpu"] == true {
            assert_eq!(r["status"], "skipped", "{r}");
            let err = r["error"].as_str().unwrap();
            assert!(
                err.starts_with("skipped: no GPU: kvxfer: no usable GPU: "),
                "{r}"
            );
            assert!(summary.contains(&format!("| {name} | skipped | skipped: no GPU")));
        } else {
            assert!(DRAM_ROWS.contains(&name), "{name}");
            assert_eq!(r["status"], "pass", "{r}\n{summary}");
            assert!(r["figure"].as_str().unwrap().contains("GB/s"), "{r}");
            assert!(r["seconds"].as_f64().unwrap() > 0.0, "{r}");
            assert!(
                summary.contains(&format!("| {name} | pass | ")),
                "{summary}"
            );
        }
    }
    for key in [
        "ucx_dram_gbps_55M",
        "ucx_dram_gbps_224M",
        "ucx_dram_gbps_672M",
        "fi_dram_gbps_672M",
    ] {
        let v = results["figures"][key].as_f64();
        assert!(v.is_some_and(|v| v > 0.0), "{key}: {}", results["figures"]);
    }
    assert!(summary.contains("exit status 1: no GPU"), "{summary}");
    // The three files, and in the archive UCX's document says it ran the bundle's libucp.
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    files.sort();
    assert_eq!(files, ["results.json", "runs.tar.gz", "summary.md"]);
    let st = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(out.join("runs.tar.gz"))
        .arg("-C")
        .arg(tmp.path())
        .status()
        .unwrap();
    assert!(st.success());
    let doc = common::read_doc(&tmp.path().join("runs/ucx-dram-672M.json"));
    let lib = real(&doc.environment.ucx_library.clone().unwrap_or_default());
    assert!(
        lib.starts_with(&*copy.join("lib").to_string_lossy()),
        "UCX ran from {lib}"
    );
    assert!(doc.results[0].extra["verified_bytes"].as_u64().unwrap() > 0);
}

#[test]
#[ignore = "slow group: checks the GPU bundle .device/, which scripts/test.sh --slow builds (minutes)"]
fn hung_gpu_rows_are_stopped_at_their_limits_and_named() {
    let test = "hung_gpu_rows_are_stopped_at_their_limits_and_named";
    let Some(bundle) = bundle(test) else {
        return;
    };
    let _one = CHECK.lock().unwrap_or_else(|p| p.into_inner());
    let (tmp, copy) = copy_of(&bundle);
    let out = tmp.path().join("out");
    let limit = 3u64;
    let hook = format!("KVXFER_CHECK_TIMEOUT_S={limit}");
    let mut env = light();
    env.extend(["KVXFER_CHECK_HANG=gpu".to_string(), hook]);
    let (code, results, summary, secs) = check(&copy, &out, &env);
    assert_eq!(code, 3, "exit status 3: a row timed out\n{summary}");
    // The worst case is the sum of the limits (each hung row's shortened to `limit`).
    let (listed, _) = listed_rows(&copy.join("check.sh"));
    let bound: u64 = 10
        + listed
            .iter()
            .map(|r| if r.1 { limit } else { r.2 * SCALE })
            .sum::<u64>();
    assert!(secs < bound as f64 + 10.0, "{secs} s against {bound} s");
    let verdict = results["verdict"].as_str().unwrap();
    for r in rows(&results) {
        let name = r["name"].as_str().unwrap();
        if r["needs_gpu"] == true {
            assert_eq!(r["status"], "timeout", "{r}");
            assert_eq!(r["limit_s"], limit, "{r}");
            assert!(r["seconds"].as_f64().unwrap() < limit as f64 + 3.0, "{r}");
            assert!(verdict.contains(&format!("{name} (timeout)")), "{verdict}");
            assert!(
                summary.contains(&format!("| {name} | timeout | timed out")),
                "{summary}"
            );
        } else {
            assert_eq!(r["status"], "pass", "{r}");
            assert!(!verdict.contains(name), "{verdict}");
        }
    }
}

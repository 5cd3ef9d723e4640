//! `kvxfer doctor` on fake procfs/sysfs trees (KVXFER_PROC_ROOT, KVXFER_SYSFS_ROOT), against a
//! real etcd and a real kvxfer on its control port; and the doctor inside `kvxfer run`.

mod common;
mod etcd_support;

use std::path::{Path, PathBuf};
use std::process::{Command as Std, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, kvxfer, kvxfer_path};
use etcd_support::EtcdServer;
use kvxfer::doctor::fake::FakeProc;
use kvxfer::topo::fake::FakeSysfs;
use serde_json::Value;

/// A node without EFA or GPU whose settings are the loopback's: healthy fake trees, lo alone.
fn loopback_node(dir: &Path) -> (PathBuf, PathBuf) {
    let proc = FakeProc::new(&dir.join("proc")).unwrap();
    let sys = FakeSysfs::new(&dir.join("sys")).unwrap();
    sys.virtual_net("lo").unwrap();
    std::fs::write(sys.root().join("class/net/lo/mtu"), "65536\n").unwrap();
    (proc.root().to_path_buf(), sys.root().to_path_buf())
}

/// Runs `kvxfer doctor ARGS --json F` on the trees; returns (exit code, table, findings).
fn doctor(dir: &Path, roots: &(PathBuf, PathBuf), args: &[&str]) -> (i32, String, Value) {
    let json = dir.join(format!("doctor-{}.json", free_port()));
    let o = kvxfer()
        .env("KVXFER_PROC_ROOT", &roots.0)
        .env("KVXFER_SYSFS_ROOT", &roots.1)
        .arg("doctor")
        .args(args)
        .arg("--json")
        .arg(&json)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    let v: Value = serde_json::from_slice(&std::fs::read(&json).unwrap_or_default())
        .unwrap_or_else(|e| {
            panic!(
                "no JSON report ({e}): {}",
                String::from_utf8_lossy(&o.stderr)
            )
        });
    (o.status.code().unwrap_or(-1), table, v)
}

/// The finding of `check` (the first, for checks with several rows).
fn finding<'a>(v: &'a Value, check: &str) -> &'a Value {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == check)
        .unwrap_or_else(|| panic!("no {check} in {v:#}"))
}

#[test]
fn provider_tcp_on_the_loopback_passes_and_efa_and_gpu_say_why_they_cannot_apply() {
    let dir = tempfile::tempdir().unwrap();
    let roots = loopback_node(dir.path());
    let (code, table, v) = doctor(dir.path(), &roots, &["--provider", "tcp"]);
    assert_eq!(code, 0, "{table}");
    assert!(table.starts_with("status check"), "{table}");
    for f in v["findings"].as_array().unwrap() {
        let check = f["check"].as_str().unwrap();
        if check.starts_with("efa.") || check.starts_with("gpu.") {
            assert_eq!(f["status"], "skip", "{f:#}");
            assert!(f["evidence"].as_str().unwrap().starts_with("no "), "{f:#}");
        }
        assert_ne!(f["status"], "fail", "{f:#}");
    }
    assert_eq!(finding(&v, "libfabric.efa")["status"], "skip");
    for (check, read) in [
        ("efa.devices", "class/infiniband"),
        ("gpu.driver", "bus/pci/devices"),
    ] {
        let ev = finding(&v, check)["evidence"].as_str().unwrap().to_string();
        assert!(
            ev.contains(&roots.1.join(read).display().to_string()),
            "{ev}"
        );
    }
    let mtu = finding(&v, "tcp.mtu");
    assert_eq!(mtu["status"], "ok");
    assert!(mtu["evidence"]
        .as_str()
        .unwrap()
        .starts_with("lo (one host, no --peer): MTU 65536"));
    assert!(table.contains("skip   efa.devices "), "{table}");
}

#[test]
fn a_real_etcd_is_healthy_and_once_stopped_fails_with_the_plans_start_command() {
    let name = "a_real_etcd_is_healthy_and_once_stopped_fails_with_the_plans_start_command";
    let Some(etcd) = EtcdServer::start(name) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let roots = loopback_node(dir.path());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let plan = root.join("plans/phase-low-level.json");
    let url = etcd.url.clone();
    let args = [
        "--etcd",
        &url,
        "--plan",
        plan.to_str().unwrap(),
        "--pattern",
        "pll-nixlbench-tcp-55m",
    ];
    let (_, table, v) = doctor(dir.path(), &roots, &args);
    let e = finding(&v, "etcd");
    assert_eq!(e["status"], "ok", "{table}");
    let ev = e["evidence"].as_str().unwrap();
    assert!(
        ev.starts_with("etcd 3.") && ev.contains(&format!("healthy at {url}")),
        "{ev}"
    );
    drop(etcd);
    let started = Instant::now();
    let (code, table, v) = doctor(dir.path(), &roots, &args);
    assert_eq!(code, 1, "{table}");
    let e = finding(&v, "etcd");
    assert_eq!(e["status"], "fail", "{table}");
    assert!(
        e["evidence"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{url}: ")),
        "{e:#}"
    );
    let action = e["action"].as_str().unwrap();
    assert!(
        action.contains(
            "docker run -d --name etcd-nixlbench --network host quay.io/coreos/etcd:v3.5.18 \
             /usr/local/bin/etcd --listen-client-urls http://0.0.0.0:2379"
        ),
        "the plan's own command: {action}"
    );
    assert_eq!(e["patterns"], serde_json::json!(["pll-nixlbench-tcp-55m"]));
    eprintln!(
        "doctor with etcd down: {:.2} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_kvxfer_on_the_peers_control_port_is_asked_its_version() {
    let _fabric = common::fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let roots = loopback_node(dir.path());
    let port = free_port();
    let mut target = Std::new(kvxfer_path())
        .args([
            "pingpong",
            "--provider",
            "tcp",
            "--sizes",
            "64",
            "--iterations",
            "10",
        ])
        .args(["--timeout", "30", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let peer = format!("127.0.0.1:{port}");
    let start = Instant::now();
    let v = loop {
        let (_, _, v) = doctor(dir.path(), &roots, &["--peer", &peer]);
        // Until the target listens, and while it sets up before its first accept, the query
        // is refused or unanswered.
        if finding(&v, "peer")["status"] == "ok" || start.elapsed() > Duration::from_secs(30) {
            break v;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let p = finding(&v, "peer");
    assert_eq!(p["status"], "ok", "{p:#}");
    let ev = p["evidence"].as_str().unwrap();
    let me = format!("kvxfer {} ", env!("CARGO_PKG_VERSION"));
    assert!(
        ev.starts_with(&format!("{peer}: {me}")) && ev.contains(&format!("here {me}")),
        "{ev}"
    );
    // The target answered and waits on for its initiator.
    assert!(target.try_wait().unwrap().is_none());
    let _ = target.kill();
    let _ = target.wait();
}

#[test]
fn a_silent_peer_and_a_silent_etcd_are_given_up_after_a_second() {
    // Bound, never accepting: the kernel completes each handshake and nobody answers.
    let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let etcd = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let roots = loopback_node(dir.path());
    let peer_at = peer.local_addr().unwrap().to_string();
    let etcd_at = format!("http://{}", etcd.local_addr().unwrap());
    let (code, table, v) = doctor(
        dir.path(),
        &roots,
        &["--peer", &peer_at, "--etcd", &etcd_at],
    );
    assert_eq!(code, 1, "etcd given and silent fails: {table}");
    let p = finding(&v, "peer");
    assert_eq!(p["status"], "warn", "{p:#}");
    assert!(
        p["evidence"]
            .as_str()
            .unwrap()
            .contains("answers no version query"),
        "{p:#}"
    );
    assert_eq!(finding(&v, "etcd")["status"], "fail");
    // Both waits run side by side, each bounded by a second: far below the 5 s a silent
    // connection may hold a kvxfer target, or the minutes of an unbounded HTTP wait.
    let secs = v["seconds"].as_f64().unwrap();
    assert!(secs < 5.0, "the doctor took {secs} s");
    eprintln!("doctor with a silent peer and etcd: {secs:.2} s");
}

/// `kvxfer run` of one pattern of the loopback plan on the trees: (success, stdout, stderr).
fn run_pattern(dir: &Path, roots: &(PathBuf, PathBuf), extra: &[&str]) -> (bool, String, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The doctor's findings are the subject, not the pattern's precision.
    let (plan, _) = common::loopback_plan(dir, |p| common::fixed_iterations(p, 5));
    let o = kvxfer()
        .env("KVXFER_PROC_ROOT", &roots.0)
        .env("KVXFER_SYSFS_ROOT", &roots.1)
        .args(["run", "--pattern", "pll-lo-kvxfer-xfer-tcp", "--plan"])
        .arg(&plan)
        .arg("--templates")
        .arg(root.join("templates"))
        .arg("--state")
        .arg(dir.join("state.json"))
        .args(extra)
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The pattern's result documents in `out`, as JSON.
fn results(out: &Path) -> Vec<Value> {
    let Ok(rd) = std::fs::read_dir(out) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("pll-lo-kvxfer-xfer-tcp.")
        })
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .collect()
}

#[test]
fn run_refuses_a_plan_whose_pattern_needs_a_failed_check_and_runs_it_with_no_doctor() {
    let _fabric = common::fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let roots = loopback_node(dir.path());
    // 1 MiB available: the pattern's two sides hold 2 x 1 MiB.
    FakeProc::new(&roots.0)
        .unwrap()
        .write("meminfo", "MemTotal: 4096 kB\nMemAvailable: 1024 kB\n")
        .unwrap();
    let out = dir.path().join("results");
    let (ok, stdout, stderr) = run_pattern(dir.path(), &roots, &[]);
    assert!(!ok && stdout.is_empty(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("fail   memory.available"),
        "the table first: {stderr}"
    );
    assert!(
        stderr.contains(
            "the doctor failed check(s) the plan's patterns need: memory.available \
             (pll-lo-kvxfer-xfer-tcp)"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("--no-doctor"), "{stderr}");
    assert!(!stderr.contains("[1/1]"), "nothing measured: {stderr}");
    assert!(results(&out).is_empty());

    let (ok, stdout, stderr) = run_pattern(dir.path(), &roots, &["--no-doctor"]);
    assert!(ok, "{stderr}");
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        summary["patterns"][0]["outcome"]["status"], "ok",
        "{summary:#}"
    );
    assert!(summary["doctor"].is_null());
    let docs = results(&out);
    assert!(!docs.is_empty());
    assert!(docs
        .iter()
        .all(|d| d["environment"].get("doctor").is_none()));
}

#[test]
fn each_result_of_a_run_carries_the_doctors_findings_that_concern_it() {
    let _fabric = common::fabric_lock();
    let dir = tempfile::tempdir().unwrap();
    let roots = loopback_node(dir.path());
    let (ok, stdout, stderr) = run_pattern(dir.path(), &roots, &[]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("kvxfer run: the doctor's checks of this node"),
        "{stderr}"
    );
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["doctor"]["fail"], 0, "{summary:#}");
    let docs = results(&dir.path().join("results"));
    assert!(!docs.is_empty());
    for d in &docs {
        let found = d["environment"]["doctor"].as_array().unwrap();
        let checks: Vec<&str> = found.iter().map(|f| f["check"].as_str().unwrap()).collect();
        for c in [
            "tcp.mtu",
            "tcp.slow_start_after_idle",
            "memory.available",
            "noise.load",
        ] {
            assert!(checks.contains(&c), "{c} in {checks:?}");
        }
        // What cannot apply here (EFA, GPU) stays out.
        assert!(found.iter().all(|f| f["status"] != "skip"), "{found:?}");
        assert!(!checks.iter().any(|c| c.starts_with("efa.")), "{checks:?}");
    }
}

//! Which devices carried the payload, on real devices the test makes: two network namespaces
//! joined by veth pairs (a namespace's lo and veth ends count only its own traffic, so the
//! verdicts do not depend on what else this machine runs). Needs root (`ip netns`); run under
//! `flock /tmp/kvxfer-netns.lock` beside other namespace tests.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use kvxfer::report::{ResultDoc, Status};
use serde_json::Value;

/// Two namespaces joined by veth pairs, removed when dropped. Pair k has its ends `A{k}` in
/// the first and `B{k}` in the second, on 10.`octet`.`net + k`.0/24 (.1 and .2).
struct Hosts {
    a: String,
    b: String,
    octet: u8,
    net: u8,
}

impl Hosts {
    /// `links` pairs named `ends` (the first namespace's name, the second's: the same name on
    /// both sides is allowed), or None (with a SKIPPED line) where namespaces cannot be made.
    fn up(test: &str, tag: &str, octet: u8, links: &[(&str, &str)]) -> Option<Hosts> {
        let pid = std::process::id();
        let h = Hosts {
            a: format!("kvp{tag}{}a", pid % 100_000),
            b: format!("kvp{tag}{}b", pid % 100_000),
            octet,
            net: (pid % 100) as u8 * 2,
        };
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        };
        if !ip(&["netns", "add", &h.a]) {
            skip(
                test,
                "cannot create network namespaces (needs root and ip netns)",
            );
            return None;
        }
        let mut ok = ip(&["netns", "add", &h.b]);
        for (k, (ea, eb)) in links.iter().enumerate() {
            let net = format!("10.{}.{}", h.octet, h.net + k as u8);
            ok =
                ok && ip(&[
                    "link", "add", ea, "netns", &h.a, "type", "veth", "peer", "name", eb, "netns",
                    &h.b,
                ]) && ip(&["-n", &h.a, "addr", "add", &format!("{net}.1/24"), "dev", ea])
                    && ip(&["-n", &h.b, "addr", "add", &format!("{net}.2/24"), "dev", eb])
                    && ip(&["-n", &h.a, "link", "set", ea, "up"])
                    && ip(&["-n", &h.b, "link", "set", eb, "up"]);
        }
        ok = ok
            && ip(&["-n", &h.a, "link", "set", "lo", "up"])
            && ip(&["-n", &h.b, "link", "set", "lo", "up"]);
        if !ok {
            skip(test, "cannot join namespaces by veth pairs (no NET_ADMIN?)");
            return None;
        }
        // A veth end is offered by libfabric's tcp provider only once it is running (carrier
        // up, a moment after `link set up`): a run started before that finds only lo.
        let running = |ns: &str, dev: &str| {
            Command::new("ip")
                .args(["-n", ns, "-o", "link", "show", "dev", dev])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("state UP"))
        };
        let all_up = || {
            links
                .iter()
                .all(|(ea, eb)| running(&h.a, ea) && running(&h.b, eb))
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !all_up() {
            assert!(
                std::time::Instant::now() < deadline,
                "{test}: veth pairs not running after 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(h)
    }

    /// Pair `k`'s address in the second namespace.
    fn b_addr(&self, k: u8) -> String {
        format!("10.{}.{}.2", self.octet, self.net + k)
    }

    /// kvxfer in namespace `ns` with `args`, `env` set (UCX_* cleared otherwise).
    fn kvxfer(&self, ns: &str, env: &[(&str, &str)], args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns])
            .arg(kvxfer_path())
            .args(args)
            .env_remove("UCX_TLS")
            .env_remove("UCX_NET_DEVICES")
            .env_remove("KVXFER_SYSFS_ROOT")
            .env("UCX_LOG_FILE", "stderr")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Runs the target (`target_args`, in `tns`, JSON in `dir/t.json`) in the background and the
/// initiator (`ini_args`, in `ins`, JSON in `dir/i.json`); (initiator, target) outputs.
fn pair_run(
    h: &Hosts,
    (tns, ins): (&str, &str),
    env: &[(&str, &str)],
    (target_args, ini_args): (&[&str], &[&str]),
    dir: &Path,
) -> (Output, Output) {
    let t = dir.join("t.json");
    let i = dir.join("i.json");
    let target = h
        .kvxfer(tns, env, target_args)
        .args(["--json", t.to_str().unwrap()])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let ini = h
        .kvxfer(ins, env, ini_args)
        .args(["--json", i.to_str().unwrap()])
        .output()
        .unwrap();
    (ini, target.wait_with_output().unwrap())
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn path(doc: &ResultDoc) -> &Value {
    doc.results[0].path.as_ref().expect("a path")
}

/// The carriers of side `k` of a result's path.
fn carriers(doc: &ResultDoc, k: usize) -> Vec<String> {
    path(doc)["sides"][k]["carriers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

fn ratio(doc: &ResultDoc, k: usize) -> f64 {
    path(doc)["sides"][k]["bytes_ratio"].as_f64().unwrap()
}

#[test]
fn a_veth_pair_carries_tcp_between_namespaces_and_lo_inside_one() {
    // The fabric to this test alone: its veths are devices of this host, and other tests
    // read this host's counters to judge their paths.
    let _turn = fabric_lock();
    let test = "a_veth_pair_carries_tcp_between_namespaces_and_lo_inside_one";
    let Some(h) = Hosts::up(test, "v", 231, &[("kva0", "kvb0")]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let common = [
        "xfer",
        "-s",
        "224M",
        "-I",
        "5",
        "-w",
        "1",
        "--timeout",
        "60",
    ];
    let listen = format!("{}:47590", h.b_addr(0));
    let target: Vec<&str> = common
        .iter()
        .copied()
        .chain(["--listen", &listen, "--expect-path", "kvb0"])
        .collect();
    let ini: Vec<&str> = common
        .iter()
        .copied()
        .chain(["--peer", &listen, "--expect-path", "kva0"])
        .collect();
    let (i, t) = pair_run(&h, (&h.b, &h.a), &[], (&target, &ini), dir.path());
    assert!(
        i.status.success() && t.status.success(),
        "initiator: {}\ntarget: {}",
        text(&i),
        text(&t)
    );
    let doc = read_doc(&dir.path().join("i.json"));
    assert_eq!(doc.status, Status::Complete);
    // Each side names its own end of the pair, in the initiator's result.
    assert_eq!(carriers(&doc, 0), ["kva0"]);
    assert_eq!(path(&doc)["sides"][1]["role"], "target");
    assert_eq!(carriers(&doc, 1), ["kvb0"]);
    for k in 0..2 {
        let r = ratio(&doc, k);
        assert!((1.0..=1.15).contains(&r), "side {k}: ratio {r}");
    }
    let verdict = path(&doc)["verdict"].as_str().unwrap().to_string();
    assert!(verdict.starts_with("kva0 carried 1.0"), "{verdict}");
    assert!(verdict.contains("; target: kvb0 1.0"), "{verdict}");
    let tdoc = read_doc(&dir.path().join("t.json"));
    assert_eq!(carriers(&tdoc, 0), ["kvb0"]);
    println!("between namespaces: {verdict}");
    // Both sides inside one namespace: lo.
    let json = dir.path().join("lo.json");
    let o = h
        .kvxfer(&h.a, &[], &common)
        .args(["--expect-path", "local", "--json", json.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let doc = read_doc(&json);
    assert_eq!(carriers(&doc, 0), ["lo"]);
    assert_eq!(carriers(&doc, 1), ["lo"]);
    let r = ratio(&doc, 0);
    assert!((1.0..=1.15).contains(&r), "lo: ratio {r}");
    assert_eq!(path(&doc)["kind"], "local");
    println!("inside one namespace: {}", path(&doc)["verdict"]);
}

#[test]
fn shared_memory_and_ucx_cma_cross_no_network_device() {
    // The fabric to this test alone: its veths are devices of this host, and other tests
    // read this host's counters to judge their paths.
    let _turn = fabric_lock();
    let test = "shared_memory_and_ucx_cma_cross_no_network_device";
    let Some(h) = Hosts::up(test, "s", 232, &[("kva0", "kvb0")]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // libfabric shm, both sides in one process.
    let json = dir.path().join("shm.json");
    let o = h
        .kvxfer(
            &h.a,
            &[],
            &["xfer", "--provider", "shm", "-s", "64M", "-I", "5"],
        )
        .args(["--expect-path", "network", "--json", json.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.lines().last().unwrap().starts_with(
            "kvxfer: error: wrong path: no network device carried the payload (it moved through \
             shared memory or a same-host copy), not the requested network"
        ),
        "{err}"
    );
    assert_wrong_path_kept(&read_doc(&json), 5);
    // A UCX put between two processes on one host over tcp and cma.
    let env = [("UCX_TLS", "tcp,cma")];
    let common = [
        "xfer",
        "--backend",
        "ucx",
        "-s",
        "64M",
        "-I",
        "5",
        "--timeout",
        "60",
    ];
    let listen = "127.0.0.1:47590";
    let target: Vec<&str> = common
        .iter()
        .copied()
        .chain(["--listen", listen, "--expect-path", "network"])
        .collect();
    let ini: Vec<&str> = common
        .iter()
        .copied()
        .chain(["--peer", listen, "--expect-path", "network"])
        .collect();
    let (i, t) = pair_run(&h, (&h.a, &h.a), &env, (&target, &ini), dir.path());
    assert_eq!(i.status.code(), Some(1), "{}", text(&i));
    assert_eq!(t.status.code(), Some(1), "{}", text(&t));
    let doc = read_doc(&dir.path().join("i.json"));
    assert_wrong_path_kept(&doc, 5);
    assert_eq!(path(&doc)["sides"][1]["kind"], "none");
    let transports = doc.environment.extra["ucx_transports"].to_string();
    assert!(transports.contains("cma"), "{transports}");
    assert_eq!(
        read_doc(&dir.path().join("t.json")).status,
        Status::WrongPath
    );
    println!("shm and UCX tcp,cma: {}", path(&doc)["verdict"]);
}

/// A document whose payload crossed no network device: status wrong-path, its measurement
/// whole.
fn assert_wrong_path_kept(doc: &ResultDoc, iterations: u64) {
    assert_eq!(doc.status, Status::WrongPath);
    assert_eq!(path(doc)["kind"], "none");
    assert_eq!(path(doc)["sides"][0]["carriers"], Value::Array(vec![]));
    let r = &doc.results[0];
    assert_eq!(r.iterations, iterations);
    assert!(r.bandwidth_gbps.is_some() && r.histogram.is_some() && r.latency_us.is_some());
}

#[test]
fn two_veth_pairs_as_two_rails_carry_half_each() {
    // The fabric to this test alone: its veths are devices of this host, and other tests
    // read this host's counters to judge their paths.
    let _turn = fabric_lock();
    let test = "two_veth_pairs_as_two_rails_carry_half_each";
    let links = [("kvr0", "kvr0"), ("kvr1", "kvr1")];
    let Some(h) = Hosts::up(test, "r", 233, &links) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("{}:47590", h.b_addr(0));
    let common = [
        "xfer",
        "-s",
        "64M",
        "-I",
        "10",
        "-w",
        "1",
        "--rails",
        "kvr0,kvr1",
    ];
    let target: Vec<&str> = common
        .iter()
        .copied()
        .chain(["--listen", &listen])
        .collect();
    let ini: Vec<&str> = common
        .iter()
        .copied()
        .chain(["--peer", &listen, "--expect-path", "kvr0,kvr1"])
        .collect();
    let (i, t) = pair_run(&h, (&h.b, &h.a), &[], (&target, &ini), dir.path());
    assert!(
        i.status.success() && t.status.success(),
        "initiator: {}\ntarget: {}",
        text(&i),
        text(&t)
    );
    let doc = read_doc(&dir.path().join("i.json"));
    for k in 0..2 {
        let side = &path(&doc)["sides"][k];
        assert_eq!(carriers(&doc, k), ["kvr0", "kvr1"], "{side}");
        for d in side["devices"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["carried"] == true)
        {
            let share = d["share"].as_f64().unwrap();
            assert!((share - 0.5).abs() <= 0.025, "side {k}: {d}");
        }
    }
    // Each rail left from its own interface's address.
    let rails = doc.results[0].extra["rails"].as_array().unwrap();
    let via: Vec<&str> = rails.iter().map(|r| r["via"].as_str().unwrap()).collect();
    assert_eq!(
        via,
        [
            format!("kvr0 (10.233.{}.1)", h.net),
            format!("kvr1 (10.233.{}.1)", h.net + 1)
        ]
    );
    println!("two rails: {}", path(&doc)["verdict"]);
}

#[test]
fn the_cpu_cost_of_672m_over_tcp_and_over_shm() {
    // The fabric to this test alone: its veths are devices of this host, and other tests
    // read this host's counters to judge their paths.
    let _turn = fabric_lock();
    let test = "the_cpu_cost_of_672m_over_tcp_and_over_shm";
    let Some(h) = Hosts::up(test, "c", 234, &[("kva0", "kvb0")]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut line = Vec::new();
    for provider in ["tcp", "shm"] {
        let json = dir.path().join(format!("{provider}.json"));
        let o = h
            .kvxfer(
                &h.a,
                &[],
                &[
                    "xfer",
                    "--provider",
                    provider,
                    "-s",
                    "672M",
                    "-I",
                    "3",
                    "-w",
                    "1",
                ],
            )
            .args(["--json", json.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let doc = read_doc(&json);
        let cpu = &path(&doc)["sides"][0]["cpu"];
        let per_gb = cpu["cpu_s_per_gb"].as_f64().unwrap();
        let busy = cpu["host_busy_fraction"].as_f64().unwrap();
        assert!(per_gb > 0.0 && (0.0..=1.0).contains(&busy), "{cpu}");
        assert!(cpu["user_s"].as_f64().unwrap() + cpu["system_s"].as_f64().unwrap() > 0.0);
        line.push(format!(
            "{provider}: {per_gb:.3} CPU s/GB (user {:.3} s, system {:.3} s), {:.2} GB/s, host {:.0}% busy",
            cpu["user_s"].as_f64().unwrap(),
            cpu["system_s"].as_f64().unwrap(),
            doc.results[0].bandwidth_gbps.unwrap(),
            busy * 100.0
        ));
    }
    println!("672M, both sides in one process: {}", line.join("; "));
}

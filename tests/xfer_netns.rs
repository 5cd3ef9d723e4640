//! `kvxfer xfer --etcd` across network namespaces (scripts/netns-hosts.sh): hosts with their
//! own addresses on one bridge, a real etcd server on the bridge's address, the target in one
//! namespace and initiators in others over libfabric's tcp provider. Needs root (ip netns).

mod common;
mod etcd_support;

use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::Duration;

use etcd_support::{all_succeeded, assert_merged, assert_names_dead, stderr, GroupRun, RankArgs};
use kvxfer::report::Status;

/// Namespaces up for a test, down when dropped.
struct Hosts {
    n: usize,
    prefix: String,
    net: String,
}

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/netns-hosts.sh")
}

impl Hosts {
    /// `n` hosts named for this test (`tag`) on 10.`octet`.X.0/24 (a subnet of its own, as
    /// tests run at once), or None (with a SKIPPED line) without `ip netns` rights.
    fn up(test: &str, tag: &str, octet: u8, n: usize) -> Option<Hosts> {
        let probe = format!("kvxprobe{tag}{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &probe])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            common::skip(
                test,
                "cannot create network namespaces (needs root and ip netns)",
            );
            return None;
        }
        let _ = Command::new("ip").args(["netns", "del", &probe]).output();
        let pid = std::process::id();
        let hosts = Hosts {
            n,
            prefix: format!("k{tag}{}h", pid % 10000),
            net: format!("10.{octet}.{}", pid % 250),
        };
        let o = hosts.script(&["up", &n.to_string(), &hosts.prefix]);
        if !o.status.success() {
            // Namespaces but no bridges or veth pairs (a container without NET_ADMIN).
            let why = format!("scripts/netns-hosts.sh up failed: {}", stderr(&o).trim());
            common::skip(test, &why);
            return None;
        }
        Some(hosts)
    }

    fn script(&self, args: &[&str]) -> Output {
        Command::new("bash")
            .arg(script())
            .args(args)
            .env("KVX_NET", &self.net)
            .output()
            .unwrap()
    }

    /// Host `k`'s namespace (1-based).
    fn ns(&self, k: usize) -> String {
        format!("{}{k}", self.prefix)
    }

    /// Host `k`'s address.
    fn addr(&self, k: usize) -> String {
        format!("{}.{k}", self.net)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let _ = self.script(&["down", &self.n.to_string(), &self.prefix]);
    }
}

/// Brings up `n` hosts (see [`Hosts::up`]) and etcd on their bridge's address for `group`.
fn hosts_and_etcd(
    test: &str,
    tag: &str,
    octet: u8,
    n: usize,
    group: &'static str,
) -> Option<(Hosts, GroupRun)> {
    let hosts = Hosts::up(test, tag, octet, n)?;
    let run = GroupRun::start_on(test, &format!("{}.254", hosts.net), group)?;
    Some((hosts, run))
}

/// Starts every rank in its host's namespace (`place[r]` = host of rank r).
fn spawn_all(hosts: &Hosts, run: &GroupRun, place: &[usize], args: &RankArgs) -> Vec<Child> {
    let world = place.len();
    place
        .iter()
        .enumerate()
        .map(|(r, &k)| {
            let ns = hosts.ns(k);
            let prefix = ["ip", "netns", "exec", ns.as_str()];
            run.spawn(&prefix, r, world, args)
        })
        .collect()
}

#[test]
fn four_initiators_in_three_namespaces_into_a_target_in_a_fourth() {
    let test = "four_initiators_in_three_namespaces_into_a_target_in_a_fourth";
    let Some((hosts, run)) = hosts_and_etcd(test, "m", 204, 4, "hosts") else {
        return;
    };
    // Rank 0 (the target) on host 1; ranks 1 and 2 on host 2, rank 3 on host 3, rank 4 on 4.
    let place = [1, 2, 2, 3, 4];
    let args = RankArgs::new("2M", 1, 5).with(&["--timeout", "60"]);
    let outs = all_succeeded(spawn_all(&hosts, &run, &place, &args));
    let target = stderr(&outs[0]);
    assert!(
        target.contains(&format!("target of 4 worker(s) on {}:", hosts.addr(1))),
        "{target}"
    );
    let merged = run.doc(0);
    assert_merged(&merged, 4, 1, 2 << 20, 5);
    // Each initiator ran from its own host's address, over that host's interface.
    let ranks = merged.results[0].extra["ranks"].as_array().unwrap();
    for (k, e) in ranks.iter().enumerate() {
        let host = e["host"].as_str().unwrap();
        let want = format!(" {} ", hosts.addr(place[k + 1]));
        assert!(host.contains(&want), "rank {}: {host}", k + 1);
    }
    for (r, host) in place.iter().enumerate().skip(1) {
        let own = run.doc(r);
        assert_eq!(own.status, Status::Complete);
        let domain = own.environment.domain.clone().unwrap_or_default();
        assert!(
            domain.starts_with(&format!("h{host}-eth")),
            "rank {r}: {domain}"
        );
    }
    assert_eq!(run.keys_left(), Vec::<String>::new());
}

#[test]
fn a_host_cut_off_mid_run_is_named_and_the_others_end_with_what_they_measured() {
    let test = "a_host_cut_off_mid_run_is_named_and_the_others_end_with_what_they_measured";
    let Some((hosts, run)) = hosts_and_etcd(test, "c", 205, 3, "cut") else {
        return;
    };
    let place = [1, 2, 3];
    let args = RankArgs::new("1M", 1, 100_000).with(&["--timeout", "15", "--etcd-ttl", "2"]);
    let children = spawn_all(&hosts, &run, &place, &args);
    // Host 3 (rank 2) loses its link: no fabric, no control connection, no etcd.
    let link_down = |_: &mut Child| {
        let o = hosts.script(&["link", &hosts.ns(3), "down"]);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    let after = run.fault_mid_run(children, 2, link_down);
    let (took, cut_at) = (after.took, after.at);
    assert!(took < Duration::from_secs(12), "survivors took {took:?}");
    for (r, o) in &after.survivors {
        assert_names_dead(*r, o, 2);
    }
    let merged = run.doc(0);
    assert_eq!(merged.status, Status::Partial);
    assert!(merged.results[0].iterations > 0);
    let ranks = merged.results[0].extra["ranks"].as_array().unwrap();
    let status: Vec<&str> = ranks
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(status, ["partial", "lost"]);
    // The cut-off rank ends too, well before its --timeout on the fabric: etcd stops
    // answering it (one call's 5 s), and it keeps what it measured.
    let cut = after.victim.wait_with_output().unwrap();
    let cut_took = cut_at.elapsed();
    let e = stderr(&cut);
    assert!(!cut.status.success(), "{e}");
    let last = e.lines().last().unwrap_or_default();
    assert!(
        last.contains(&format!(
            "rank 2 is cut off: etcd at {} stopped answering mid-run",
            run.etcd.url
        )) && last.contains("with status partial"),
        "{e}"
    );
    println!("the cut-off rank said: {last}");
    assert!(
        cut_took < Duration::from_secs(10),
        "the cut-off rank took {cut_took:?}"
    );
    let own = run.doc(2);
    assert_eq!(own.status, Status::Partial);
    assert!(own.results[0].iterations > 0);
    println!(
        "survivors ended {took:.1?} after the link went down, the cut-off rank {cut_took:.1?}"
    );
}

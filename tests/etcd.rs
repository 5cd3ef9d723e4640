//! The etcd group layer against a real etcd server: ranks claimed atomically, barriers,
//! fingerprints compared across ranks, a full run refused, a dead rank named, keys removed.

mod common;
mod etcd_support;

use std::time::{Duration, Instant};

use etcd_support::EtcdServer;
use kvxfer::bootstrap::etcd::{Etcd, EtcdError};
use kvxfer::bootstrap::group::{self, Group, GroupError, GroupSpec};
use kvxfer::bootstrap::launcher::RankSource;
use kvxfer::bootstrap::Fingerprint;

fn spec(url: &str, group: &str, world: usize) -> GroupSpec {
    GroupSpec {
        url: url.to_string(),
        group: group.to_string(),
        world,
        rank: None,
        ttl: Duration::from_secs(2),
        timeout: Duration::from_secs(10),
    }
}

/// Joins `world` ranks of `group` from threads; returns them in rank order.
fn join_all(url: &str, group: &str, world: usize) -> Vec<Group> {
    join_all_waiting(url, group, world, spec(url, group, world).timeout)
}

/// [`join_all`] with each rank's time-out for the others.
fn join_all_waiting(url: &str, group: &str, world: usize, timeout: Duration) -> Vec<Group> {
    let handles: Vec<_> = (0..world)
        .map(|_| {
            let s = GroupSpec {
                timeout,
                ..spec(url, group, world)
            };
            std::thread::spawn(move || Group::join(&s))
        })
        .collect();
    let mut groups: Vec<Group> = handles
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    groups.sort_by_key(|g| g.rank());
    groups
}

#[test]
fn ranks_are_claimed_once_each_and_a_full_run_refuses_more() {
    let Some(etcd) = EtcdServer::start("ranks_are_claimed_once_each_and_a_full_run_refuses_more")
    else {
        return;
    };
    let groups = join_all(&etcd.url, "g1", 3);
    let ranks: Vec<usize> = groups.iter().map(|g| g.rank()).collect();
    assert_eq!(ranks, [0, 1, 2]);
    assert!(groups.iter().all(|g| g.run_id() == groups[0].run_id()));
    assert!(groups.iter().all(|g| g.source() == RankSource::Etcd));
    assert_eq!(groups[0].members().len(), 3);
    // A fourth process of the same group while the run lives is refused, quickly.
    let mut s = spec(&etcd.url, "g1", 3);
    s.timeout = Duration::from_secs(2);
    let e = Group::join(&s).err().expect("refused");
    assert!(matches!(e, GroupError::Full { world: 3, .. }), "{e}");
    assert!(e.to_string().contains("another run with this group"), "{e}");
    // Another world size for the same run is refused too.
    let e = Group::join(&spec(&etcd.url, "g1", 4))
        .err()
        .expect("refused");
    assert!(matches!(e, GroupError::World { ours: 4, .. }), "{e}");
    // Barriers: every rank passes once all arrive.
    let hs: Vec<_> = groups
        .into_iter()
        .map(|g| {
            std::thread::spawn(move || {
                g.barrier("b").unwrap();
                g
            })
        })
        .collect();
    let groups: Vec<Group> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(!etcd.keys("/kvxfer/g1/").is_empty());
    for g in groups {
        g.finish(true).unwrap();
    }
    assert_eq!(etcd.keys("/kvxfer/g1/"), Vec::<String>::new());
}

#[test]
fn launcher_ranks_are_claimed_and_a_taken_one_is_refused() {
    let Some(etcd) = EtcdServer::start("launcher_ranks_are_claimed_and_a_taken_one_is_refused")
    else {
        return;
    };
    let handles: Vec<_> = [1usize, 0]
        .into_iter()
        .map(|r| {
            let mut s = spec(&etcd.url, "g2", 2);
            s.rank = Some((RankSource::Slurm, r));
            std::thread::spawn(move || Group::join(&s))
        })
        .collect();
    let groups: Vec<Group> = handles
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    assert_eq!(groups[0].rank(), 1);
    assert_eq!(groups[1].rank(), 0);
    assert_eq!(groups[0].source(), RankSource::Slurm);
    let mut s = spec(&etcd.url, "g2", 2);
    s.rank = Some((RankSource::Slurm, 1));
    let e = Group::join(&s).err().expect("refused");
    assert!(matches!(e, GroupError::RankTaken { rank: 1, .. }), "{e}");
    for g in groups {
        g.finish(true).unwrap();
    }
}

#[test]
fn a_fingerprint_mismatch_names_the_rank_and_the_parameter() {
    let Some(etcd) = EtcdServer::start("a_fingerprint_mismatch_names_the_rank_and_the_parameter")
    else {
        return;
    };
    let groups = join_all(&etcd.url, "g3", 3);
    let hs: Vec<_> = groups
        .into_iter()
        .map(|g| {
            std::thread::spawn(move || {
                let size = if g.rank() == 2 { "1024" } else { "4096" };
                let fp = Fingerprint::default()
                    .with("bench", "xfer")
                    .with("size", size);
                let r = g.check_fingerprints(&fp);
                (g, r)
            })
        })
        .collect();
    // Every rank compares before any leaves (a rank that left would be named instead).
    let done: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    for (g, r) in done {
        let e = r.expect_err("mismatch found on every rank");
        match &e {
            GroupError::Mismatch {
                rank,
                param,
                here,
                there,
                ..
            } => {
                assert_eq!((*rank, param.as_str()), (2, "size"), "{e}");
                assert_eq!((here.as_str(), there.as_str()), ("4096", "1024"));
            }
            other => panic!("{other}"),
        }
        g.finish(true).unwrap();
    }
}

#[test]
fn a_wait_lasts_while_any_rank_is_at_work_and_ends_when_none_is() {
    let test = "a_wait_lasts_while_any_rank_is_at_work_and_ends_when_none_is";
    let Some(etcd) = EtcdServer::start(test) else {
        return;
    };
    let timeout = Duration::from_millis(1500);
    let groups = join_all_waiting(&etcd.url, "g-patience", 3, timeout);
    let measuring = Duration::from_secs(4);
    std::thread::scope(|s| {
        // Rank 2 works on its part for more than twice the time-out, then publishes; rank 1
        // publishes at once and then waits for rank 0's word.
        s.spawn(|| {
            groups[2].working(|| std::thread::sleep(measuring));
            groups[2].put("result", b"2").unwrap();
        });
        s.spawn(|| {
            groups[1].put("result", b"1").unwrap();
            assert_eq!(groups[1].wait_key("collected", 0).unwrap(), b"");
        });
        let start = Instant::now();
        groups[0].put("result", b"0").unwrap();
        let got = groups[0].gather("result", false).unwrap();
        let took = start.elapsed();
        assert_eq!(
            got,
            vec![
                Some(b"0".to_vec()),
                Some(b"1".to_vec()),
                Some(b"2".to_vec())
            ]
        );
        assert!(took >= measuring - Duration::from_millis(500), "{took:?}");
        groups[0].put("collected", b"").unwrap();
    });
    // Nobody works any more: a wait ends a time-out after it began, naming who is missing.
    let start = Instant::now();
    let e = groups[0].wait_key("never", 1).unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(&e, GroupError::Timeout { missing, .. } if missing == &[1]),
        "{e}"
    );
    assert!(took >= timeout && took < timeout * 4, "{took:?}");
    assert!(
        e.to_string().contains("in which no rank was at work"),
        "{e}"
    );
    for g in groups {
        g.finish(true).unwrap();
    }
}

#[test]
fn a_rank_whose_lease_expires_is_named_dead_and_a_leaving_one_by_its_reason() {
    let test = "a_rank_whose_lease_expires_is_named_dead_and_a_leaving_one_by_its_reason";
    let Some(etcd) = EtcdServer::start(test) else {
        return;
    };
    let mut groups = join_all(&etcd.url, "g4", 3);
    let dead = groups.pop().unwrap();
    // Dropped without finishing: its keep-alive stops, its lease expires after the TTL (2 s).
    drop(dead);
    let start = Instant::now();
    let e = groups[0]
        .wait_gone(Duration::from_secs(8))
        .expect("noticed");
    assert!(matches!(e, GroupError::Dead { rank: 2, .. }), "{e}");
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "{:?}",
        start.elapsed()
    );
    assert!(e.to_string().contains("rank 2"), "{e}");
    // A barrier with a dead rank ends at once with its name, not at the time-out.
    let start = Instant::now();
    let e = groups[0].barrier("after").unwrap_err();
    assert!(matches!(e, GroupError::Dead { rank: 2, .. }), "{e}");
    assert!(start.elapsed() < Duration::from_secs(2));
    groups[1].leave("the target went away");
    groups[0].put("survivors", b"here").unwrap();
    let got = groups[0].gather("survivors", true).unwrap();
    assert_eq!(got, vec![Some(b"here".to_vec()), None, None]);
    let g1 = groups.pop().unwrap();
    g1.finish(false).unwrap();
    // Rank 1 left with a reason: named as such, not as dead; the dead rank comes first.
    let gone: Vec<String> = groups[0]
        .gone()
        .unwrap()
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(gone.len(), 2, "{gone:?}");
    assert!(gone[0].starts_with("rank 2 (") && gone[0].ends_with("died: its etcd lease expired"));
    assert!(gone[1].starts_with("rank 1 (") && gone[1].ends_with("gave up: the target went away"));
    groups.pop().unwrap().finish(true).unwrap();
    assert_eq!(etcd.keys("/kvxfer/g4/"), Vec::<String>::new());
}

#[test]
fn clean_removes_what_a_crashed_run_left() {
    let Some(etcd) = EtcdServer::start("clean_removes_what_a_crashed_run_left") else {
        return;
    };
    let c = Etcd::connect(&etcd.url, Duration::from_secs(5), Duration::from_secs(5)).unwrap();
    c.put("/kvxfer/g5/run", b"18a2b-3f", false).unwrap();
    c.put("/kvxfer/g5/18a2b-3f/left/0", b"{}", false).unwrap();
    c.put("/kvxfer/g50/run", b"other", false).unwrap();
    let n = group::clean(&etcd.url, "g5", Duration::from_secs(5), false).unwrap();
    assert_eq!(n, 2);
    assert_eq!(etcd.keys("/kvxfer/g5/"), Vec::<String>::new());
    assert_eq!(etcd.keys("/kvxfer/g50/"), ["/kvxfer/g50/run"]);
    c.close().unwrap();
}

// Issue 29, item 11: `etcd clean --group a` takes group a's own keys, never those of the
// live group a/b (whose ranks go on), and refuses a run of a under way unless --force.
#[test]
fn clean_matches_its_group_exactly_and_spares_a_live_run() {
    let Some(etcd) = EtcdServer::start("clean_matches_its_group_exactly_and_spares_a_live_run")
    else {
        return;
    };
    let clean = |group: &str, force: bool| {
        let mut c = common::kvxfer();
        c.args(["etcd", "clean", "--etcd", &etcd.url, "--group", group]);
        if force {
            c.arg("--force");
        }
        c.timeout(Duration::from_secs(30)).output().unwrap()
    };
    // Group a/b runs; group a left keys of a crashed run (no lease).
    let nested = join_all(&etcd.url, "a/b", 2);
    let c = Etcd::connect(&etcd.url, Duration::from_secs(5), Duration::from_secs(5)).unwrap();
    c.put("/kvxfer/a/run", b"18a2b-3f", false).unwrap();
    c.put("/kvxfer/a/18a2b-3f/left/0", b"{}", false).unwrap();
    let before = etcd.keys("/kvxfer/a/b/");
    let out = clean("a", false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(etcd.keys("/kvxfer/a/"), before, "a/b's keys are a/b's");
    // a/b's ranks still meet.
    let ts: Vec<_> = nested
        .into_iter()
        .map(|g| {
            std::thread::spawn(move || {
                g.barrier("after-clean").unwrap();
                assert!(g.first_gone().unwrap().is_none());
                g
            })
        })
        .collect();
    // Each leaves once both have looked.
    let nested: Vec<Group> = ts.into_iter().map(|t| t.join().unwrap()).collect();
    nested.into_iter().for_each(|g| g.finish(true).unwrap());
    // A run of a under way is refused (its keys stay), then removed with --force.
    let live = join_all(&etcd.url, "a", 1);
    let held = etcd.keys("/kvxfer/a/");
    assert!(!held.is_empty());
    let out = clean("a", false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(etcd.keys("/kvxfer/a/"), held, "a live run lost keys");
    let out = clean("a", true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(etcd.keys("/kvxfer/a/"), Vec::<String>::new());
    live.into_iter().for_each(|g| g.abandon());
    c.close().unwrap();
}

#[test]
fn an_unreachable_server_is_named_quickly() {
    let url = format!("http://127.0.0.1:{}", common::free_port());
    let start = Instant::now();
    let e = Etcd::connect(&url, Duration::from_secs(3), Duration::from_secs(2))
        .err()
        .expect("nothing listens");
    assert!(matches!(e, EtcdError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains(&url), "{e}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

//! `kvxfer xfer --etcd`: processes meeting through a real etcd server run many-to-one into
//! rank 0, pairwise (rank r with r + N/2) or one-to-many (rank 0 into every other rank); rank 0
//! writes the merged result; a killed initiator is named by every survivor.

mod common;
mod etcd_support;

use std::process::Child;
use std::time::{Duration, Instant};

use etcd_support::{
    all_succeeded, assert_merged, assert_names_dead, hold_back, stderr, tier_members, AfterFault,
    GroupRun, RankArgs,
};
use kvxfer::report::Status;
use kvxfer::stats::decode_histogram;

#[test]
fn three_initiator_ranks_into_rank_zero_merge_into_one_result() {
    let test = "three_initiator_ranks_into_rank_zero_merge_into_one_result";
    let Some(run) = GroupRun::start(test, "m2o") else {
        return;
    };
    let args = RankArgs::new("256K", 2, 6).world(4).lo(60);
    let outs = all_succeeded(run.spawn_all(&[], 4, &args));
    for (r, o) in outs.iter().enumerate() {
        assert!(
            stderr(o).contains(&format!("rank {r} of 4")),
            "{}",
            stderr(o)
        );
    }
    let merged = run.doc(0);
    assert_merged(&merged, 3, 2, 256 << 10, 6);
    assert_eq!(merged.config["rank_source"], "pmi");
    assert_eq!(merged.config["rank"], 0);
    // Each initiator wrote its own figures, the same its entry in the merged result holds.
    for r in 1..4 {
        let own = run.doc(r);
        assert_eq!(own.status, Status::Complete);
        // Each file says which rank of which run and group wrote it.
        assert_eq!(own.config["rank"], r, "rank {r}");
        assert_eq!(own.config["world"], 4, "rank {r}");
        assert_eq!(own.config["group"], merged.config["group"], "rank {r}");
        assert_eq!(own.config["run_id"], merged.config["run_id"], "rank {r}");
        assert!(own.config["run_id"].as_str().is_some_and(|s| !s.is_empty()));
        let entry = &merged.results[0].extra["ranks"][r - 1];
        assert_eq!(
            own.results[0].histogram.as_deref(),
            entry["histogram"].as_str(),
            "rank {r}"
        );
    }
    assert_eq!(run.keys_left(), Vec::<String>::new());
}

#[test]
fn group_rounds_meet_before_each_round_and_merge_every_rounds_samples() {
    let test = "group_rounds_meet_before_each_round_and_merge_every_rounds_samples";
    let Some(run) = GroupRun::start(test, "rounds") else {
        return;
    };
    let args = RankArgs::new("64K", 1, 5)
        .world(3)
        .lo(60)
        .with(&["--rounds", "3"]);
    let outs = all_succeeded(run.spawn_all(&[], 3, &args));
    // Every round's samples in the merged result, the median's interval over the rounds' own.
    let merged = run.doc(0);
    assert_merged(&merged, 2, 1, 64 << 10, 15);
    assert_eq!(merged.config["rounds"], 3);
    let r = &merged.results[0];
    let p = &r.extra["precision"];
    let medians = p["rounds"]["p50_us"].as_array().unwrap();
    assert_eq!(medians.len(), 3, "{p}");
    let [lo, hi] = [0, 1].map(|i| p["p50_interval_us"][i].as_f64().unwrap());
    for m in medians.iter().map(|m| m.as_f64().unwrap()) {
        assert!(lo <= m && m <= hi, "{m} outside [{lo}, {hi}]: {p}");
    }
    for e in r.extra["targets"].as_array().unwrap() {
        assert_eq!(e["iterations"], 15, "every round served: {e}");
    }
    for rank in 1..3 {
        let own = run.doc(rank);
        assert_eq!(own.results[0].iterations, 15, "rank {rank}");
        assert_eq!(
            own.results[0].extra["precision"]["rounds"]["p50_us"]
                .as_array()
                .map(Vec::len),
            Some(3),
            "rank {rank}"
        );
    }
    assert!(outs.iter().all(|o| !stderr(o).contains("warning")));
    assert_eq!(run.keys_left(), Vec::<String>::new());
}

#[test]
fn a_rank_with_other_parameters_is_named_with_the_parameter() {
    let test = "a_rank_with_other_parameters_is_named_with_the_parameter";
    let Some(run) = GroupRun::start(test, "fp") else {
        return;
    };
    let args = |size| RankArgs::new(size, 1, 2).world(2).lo(20);
    let r0 = run.spawn(&[], 0, 2, &args("64K"));
    let r1 = run.spawn(&[], 1, 2, &args("128K"));
    let (o0, o1) = (
        r0.wait_with_output().unwrap(),
        r1.wait_with_output().unwrap(),
    );
    assert!(!o0.status.success() && !o1.status.success());
    for o in [&o0, &o1] {
        let e = stderr(o);
        assert!(
            e.contains("rank 1 was started with different parameters: size is 65536 on rank 0 but 131072 on rank 1"),
            "{e}"
        );
    }
}

#[test]
fn etcd_unreachable_at_start_is_one_line_naming_the_url() {
    let url = format!("http://127.0.0.1:{}", common::free_port());
    let start = Instant::now();
    let o = common::kvxfer()
        .args([
            "xfer",
            "--etcd",
            &url,
            "--world",
            "2",
            "--scheme",
            "many-to-one",
        ])
        .args(["--size", "64K", "--domain", "lo"])
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = stderr(&o);
    let last = e.lines().last().unwrap_or_default();
    assert!(
        last.contains(&format!("etcd at {url} is unreachable")),
        "{e}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn group_runs_refuse_what_they_do_not_run() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["--world", "1", "--scheme", "many-to-one"],
            "--world 1 leaves no initiator",
        ),
        (
            &["--world", "3", "--scheme", "pairwise"],
            "pairs rank r with rank r + N/2: --world 3 is odd",
        ),
        (
            &["--world", "4", "--scheme", "one-to-many", "-c", "2"],
            "--concurrency must be at least 3",
        ),
        (&["--scheme", "many-to-one"], "--etcd needs --world N"),
    ];
    for (args, want) in cases {
        let o = common::kvxfer()
            .env_remove("SLURM_PROCID")
            .env_remove("OMPI_COMM_WORLD_RANK")
            .env_remove("PMI_RANK")
            .args(["xfer", "--etcd", "http://127.0.0.1:9"])
            .args(args)
            .args(["--size", "64K"])
            .output()
            .unwrap();
        assert!(!o.status.success());
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
}

/// A run long enough that a fault lands mid-run (an idle host moves 4000 iterations of 1M over
/// the loopback in about 2 s, before the fault: so 100,000) of `world` ranks, transfers of
/// `size`, with a lease of 2 s.
fn long(world: usize, size: &str) -> RankArgs {
    RankArgs::new(size, 1, 100_000)
        .world(world)
        .lo(60)
        .with(&["--etcd-ttl", "2"])
}

/// Kills rank `victim` of the ranks `children` mid-run; see [`GroupRun::fault_mid_run`].
fn kill_mid_run(run: &GroupRun, children: Vec<Child>, victim: usize) -> AfterFault {
    let mut after = run.fault_mid_run(children, victim, |c| c.kill().unwrap());
    let _ = after.victim.wait();
    after
}

#[test]
fn a_killed_initiator_is_named_by_every_survivor_and_what_was_measured_is_kept() {
    let test = "a_killed_initiator_is_named_by_every_survivor_and_what_was_measured_is_kept";
    let Some(run) = GroupRun::start(test, "kill") else {
        return;
    };
    let children = run.spawn_all(&[], 4, &long(4, "1M"));
    let AfterFault {
        survivors: outs,
        took,
        ..
    } = kill_mid_run(&run, children, 2);
    let all: Vec<String> = outs
        .iter()
        .map(|(r, o)| format!("rank {r}: {}", stderr(o)))
        .collect();
    assert!(
        took < Duration::from_secs(20),
        "survivors took {took:?}: {all:#?}"
    );
    println!(
        "every survivor ended {took:.1?} after the kill:\n{}",
        all.join("")
    );
    for (r, o) in &outs {
        assert_names_dead(*r, o, 2);
    }
    let merged = run.doc(0);
    assert_eq!(merged.status, Status::Partial, "{:?}", merged.errors);
    assert!(merged.errors[0].message.contains("rank 2"));
    let r = &merged.results[0];
    assert!(
        r.iterations > 0 && r.iterations < 100_000,
        "{}",
        r.iterations
    );
    // The two survivors' workers, every sample of the iterations all of them finished.
    assert_eq!(r.extra["workers"].as_array().unwrap().len(), 2);
    let h = decode_histogram(r.histogram.as_ref().unwrap()).unwrap();
    assert_eq!(h.len(), 2 * r.iterations);
    let ranks = r.extra["ranks"].as_array().unwrap();
    let status: Vec<&str> = ranks
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(status, ["partial", "lost", "partial"]);
    for k in [1, 3] {
        let own = run.doc(k);
        assert_eq!(own.status, Status::Partial, "rank {k}");
        assert!(own.results[0].iterations >= r.iterations, "rank {k}");
    }
    // Rank 0 removed the run's keys; only the dead rank's lease may linger a moment.
    assert_eq!(run.keys_left(), Vec::<String>::new());
}

#[test]
fn ucx_ranks_merge_the_same_way() {
    let Some(run) = GroupRun::start("ucx_ranks_merge_the_same_way", "ucx") else {
        return;
    };
    let env = [
        "env",
        "UCX_TLS=tcp",
        "UCX_NET_DEVICES=lo",
        "UCX_LOG_FILE=stderr",
    ];
    let args = RankArgs::new("256K", 2, 4).world(3).with(&["-B", "ucx"]);
    all_succeeded(run.spawn_all(&env, 3, &args));
    let merged = run.doc(0);
    assert_eq!(merged.config["backend"], "ucx");
    assert_merged(&merged, 2, 2, 256 << 10, 4);
}

#[test]
fn a_second_run_of_a_busy_group_is_refused_and_the_first_goes_on() {
    let test = "a_second_run_of_a_busy_group_is_refused_and_the_first_goes_on";
    let Some(run) = GroupRun::start(test, "busy") else {
        return;
    };
    // The first run would last minutes; the refusals take a fraction of a second.
    let args = RankArgs::new("64K", 1, 100_000)
        .world(2)
        .with(&["--domain", "lo"]);
    let first = run.spawn_all(&[], 2, &args);
    run.wait_for_target();
    // Another launch of the same group: ranks claimed in etcd, or given by a launcher.
    let launch = |rank: Option<&str>| {
        let mut c = common::kvxfer();
        for v in [
            "PMI_RANK",
            "PMI_SIZE",
            "SLURM_PROCID",
            "OMPI_COMM_WORLD_RANK",
        ] {
            c.env_remove(v);
        }
        if let Some(r) = rank {
            c.env("PMI_RANK", r).env("PMI_SIZE", "2");
        }
        let o = c
            .args(["xfer", "--etcd", &run.etcd.url, "--group", "busy"])
            .args(["--scheme", "many-to-one"])
            .args(args.as_strs())
            .args(["--timeout", "10"])
            .timeout(Duration::from_secs(30))
            .output()
            .unwrap();
        assert!(!o.status.success());
        stderr(&o)
    };
    let e = launch(None);
    assert!(
        e.contains("group \"busy\" already has all 2 ranks of run")
            && e.contains("another run with this group is under way"),
        "{e}"
    );
    let e = launch(Some("1"));
    assert!(
        e.contains("rank 1 of group \"busy\" is already taken"),
        "{e}"
    );
    // The first run goes on undisturbed (stopped here: it would run for minutes).
    for (r, mut c) in first.into_iter().enumerate() {
        assert!(c.try_wait().unwrap().is_none(), "first run, rank {r} ended");
        c.kill().unwrap();
        let _ = c.wait();
    }
}

/// Runs `world` ranks of `scheme` on the loopback (256K, `-c c`, 6 iterations, one warm-up,
/// verified) and returns the run, with their documents.
fn run_scheme(test: &str, scheme: &'static str, world: usize, c: usize) -> Option<GroupRun> {
    let run = GroupRun::start(test, scheme)?;
    let args = RankArgs::new("256K", c, 6)
        .world(world)
        .with(&["--scheme", scheme, "--verify"])
        .lo(60);
    all_succeeded(run.spawn_all(&[], world, &args));
    assert_eq!(run.keys_left(), Vec::<String>::new());
    Some(run)
}

const SIZE: u64 = 256 << 10;

/// Checks the merged document of `workers` workers in all: every sample of every worker kept,
/// the tiers over all of them, and each target rank's `(rank, workers served)`: the bytes it
/// counted and verified itself (warm-up included) follow from its workers.
fn assert_scheme(d: &kvxfer::report::ResultDoc, scheme: &str, workers: u64, served: &[(u64, u64)]) {
    assert_eq!(d.status, Status::Complete, "errors: {:?}", d.errors);
    assert_eq!(d.config["scheme"], scheme);
    assert_eq!(d.config["concurrency"], workers);
    let r = &d.results[0];
    assert_eq!(r.iterations, 6);
    assert_eq!(r.extra["workers"].as_array().unwrap().len() as u64, workers);
    let merged = decode_histogram(r.histogram.as_ref().unwrap()).unwrap();
    assert_eq!(merged.len(), workers * 6);
    assert_eq!(r.extra["bytes_counted"], workers * SIZE * 6);
    assert_eq!(r.extra["verified_bytes"], workers * SIZE * 7);
    assert_eq!(tier_members(r) as u64, workers, "every worker in one tier");
    let ranks = r.extra["ranks"].as_array().unwrap();
    let count: u64 = ranks
        .iter()
        .map(|e| {
            decode_histogram(e["histogram"].as_str().unwrap())
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(count, merged.len(), "merged exactly, not averaged");
    let targets = r.extra["targets"].as_array().unwrap();
    let got: Vec<(u64, u64)> = targets
        .iter()
        .map(|t| (t["rank"].as_u64().unwrap(), t["workers"].as_u64().unwrap()))
        .collect();
    assert_eq!(got, served);
    for (t, &(_, n)) in targets.iter().zip(served) {
        assert_eq!(t["status"], "complete", "{t}");
        assert_eq!(t["iterations"], 6, "{t}");
        assert_eq!(t["bytes_counted"], n * SIZE * 6, "{t}");
        assert_eq!(t["verified_bytes"], n * SIZE * 7, "{t}");
    }
}

#[test]
fn pairwise_ranks_pair_the_lower_half_with_the_upper_and_merge_at_rank_zero() {
    let test = "pairwise_ranks_pair_the_lower_half_with_the_upper_and_merge_at_rank_zero";
    let Some(run) = run_scheme(test, "pairwise", 4, 2) else {
        return;
    };
    let merged = run.doc(0);
    assert_scheme(&merged, "pairwise", 4, &[(2, 2), (3, 2)]);
    assert_eq!(merged.config["role"], "initiator");
    let ranks = merged.results[0].extra["ranks"].as_array().unwrap();
    // Rank 0's workers (0, 1) into rank 2; rank 1's (2, 3) into rank 3.
    let talk: Vec<(u64, Vec<u64>, Vec<u64>)> = ranks
        .iter()
        .map(|e| {
            let v = |k: &str| -> Vec<u64> {
                e[k].as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap())
                    .collect()
            };
            (e["rank"].as_u64().unwrap(), v("workers"), v("target_ranks"))
        })
        .collect();
    assert_eq!(
        talk,
        [(0, vec![0, 1], vec![2, 2]), (1, vec![2, 3], vec![3, 3])]
    );
    // Rank 1 wrote its own figures (those in its entry); targets wrote what they served.
    let own = run.doc(1);
    assert_eq!(own.status, Status::Complete);
    assert_eq!(
        own.results[0].histogram.as_deref(),
        ranks[1]["histogram"].as_str()
    );
    for t in [2, 3] {
        let served = run.doc(t);
        assert_eq!(served.config["role"], "target", "rank {t}");
        assert_eq!(served.results[0].extra["verified_bytes"], 2 * SIZE * 7);
    }
}

#[test]
fn one_to_many_spreads_rank_zeros_workers_over_every_other_rank() {
    let test = "one_to_many_spreads_rank_zeros_workers_over_every_other_rank";
    let Some(run) = run_scheme(test, "one-to-many", 4, 5) else {
        return;
    };
    let merged = run.doc(0);
    assert_scheme(&merged, "one_to_many", 5, &[(1, 2), (2, 2), (3, 1)]);
    let ranks = merged.results[0].extra["ranks"].as_array().unwrap();
    assert_eq!(ranks.len(), 1);
    assert_eq!(ranks[0]["rank"], 0);
    assert_eq!(ranks[0]["target_ranks"], serde_json::json!([1, 2, 3, 1, 2]));
    // Each target numbered the workers it accepted 0..n: rank 0's workers met the ranks the
    // scheme names, as many at each as that rank served.
    let at: Vec<u64> = merged.results[0].extra["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["target_worker"].as_u64().unwrap())
        .collect();
    for (t, n) in [(1, 2), (2, 2), (3, 1)] {
        let mut got: Vec<u64> = [1, 2, 3, 1, 2]
            .iter()
            .zip(&at)
            .filter(|(&r, _)| r == t)
            .map(|(_, &w)| w)
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..n).collect::<Vec<u64>>(), "rank {t}");
    }
}

#[test]
fn initiators_of_a_stopped_rank_zero_name_it_within_seconds_and_keep_what_they_measured() {
    let test =
        "initiators_of_a_stopped_rank_zero_name_it_within_seconds_and_keep_what_they_measured";
    let Some(run) = GroupRun::start(test, "stop") else {
        return;
    };
    // Rank 0 stopped rather than killed: its sockets stay open, so only its lease tells.
    let children = run.spawn_all(&[], 3, &long(3, "1M"));
    let stop = |c: &mut Child| {
        let pid = c.id().to_string();
        let stopped = std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap();
        assert!(stopped.success());
    };
    let AfterFault {
        survivors: outs,
        took,
        mut victim,
        ..
    } = run.fault_mid_run(children, 0, stop);
    let _ = victim.kill();
    let _ = victim.wait();
    // The lease's 2 s, a watch, and the result kept: far below the 60 s on the fabric.
    assert!(took < Duration::from_secs(12), "initiators took {took:?}");
    for (k, o) in &outs {
        assert_names_dead(*k, o, 0);
        let own = run.doc(*k);
        assert_eq!(own.status, Status::Partial, "rank {k}");
        let r = &own.results[0];
        assert!(
            r.iterations > 0 && r.iterations < 100_000,
            "{}",
            r.iterations
        );
        let h = decode_histogram(r.histogram.as_ref().unwrap()).unwrap();
        assert_eq!(h.len(), r.iterations, "rank {k}");
        assert!(
            own.errors[0].message.contains("rank 0 ("),
            "{:?}",
            own.errors
        );
    }
    println!("both initiators ended {took:.1?} after rank 0 stopped");
}

#[test]
fn a_killed_target_rank_of_a_pairwise_run_is_named_by_every_survivor() {
    let test = "a_killed_target_rank_of_a_pairwise_run_is_named_by_every_survivor";
    let Some(run) = GroupRun::start(test, "pkill") else {
        return;
    };
    // 8M a transfer: pairs on the loopback move 1M transfers faster than a fault can land.
    let args = long(4, "8M").with(&["--scheme", "pairwise"]);
    let children = run.spawn_all(&[], 4, &args);
    let AfterFault {
        survivors: outs,
        took,
        ..
    } = kill_mid_run(&run, children, 3);
    assert!(took < Duration::from_secs(12), "survivors took {took:?}");
    // The initiators keep what they measured; the other target holds no samples of its own.
    for (r, o) in &outs[..2] {
        assert_names_dead(*r, o, 3);
    }
    let last = stderr(&outs[2].1);
    assert!(
        last.lines().last().unwrap_or_default().contains("rank 3 ("),
        "{last}"
    );
    let merged = run.doc(0);
    assert_eq!(merged.status, Status::Partial, "{:?}", merged.errors);
    let r = &merged.results[0];
    assert!(
        r.iterations > 0 && r.iterations < 100_000,
        "{}",
        r.iterations
    );
    let h = decode_histogram(r.histogram.as_ref().unwrap()).unwrap();
    assert_eq!(h.len(), 2 * r.iterations, "both pairs' samples");
    let status = |k: &str| -> Vec<String> {
        r.extra[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["status"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(status("ranks"), ["partial", "partial"]);
    assert_eq!(status("targets"), ["partial", "lost"]);
    println!("every survivor ended {took:.1?} after the kill");
}

// A target rank whose initiator dies in a later round states every round it served, not the
// current round's alone.
#[test]
fn a_target_rank_whose_initiator_dies_in_a_later_round_keeps_every_round_it_served() {
    let test = "a_target_rank_whose_initiator_dies_in_a_later_round_keeps_every_round_it_served";
    let Some(run) = GroupRun::start(test, "roundkill") else {
        return;
    };
    const PER_ROUND: u64 = 50;
    let args = RankArgs::new("64K", 1, PER_ROUND).world(2).lo(60).with(&[
        "--rounds",
        "1000",
        "--etcd-ttl",
        "2",
    ]);
    let mut children = run.spawn_all(&[], 2, &args);
    // Rank 0, the target, meets the others before round 4 once it served rounds 1 to 3.
    run.wait_for_key("/barrier/round-3/0");
    let mut victim = children.remove(1);
    victim.kill().unwrap();
    let _ = victim.wait();
    let out = children.remove(0).wait_with_output().unwrap();
    assert_names_dead(0, &out, 1);
    // Rank 0's document is the group's: its initiator rank is lost, its target rank states
    // what it served.
    let merged = run.doc(0);
    assert_eq!(merged.status, Status::Partial, "{:?}", merged.errors);
    let served = &merged.results[0].extra["targets"][0];
    println!("served before the kill: {served}");
    let n = served["iterations"].as_u64().unwrap();
    assert!(
        n >= 3 * PER_ROUND,
        "rank 0 served 3 rounds of {PER_ROUND} and states {n}: {}",
        stderr(&out)
    );
    assert!(n < 1000 * PER_ROUND);
    assert_eq!(served["status"], "partial");
    assert_eq!(served["workers"], 1);
    assert_eq!(served["bytes_counted"], n * (64 << 10));
}

// Issue 29, item 12: etcd going away mid-run ends both ranks promptly, and each keeps what it
// finished: the initiator its iterations, the target rank (rank 0 here) the iterations it
// served.
#[test]
fn etcd_going_away_leaves_every_rank_its_partial_result() {
    let test = "etcd_going_away_leaves_every_rank_its_partial_result";
    let Some(mut run) = GroupRun::start(test, "etcdgone") else {
        return;
    };
    let children = run.spawn_all(&[], 2, &long(2, "1M"));
    run.wait_for_target();
    std::thread::sleep(Duration::from_millis(2500));
    run.etcd.kill();
    let at = Instant::now();
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let took = at.elapsed();
    let all: Vec<String> = outs.iter().map(stderr).collect();
    assert!(took < Duration::from_secs(30), "{took:?}: {all:#?}");
    for (r, o) in outs.iter().enumerate() {
        assert_eq!(o.status.code(), Some(1), "rank {r}: {}", stderr(o));
    }
    // Rank 1 may hear of it first from its target, which stopped serving. Rank 0 names etcd:
    // cut off while it served, or its next etcd call failing when the run ended first (then
    // "etcd at URL: put failed: ..."), its result kept either way.
    let rank0 = stderr(&outs[0]);
    assert!(
        rank0.contains("cut off") || rank0.contains("etcd at http://127.0.0.1:"),
        "{rank0}"
    );
    let target = run.doc(0);
    assert_eq!(target.status, Status::Partial, "{:?}", target.errors);
    assert_eq!(target.config["role"], "target");
    let served = &target.results[0];
    assert!(served.iterations > 0 && served.iterations < 100_000);
    assert_eq!(served.extra["served_iterations"][0], served.iterations);
    assert_eq!(served.extra["bytes_counted"], served.iterations * (1 << 20));
    let initiator = run.doc(1);
    assert_eq!(initiator.status, Status::Partial, "{:?}", initiator.errors);
    let measured = initiator.results[0].iterations;
    // The same run seen from both ends, each counted when that rank found etcd gone (a watch
    // of a quarter second each: some hundreds of iterations apart).
    println!("served {}, measured {measured}", served.iterations);
    assert!(measured > 0 && measured < 100_000, "{measured}");
}

// Issue 29, item 7: a world that cannot meet is named in one short line, however large.
#[test]
fn ranks_that_never_come_are_summarised_in_one_short_line() {
    let test = "ranks_that_never_come_are_summarised_in_one_short_line";
    let Some(run) = GroupRun::start(test, "lonely") else {
        return;
    };
    let out = common::kvxfer()
        .args(["xfer", "--etcd", &run.etcd.url, "--group", run.group])
        .args([
            "--world",
            "65536",
            "--scheme",
            "many-to-one",
            "--timeout",
            "3",
        ])
        .args(["-s", "4K", "-I", "2", "--domain", "lo"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap();
    assert!(last.len() < 300, "{} bytes: {}", last.len(), &last[..300]);
    assert!(last.contains("ranks 1-65535 (65535 ranks)"), "{last}");
}

/// Whether a key of `run`'s group holds `part`.
fn has_key(run: &GroupRun, part: &str) -> bool {
    let keys = run.etcd.keys(&format!("/kvxfer/{}/", run.group));
    keys.iter().any(|k| k.contains(part))
}

#[test]
fn a_pair_that_ends_long_after_the_others_is_waited_for_while_it_works() {
    let test = "a_pair_that_ends_long_after_the_others_is_waited_for_while_it_works";
    let Some(run) = GroupRun::start(test, "slow-pair") else {
        return;
    };
    let timeout_s = 4;
    let iterations = 50_000;
    let args = RankArgs::new("64K", 1, iterations)
        .world(4)
        .lo(timeout_s)
        .with(&["--scheme", "pairwise"]);
    let children = run.spawn_all(&[], 4, &args);
    run.wait_for_target();
    // Rank 1 (the second pair's initiator) is held back until rank 0 has waited for the
    // results for a second longer than the time-out: every wait for it has to last.
    let gathering = std::cell::Cell::new(None::<Instant>);
    let long_enough = Duration::from_secs(timeout_s + 1);
    hold_back(children[1].id(), || {
        if gathering.get().is_none() && has_key(&run, "/result/0") {
            gathering.set(Some(Instant::now()));
        }
        gathering.get().is_some_and(|t| t.elapsed() > long_enough)
    });
    assert!(
        !has_key(&run, "/result/1"),
        "rank 1 finished while held back: the test shows nothing"
    );
    let outs = all_succeeded(children);
    let merged = run.doc(0);
    assert_eq!(merged.status, Status::Complete, "{}", stderr(&outs[0]));
    let ranks = merged.results[0].extra["ranks"].as_array().unwrap();
    for (k, entry) in ranks.iter().enumerate() {
        assert_eq!(entry["rank"], k, "{entry}");
        assert_eq!(entry["iterations"], iterations, "{entry}");
        assert!(entry["error"].is_null(), "{entry}");
    }
}

#[test]
fn a_rank_lost_after_rank_zero_finished_its_part_makes_the_merged_result_partial() {
    use std::os::unix::process::ExitStatusExt;
    let test = "a_rank_lost_after_rank_zero_finished_its_part_makes_the_merged_result_partial";
    let Some(run) = GroupRun::start(test, "late-loss") else {
        return;
    };
    let args = RankArgs::new("64K", 1, 8000)
        .world(4)
        .lo(10)
        .with(&["--scheme", "pairwise"]);
    let mut children = run.spawn_all(&[], 4, &args);
    run.wait_for_target();
    // Rank 1 is held back, then killed once rank 0 gathers (no longer watching its own
    // transfers).
    hold_back(children[1].id(), || has_key(&run, "/result/0"));
    let mut victim = children.remove(1);
    victim.kill().unwrap();
    let status = victim.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "rank 1 ended before it was killed"
    );
    let zero = children.remove(0).wait_with_output().unwrap();
    let err = stderr(&zero);
    assert!(!zero.status.success(), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("kvxfer: error: rank 1 (") && last.contains("died"),
        "{err}"
    );
    let merged = run.doc(0);
    assert_eq!(merged.status, Status::Partial, "{err}");
    let ranks = &merged.results[0].extra["ranks"];
    assert_eq!(ranks[0]["iterations"], 8000, "{ranks}");
    assert_eq!(ranks[1]["status"], "lost", "{ranks}");
    for c in children {
        let _ = c.wait_with_output();
    }
}

//! A real etcd server for the tests: Debian's `etcd` on free ports of an address, its data in
//! a temporary folder, stopped when dropped.
#![allow(dead_code)]

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kvxfer::bootstrap::etcd::Etcd;
use kvxfer::report::{ResultDoc, Status};
use kvxfer::stats::decode_histogram;

/// A running etcd server.
pub struct EtcdServer {
    child: Child,
    _data: tempfile::TempDir,
    /// The client URL, http://HOST:PORT.
    pub url: String,
}

impl EtcdServer {
    /// Starts etcd on 127.0.0.1, or None (with a SKIPPED line naming `test`) when the binary
    /// is missing.
    pub fn start(test: &str) -> Option<EtcdServer> {
        Self::start_on(test, "127.0.0.1")
    }

    /// Starts etcd on `ip`.
    pub fn start_on(test: &str, ip: &str) -> Option<EtcdServer> {
        if !crate::common::have("etcd") {
            crate::common::skip(
                test,
                "no etcd binary (Debian's etcd-server; scripts/setup.sh --test installs it)",
            );
            return None;
        }
        let data = tempfile::tempdir().unwrap();
        let (client, peer) = (crate::common::free_port(), crate::common::free_port());
        let url = format!("http://{ip}:{client}");
        let child = Command::new("etcd")
            .args(["--name", "kvxfer-test", "--data-dir"])
            .arg(data.path())
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args(["--listen-peer-urls", &format!("http://{ip}:{peer}")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://{ip}:{peer}"),
            ])
            .args([
                "--initial-cluster",
                &format!("kvxfer-test=http://{ip}:{peer}"),
            ])
            .args(["--log-level", "error", "--logger", "zap"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd starts");
        let server = EtcdServer {
            child,
            _data: data,
            url,
        };
        server.wait_ready();
        Some(server)
    }

    /// Waits until the server grants a lease (it has elected itself leader).
    fn wait_ready(&self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(c) = Etcd::connect(&self.url, Duration::from_secs(2), Duration::from_secs(1))
            {
                let _ = c.close();
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("etcd at {} did not become ready within 20 s", self.url);
    }

    /// Kills the server mid-run (its data stays until the server is dropped).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Every key under `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let c = Etcd::connect(&self.url, Duration::from_secs(2), Duration::from_secs(5)).unwrap();
        let keys = c.get_prefix(prefix).unwrap();
        let _ = c.close();
        keys.into_iter().map(|(k, _)| k).collect()
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The options every rank of a group run takes, built up from the run's shape.
#[derive(Debug, Clone)]
pub struct RankArgs(Vec<String>);

impl RankArgs {
    /// `--size SIZE -c C -I ITERATIONS -w 1`: one warm-up iteration before the timed ones.
    pub fn new(size: &str, c: usize, iterations: u64) -> RankArgs {
        let (c, i) = (c.to_string(), iterations.to_string());
        RankArgs(Vec::new()).with(&["--size", size, "-c", &c, "-I", &i, "-w", "1"])
    }

    /// Adds `more` as given.
    pub fn with(mut self, more: &[&str]) -> RankArgs {
        self.0.extend(more.iter().map(|a| a.to_string()));
        self
    }

    /// Adds `--world WORLD`.
    pub fn world(self, world: usize) -> RankArgs {
        self.with(&["--world", &world.to_string()])
    }

    /// On the loopback's domain (`--domain lo`), giving up after `secs` seconds.
    pub fn lo(self, secs: u64) -> RankArgs {
        self.with(&["--domain", "lo", "--timeout", &secs.to_string()])
    }

    /// The options, for a command line.
    pub fn as_strs(&self) -> Vec<&str> {
        self.0.iter().map(String::as_str).collect()
    }
}

/// One test's group run: a real etcd server, the fabric to this test alone, a group name and
/// a folder for the ranks' documents.
pub struct GroupRun {
    /// The server the ranks meet at.
    pub etcd: EtcdServer,
    /// The group the ranks run under.
    pub group: &'static str,
    /// Where rank r writes `rR.json`.
    pub dir: tempfile::TempDir,
    _fabric: crate::common::FabricTurn,
}

impl GroupRun {
    /// Starts etcd on 127.0.0.1 for `group`, or None (with a SKIPPED line naming `test`) when
    /// the binary is missing.
    pub fn start(test: &str, group: &'static str) -> Option<GroupRun> {
        Self::start_on(test, "127.0.0.1", group)
    }

    /// Starts etcd on `ip` for `group`.
    pub fn start_on(test: &str, ip: &str, group: &'static str) -> Option<GroupRun> {
        let etcd = EtcdServer::start_on(test, ip)?;
        Some(GroupRun {
            etcd,
            group,
            dir: tempfile::tempdir().unwrap(),
            _fabric: crate::common::fabric_lock(),
        })
    }

    /// Starts rank `rank` of `world` (pinned through PMI_RANK/PMI_SIZE, as a launcher would)
    /// with `args` (`--scheme many-to-one` unless they name one), its JSON in `rRANK.json`;
    /// `prefix` runs it elsewhere (e.g. `ip netns exec`).
    pub fn spawn(&self, prefix: &[&str], rank: usize, world: usize, args: &RankArgs) -> Child {
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(crate::common::kvxfer_path());
                c
            }
            None => Command::new(crate::common::kvxfer_path()),
        };
        cmd.env("PMI_RANK", rank.to_string())
            .env("PMI_SIZE", world.to_string())
            .args(["xfer", "--etcd", &self.etcd.url, "--group", self.group]);
        // Many-to-one unless the test names a scheme.
        if !args.0.iter().any(|a| a == "--scheme") {
            cmd.args(["--scheme", "many-to-one"]);
        }
        cmd.args(&args.0)
            .arg("--json")
            .arg(self.dir.path().join(format!("r{rank}.json")))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Starts every rank of `world`, each behind `prefix`.
    pub fn spawn_all(&self, prefix: &[&str], world: usize, args: &RankArgs) -> Vec<Child> {
        (0..world)
            .map(|r| self.spawn(prefix, r, world, args))
            .collect()
    }

    /// Rank `rank`'s result document.
    pub fn doc(&self, rank: usize) -> ResultDoc {
        crate::common::read_doc(&self.dir.path().join(format!("r{rank}.json")))
    }

    /// The keys the run left in etcd, after a moment for the last leases to go.
    pub fn keys_left(&self) -> Vec<String> {
        let start = Instant::now();
        loop {
            let keys = self.etcd.keys(&format!("/kvxfer/{}/", self.group));
            if keys.is_empty() || start.elapsed() > Duration::from_secs(5) {
                return keys;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until a target rank has published its address (every rank joined; the transfers
    /// start right after).
    pub fn wait_for_target(&self) {
        self.wait_for_key("/target/");
    }

    /// Waits until a key of the run holds `part` (at most 30 s).
    pub fn wait_for_key(&self, part: &str) {
        let start = Instant::now();
        while !self
            .etcd
            .keys(&format!("/kvxfer/{}/", self.group))
            .iter()
            .any(|k| k.contains(part))
        {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no rank published a key with {part}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Lets the started ranks `children` transfer for 2.5 s after every rank joined, hits rank
    /// `victim` with `fault`, and waits for every other rank.
    pub fn fault_mid_run(
        &self,
        mut children: Vec<Child>,
        victim: usize,
        fault: impl FnOnce(&mut Child),
    ) -> AfterFault {
        self.wait_for_target();
        std::thread::sleep(Duration::from_millis(2500));
        let mut hit = children.remove(victim);
        fault(&mut hit);
        let at = Instant::now();
        let survivors = children
            .into_iter()
            .enumerate()
            .map(|(k, c)| {
                let r = if k < victim { k } else { k + 1 };
                (r, c.wait_with_output().unwrap())
            })
            .collect();
        AfterFault {
            survivors,
            took: at.elapsed(),
            victim: hit,
            at,
        }
    }
}

/// What a run hit by a fault mid-run left.
pub struct AfterFault {
    /// Every other rank's output, with its rank, in rank order.
    pub survivors: Vec<(usize, Output)>,
    /// From the fault to the last survivor's end.
    pub took: Duration,
    /// The rank hit, still to be waited for.
    pub victim: Child,
    /// When the fault landed.
    pub at: Instant,
}

/// Waits for every rank and checks that each succeeded; their outputs, in rank order.
pub fn all_succeeded(children: Vec<Child>) -> Vec<Output> {
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for (r, o) in outs.iter().enumerate() {
        assert!(o.status.success(), "rank {r}: {}", stderr(o));
    }
    outs
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Checks rank 0's merged document: `ranks` initiator ranks of `per` workers each, every
/// histogram sample kept (the merged count is the sum of the ranks' counts), the tiers and
/// figures of one run with all the workers.
pub fn assert_merged(d: &ResultDoc, ranks: usize, per: usize, size: u64, iterations: u64) {
    assert_eq!(d.status, Status::Complete, "errors: {:?}", d.errors);
    assert_eq!(d.config["concurrency"], (ranks * per) as u64);
    assert_eq!(d.config["world"], (ranks + 1) as u64);
    assert_eq!(d.config["scheme"], "many_to_one");
    let r = &d.results[0];
    assert_eq!(r.message_size, size);
    assert_eq!(r.iterations, iterations);
    let workers = r.extra["workers"].as_array().unwrap();
    assert_eq!(workers.len(), ranks * per);
    let merged = decode_histogram(r.histogram.as_ref().unwrap()).unwrap();
    assert_eq!(merged.len(), (ranks * per) as u64 * iterations);
    assert_eq!(
        r.extra["bytes_counted"],
        (ranks * per) as u64 * size * iterations
    );
    assert!(r.extra["tier_count"].as_u64().unwrap() >= 1);
    assert_eq!(tier_members(r), ranks * per, "every worker in one tier");
    let per_rank = r.extra["ranks"].as_array().unwrap();
    assert_eq!(per_rank.len(), ranks);
    // Every rank's view of the devices that carried its payload, rank 0's (the target's) first.
    let sides = r.path.as_ref().expect("a path")["sides"]
        .as_array()
        .unwrap();
    let roles: Vec<&str> = sides.iter().map(|s| s["role"].as_str().unwrap()).collect();
    let want: Vec<String> = (0..=ranks)
        .map(|k| format!("rank {k} ({})", if k == 0 { "target" } else { "initiator" }))
        .collect();
    assert_eq!(roles, want);
    let mut all_workers = Vec::new();
    let mut count = 0;
    let mut slowest_p50: f64 = 0.0;
    for (k, e) in per_rank.iter().enumerate() {
        assert_eq!(e["rank"], (k + 1) as u64, "{e}");
        assert_eq!(e["status"], "complete", "{e}");
        let h = decode_histogram(e["histogram"].as_str().unwrap()).unwrap();
        assert_eq!(h.len(), per as u64 * iterations);
        count += h.len();
        slowest_p50 = slowest_p50.max(e["latency_us"]["p50"].as_f64().unwrap());
        all_workers.extend(
            e["workers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| w.as_u64().unwrap()),
        );
    }
    assert_eq!(count, merged.len(), "merged exactly, not averaged");
    all_workers.sort_unstable();
    assert_eq!(all_workers, (0..(ranks * per) as u64).collect::<Vec<_>>());
    // The merged max is the largest of any rank's samples, not a mean of them.
    let max = r.latency_us.unwrap().max;
    assert!(per_rank
        .iter()
        .all(|e| e["latency_us"]["max"].as_f64().unwrap() <= max + 1e-9));
    assert!(slowest_p50 <= max);
}

/// How many workers the tiers of result `r` hold together.
pub fn tier_members(r: &kvxfer::report::SizeResult) -> usize {
    r.extra["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["members"].as_array().unwrap().len())
        .sum()
}

/// Checks that rank `r` failed with one last line naming rank `dead` as dead and keeping what
/// it measured with status partial.
pub fn assert_names_dead(r: usize, o: &Output, dead: usize) {
    let e = stderr(o);
    assert!(!o.status.success(), "rank {r} must fail: {e}");
    let last = e.lines().last().unwrap_or_default();
    assert!(
        last.contains(&format!("rank {dead} (")) && last.contains("died: its etcd lease expired"),
        "rank {r}: {e}"
    );
    assert!(last.contains("with status partial"), "rank {r}: {e}");
}

/// Holds process `pid` back to a twentieth of its speed (stopped 950 ms of every second) until
/// `done()` holds, checked once a second; then leaves it running. Its threads all run in the
/// windows between, its etcd lease kept alive (the lease's time-to-live is longer than a
/// stop).
pub fn hold_back(pid: u32, done: impl Fn() -> bool) {
    let signal = |s: &str| {
        Command::new("kill")
            .args([s, &pid.to_string()])
            .status()
            .is_ok_and(|st| st.success())
    };
    while !done() {
        if !signal("-STOP") {
            return;
        }
        std::thread::sleep(Duration::from_millis(950));
        signal("-CONT");
        std::thread::sleep(Duration::from_millis(50));
    }
}

//! A real etcd server for the tests: Debian's `etcd` on free ports of an address, its data in
//! a temporary folder, stopped when dropped.
#![allow(dead_code)]

use std::path::Path;
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

/// Starts rank `rank` of `world` (pinned through PMI_RANK/PMI_SIZE, as a launcher would) with
/// `args` (`--scheme many-to-one` unless they name one), its JSON in `dir/rRANK.json`; `prefix` runs it elsewhere (e.g. `ip netns exec`).
pub fn spawn_rank(
    prefix: &[&str],
    url: &str,
    group: &str,
    rank: usize,
    world: usize,
    args: &[&str],
    dir: &Path,
) -> Child {
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
        .args(["xfer", "--etcd", url, "--group", group]);
    // Many-to-one unless the test names a scheme.
    if !args.contains(&"--scheme") {
        cmd.args(["--scheme", "many-to-one"]);
    }
    cmd.args(args)
        .arg("--json")
        .arg(dir.join(format!("r{rank}.json")))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

pub fn doc(dir: &Path, rank: usize) -> ResultDoc {
    crate::common::read_doc(&dir.join(format!("r{rank}.json")))
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

/// The keys a run of `group` left in etcd, after a moment for the last leases to go.
pub fn keys_left(etcd: &EtcdServer, group: &str) -> Vec<String> {
    let start = Instant::now();
    loop {
        let keys = etcd.keys(&format!("/kvxfer/{group}/"));
        if keys.is_empty() || start.elapsed() > Duration::from_secs(5) {
            return keys;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until a target rank of `group` has published its address (every rank joined; the
/// transfers start right after).
pub fn wait_for_target(etcd: &EtcdServer, group: &str) {
    let start = Instant::now();
    while !etcd
        .keys(&format!("/kvxfer/{group}/"))
        .iter()
        .any(|k| k.contains("/target/"))
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no target rank published"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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

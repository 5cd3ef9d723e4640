//! A group of N processes meeting through etcd: one run id per launch, a rank each (an atomic
//! claim, or the launcher's), keys bound to each rank's lease, gathers and barriers, and the
//! ranks that died (their lease expired without their leaving).
//!
//! Keys: `/kvxfer/GROUP/run` names the current run; everything of a run lives under
//! `/kvxfer/GROUP/RUN-ID/` (`world`, `rank/R`, `left/R`, and what the ranks exchange).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::etcd::Etcd;
use super::launcher::RankSource;
use super::Fingerprint;

/// Every key of kvxfer starts with this.
pub const ROOT: &str = "/kvxfer";

/// The longest one etcd call may take (an unreachable server is named after this).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a wait looks at etcd again.
const POLL: Duration = Duration::from_millis(100);

mod clean;
mod error;
mod patience;

pub use clean::clean;
pub use error::GroupError;

type Result<T> = std::result::Result<T, GroupError>;

/// The most processes a group run takes.
pub const MAX_WORLD: usize = 65536;

/// Ranks as one short line however many there are: runs of consecutive ranks as ranges, the
/// first few of them, then how many ranks in all (`ranks 1-3, 5 (4 ranks)`).
pub fn rank_list(ranks: &[usize]) -> String {
    const SHOWN: usize = 8;
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &r in ranks {
        match runs.last_mut() {
            Some((_, end)) if r == *end + 1 => *end = r,
            _ => runs.push((r, r)),
        }
    }
    let text = |&(a, b): &(usize, usize)| match b - a {
        0 => a.to_string(),
        _ => format!("{a}-{b}"),
    };
    let mut out = runs
        .iter()
        .take(SHOWN)
        .map(text)
        .collect::<Vec<_>>()
        .join(", ");
    if runs.len() > SHOWN {
        out.push_str(", ...");
    }
    match ranks.len() {
        1 => format!("rank {out}"),
        n if runs.len() > 1 || n > 2 => format!("ranks {out} ({n} ranks)"),
        _ => format!("ranks {out}"),
    }
}

/// How a process joins a group.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    /// The etcd server, http://HOST:PORT.
    pub url: String,
    /// The group's name (the key prefix under /kvxfer).
    pub group: String,
    /// The number of processes.
    pub world: usize,
    /// The launcher's rank, or None to claim one.
    pub rank: Option<(RankSource, usize)>,
    /// Lease time-to-live: a dead rank is noticed this long after it died.
    pub ttl: Duration,
    /// How long to wait for the other ranks at each meeting point, counted from the last
    /// beat of a rank at work.
    pub timeout: Duration,
}

/// Who a rank is, as it writes under `rank/R`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    /// The host name.
    pub host: String,
    /// The address it reaches etcd from (the one the other ranks reach it on).
    pub addr: IpAddr,
    /// The process id.
    pub pid: u32,
}

/// This process's place in a run of a group.
pub struct Group {
    etcd: Etcd,
    group: String,
    run_id: String,
    prefix: String,
    rank: usize,
    world: usize,
    source: RankSource,
    timeout: Duration,
    /// Every rank's `host addr pid N`, by rank.
    members: Vec<String>,
    /// This host's address toward etcd.
    addr: IpAddr,
    /// Every rank's address toward etcd, by rank.
    addrs: Vec<IpAddr>,
    /// This rank's beats while it works on its part (see [`patience`]).
    beats: patience::Beats,
}

fn run_key(group: &str) -> String {
    format!("{ROOT}/{group}/run")
}

fn new_run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}-{:x}", nanos, std::process::id())
}

/// The local address this host uses toward `url`'s server (loopback when the server is
/// local, or when the route cannot be found).
fn address_toward(url: &str) -> IpAddr {
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    let found = host.to_socket_addrs().ok().and_then(|mut a| a.next());
    found
        .and_then(route_source)
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// The local address the kernel would send from to reach `to` (no packet is sent).
fn route_source(to: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = if to.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(any).ok()?;
    s.connect(to).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

impl Group {
    /// Connects, finds or starts the group's current run, and claims a rank in it.
    pub fn join(spec: &GroupSpec) -> Result<Group> {
        let etcd = Etcd::connect(&spec.url, spec.ttl, CALL_TIMEOUT.min(spec.timeout))?;
        let ours = new_run_id();
        let run_id = match etcd.create(&run_key(&spec.group), ours.as_bytes(), true)? {
            None => ours,
            Some(there) => text(&there),
        };
        let prefix = format!("{ROOT}/{}/{run_id}", spec.group);
        let world = spec.world.to_string();
        if let Some(theirs) = etcd.create(&format!("{prefix}/world"), world.as_bytes(), true)? {
            if theirs != world.as_bytes() {
                return Err(GroupError::World {
                    group: spec.group.clone(),
                    run: run_id,
                    ours: spec.world,
                    theirs: text(&theirs),
                });
            }
        }
        let addr = address_toward(&spec.url);
        let me = Member {
            addr,
            host: hostname(),
            pid: std::process::id(),
        };
        let me = serde_json::to_vec(&me).unwrap_or_default();
        let claim = |r: usize| etcd.create(&format!("{prefix}/rank/{r}"), &me, true);
        let (rank, source) = match spec.rank {
            Some((source, r)) => match claim(r)? {
                None => (r, source),
                Some(_) => {
                    return Err(GroupError::RankTaken {
                        group: spec.group.clone(),
                        run: run_id,
                        rank: r,
                    })
                }
            },
            None => {
                let mut mine = None;
                for r in 0..spec.world {
                    if claim(r)?.is_none() {
                        mine = Some(r);
                        break;
                    }
                }
                let Some(r) = mine else {
                    return Err(GroupError::Full {
                        group: spec.group.clone(),
                        run: run_id,
                        world: spec.world,
                    });
                };
                (r, RankSource::Etcd)
            }
        };
        let (members, addrs) = wait_members(&etcd, &prefix, spec.world, spec.timeout)?;
        Ok(Group {
            addr,
            addrs,
            members,
            etcd,
            group: spec.group.clone(),
            run_id,
            prefix,
            rank,
            world: spec.world,
            source,
            timeout: spec.timeout,
            beats: patience::Beats::default(),
        })
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of ranks.
    pub fn world(&self) -> usize {
        self.world
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.group
    }

    /// The etcd server's URL.
    pub fn url(&self) -> &str {
        self.etcd.url()
    }

    /// This host's address toward the etcd server: the one other ranks reach it on.
    pub fn address(&self) -> IpAddr {
        self.addr
    }

    /// This host's address on the route to `rank`'s (the one `rank` reaches it on, when etcd
    /// runs on this host and the others reach it from outside).
    pub fn address_toward_rank(&self, rank: usize) -> IpAddr {
        match self.addrs.get(rank) {
            Some(&to) if to != self.addr => {
                route_source(SocketAddr::new(to, 9)).unwrap_or(self.addr)
            }
            _ => self.addr,
        }
    }

    /// Every rank's `host addr pid N`, by rank.
    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// Where the rank came from.
    pub fn source(&self) -> RankSource {
        self.source
    }

    fn key(&self, name: &str) -> String {
        format!("{}/{name}", self.prefix)
    }

    /// Publishes this rank's `value` under `name` (bound to its lease).
    pub fn put(&self, name: &str, value: &[u8]) -> Result<()> {
        Ok(self
            .etcd
            .put(&self.key(&format!("{name}/{}", self.rank)), value, true)?)
    }

    /// Waits until every rank has published under `name`; returns the values by rank. A rank
    /// that died or left meanwhile ends the wait with its error; with `survivors`, such ranks
    /// are None instead. The time-out counts from the last beat of a rank at work.
    pub fn gather(&self, name: &str, survivors: bool) -> Result<Vec<Option<Vec<u8>>>> {
        let _waiting = self.beats.waiting();
        let mut patience = patience::Patience::new(self.timeout);
        loop {
            let mut got: Vec<Option<Vec<u8>>> = vec![None; self.world];
            for (r, v) in self.ranks_under(&format!("{name}/"))? {
                got[r] = Some(v);
            }
            let mut gone: Vec<GroupError> = self
                .gone()?
                .into_iter()
                .filter(|g| gone_rank(g).is_some_and(|r| got[r].is_none()))
                .collect();
            if !survivors && !gone.is_empty() {
                return Err(gone.swap_remove(0));
            }
            let missing: Vec<usize> = (0..self.world)
                .filter(|&r| got[r].is_none())
                .filter(|&r| !gone.iter().any(|g| gone_rank(g) == Some(r)))
                .collect();
            if missing.is_empty() {
                return Ok(got);
            }
            if patience.exhausted(self.beats_now()?) {
                return Err(GroupError::Timeout {
                    what: format!("waiting for {name}"),
                    missing,
                    after: self.timeout,
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// What `rank` published under `name`, if it did.
    pub fn get(&self, name: &str, rank: usize) -> Result<Option<Vec<u8>>> {
        Ok(self.etcd.get(&self.key(&format!("{name}/{rank}")))?)
    }

    /// Waits until `rank` has published under `name`; returns its value. The rank dying or
    /// leaving ends the wait with its error; the time-out counts from the last beat of a rank
    /// at work.
    pub fn wait_key(&self, name: &str, rank: usize) -> Result<Vec<u8>> {
        let _waiting = self.beats.waiting();
        let mut patience = patience::Patience::new(self.timeout);
        let key = self.key(&format!("{name}/{rank}"));
        loop {
            if let Some(v) = self.etcd.get(&key)? {
                return Ok(v);
            }
            if let Some(g) = self
                .gone()?
                .into_iter()
                .find(|g| gone_rank(g) == Some(rank))
            {
                return Err(g);
            }
            if patience.exhausted(self.beats_now()?) {
                return Err(GroupError::Timeout {
                    what: format!("waiting for {name} of rank {rank}"),
                    missing: vec![rank],
                    after: self.timeout,
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits up to `within` until every other rank's lease is gone (they finished).
    pub fn wait_others_gone(&self, within: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < within {
            let alive = self.ranks_under("rank/")?;
            if alive.iter().all(|(r, _)| *r == self.rank) {
                break;
            }
            std::thread::sleep(POLL);
        }
        Ok(())
    }

    /// Waits until every rank has reached the barrier `name`.
    pub fn barrier(&self, name: &str) -> Result<()> {
        self.put(&format!("barrier/{name}"), b"")?;
        self.gather(&format!("barrier/{name}"), false).map(|_| ())
    }

    /// Publishes this rank's fingerprint and compares every rank's with rank 0's: the first
    /// rank that differs is named with the parameter.
    pub fn check_fingerprints(&self, ours: &Fingerprint) -> Result<()> {
        let bytes = serde_json::to_vec(ours).unwrap_or_default();
        self.put("fingerprint", &bytes)?;
        let all = self.gather("fingerprint", false)?;
        let parse = |r: usize| -> Result<Fingerprint> {
            let v = all[r].as_deref().unwrap_or_default();
            serde_json::from_slice(v).map_err(|e| GroupError::Value {
                key: self.key(&format!("fingerprint/{r}")),
                message: e.to_string(),
            })
        };
        let base = parse(0)?;
        for r in 1..self.world {
            if let Some((param, here, there)) = base.first_difference(&parse(r)?) {
                return Err(GroupError::Mismatch {
                    me: 0,
                    rank: r,
                    param,
                    here,
                    there,
                });
            }
        }
        Ok(())
    }

    /// Ranks that are gone: dead (lease expired without leaving) first, then those that left
    /// with a reason.
    pub fn gone(&self) -> Result<Vec<GroupError>> {
        let alive = self.ranks_under("rank/")?;
        let left = self.ranks_under("left/")?;
        // The dead first: a rank that left may only have given up because of them.
        let mut out: Vec<GroupError> = (0..self.world)
            .filter(|r| !left.iter().chain(&alive).any(|(a, _)| a == r))
            .map(|r| GroupError::Dead {
                rank: r,
                host: self.members[r].clone(),
            })
            .collect();
        for (r, v) in left {
            let l: Left = serde_json::from_slice(&v).unwrap_or_default();
            out.push(GroupError::Left {
                rank: r,
                host: self.members[r].clone(),
                reason: l.reason,
            });
        }
        Ok(out)
    }

    /// Runs `work`, this rank's part of the run, telling the other ranks once a second that
    /// it is still at it (except while it waits for them): their waits last while it does.
    pub fn working<T>(&self, work: impl FnOnce() -> T) -> T {
        let beat = |n: u64| {
            // A failed put shows as this rank cut off at its next watch.
            let _ = self.put(patience::ALIVE, n.to_string().as_bytes());
        };
        self.beats.beating(beat, work)
    }

    /// Every rank's last beat, key and value, in key order.
    fn beats_now(&self) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(self
            .etcd
            .get_prefix(&self.key(&format!("{}/", patience::ALIVE)))?)
    }

    /// The ranks with a key under `name/`, with its value.
    fn ranks_under(&self, name: &str) -> Result<Vec<(usize, Vec<u8>)>> {
        ranks_under(&self.etcd, &self.key(name), self.world)
    }

    /// The first rank that is gone (dead or left), if any: what ends a run early.
    pub fn first_gone(&self) -> Result<Option<GroupError>> {
        Ok(self.gone()?.into_iter().next())
    }

    /// What ends a run early, looked up while it runs: the first rank that is gone, or this
    /// rank cut off from etcd.
    pub fn watch(&self) -> Option<GroupError> {
        match self.first_gone() {
            Ok(g) => g,
            Err(GroupError::Etcd(e)) => Some(GroupError::CutOff {
                rank: self.rank,
                url: self.etcd.url().to_string(),
                message: e.reason(),
            }),
            Err(e) => Some(e),
        }
    }

    /// Waits up to `within` for a rank to be found gone (a killed rank's lease expires only
    /// after its time-to-live); returns it, or None.
    pub fn wait_gone(&self, within: Duration) -> Option<GroupError> {
        let start = Instant::now();
        loop {
            if let Ok(Some(g)) = self.first_gone() {
                return Some(g);
            }
            if start.elapsed() >= within {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Records that this rank gives up with `reason` (so the others do not take it for
    /// dead); the key outlives the lease and goes with the run's prefix.
    pub fn leave(&self, reason: &str) {
        let l = Left {
            reason: reason.to_string(),
        };
        let key = self.key(&format!("left/{}", self.rank));
        let _ = self
            .etcd
            .put(&key, &serde_json::to_vec(&l).unwrap_or_default(), false);
    }

    /// Ends this rank's part: rank 0 with `clean` removes the run's keys and the group's
    /// pointer to it; every rank revokes its lease.
    pub fn finish(self, clean: bool) -> Result<()> {
        if clean && self.rank == 0 {
            self.etcd.delete_prefix(&format!("{}/", self.prefix))?;
            self.etcd
                .delete_if(&run_key(&self.group), self.run_id.as_bytes())?;
        }
        Ok(self.etcd.close()?)
    }

    /// Ends this rank's part without a word to etcd (it stopped answering): nothing waits on
    /// the server; the lease expires by itself.
    pub fn abandon(self) {
        self.etcd.abandon();
    }

    /// Whether this process's lease could not be kept alive (etcd went away).
    pub fn lease_lost(&self) -> bool {
        self.etcd.lease_lost()
    }
}

/// The ranks below `world` with a key under `base`, with its value.
fn ranks_under(etcd: &Etcd, base: &str, world: usize) -> Result<Vec<(usize, Vec<u8>)>> {
    Ok(etcd
        .get_prefix(base)?
        .into_iter()
        .filter_map(|(k, v)| {
            let r = k.get(base.len()..)?.parse::<usize>().ok()?;
            (r < world).then_some((r, v))
        })
        .collect())
}

/// Waits until all `world` ranks have claimed their key under `prefix/rank/`; returns each
/// rank's `host addr pid N`, and its address.
fn wait_members(
    etcd: &Etcd,
    prefix: &str,
    world: usize,
    timeout: Duration,
) -> Result<(Vec<String>, Vec<IpAddr>)> {
    let start = Instant::now();
    let base = format!("{prefix}/rank/");
    loop {
        let mut members: Vec<Option<Member>> = vec![None; world];
        for (r, v) in ranks_under(etcd, &base, world)? {
            let m = serde_json::from_slice::<Member>(&v).map_err(|e| GroupError::Value {
                key: format!("{base}{r}"),
                message: e.to_string(),
            })?;
            members[r] = Some(m);
        }
        let missing: Vec<usize> = (0..world).filter(|&r| members[r].is_none()).collect();
        if missing.is_empty() {
            let members: Vec<Member> = members.into_iter().flatten().collect();
            let names = members
                .iter()
                .map(|m| format!("{} {} pid {}", m.host, m.addr, m.pid))
                .collect();
            return Ok((names, members.iter().map(|m| m.addr).collect()));
        }
        if start.elapsed() >= timeout {
            return Err(GroupError::Timeout {
                what: "joining the run".into(),
                missing,
                after: timeout,
            });
        }
        std::thread::sleep(POLL);
    }
}

/// The rank a dead or left error names.
pub fn gone_rank(e: &GroupError) -> Option<usize> {
    match e {
        GroupError::Dead { rank, .. } | GroupError::Left { rank, .. } => Some(*rank),
        _ => None,
    }
}

/// Why a rank left, as it writes under `left/R`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Left {
    reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_lists_stay_short_however_many_ranks() {
        assert_eq!(rank_list(&[3]), "rank 3");
        assert_eq!(rank_list(&[1, 2]), "ranks 1-2");
        assert_eq!(rank_list(&[1, 2, 3, 5]), "ranks 1-3, 5 (4 ranks)");
        let many: Vec<usize> = (1..1_000_000).collect();
        assert_eq!(rank_list(&many), "ranks 1-999999 (999999 ranks)");
        let sparse: Vec<usize> = (0..1_000_000).step_by(2).collect();
        let line = rank_list(&sparse);
        assert!(line.len() < 80, "{line}");
        assert!(
            line.starts_with("ranks 0, 2, 4, 6, 8, 10, 12, 14, ..."),
            "{line}"
        );
        assert!(line.ends_with("(500000 ranks)"), "{line}");
        let e = GroupError::Timeout {
            what: "meeting".into(),
            missing: many,
            after: Duration::from_secs(2),
        };
        assert!(e.to_string().len() < 100, "{e}");
    }
}

//! `kvxfer etcd clean`: the keys a crashed run of a group left, removed without touching a
//! live run's or a nested group's.

use std::time::Duration;

use super::{GroupError, Result, ROOT};
use crate::bootstrap::etcd::Etcd;

/// Removes the keys of `group` itself (what a crashed run left): its `run` key and the keys
/// of its runs, never those of a group whose name merely starts `GROUP/` (`a/b` for `a`).
/// Keys bound to a live lease mean a run is under way: refused unless `force`. Returns how
/// many keys went.
pub fn clean(url: &str, group: &str, timeout: Duration, force: bool) -> Result<u64> {
    let etcd = Etcd::connect(url, Duration::from_secs(5), timeout)?;
    let r = clean_with(&etcd, group, force);
    let _ = etcd.close();
    r
}

fn clean_with(etcd: &Etcd, group: &str, force: bool) -> Result<u64> {
    let base = format!("{ROOT}/{group}/");
    let own: Vec<(String, i64)> = etcd
        .keys_with_leases(&base)?
        .into_iter()
        .filter(|(k, _)| own_key(&k[base.len()..]))
        .collect();
    let live = own.iter().filter(|(_, lease)| *lease != 0).count();
    if live > 0 && !force {
        return Err(GroupError::Live {
            group: group.to_string(),
            keys: live,
        });
    }
    let mut n = 0;
    for (k, _) in &own {
        n += u64::from(etcd.delete(k)?);
    }
    Ok(n)
}

/// Whether a key below `/kvxfer/GROUP/` (`rest`) is the group's own: its `run` key, or a key
/// of one of its runs (`RUN-ID/...`, a run id being `HEX-HEX` as [`new_run_id`] makes them).
fn own_key(rest: &str) -> bool {
    let first = rest.split('/').next().unwrap_or_default();
    rest == "run" || (rest.len() > first.len() && is_run_id(first))
}

fn is_run_id(s: &str) -> bool {
    let hex = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_hexdigit());
    s.split_once('-').is_some_and(|(a, b)| hex(a) && hex(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::group::new_run_id;

    #[test]
    fn a_group_owns_its_run_key_and_its_runs_not_nested_groups() {
        assert!(own_key("run"));
        assert!(own_key("18a2b-3f/rank/0"));
        assert!(own_key("18a2b-3f/world"));
        assert!(!own_key("b/run"), "group a/b's run key");
        assert!(!own_key("b/18a2b-3f/rank/0"), "group a/b's run");
        assert!(!own_key("18a2b-3f"), "a bare id is no run's key");
        assert!(!own_key("run/x"));
        assert!(is_run_id(&new_run_id()));
    }
}

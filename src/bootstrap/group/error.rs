//! What can go wrong in a group run.

use std::time::Duration;

use super::rank_list;
use crate::bootstrap::etcd::EtcdError;

/// Errors of a group.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// etcd failed.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// Every rank of the current run is taken: another run of this group is under way.
    #[error("group {group:?} already has all {world} ranks of run {run} (another run with this group is under way): wait for it to end, or use another --group")]
    Full {
        group: String,
        run: String,
        world: usize,
    },
    /// The launcher's rank is already claimed in the current run.
    #[error("rank {rank} of group {group:?} is already taken in run {run} (another run with this group is under way, or the launcher gave two processes one rank)")]
    RankTaken {
        group: String,
        run: String,
        rank: usize,
    },
    /// `etcd clean` found keys of the group bound to live leases: a run is under way.
    #[error("group {group:?} has a run under way ({keys} key(s) bound to live leases): its ranks would lose their keys; wait for it to end, or pass --force")]
    Live { group: String, keys: usize },
    /// The run was started with another world size.
    #[error("group {group:?}: run {run} has --world {theirs}, this process {ours}")]
    World {
        group: String,
        run: String,
        ours: usize,
        theirs: String,
    },
    /// A rank was started with other parameters.
    #[error("rank {rank} was started with different parameters: {param} is {here} on rank {me} but {there} on rank {rank}")]
    Mismatch {
        me: usize,
        rank: usize,
        param: String,
        here: String,
        there: String,
    },
    /// A rank died: its lease expired without its leaving the run.
    #[error("rank {rank} ({host}) died: its etcd lease expired")]
    Dead { rank: usize, host: String },
    /// A rank left the run on an error of its own.
    #[error("rank {rank} ({host}) gave up: {reason}")]
    Left {
        rank: usize,
        host: String,
        reason: String,
    },
    /// etcd stopped answering this rank mid-run: it is cut off from the others (they see its
    /// lease expire).
    #[error("rank {rank} is cut off: etcd at {url} stopped answering mid-run ({message})")]
    CutOff {
        rank: usize,
        url: String,
        message: String,
    },
    /// Ranks did not reach a meeting point in time (no rank at work meanwhile).
    #[error(
        "{what}: {} did not arrive within {:.1} s in which no rank was at work",
        rank_list(missing),
        after.as_secs_f64()
    )]
    Timeout {
        what: String,
        missing: Vec<usize>,
        after: Duration,
    },
    /// A value in etcd is not what kvxfer wrote.
    #[error("{key}: {message}")]
    Value { key: String, message: String },
}

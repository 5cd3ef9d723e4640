//! `--etcd` on `kvxfer xfer` (many processes meeting through etcd) and `kvxfer etcd clean`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use kvxfer::bootstrap::group::{self, GroupSpec};
use kvxfer::bootstrap::launcher::launcher_rank;

/// The group options of `kvxfer xfer`.
#[derive(Debug, Args)]
pub struct GroupArgs {
    /// Meet the other processes of the run through the etcd server at this URL
    /// (http://HOST:2379); --scheme says who sends to whom: many-to-one (ranks 1..N-1 into
    /// rank 0), pairwise (rank r into rank r + N/2), one-to-many (rank 0 into every other).
    #[arg(long, value_name = "URL", conflicts_with_all = ["listen", "peer"])]
    etcd: Option<String>,
    /// Processes in the run (with --etcd), 1 to 65536; a launcher's size (SLURM_NTASKS,
    /// OMPI_COMM_WORLD_SIZE, PMI_SIZE) when not given.
    #[arg(long, value_name = "N", requires = "etcd", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=group::MAX_WORLD as u64))]
    world: Option<usize>,
    /// The run's key prefix under /kvxfer in etcd (runs of one group at a time).
    #[arg(long, value_name = "NAME", default_value = "kvxfer", requires = "etcd")]
    group: String,
    /// Seconds a rank's lease outlives it: how soon a dead rank is noticed.
    #[arg(long, value_name = "SECONDS", default_value = "3", value_parser = super::common::parse_timeout, requires = "etcd")]
    etcd_ttl: Duration,
}

impl GroupArgs {
    /// The group to join, ranks from the launcher's variables when set; None without --etcd.
    pub fn spec(&self, timeout: Duration) -> anyhow::Result<Option<GroupSpec>> {
        let Some(url) = &self.etcd else {
            return Ok(None);
        };
        let launcher = launcher_rank(|k| std::env::var(k).ok())?;
        let world = match (self.world, launcher) {
            (Some(w), Some((source, _, n))) if w != n => anyhow::bail!(
                "--world {w} but the launcher ({}) started {n} processes",
                source.name()
            ),
            (Some(w), _) => w,
            (None, Some((_, _, n))) => n,
            (None, None) => anyhow::bail!(
                "--etcd needs --world N (or a launcher's SLURM_NTASKS, OMPI_COMM_WORLD_SIZE, PMI_SIZE)"
            ),
        };
        Ok(Some(GroupSpec {
            url: url.clone(),
            group: self.group.clone(),
            world,
            rank: launcher.map(|(source, r, _)| (source, r)),
            ttl: self.etcd_ttl,
            timeout,
        }))
    }
}

/// Options of `kvxfer etcd`.
#[derive(Debug, Args)]
pub struct EtcdArgs {
    #[command(subcommand)]
    command: EtcdCommand,
}

#[derive(Debug, Subcommand)]
enum EtcdCommand {
    /// Remove every key a group's runs left in etcd (after a crash).
    Clean {
        /// The etcd server (http://HOST:2379).
        #[arg(long, value_name = "URL")]
        etcd: String,
        /// The group whose keys go (exactly this group: not `NAME/...` groups).
        #[arg(long, value_name = "NAME", default_value = "kvxfer")]
        group: String,
        /// Remove the keys even of a run under way (keys bound to live leases).
        #[arg(long)]
        force: bool,
    },
}

/// Runs `kvxfer etcd`.
pub fn run(a: EtcdArgs) -> anyhow::Result<ExitCode> {
    match a.command {
        EtcdCommand::Clean { etcd, group, force } => {
            let n = group::clean(&etcd, &group, Duration::from_secs(5), force)
                .with_context(|| format!("cleaning group {group:?}"))?;
            eprintln!("kvxfer: removed {n} key(s) of group {group:?} from {etcd}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

//! Ranks a launcher gives: Slurm, Open MPI and PMI (MPICH, Intel MPI) set a rank and a world
//! size in each process's environment; torchrun, Slurm and Open MPI a rank on the host too.

/// A launcher's variables that are not numbers, or disagree with each other.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LauncherError(String);

type Result<T> = std::result::Result<T, LauncherError>;

/// Where a rank comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankSource {
    /// Claimed in an etcd transaction.
    Etcd,
    /// Slurm's SLURM_PROCID / SLURM_NTASKS.
    Slurm,
    /// Open MPI's OMPI_COMM_WORLD_RANK / OMPI_COMM_WORLD_SIZE.
    OpenMpi,
    /// PMI's PMI_RANK / PMI_SIZE (MPICH, Intel MPI).
    Pmi,
}

impl RankSource {
    /// The name in results.
    pub fn name(self) -> &'static str {
        match self {
            RankSource::Etcd => "etcd",
            RankSource::Slurm => "slurm",
            RankSource::OpenMpi => "openmpi",
            RankSource::Pmi => "pmi",
        }
    }
}

const LAUNCHERS: [(RankSource, &str, &str); 3] = [
    (RankSource::Slurm, "SLURM_PROCID", "SLURM_NTASKS"),
    (
        RankSource::OpenMpi,
        "OMPI_COMM_WORLD_RANK",
        "OMPI_COMM_WORLD_SIZE",
    ),
    (RankSource::Pmi, "PMI_RANK", "PMI_SIZE"),
];

/// The rank and world size a launcher gave this process, read through `var`; None when no
/// launcher's variables are set.
pub fn launcher_rank(
    var: impl Fn(&str) -> Option<String>,
) -> Result<Option<(RankSource, usize, usize)>> {
    for (source, rank_var, size_var) in LAUNCHERS {
        let Some(rank) = var(rank_var) else { continue };
        let num = |name: &str, v: Option<String>| -> Result<usize> {
            let v =
                v.ok_or_else(|| LauncherError(format!("{rank_var} is set but {size_var} is not")))?;
            v.trim()
                .parse()
                .map_err(|_| LauncherError(format!("{name}={v:?} is not a number")))
        };
        let r = num(rank_var, Some(rank))?;
        let n = num(size_var, var(size_var))?;
        if r >= n {
            return Err(LauncherError(format!(
                "{rank_var}={r} is not below {size_var}={n}"
            )));
        }
        return Ok(Some((source, r, n)));
    }
    Ok(None)
}

/// The local rank (on this host) a launcher gave this process, read through `var`:
/// LOCAL_RANK (torchrun), SLURM_LOCALID, OMPI_COMM_WORLD_LOCAL_RANK, the first that is set and
/// a number; None otherwise.
pub fn local_rank(var: impl Fn(&str) -> Option<String>) -> Option<u32> {
    ["LOCAL_RANK", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK"]
        .iter()
        .find_map(|k| var(k)?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(kv: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| kv.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn launcher_ranks_come_from_slurm_then_open_mpi_then_pmi() {
        let got = launcher_rank(vars(&[("SLURM_PROCID", "3"), ("SLURM_NTASKS", "5")])).unwrap();
        assert_eq!(got, Some((RankSource::Slurm, 3, 5)));
        let env = [
            ("OMPI_COMM_WORLD_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
            ("PMI_RANK", "0"),
            ("PMI_SIZE", "2"),
        ];
        assert_eq!(
            launcher_rank(vars(&env)).unwrap(),
            Some((RankSource::OpenMpi, 1, 2))
        );
        let pmi = [("PMI_RANK", "0"), ("PMI_SIZE", "4")];
        assert_eq!(
            launcher_rank(vars(&pmi)).unwrap(),
            Some((RankSource::Pmi, 0, 4))
        );
        assert_eq!(launcher_rank(vars(&[])).unwrap(), None);
    }

    #[test]
    fn bad_launcher_variables_are_refused_by_name() {
        let e = launcher_rank(vars(&[("PMI_RANK", "x"), ("PMI_SIZE", "2")])).unwrap_err();
        assert!(e.to_string().contains("PMI_RANK=\"x\""), "{e}");
        let e = launcher_rank(vars(&[("SLURM_PROCID", "0")])).unwrap_err();
        assert!(e.to_string().contains("SLURM_NTASKS is not"), "{e}");
        let e = launcher_rank(vars(&[("PMI_RANK", "2"), ("PMI_SIZE", "2")])).unwrap_err();
        assert!(e.to_string().contains("not below"), "{e}");
    }

    #[test]
    fn local_ranks_come_from_torchrun_then_slurm_then_open_mpi() {
        let env = [("SLURM_LOCALID", "2"), ("OMPI_COMM_WORLD_LOCAL_RANK", "1")];
        assert_eq!(local_rank(vars(&env)), Some(2));
        let env = [("LOCAL_RANK", "x"), ("OMPI_COMM_WORLD_LOCAL_RANK", " 3 ")];
        assert_eq!(local_rank(vars(&env)), Some(3));
        assert_eq!(local_rank(vars(&[("PMI_RANK", "1")])), None);
    }
}

//! Who is who in an `xfer --etcd` group run of each scheme: which ranks are targets, which
//! target ranks an initiator rank's workers go to, how many workers a target rank serves, and
//! how the merged document numbers every initiator rank's workers.
//!
//! - many-to-one: rank 0 the target of ranks 1..N-1, `concurrency` workers each;
//! - pairwise: rank r (r < N/2) the initiator of rank r + N/2, `concurrency` workers each;
//! - one-to-many: rank 0 the initiator of ranks 1..N-1, its `concurrency` workers spread
//!   round robin over them (worker w to rank 1 + w mod (N-1)).

use super::config::Scheme;

/// The roles of every rank of a group run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Roles {
    scheme: Scheme,
    world: usize,
    concurrency: usize,
}

impl Roles {
    /// The roles of `world` ranks with `concurrency` workers per initiator rank, or the one
    /// line that says why the scheme cannot run with them.
    pub(crate) fn new(scheme: Scheme, world: usize, concurrency: usize) -> Result<Roles, String> {
        if world < 2 {
            return Err(format!(
                "--world {world} leaves no initiator: a group run needs a target and at least \
                 one initiator"
            ));
        }
        match scheme {
            Scheme::Pairwise if world % 2 != 0 => {
                return Err(format!(
                    "--scheme pairwise pairs rank r with rank r + N/2: --world {world} is odd"
                ))
            }
            Scheme::OneToMany if concurrency < world - 1 => {
                return Err(format!(
                    "--scheme one-to-many spreads rank 0's {concurrency} worker(s) over {} \
                     target ranks: --concurrency must be at least {}",
                    world - 1,
                    world - 1
                ))
            }
            _ => {}
        }
        Ok(Roles {
            scheme,
            world,
            concurrency,
        })
    }

    /// Whether rank `r` is a target.
    pub(crate) fn is_target(&self, r: usize) -> bool {
        match self.scheme {
            Scheme::ManyToOne => r == 0,
            Scheme::Pairwise => r >= self.world / 2,
            Scheme::OneToMany => r != 0,
        }
    }

    /// The initiator ranks, in order.
    pub(crate) fn initiators(&self) -> Vec<usize> {
        (0..self.world).filter(|&r| !self.is_target(r)).collect()
    }

    /// The target ranks, in order.
    pub(crate) fn targets(&self) -> Vec<usize> {
        (0..self.world).filter(|&r| self.is_target(r)).collect()
    }

    /// The target ranks initiator rank `r`'s workers go to, round robin (worker w to the
    /// entry w mod len).
    pub(crate) fn targets_of(&self, r: usize) -> Vec<usize> {
        match self.scheme {
            Scheme::ManyToOne => vec![0],
            Scheme::Pairwise => vec![r + self.world / 2],
            Scheme::OneToMany => (1..self.world).collect(),
        }
    }

    /// The target rank of each of initiator rank `r`'s workers.
    pub(crate) fn worker_targets(&self, r: usize) -> Vec<usize> {
        let t = self.targets_of(r);
        (0..self.concurrency).map(|w| t[w % t.len()]).collect()
    }

    /// How many workers target rank `t` serves.
    pub(crate) fn workers_at(&self, t: usize) -> usize {
        self.initiators()
            .into_iter()
            .flat_map(|r| self.worker_targets(r))
            .filter(|&x| x == t)
            .count()
    }

    /// An initiator rank of target rank `t` (its listening address faces that rank).
    pub(crate) fn initiator_of(&self, t: usize) -> usize {
        match self.scheme {
            Scheme::ManyToOne => 1,
            Scheme::Pairwise => t - self.world / 2,
            Scheme::OneToMany => 0,
        }
    }

    /// The number the merged document gives initiator rank `r`'s first worker.
    pub(crate) fn offset(&self, r: usize) -> usize {
        self.initiators().iter().take_while(|&&i| i != r).count() * self.concurrency
    }

    /// Every initiator rank's workers together.
    pub(crate) fn total_workers(&self) -> usize {
        self.initiators().len() * self.concurrency
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_pairs_the_lower_half_with_the_upper() {
        let r = Roles::new(Scheme::Pairwise, 6, 2).unwrap();
        assert_eq!(r.initiators(), [0, 1, 2]);
        assert_eq!(r.targets(), [3, 4, 5]);
        assert_eq!(r.targets_of(1), [4]);
        assert_eq!(r.initiator_of(5), 2);
        assert_eq!(r.workers_at(3), 2);
        assert_eq!(r.offset(2), 4);
        assert_eq!(r.total_workers(), 6);
        let e = Roles::new(Scheme::Pairwise, 5, 1).unwrap_err();
        assert!(e.contains("--world 5 is odd"), "{e}");
    }

    #[test]
    fn one_to_many_spreads_rank_zeros_workers() {
        let r = Roles::new(Scheme::OneToMany, 4, 5).unwrap();
        assert_eq!(r.initiators(), [0]);
        assert_eq!(r.targets(), [1, 2, 3]);
        assert_eq!(r.worker_targets(0), [1, 2, 3, 1, 2]);
        assert_eq!(
            (1..4).map(|t| r.workers_at(t)).collect::<Vec<_>>(),
            [2, 2, 1]
        );
        assert_eq!(r.offset(0), 0);
        let e = Roles::new(Scheme::OneToMany, 4, 2).unwrap_err();
        assert!(e.contains("at least 3"), "{e}");
    }

    #[test]
    fn many_to_one_gathers_every_initiator_at_rank_zero() {
        let r = Roles::new(Scheme::ManyToOne, 4, 2).unwrap();
        assert_eq!(r.initiators(), [1, 2, 3]);
        assert_eq!(r.workers_at(0), 6);
        assert_eq!(r.offset(3), 4);
        assert!(Roles::new(Scheme::ManyToOne, 1, 1).is_err());
    }
}

//! The rounds of a ping-pong run (pingpong and rma-pingpong): each round passes over every
//! size, each round after the first on fresh endpoints and fresh buffers, and each size's
//! rounds merge into one result.
//!
//! A size's rounds spread over the whole run because on a shared host the medians drift over
//! seconds (at 1 MiB over shm here, 45.4 to 52.0 us over twenty rounds of one process), and
//! rounds back to back would all sample one moment. The earlier rounds' buffers stay allocated
//! until the run ends, so the allocator cannot hand a round another's pages: where a large
//! message's buffers lie moved its median by 8 % between rounds here.

use super::result::{abandon, add_precision, size_result};
use crate::bench::pingpong::SizeSamples;
use crate::bootstrap::Oob;
use crate::peer::Side;
use crate::report::ResultDoc;
use crate::run::path::{PairProbe, PathReport};
use crate::run::sched::ThreadSched;
use crate::run::two_sided::Progress;
use crate::run::RunError;
use crate::stats::Count;

/// A channel a round runs on.
pub(super) trait RoundChannel {
    /// What stays allocated of a channel whose round is over (its buffers).
    type Held;
    /// Closes the endpoints and keeps the buffers.
    fn retire(self) -> Self::Held;
}

/// One size of one round on a channel, read by the probe given: its samples where this side
/// measures, and the path the probe saw (None from a probe that is off).
pub(super) type OneSize<'a, C> = dyn FnMut(
        &mut C,
        &mut Oob,
        u64,
        &mut PairProbe,
    ) -> Result<(Option<SizeSamples>, Option<PathReport>), RunError>
    + 'a;

/// A fresh channel for the next round.
pub(super) type Reopen<'a, C> = dyn FnMut(&mut Oob) -> Result<C, RunError> + 'a;

/// What a run's rounds measured so far: per size, each round's samples, the path read over
/// the first round, and what the scheduler did to this side's thread over the later rounds.
pub(crate) struct Measured {
    sizes: Vec<u64>,
    asked: u64,
    rounds: Vec<Vec<SizeSamples>>,
    paths: Vec<Option<PathReport>>,
    later: Vec<LaterSched>,
}

/// One size's scheduler figures over the later rounds' timed spans, summed; `unread` once a
/// round's could not be read (then none are stated).
#[derive(Default)]
struct LaterSched {
    sum: Option<ThreadSched>,
    unread: bool,
}

impl LaterSched {
    /// Adds a round's figures (None: that round's could not be read).
    fn add(&mut self, round: Option<ThreadSched>) {
        match (round, &mut self.sum) {
            (None, _) => self.unread = true,
            (Some(r), Some(sum)) => sum.add(&r),
            (Some(r), None) => self.sum = Some(r),
        }
    }

    /// The sum, unless a round went unread.
    fn stated(&self) -> Option<ThreadSched> {
        self.sum.filter(|_| !self.unread)
    }
}

/// How a size's result is figured: whether it was injected, the transfers per iteration, and
/// the count each round ran to.
pub(super) struct Figures {
    /// Whether the size was injected (None where injection does not apply).
    pub injected: Option<bool>,
    /// Transfers per iteration.
    pub xfers: u64,
    /// What each round ran to.
    pub count: Count,
}

impl Measured {
    /// Nothing yet, of `rounds` rounds over `sizes`.
    pub(crate) fn new(sizes: &[u64], rounds: u64) -> Measured {
        Measured {
            sizes: sizes.to_vec(),
            asked: rounds,
            rounds: sizes.iter().map(|_| Vec::new()).collect(),
            paths: sizes.iter().map(|_| None).collect(),
            later: sizes.iter().map(|_| LaterSched::default()).collect(),
        }
    }

    /// Each size's rounds merged into a result of `doc`, in order, up to the first size with
    /// none.
    pub(super) fn into_results(
        self,
        role: Side,
        doc: &mut ResultDoc,
        figures: impl Fn(u64) -> Figures,
    ) {
        for (size, samples, path) in self.into_sizes() {
            let f = figures(size);
            let mut r = size_result(size, &samples, f.injected, f.xfers);
            add_precision(&mut r, &samples, &f.count, role);
            if let Some(p) = path {
                p.attach(&mut r);
            }
            doc.results.push(r);
        }
    }

    /// Size `i`'s samples of round `round` (none on a side that does not measure), and what
    /// `probe` read over it: the path where that is the first round, else what the scheduler
    /// did to this thread.
    pub(crate) fn keep(
        &mut self,
        i: usize,
        round: usize,
        samples: Option<SizeSamples>,
        path: Option<PathReport>,
        probe: &mut PairProbe,
    ) {
        if round == 0 {
            self.paths[i] = path;
        } else {
            self.later[i].add(probe.take_sched());
        }
        self.rounds[i].extend(samples);
    }

    /// After the last round, on both sides: trades the later rounds' scheduler figures with
    /// the peer and adds both sides' to each size's path, whose `scheduling` then spans every
    /// round as its samples do. A run that ended early skips this, and its figures span the
    /// first round alone.
    pub(crate) fn trade_sched(&mut self, oob: &mut Oob) -> Result<(), RunError> {
        if self.asked <= 1 {
            return Ok(());
        }
        let ours: Vec<Option<ThreadSched>> = self.later.iter().map(LaterSched::stated).collect();
        let bytes = serde_json::to_vec(&ours).unwrap_or_else(|_| b"[]".to_vec());
        let theirs: Vec<Option<ThreadSched>> =
            serde_json::from_slice(&oob.exchange(&bytes)?).unwrap_or_default();
        for (i, path) in self.paths.iter_mut().enumerate() {
            if let Some(p) = path {
                p.add_sched(ours[i], theirs.get(i).copied().flatten());
            }
        }
        Ok(())
    }

    /// Each size with its rounds merged and the path read over the first, in order, up to
    /// the first size with none.
    pub(crate) fn into_sizes(self) -> Vec<(u64, SizeSamples, Option<PathReport>)> {
        let mut out = Vec::new();
        for ((size, rounds), path) in self.sizes.into_iter().zip(self.rounds).zip(self.paths) {
            let Some(samples) = SizeSamples::merge(rounds) else {
                break;
            };
            out.push((size, samples, path));
        }
        out
    }
}

/// The rounds of a run, every size in each, into `m`, the first round's sizes read by
/// `probe` (the path's counters span them) and the later ones by a probe that is off (what the
/// scheduler did alone); the last channel closes once both sides are done. A channel whose
/// size failed is abandoned (see [`abandon`]).
pub(super) fn run_rounds<C: RoundChannel>(
    oob: &mut Oob,
    progress: &mut dyn FnMut(Progress),
    mut ch: C,
    reopen: &mut Reopen<'_, C>,
    one_size: &mut OneSize<'_, C>,
    probe: &mut PairProbe,
    m: &mut Measured,
) -> Result<(), RunError> {
    let n = m.sizes.len();
    let total = n * m.asked as usize;
    let mut off = probe.off();
    let mut held = Vec::new();
    for round in 0..m.asked as usize {
        if round > 0 {
            // Both sides are done with the round before either closes (as after the last):
            // the old endpoints close before the new ones open; the buffers stay.
            oob.barrier()?;
            held.push(ch.retire());
            ch = reopen(oob)?;
        }
        let probe = if round == 0 { &mut *probe } else { &mut off };
        for i in 0..n {
            let size = m.sizes[i];
            let (samples, path) = match one_size(&mut ch, oob, size, probe) {
                Ok(got) => got,
                Err(e) => {
                    abandon(ch);
                    return Err(e);
                }
            };
            m.keep(i, round, samples, path, probe);
            progress(Progress {
                done: round * n + i + 1,
                total,
                size,
            });
        }
    }
    oob.barrier()?;
    m.trade_sched(oob)?;
    drop(ch);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(span_ns: u64, waiting_ns: u64) -> ThreadSched {
        ThreadSched {
            span_ns,
            waiting_ns,
            migrations: Some(1),
            ..ThreadSched::default()
        }
    }

    #[test]
    fn later_rounds_sum_and_one_unread_round_states_none() {
        let mut later = LaterSched::default();
        assert_eq!(later.stated(), None);
        later.add(Some(sched(100, 10)));
        later.add(Some(sched(300, 30)));
        let sum = later.stated().unwrap();
        assert_eq!(
            (sum.span_ns, sum.waiting_ns, sum.migrations),
            (400, 40, Some(2))
        );
        later.add(None);
        later.add(Some(sched(100, 10)));
        assert_eq!(later.stated(), None);
    }
}

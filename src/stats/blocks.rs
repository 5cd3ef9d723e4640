//! A run's samples in consecutive blocks of equal iterations, and the median's interval over
//! the blocks' medians. On a shared host the samples drift with its state for seconds at a time,
//! so they are not independent and their own interval is too narrow; the medians of blocks long
//! against that drift are nearly independent, and their interval widens by what the drift moved.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::interval::{median_ranks, LEVEL};

/// Blocks before their interval is stated: ten medians give the 2nd and 9th at 97.9 %.
pub const MIN_BLOCKS: usize = 10;
/// Blocks at which pairs merge into blocks of twice the iterations, back to `MIN_BLOCKS`.
const MAX_BLOCKS: usize = 2 * MIN_BLOCKS;

/// The median's interval over a run's blocks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BlockInterval {
    /// Blocks (10 to 19).
    pub count: u64,
    /// Timed iterations in each.
    pub iterations_each: u64,
    /// The median's interval among the blocks' medians, microseconds.
    pub p50_interval_us: [f64; 2],
    /// The interval's coverage (0.95 or more).
    pub coverage: f64,
}

/// The blocks of one run, fed batch by batch: a batch of exactly the block's iterations is a
/// block; another (a last batch cut short by a limit) counts only among the samples.
#[derive(Debug, Clone)]
pub struct Blocks {
    iterations: u64,
    blocks: Vec<Histogram<u64>>,
    /// Every sample up to the last batch.
    seen: Histogram<u64>,
}

impl Blocks {
    /// No block yet; blocks of `iterations` (at least 1).
    pub fn new(iterations: u64) -> Blocks {
        Blocks {
            iterations: iterations.max(1),
            blocks: Vec::new(),
            seen: super::new_histogram(),
        }
    }

    /// The iterations a batch needs to be the next block.
    pub fn block_iterations(&self) -> u64 {
        self.iterations
    }

    /// A batch of `n` iterations ended; `all` holds every sample so far (this batch's too).
    pub fn push(&mut self, all: &Histogram<u64>, n: u64) {
        let mut batch = all.clone();
        // A histogram that lost samples (it never does) leaves this batch out of the blocks.
        let fresh = batch.subtract(&self.seen).is_ok();
        self.seen = all.clone();
        if !fresh || n != self.iterations || batch.is_empty() {
            return;
        }
        self.blocks.push(batch);
        if self.blocks.len() == MAX_BLOCKS {
            let old = std::mem::take(&mut self.blocks);
            let mut pairs = old.into_iter();
            while let (Some(mut a), Some(b)) = (pairs.next(), pairs.next()) {
                // Same bounds: adding never fails; a failure would only drop the pair.
                if a.add(&b).is_ok() {
                    self.blocks.push(a);
                }
            }
            self.iterations *= 2;
        }
    }

    /// The median's interval over the blocks, from `MIN_BLOCKS` blocks on.
    pub fn interval(&self) -> Option<BlockInterval> {
        if self.blocks.len() < MIN_BLOCKS {
            return None;
        }
        let mut medians: Vec<u64> = self
            .blocks
            .iter()
            .map(|b| b.value_at_quantile(0.5))
            .collect();
        medians.sort_unstable();
        let r = median_ranks(medians.len() as u64, LEVEL)?;
        let us = |i: u64| medians[i as usize - 1] as f64 / 1000.0;
        Some(BlockInterval {
            count: medians.len() as u64,
            iterations_each: self.iterations,
            p50_interval_us: [us(r.low), us(r.high)],
            coverage: r.coverage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;

    /// Feeds `blocks` batches of `n` iterations, batch `i`'s samples all `value(i)` ns.
    fn feed(b: &mut Blocks, all: &mut Histogram<u64>, batches: u64, value: impl Fn(u64) -> u64) {
        for i in 0..batches {
            let n = b.block_iterations();
            all.record_n(value(i), n).unwrap();
            b.push(all, n);
        }
    }

    #[test]
    fn blocks_state_an_interval_from_ten_on_and_merge_at_twenty() {
        let mut b = Blocks::new(4);
        let mut all = new_histogram();
        feed(&mut b, &mut all, 9, |i| 100 * (i + 1));
        assert_eq!(b.interval(), None);
        feed(&mut b, &mut all, 1, |_| 1000);
        // Ten block medians 0.1..1 us (exact below 2048 ns): the 2nd and 9th.
        let iv = b.interval().unwrap();
        assert_eq!((iv.count, iv.iterations_each), (10, 4));
        assert_eq!(iv.p50_interval_us, [0.2, 0.9]);
        assert!((iv.coverage - 0.978_515_625).abs() < 1e-9);
        // Ten more: twenty blocks merge pairwise into ten of 8 iterations, whose medians are
        // the lower of each pair (0.1, 0.3, ... 1.9 us).
        feed(&mut b, &mut all, 10, |i| 100 * (i + 11));
        let iv = b.interval().unwrap();
        assert_eq!((iv.count, iv.iterations_each), (10, 8));
        assert_eq!(b.block_iterations(), 8);
        assert_eq!(iv.p50_interval_us, [0.3, 1.7]);
    }

    #[test]
    fn a_batch_of_another_size_counts_only_among_the_samples() {
        let mut b = Blocks::new(5);
        let mut all = new_histogram();
        feed(&mut b, &mut all, 8, |_| 1000);
        // A batch cut short (6 iterations, not 5) is no block, and the blocks after it are
        // measured from the samples after it: its 50 us never reach a block's median.
        all.record_n(50_000, 6).unwrap();
        b.push(&all, 6);
        feed(&mut b, &mut all, 1, |_| 2000);
        assert_eq!(b.interval(), None);
        feed(&mut b, &mut all, 1, |_| 2000);
        let iv = b.interval().unwrap();
        assert_eq!(iv.count, 10);
        assert_eq!(iv.p50_interval_us, [1.0, 2.0]);
    }

    #[test]
    fn drifting_samples_widen_the_blocks_interval_beyond_the_samples_own() {
        // Each batch tight around a level that steps by 2 % per block (a host whose state
        // drifts): the pooled samples' interval is narrow, the blocks' is not.
        let mut b = Blocks::new(100);
        let mut all = new_histogram();
        for i in 0..10u64 {
            for j in 0..100u64 {
                all.record(100_000 + 2_000 * i + j).unwrap();
            }
            b.push(&all, 100);
        }
        let iv = b.interval().unwrap();
        let r = median_ranks(all.len(), LEVEL).unwrap();
        let (lo, hi) = crate::stats::values_at(&all, &r).unwrap();
        let p50 = all.value_at_quantile(0.5) as f64 / 1000.0;
        let width = |lo: f64, hi: f64| 100.0 * (hi - p50).max(p50 - lo) / p50;
        let samples = width(lo as f64 / 1000.0, hi as f64 / 1000.0);
        let blocks = width(iv.p50_interval_us[0], iv.p50_interval_us[1]);
        assert!(samples < 2.0, "{samples}");
        assert!(blocks > 6.0, "{blocks}");
    }
}

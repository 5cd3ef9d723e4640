//! The last N samples in arrival order, for figures computed over a sliding window such as
//! ucx_perftest's percentile of the last 2048 iterations.

/// How many iterations ucx_perftest's percentile column looks at.
pub const UCX_PERFTEST_WINDOW: usize = 2048;

/// A ring of the most recent samples.
#[derive(Debug, Clone)]
pub struct Recent {
    buf: Vec<u64>,
    cap: usize,
    next: usize,
    seen: u64,
}

impl Recent {
    /// Keeps the last `cap` samples (at least one).
    pub fn new(cap: usize) -> Recent {
        let cap = cap.max(1);
        Recent {
            buf: Vec::with_capacity(cap),
            cap,
            next: 0,
            seen: 0,
        }
    }

    /// Records a sample, forgetting the oldest once full.
    #[inline]
    pub fn push(&mut self, v: u64) {
        if self.buf.len() < self.cap {
            self.buf.push(v);
        } else {
            self.buf[self.next] = v;
        }
        // A compare, not a division: this runs once per measured iteration.
        self.next += 1;
        if self.next == self.cap {
            self.next = 0;
        }
        self.seen += 1;
    }

    /// The held samples, oldest first.
    pub fn in_order(&self) -> impl Iterator<Item = u64> + '_ {
        let (first, then) = if self.buf.len() < self.cap {
            (&self.buf[..], &[][..])
        } else {
            // Full: the oldest is the next to be overwritten.
            let (newer, older) = self.buf.split_at(self.next);
            (older, newer)
        };
        first.iter().chain(then).copied()
    }

    /// Records `later`'s held samples after these, oldest first: the last samples of the two
    /// runs one after the other.
    pub fn append(&mut self, later: &Recent) {
        for v in later.in_order() {
            self.push(v);
        }
    }

    /// Samples held (at most the capacity).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no sample was recorded.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The `rank` percentile (0..=100) of the held samples, nearest rank on the sorted samples
    /// (index `len * rank / 100`, clamped): for 50 and an even count, the upper middle.
    pub fn percentile(&self, rank: f64) -> Option<u64> {
        if self.buf.is_empty() || !(0.0..=100.0).contains(&rank) {
            return None;
        }
        let mut v = self.buf.clone();
        v.sort_unstable();
        let idx = ((v.len() as f64 * rank / 100.0) as usize).min(v.len() - 1);
        Some(v[idx])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_last_samples() {
        let mut r = Recent::new(4);
        assert_eq!(r.percentile(50.0), None);
        for v in [100, 200, 1, 2, 3, 4] {
            r.push(v);
        }
        assert_eq!(r.len(), 4);
        // 100 and 200 fell out: the median of 1..4 (upper middle) is 3, the max 4.
        assert_eq!(r.percentile(50.0), Some(3));
        assert_eq!(r.percentile(100.0), Some(4));
        assert_eq!(r.percentile(0.0), Some(1));
        assert_eq!(r.percentile(101.0), None);
    }

    #[test]
    fn appended_rounds_keep_the_last_samples_in_order() {
        let mut a = Recent::new(4);
        for v in [1, 2, 3, 4, 5, 6] {
            a.push(v);
        }
        assert_eq!(a.in_order().collect::<Vec<_>>(), [3, 4, 5, 6]);
        let mut b = Recent::new(4);
        b.push(7);
        let mut short = Recent::new(4);
        short.push(10);
        short.append(&b);
        assert_eq!(short.in_order().collect::<Vec<_>>(), [10, 7]);
        a.append(&b);
        assert_eq!(a.in_order().collect::<Vec<_>>(), [4, 5, 6, 7]);
        // The median of the window is of the last samples over both: 4, 5, 6, 7.
        assert_eq!(a.percentile(50.0), Some(6));
    }

    #[test]
    fn odd_count_median_is_the_middle() {
        let mut r = Recent::new(UCX_PERFTEST_WINDOW);
        for v in [5, 1, 9] {
            r.push(v);
        }
        assert_eq!(r.percentile(50.0), Some(5));
    }
}

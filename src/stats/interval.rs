//! Distribution-free confidence intervals of quantiles by order statistics: the number of
//! samples below the true q-quantile is Binomial(n, q), whatever the distribution, so a pair of
//! ranks whose binomial probability is at least the level covers it. The median's interval is
//! the one `scripts/ratios.py` gives for its ratios.

use hdrhistogram::Histogram;

/// The usual level: 95 %.
pub const LEVEL: f64 = 0.95;

/// A pair of 1-based ranks among n sorted samples and the probability that the sample values
/// at those ranks enclose the quantile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranks {
    /// The lower end's rank (1 = the smallest sample).
    pub low: u64,
    /// The upper end's rank (n = the largest sample).
    pub high: u64,
    /// P(the samples at `low` and `high` enclose the quantile).
    pub coverage: f64,
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7: about 15 significant digits).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 - x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// P(Binomial(n, q) = j).
fn pmf(n: u64, q: f64, j: u64) -> f64 {
    let (nf, jf) = (n as f64, j as f64);
    let ln_choose = ln_gamma(nf + 1.0) - ln_gamma(jf + 1.0) - ln_gamma(nf - jf + 1.0);
    (ln_choose + jf * q.ln() + (nf - jf) * (1.0 - q).ln()).exp()
}

/// The smallest j with P(Binomial(n, q) <= j) > `t` (`or_equal`: >= t), and that cdf; None when
/// no j <= n gets there. Sums from 13 standard deviations below the mean, where the mass left
/// out is far below f64's resolution, so a check of millions of samples stays quick.
fn first_above(n: u64, q: f64, t: f64, or_equal: bool) -> Option<(u64, f64)> {
    let mean = n as f64 * q;
    let sd = (n as f64 * q * (1.0 - q)).sqrt();
    let start = (mean - 13.0 * sd - 1.0).floor().max(0.0) as u64;
    let mut cdf = 0.0;
    for j in start..=n {
        cdf += pmf(n, q, j);
        if cdf > t || (or_equal && cdf >= t) {
            return Some((j, cdf));
        }
    }
    None
}

/// P(Binomial(n, q) <= j).
fn cdf(n: u64, q: f64, j: u64) -> f64 {
    let mean = n as f64 * q;
    let sd = (n as f64 * q * (1.0 - q)).sqrt();
    let start = (mean - 13.0 * sd - 1.0).floor().max(0.0) as u64;
    (start..=j.min(n)).map(|i| pmf(n, q, i)).sum()
}

/// The median's interval as `scripts/ratios.py` takes it: the k-th smallest and k-th largest of
/// n samples, k the largest (at most n/2, at least 1) whose coverage reaches `level`; with too
/// few samples for the level, the smallest and largest, with the coverage they have. None with
/// fewer than 2 samples.
pub fn median_ranks(n: u64, level: f64) -> Option<Ranks> {
    if n < 2 {
        return None;
    }
    let alpha_half = (1.0 - level) / 2.0;
    // The first j whose cdf passes alpha/2: ranks up to j keep 1 - 2 cdf(k - 1) >= level.
    let k = first_above(n, 0.5, alpha_half, false).map_or(1, |(j, _)| j);
    let k = k.clamp(1, n / 2);
    Some(Ranks {
        low: k,
        high: n - k + 1,
        coverage: 1.0 - 2.0 * cdf(n, 0.5, k - 1),
    })
}

/// The q-quantile's interval at `level`: the largest lower rank and the smallest upper rank
/// whose tails each leave at most (1 - level) / 2; None when n samples cannot reach the level
/// (the quantile's tail is then beyond the smallest or largest sample).
pub fn quantile_ranks(n: u64, q: f64, level: f64) -> Option<Ranks> {
    if n == 0 || !(q > 0.0 && q < 1.0) {
        return None;
    }
    let alpha_half = (1.0 - level) / 2.0;
    // B = samples below the quantile ~ Binomial(n, q). The l-th smallest lies at or below the
    // quantile when B >= l; the u-th lies above it when B <= u - 1.
    let (low, below) = first_above(n, q, alpha_half, false)?;
    if low == 0 {
        return None;
    }
    let (j, upper_cdf) = first_above(n, q, 1.0 - alpha_half, true)?;
    let high = j + 1;
    if high > n {
        return None;
    }
    let below_low = below - pmf(n, q, low);
    Some(Ranks {
        low,
        high,
        coverage: upper_cdf - below_low,
    })
}

/// The `k`-th smallest (1-based) sample a histogram holds, to its resolution (the highest value
/// equivalent to the bucket, as `value_at_quantile` reports); None past its count.
pub fn nth_smallest(h: &Histogram<u64>, k: u64) -> Option<u64> {
    if k == 0 || k > h.len() {
        return None;
    }
    let mut seen = 0;
    for v in h.iter_recorded() {
        seen += v.count_at_value();
        if seen >= k {
            return Some(h.highest_equivalent(v.value_iterated_to()));
        }
    }
    None
}

/// The values at `r`'s ranks among the histogram's samples.
pub fn values_at(h: &Histogram<u64>, r: &Ranks) -> Option<(u64, u64)> {
    Some((nth_smallest(h, r.low)?, nth_smallest(h, r.high)?))
}

/// The median's interval among sorted `values` (ratios, per-run figures), with its coverage.
pub fn median_interval(values: &[f64]) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let r = median_ranks(v.len() as u64, LEVEL)?;
    Some((v[r.low as usize - 1], v[r.high as usize - 1], r.coverage))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;

    #[test]
    fn median_ranks_match_ratios_py() {
        // (n, k, coverage) as scripts/ratios.py's interval() gives them.
        let want = [
            (2, 1, 0.5),
            (3, 1, 0.75),
            (5, 1, 0.9375),
            (6, 1, 0.96875),
            (10, 2, 0.978_515_625),
            (20, 6, 0.958_610_534_667_968_8),
            (100, 40, 0.964_799_799_782_295_2),
        ];
        for (n, k, cov) in want {
            let r = median_ranks(n, LEVEL).unwrap();
            assert_eq!((r.low, r.high), (k, n - k + 1), "n = {n}");
            assert!((r.coverage - cov).abs() < 1e-9, "n = {n}: {}", r.coverage);
        }
        assert!(median_ranks(1, LEVEL).is_none());
    }

    #[test]
    fn quantile_ranks_agree_with_the_median_and_need_enough_samples_for_p99() {
        for n in [6u64, 10, 20, 100, 1001, 100_000] {
            let m = median_ranks(n, LEVEL).unwrap();
            let q = quantile_ranks(n, 0.5, LEVEL).unwrap();
            assert_eq!((q.low, q.high), (m.low, m.high), "n = {n}");
            assert!((q.coverage - m.coverage).abs() < 1e-9);
        }
        // The largest of n samples lies above the 99th percentile with probability
        // 1 - 0.99^n: it reaches 97.5 % from 368 samples on.
        assert!(quantile_ranks(367, 0.99, LEVEL).is_none());
        let r = quantile_ranks(368, 0.99, LEVEL).unwrap();
        assert_eq!(r.high, 368);
        assert!(quantile_ranks(10, 0.99, LEVEL).is_none());
        let r = quantile_ranks(10_000, 0.99, LEVEL).unwrap();
        assert!(
            r.low < 9_900 && r.high > 9_900 && r.coverage >= LEVEL,
            "{r:?}"
        );
        // About 1.96 standard deviations (9.95 samples) either side.
        assert!((9_878..=9_882).contains(&r.low), "{r:?}");
        assert!((9_919..=9_922).contains(&r.high), "{r:?}");
    }

    #[test]
    fn ranks_read_off_a_histogram() {
        let mut h = new_histogram();
        for v in 1..=100u64 {
            h.record(v * 10).unwrap();
        }
        assert_eq!(nth_smallest(&h, 1), Some(10));
        assert_eq!(nth_smallest(&h, 40), Some(400));
        assert_eq!(nth_smallest(&h, 100), Some(1000));
        assert_eq!(nth_smallest(&h, 101), None);
        let r = median_ranks(100, LEVEL).unwrap();
        assert_eq!(values_at(&h, &r), Some((400, 610)));
        let (lo, hi, cov) = median_interval(&[5.0, 1.0, 4.0, 2.0, 3.0, 6.0]).unwrap();
        assert_eq!((lo, hi), (1.0, 6.0));
        assert!((cov - 0.96875).abs() < 1e-12);
    }
}

//! Tier detection for the staircase: completion times sorted and cut where a gap stands out.

use serde::{Deserialize, Serialize};

/// One tier: completion times close to each other, far from the next tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tier {
    /// Mean of the members' times.
    pub centre: f64,
    /// Smallest member time.
    pub min: f64,
    /// Largest member time.
    pub max: f64,
    /// Labels of the members (worker indices, or what the caller passed), in time order.
    pub members: Vec<usize>,
}

/// A gap splits two tiers when it exceeds both `GAP_FACTOR` x the median gap and
/// `MIN_REL_GAP` x the median time: large against the spread inside tiers, and not noise.
const GAP_FACTOR: f64 = 3.0;
/// See [`GAP_FACTOR`].
const MIN_REL_GAP: f64 = 0.05;

/// Groups `(label, time)` samples into tiers, lowest first. Empty input gives no tier.
pub fn detect_tiers(samples: &[(usize, f64)]) -> Vec<Tier> {
    let mut s: Vec<(usize, f64)> = samples
        .iter()
        .copied()
        .filter(|(_, t)| t.is_finite())
        .collect();
    if s.is_empty() {
        return Vec::new();
    }
    s.sort_by(|a, b| a.1.total_cmp(&b.1));
    let gaps: Vec<f64> = s.windows(2).map(|w| w[1].1 - w[0].1).collect();
    let threshold = if gaps.is_empty() {
        f64::INFINITY
    } else {
        let mut g = gaps.clone();
        g.sort_by(f64::total_cmp);
        let median_gap = g[g.len() / 2];
        let median_time = s[s.len() / 2].1.abs();
        (GAP_FACTOR * median_gap).max(MIN_REL_GAP * median_time)
    };
    let mut tiers = Vec::new();
    let mut start = 0;
    for i in 0..=gaps.len() {
        if i == gaps.len() || gaps[i] > threshold {
            let part = &s[start..=i];
            tiers.push(Tier {
                centre: part.iter().map(|p| p.1).sum::<f64>() / part.len() as f64,
                min: part[0].1,
                max: part[part.len() - 1].1,
                members: part.iter().map(|p| p.0).collect(),
            });
            start = i + 1;
        }
    }
    tiers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labelled(times: &[f64]) -> Vec<(usize, f64)> {
        times.iter().copied().enumerate().collect()
    }

    #[test]
    fn four_step_staircase_is_found_with_its_members() {
        // 16 workers finishing in four waves around 10, 20, 30 and 40 ms, interleaved labels.
        let mut t = Vec::new();
        for w in 0..16usize {
            let level = (w % 4) as f64 + 1.0;
            t.push((w, level * 10.0 + (w as f64) * 0.01));
        }
        let tiers = detect_tiers(&t);
        assert_eq!(tiers.len(), 4, "{tiers:?}");
        assert_eq!(tiers[0].members, vec![0, 4, 8, 12]);
        assert_eq!(tiers[3].members, vec![3, 7, 11, 15]);
        assert!((tiers[1].centre - (20.0 + (1.0 + 5.0 + 9.0 + 13.0) * 0.01 / 4.0)).abs() < 1e-9);
        assert!((tiers[2].min - 30.02).abs() < 1e-9);
        assert!((tiers[2].max - 30.14).abs() < 1e-9);
    }

    #[test]
    fn evenly_spread_times_are_one_tier() {
        let t: Vec<f64> = (0..16).map(|i| 100.0 + i as f64).collect();
        let tiers = detect_tiers(&labelled(&t));
        assert_eq!(tiers.len(), 1);
        assert_eq!(tiers[0].members.len(), 16);
        assert!((tiers[0].centre - 107.5).abs() < 1e-9);
    }

    #[test]
    fn near_identical_times_are_not_split_by_noise() {
        let t = [50.0, 50.001, 50.0, 50.3, 50.002, 50.0];
        assert_eq!(detect_tiers(&labelled(&t)).len(), 1);
    }

    #[test]
    fn two_clusters_and_an_outlier() {
        let t = [5.0, 5.1, 5.05, 9.0, 9.1, 9.05, 30.0];
        let tiers = detect_tiers(&labelled(&t));
        let sizes: Vec<usize> = tiers.iter().map(|t| t.members.len()).collect();
        assert_eq!(sizes, vec![3, 3, 1]);
        assert_eq!(tiers[2].members, vec![6]);
    }

    #[test]
    fn edge_cases() {
        assert!(detect_tiers(&[]).is_empty());
        let one = detect_tiers(&[(3, 7.0)]);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].members, vec![3]);
        assert_eq!(detect_tiers(&[(0, f64::NAN), (1, 2.0)]).len(), 1);
    }
}

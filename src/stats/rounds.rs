//! The median's interval over rounds on fresh endpoints. What moves a median from one run to
//! the next (where the endpoints' memory and threads land, the host's state when they start)
//! stays put for a whole run, so no interval from one run's samples sees it; rounds that each
//! start afresh do.

use serde::{Deserialize, Serialize};

use super::interval::median_interval;

/// The most `--rounds` of a run.
pub const MAX_ROUNDS: u64 = 1000;

/// `--rounds` of an `--iterations auto` run unless given: the fewest whose medians state a
/// 95 % interval (their range covers 96.9 %).
pub const AUTO_ROUNDS: u64 = 6;

/// Refuses a round count outside 1 to [`MAX_ROUNDS`].
pub fn check_rounds(rounds: u64) -> Result<(), String> {
    if (1..=MAX_ROUNDS).contains(&rounds) {
        Ok(())
    } else {
        Err(format!("--rounds {rounds}: 1 to {MAX_ROUNDS}"))
    }
}

/// The median's interval over the medians of a run's rounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundsInterval {
    /// Each round's median, microseconds, in the order they ran.
    pub p50_us: Vec<f64>,
    /// The median's interval among them (order statistics), microseconds.
    pub p50_interval_us: [f64; 2],
    /// Its coverage: 0.95 or more from 6 rounds on; with fewer, what their range covers
    /// (5 rounds: 0.94, 2: 0.5).
    pub coverage: f64,
}

impl RoundsInterval {
    /// The interval over the rounds' medians (microseconds); None with fewer than 2.
    pub fn of(p50_us: &[f64]) -> Option<RoundsInterval> {
        let (lo, hi, coverage) = median_interval(p50_us)?;
        Some(RoundsInterval {
            p50_us: p50_us.to_vec(),
            p50_interval_us: [lo, hi],
            coverage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_rounds_reach_95_percent_and_fewer_state_what_their_range_covers() {
        let six = RoundsInterval::of(&[0.70, 0.66, 0.72, 0.68, 0.69, 0.67]).unwrap();
        assert_eq!(six.p50_interval_us, [0.66, 0.72]);
        assert!((six.coverage - 0.968_75).abs() < 1e-9);
        assert_eq!(six.p50_us[0], 0.70);
        let five = RoundsInterval::of(&[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert_eq!(five.p50_interval_us, [1.0, 5.0]);
        assert!((five.coverage - 0.9375).abs() < 1e-9);
        // Eleven rounds: the 2nd smallest and 2nd largest (98.8 %), an outlier left out.
        let mut m: Vec<f64> = (1..=10).map(f64::from).collect();
        m.push(100.0);
        let eleven = RoundsInterval::of(&m).unwrap();
        assert_eq!(eleven.p50_interval_us, [2.0, 10.0]);
        assert!(RoundsInterval::of(&[1.0]).is_none());
    }
}

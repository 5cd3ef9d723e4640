//! When transfers arrive in an open-loop run: at a fixed rate, or as a Poisson process
//! (exponential gaps from a seeded generator, so a run can be repeated arrival for arrival).

/// How arrivals are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrivalKind {
    /// Exponential gaps: a Poisson process.
    Poisson,
    /// Equal gaps.
    Fixed,
}

impl ArrivalKind {
    /// The name in options and results.
    pub fn name(self) -> &'static str {
        match self {
            ArrivalKind::Poisson => "poisson",
            ArrivalKind::Fixed => "fixed",
        }
    }
}

/// `--arrival poisson:RATE` or `fixed:RATE` (transfers per second per initiator); the rate may
/// be left out where `--sweep-rate` gives the rates.
pub fn parse_arrival(s: &str) -> Result<(ArrivalKind, Option<f64>), String> {
    let (kind, rate) = match s.trim().split_once(':') {
        Some((k, r)) => (k, Some(r)),
        None => (s.trim(), None),
    };
    let kind = match kind.to_ascii_lowercase().as_str() {
        "poisson" => ArrivalKind::Poisson,
        "fixed" => ArrivalKind::Fixed,
        _ => return Err(format!("--arrival {s:?}: poisson:RATE or fixed:RATE")),
    };
    let rate = rate.map(parse_rate).transpose()?;
    Ok((kind, rate))
}

/// A rate in transfers per second: positive and finite.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= 1e9 => Ok(r),
        _ => Err(format!(
            "{s:?} is not a rate (transfers per second, above 0)"
        )),
    }
}

/// The arrival times of one schedule, nanoseconds from its start: the first at 0.
#[derive(Debug, Clone)]
pub struct Schedule {
    kind: ArrivalKind,
    mean_gap_ns: f64,
    state: u64,
    next_ns: f64,
}

impl Schedule {
    /// Arrivals of `kind` at `rate` per second; `seed` chooses the Poisson gaps.
    pub fn new(kind: ArrivalKind, rate: f64, seed: u64) -> Schedule {
        Schedule {
            kind,
            mean_gap_ns: 1e9 / rate,
            state: seed,
            next_ns: 0.0,
        }
    }

    /// The next arrival's time.
    pub fn next_arrival(&mut self) -> u64 {
        let at = self.next_ns;
        let gap = match self.kind {
            ArrivalKind::Fixed => self.mean_gap_ns,
            // Inverse transform: -ln(U) x mean, U uniform in (0, 1].
            ArrivalKind::Poisson => -(self.uniform().ln()) * self.mean_gap_ns,
        };
        self.next_ns += gap;
        at as u64
    }

    /// A uniform number in (0, 1] (splitmix64's output, 53 bits).
    fn uniform(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_gaps_are_equal_and_poisson_gaps_average_the_rate() {
        let mut f = Schedule::new(ArrivalKind::Fixed, 1000.0, 1);
        let t: Vec<u64> = (0..4).map(|_| f.next_arrival()).collect();
        assert_eq!(t, [0, 1_000_000, 2_000_000, 3_000_000]);
        let mut p = Schedule::new(ArrivalKind::Poisson, 1000.0, 7);
        let n = 20_000;
        let last = (0..=n).map(|_| p.next_arrival()).last().unwrap();
        // 20,000 exponential gaps of mean 1 ms: their mean within 3 % (about 4 standard errors).
        let mean = last as f64 / n as f64;
        assert!((mean / 1e6 - 1.0).abs() < 0.03, "mean gap {mean} ns");
        // Same seed, same arrivals.
        let mut a = Schedule::new(ArrivalKind::Poisson, 50.0, 3);
        let mut b = Schedule::new(ArrivalKind::Poisson, 50.0, 3);
        assert!((0..10).all(|_| a.next_arrival() == b.next_arrival()));
    }

    #[test]
    fn arrival_options_parse() {
        assert_eq!(
            parse_arrival("poisson:100"),
            Ok((ArrivalKind::Poisson, Some(100.0)))
        );
        assert_eq!(
            parse_arrival("fixed:2.5"),
            Ok((ArrivalKind::Fixed, Some(2.5)))
        );
        assert_eq!(parse_arrival("poisson"), Ok((ArrivalKind::Poisson, None)));
        for bad in [
            "uniform:3",
            "poisson:0",
            "fixed:-1",
            "poisson:x",
            "fixed:inf",
        ] {
            assert!(parse_arrival(bad).is_err(), "{bad}");
        }
    }
}

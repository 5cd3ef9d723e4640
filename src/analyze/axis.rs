//! Axis ticks and their labels: sizes in the team's units (55M, 672M), plain figures with as
//! many decimals as the tick step needs, ticks at the measured values on log axes, and the
//! label area sized from the widest label in the plot's font.

use plotters::style::{FontDesc, IntoFont};

/// The font of tick labels (family, pixel size).
pub const TICK_FONT: (&str, f64) = ("sans-serif", 15.0);
/// The font of axis descriptions.
pub const DESC_FONT: (&str, f64) = ("sans-serif", 18.0);

/// What an axis's values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Units {
    /// Plain figures (ms, µs, GB/s, ratios).
    Plain,
    /// Bytes, labelled in binary units as the team writes them (55M, 672M, 64K).
    Bytes,
}

/// An axis: its values' units, whether they are log10 of the figure, and the ticks (in axis
/// values) with their labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// Tick positions, in the axis's own values (log10 of the figure on a log axis).
    pub ticks: Vec<f64>,
    /// One label per tick.
    pub labels: Vec<String>,
}

/// Bytes in binary units: `55M` for 57,344,000, `672M` for 704,643,072, `64K`, `1.5M`, `64`;
/// whole units from 10 up, one decimal below; gigabytes only from 10G (the team writes
/// 1,094 MB).
pub fn bytes_label(b: f64) -> String {
    for (unit, suffix, from) in [
        (1u64 << 30, "G", 10u64 << 30),
        (1 << 20, "M", 1 << 20),
        (1 << 10, "K", 1 << 10),
    ] {
        if b >= from as f64 {
            let v = b / unit as f64;
            return if v >= 10.0 || (v - v.round()).abs() < 0.05 {
                format!("{}{suffix}", v.round())
            } else {
                format!("{v:.1}{suffix}")
            };
        }
    }
    format!("{}", b.round())
}

/// A figure with `decimals` decimals, trailing zeros dropped (`8442.7`, `9000`, `0.25`).
pub fn number_label(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" {
        "0".into()
    } else {
        s
    }
}

/// A figure on a log axis read back from its log10 value: powers of ten as `1`, `10`, `1K`,
/// `1M` (decimal), other values with three significant figures.
fn log_label(v: f64, units: Units) -> String {
    let x = 10f64.powf(v);
    if units == Units::Bytes {
        return bytes_label(x);
    }
    for (div, suffix) in [(1e9, "G"), (1e6, "M"), (1e3, "K")] {
        if x >= div * 0.9995 {
            return format!("{}{suffix}", significant(x / div));
        }
    }
    significant(x)
}

/// Three significant figures, trailing zeros dropped.
fn significant(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let decimals = (2 - x.abs().log10().floor() as i32).max(0) as usize;
    number_label(x, decimals)
}

/// A step of 1, 2 or 5 x 10^k giving about `want` ticks (up to half as many again) over
/// `span`.
fn nice_step(span: f64, want: usize) -> f64 {
    let raw = span / want.max(1) as f64 / 1.5;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// Ticks of a linear axis over `range`: multiples of a 1-2-5 step, labelled with the
/// decimals the step needs (bytes in binary units).
pub fn linear(range: std::ops::Range<f64>, units: Units) -> Axis {
    let step = nice_step(range.end - range.start, 6);
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let first = (range.start / step).ceil() as i64;
    let last = (range.end / step).floor() as i64;
    let ticks: Vec<f64> = (first..=last).map(|k| k as f64 * step).collect();
    let labels = ticks
        .iter()
        .map(|t| match units {
            Units::Bytes => bytes_label(*t),
            Units::Plain => number_label(*t, decimals),
        })
        .collect();
    Axis { ticks, labels }
}

/// Ticks of a log axis (values are log10 of the figure) over `range`: at `measured` values
/// when given (sizes a plot was measured at), else at the powers of ten inside the range,
/// else at its ends.
pub fn log(range: std::ops::Range<f64>, units: Units, measured: &[f64]) -> Axis {
    let inside = |v: &f64| *v >= range.start - 1e-9 && *v <= range.end + 1e-9;
    let mut ticks: Vec<f64> = measured.iter().copied().filter(inside).collect();
    let given = !ticks.is_empty();
    if ticks.is_empty() {
        ticks = (range.start.ceil() as i64..=range.end.floor() as i64)
            .map(|k| k as f64)
            .collect();
    }
    if ticks.len() < 2 && !given {
        // Within about a decade: 1, 2 and 5 times the powers of ten.
        ticks = (range.start.floor() as i64..=range.end.ceil() as i64)
            .flat_map(|k| [1.0f64, 2.0, 5.0].map(|m| m.log10() + k as f64))
            .filter(inside)
            .collect();
    }
    if ticks.is_empty() || (ticks.len() < 2 && !given) {
        ticks = vec![range.start, range.end];
    }
    ticks.sort_by(f64::total_cmp);
    ticks.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
    let labels = ticks.iter().map(|t| log_label(*t, units)).collect();
    Axis { ticks, labels }
}

/// Ticks at given values of a linear axis (the concurrencies measured), labelled plainly or
/// as sizes.
pub fn at(values: &[f64], units: Units) -> Axis {
    let mut ticks = values.to_vec();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
    let labels = ticks
        .iter()
        .map(|t| match units {
            Units::Bytes => bytes_label(*t),
            Units::Plain => significant(*t),
        })
        .collect();
    Axis { ticks, labels }
}

/// The pixel width of `text` in `font`; an estimate (0.6 em per character) where the font
/// cannot be loaded.
pub fn text_width(text: &str, font: (&str, f64)) -> u32 {
    let f: FontDesc = font.into_font();
    match f.box_size(text) {
        Ok((w, _)) => w,
        Err(_) => (text.chars().count() as f64 * font.1 * 0.6).ceil() as u32,
    }
}

/// The width of a y label area: the widest tick label in [`TICK_FONT`], the tick mark and the
/// gap beside it, and the rotated axis description in [`DESC_FONT`].
pub fn label_area(labels: &[String]) -> u32 {
    let widest = labels
        .iter()
        .map(|l| text_width(l, TICK_FONT))
        .max()
        .unwrap_or(0);
    widest + 12 + DESC_FONT.1 as u32 + 16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_the_team_writes_them() {
        assert_eq!(bytes_label(57_344_000.0), "55M");
        assert_eq!(bytes_label(234_881_024.0), "224M");
        assert_eq!(bytes_label(704_643_072.0), "672M");
        assert_eq!(bytes_label(1_146_880_000.0), "1094M");
        assert_eq!(bytes_label(104_857_600.0), "100M");
        assert_eq!(bytes_label(1_572_864.0), "1.5M");
        assert_eq!(bytes_label(65_536.0), "64K");
        assert_eq!(bytes_label(64.0), "64");
        assert_eq!(bytes_label(20.0 * (1u64 << 30) as f64), "20G");
    }

    #[test]
    fn linear_ticks_carry_the_decimals_their_step_needs() {
        let a = linear(0.0..10_500.0, Units::Plain);
        assert_eq!(
            a.labels,
            ["0", "2000", "4000", "6000", "8000", "10000"],
            "{:?}",
            a.ticks
        );
        let a = linear(0.0..1.3, Units::Plain);
        assert_eq!(a.labels, ["0", "0.2", "0.4", "0.6", "0.8", "1", "1.2"]);
        let a = linear(1.0..3.0, Units::Plain);
        assert!(
            a.labels.iter().all(|l| !l.ends_with(".0")),
            "{:?}",
            a.labels
        );
        assert_eq!(number_label(8442.7, 1), "8442.7");
        assert_eq!(number_label(-0.0001, 2), "0");
    }

    #[test]
    fn log_ticks_sit_at_the_measured_sizes() {
        let sizes = [704_643_072f64.log10()];
        let a = log(8.7..8.9, Units::Bytes, &sizes);
        assert_eq!(a.labels, ["672M"]);
        assert_eq!(a.ticks, sizes);
        let sizes: Vec<f64> = [57_344_000f64, 234_881_024.0, 704_643_072.0]
            .iter()
            .map(|s| s.log10())
            .collect();
        assert_eq!(
            log(7.6..8.9, Units::Bytes, &sizes).labels,
            ["55M", "224M", "672M"]
        );
        // No measured values: the powers of ten inside; latency in decimal units.
        assert_eq!(
            log(0.5..4.2, Units::Plain, &[]).labels,
            ["10", "100", "1K", "10K"]
        );
        assert_eq!(log(0.58..1.58, Units::Plain, &[]).labels, ["5", "10", "20"]);
        assert_eq!(log(1.1..1.2, Units::Plain, &[]).labels, ["12.6", "15.8"]);
    }

    #[test]
    fn the_label_area_holds_the_widest_label_in_the_plots_font() {
        let a = linear(0.0..10_500.0, Units::Plain);
        let area = label_area(&a.labels);
        let widest = a
            .labels
            .iter()
            .map(|l| text_width(l, TICK_FONT))
            .max()
            .unwrap();
        assert!(widest >= text_width("8", TICK_FONT) * 5, "{widest}");
        assert!(area >= widest + DESC_FONT.1 as u32, "{area} vs {widest}");
        // A wider label widens the area.
        assert!(label_area(&["1234567.89".to_string()]) > area);
    }
}

//! Colours and markers that read on white and in greyscale: lines dark enough against white
//! (contrast at least 3:1) with grey levels apart and a marker shape each; bar parts outlined,
//! their fills apart in grey level.

use plotters::style::RGBColor;

/// Line colours in drawing order (the first four at least 20 grey levels apart).
pub const LINES: [RGBColor; 6] = [
    RGBColor(0, 0, 0),      // black
    RGBColor(0, 68, 136),   // dark blue
    RGBColor(17, 119, 51),  // green
    RGBColor(213, 94, 0),   // vermilion
    RGBColor(153, 153, 51), // olive
    RGBColor(170, 51, 119), // purple
];

/// Fills of stacked bar parts in drawing order, every pair at least 20 grey levels apart.
pub const BARS: [RGBColor; 7] = [
    RGBColor(51, 34, 136),   // indigo
    RGBColor(17, 119, 51),   // green
    RGBColor(187, 85, 102),  // rose
    RGBColor(153, 153, 51),  // olive
    RGBColor(221, 170, 51),  // ochre
    RGBColor(221, 204, 119), // sand
    RGBColor(230, 230, 230), // light grey
];

/// The marker of the `i`th line series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// A disc.
    Circle,
    /// A triangle.
    Triangle,
    /// A square.
    Square,
}

/// Colour, marker and whether the marker is filled for line series `i`.
pub fn line_style(i: usize) -> (RGBColor, Marker, bool) {
    let marker = [Marker::Circle, Marker::Triangle, Marker::Square][i % 3];
    (LINES[i % LINES.len()], marker, (i / 3) % 2 == 0)
}

/// The fill of bar part `i`.
pub fn bar_fill(i: usize) -> RGBColor {
    BARS[i % BARS.len()]
}

/// Grey level (0..255) a colour prints as: ITU-R 601 luma.
pub fn grey(c: RGBColor) -> f64 {
    0.299 * c.0 as f64 + 0.587 * c.1 as f64 + 0.114 * c.2 as f64
}

/// WCAG contrast ratio of a colour against white.
pub fn contrast_on_white(c: RGBColor) -> f64 {
    let lin = |v: u8| {
        let v = v as f64 / 255.0;
        if v <= 0.04045 {
            v / 12.92
        } else {
            ((v + 0.055) / 1.055).powf(2.4)
        }
    };
    let l = 0.2126 * lin(c.0) + 0.7152 * lin(c.1) + 0.0722 * lin(c.2);
    1.05 / (l + 0.05)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_on_white_and_apart_in_grey() {
        for c in LINES {
            assert!(
                contrast_on_white(c) >= 3.0,
                "{c:?}: {}",
                contrast_on_white(c)
            );
        }
        for (i, a) in LINES[..4].iter().enumerate() {
            for b in &LINES[i + 1..4] {
                assert!((grey(*a) - grey(*b)).abs() >= 20.0, "{a:?} {b:?}");
            }
        }
        // The old palette's yellow (255, 255, 0-ish) is out: nothing lighter than grey 150.
        assert!(LINES.iter().all(|c| grey(*c) < 150.0));
        // Same colour family apart by marker: six distinct (marker, filled) pairs.
        let styles: std::collections::BTreeSet<String> = (0..6)
            .map(|i| format!("{:?}", (line_style(i).1, line_style(i).2)))
            .collect();
        assert_eq!(styles.len(), 6);
    }

    #[test]
    fn bar_fills_are_apart_in_grey() {
        for (i, a) in BARS.iter().enumerate() {
            for b in &BARS[i + 1..] {
                assert!((grey(*a) - grey(*b)).abs() >= 20.0, "{a:?} {b:?}");
            }
        }
    }
}

//! Drawing line charts and stacked bar charts with plotters, to PNG and SVG alike.

use std::path::Path;

use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;

/// Width and height of every plot, in pixels.
const SIZE: (u32, u32) = (1100, 680);

/// One named series of (x, y) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Points in drawing order.
    pub points: Vec<(f64, f64)>,
    /// Drawn as crosses only (tier marks), not joined.
    pub marks_only: bool,
}

/// A line chart; an axis marked `log` holds log10 values and is labelled in plain figures.
#[derive(Debug, Clone, PartialEq)]
pub struct LinePlot {
    /// Caption.
    pub title: String,
    /// X axis description, with its unit.
    pub x_label: String,
    /// Y axis description, with its unit.
    pub y_label: String,
    /// X values are log10 of the figure.
    pub x_log: bool,
    /// Y values are log10 of the figure.
    pub y_log: bool,
    /// The series.
    pub series: Vec<Series>,
}

/// A bar chart of stacked parts per category.
#[derive(Debug, Clone, PartialEq)]
pub struct BarPlot {
    /// Caption.
    pub title: String,
    /// Y axis description, with its unit.
    pub y_label: String,
    /// Categories with their parts (name, value); negative parts are drawn as zero.
    pub bars: Vec<(String, Vec<(String, f64)>)>,
}

/// What to draw.
#[derive(Debug, Clone, PartialEq)]
pub enum Chart {
    /// Lines.
    Lines(LinePlot),
    /// Stacked bars.
    Bars(BarPlot),
}

/// Draws `chart` to `png` and `svg`; the drawing library's message on failure.
pub fn draw(chart: &Chart, png: &Path, svg: &Path) -> Result<(), String> {
    {
        let root = BitMapBackend::new(png, SIZE).into_drawing_area();
        on(root, chart).map_err(|e| e.to_string())?;
    }
    let root = SVGBackend::new(svg, SIZE).into_drawing_area();
    on(root, chart).map_err(|e| e.to_string())
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn on<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, chart: &Chart) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    match chart {
        Chart::Lines(p) => lines(&root, p)?,
        Chart::Bars(p) => bars(&root, p)?,
    }
    root.present()
}

/// A figure for an axis label: powers of ten read back, with SI suffixes for big ones.
fn label(v: f64, log: bool) -> String {
    if log && (v - v.round()).abs() > 1e-6 {
        return String::new();
    }
    let x = if log { 10f64.powf(v.round()) } else { v };
    let a = x.abs();
    if log {
        for (div, suffix) in [(1e9, "G"), (1e6, "M"), (1e3, "K")] {
            if a >= div {
                return format!("{}{suffix}", trim(x / div));
            }
        }
    }
    trim(x)
}

fn trim(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The range of `vals` padded by 5 % (one unit around a single value); 0..1 when empty.
fn range(vals: impl Iterator<Item = f64>, from_zero: bool) -> std::ops::Range<f64> {
    let v: Vec<f64> = vals.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0..1.0;
    }
    let mut lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let mut hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if from_zero {
        lo = lo.min(0.0);
    }
    if hi - lo < 1e-9 {
        lo -= 0.5;
        hi += 0.5;
    }
    let pad = (hi - lo) * 0.05;
    (if from_zero && lo >= 0.0 {
        0.0
    } else {
        lo - pad
    })..(hi + pad)
}

fn lines<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, p: &LinePlot) -> DrawResult<DB> {
    let pts = || p.series.iter().flat_map(|s| s.points.iter());
    let xr = range(pts().map(|q| q.0), false);
    let yr = range(pts().map(|q| q.1), !p.y_log);
    let mut chart = ChartBuilder::on(root)
        .caption(&p.title, ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(55)
        .y_label_area_size(80)
        .build_cartesian_2d(xr, yr)?;
    let xf = |v: &f64| label(*v, p.x_log);
    let yf = |v: &f64| label(*v, p.y_log);
    chart
        .configure_mesh()
        .x_desc(p.x_label.as_str())
        .y_desc(p.y_label.as_str())
        .x_label_formatter(&xf)
        .y_label_formatter(&yf)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 18))
        .draw()?;
    for (i, s) in p.series.iter().enumerate() {
        let c = Palette99::pick(i).to_rgba();
        if s.marks_only {
            chart
                .draw_series(
                    s.points
                        .iter()
                        .map(|&q| Cross::new(q, 7, c.stroke_width(2))),
                )?
                .label(s.name.as_str())
                .legend(move |(x, y)| Cross::new((x + 10, y), 6, c.stroke_width(2)));
            continue;
        }
        chart
            .draw_series(LineSeries::new(s.points.clone(), c.stroke_width(2)))?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3)));
        chart.draw_series(s.points.iter().map(|&q| Circle::new(q, 4, c.filled())))?;
    }
    if p.series.is_empty() {
        no_data(root)
    } else {
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    }
}

/// The legend box of a chart's labelled series.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    at: SeriesLabelPosition,
) -> DrawResult<DB> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .position(at)
        .draw()
}

fn no_data<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    let (w, h) = root.dim_in_pixel();
    root.draw(&Text::new(
        "no data: the JSON report lists the runs that would fill this plot",
        (w as i32 / 6, h as i32 / 2),
        ("sans-serif", 20),
    ))
}

fn bars<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, p: &BarPlot) -> DrawResult<DB> {
    let last = p.bars.len().max(1) as u32 - 1;
    let top = p
        .bars
        .iter()
        .map(|(_, parts)| parts.iter().map(|(_, v)| v.max(0.0)).sum::<f64>())
        .fold(0.0, f64::max);
    let top = if top > 0.0 { top * 1.25 } else { 1.0 };
    let mut chart = ChartBuilder::on(root)
        .caption(&p.title, ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(55)
        .y_label_area_size(80)
        .build_cartesian_2d((0u32..last).into_segmented(), 0f64..top)?;
    let names: Vec<&str> = p.bars.iter().map(|b| b.0.as_str()).collect();
    let xf = |v: &SegmentValue<u32>| match v {
        SegmentValue::CenterOf(i) => names.get(*i as usize).unwrap_or(&"").to_string(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(p.y_label.as_str())
        .x_label_formatter(&xf)
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()?;
    let mut parts: Vec<&str> = Vec::new();
    for (_, ps) in &p.bars {
        for (name, _) in ps {
            if !parts.contains(&name.as_str()) {
                parts.push(name);
            }
        }
    }
    for (k, part) in parts.iter().enumerate() {
        let c = Palette99::pick(k).to_rgba();
        let rects: Vec<Rectangle<(SegmentValue<u32>, f64)>> = p
            .bars
            .iter()
            .enumerate()
            .filter_map(|(i, (_, ps))| {
                let below: f64 = ps
                    .iter()
                    .take_while(|(n, _)| n != part)
                    .map(|(_, v)| v.max(0.0))
                    .sum();
                let v = ps.iter().find(|(n, _)| n == part)?.1.max(0.0);
                let mut r = Rectangle::new(
                    [
                        (SegmentValue::Exact(i as u32), below),
                        (SegmentValue::Exact(i as u32 + 1), below + v),
                    ],
                    c.filled(),
                );
                r.set_margin(0, 0, 30, 30);
                Some(r)
            })
            .collect();
        chart
            .draw_series(rects)?
            .label(*part)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], c.filled()));
    }
    for (i, (_, ps)) in p.bars.iter().enumerate() {
        // The label is the parts' true sum; a negative part is not drawn, and says so.
        let drawn: f64 = ps.iter().map(|(_, v)| v.max(0.0)).sum();
        let sum: f64 = ps.iter().map(|(_, v)| v).sum();
        let negative = ps
            .iter()
            .filter(|(_, v)| *v < 0.0)
            .map(|(n, v)| format!("{n} {}", trim(*v)))
            .collect::<Vec<_>>();
        let mut text = format!("{} {}", trim(sum), unit_of(&p.y_label));
        if !negative.is_empty() {
            text.push_str(&format!(" (not drawn: {})", negative.join(", ")));
        }
        chart.draw_series(std::iter::once(Text::new(
            text,
            (SegmentValue::CenterOf(i as u32), drawn + top * 0.02),
            ("sans-serif", 16),
        )))?;
    }
    if p.bars.is_empty() {
        no_data(root)
    } else {
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    }
}

/// The unit in an axis description's parentheses (`TTFT (ms)` gives `ms`).
fn unit_of(desc: &str) -> &str {
    desc.rsplit_once('(')
        .and_then(|(_, u)| u.split_once(')'))
        .map(|(u, _)| u)
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_labels_read_log_values_back() {
        assert_eq!(label(3.0, true), "1K");
        assert_eq!(label(6.0, true), "1M");
        assert_eq!(label(2.5, false), "2.5");
        assert_eq!(label(0.0, true), "1");
        assert_eq!(label(2.5, true), "");
        assert_eq!(unit_of("TTFT (ms)"), "ms");
        assert_eq!(range(std::iter::empty(), false), 0.0..1.0);
    }
}

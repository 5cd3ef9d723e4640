//! Drawing line charts and stacked bar charts with plotters, to PNG and SVG alike: ticks and
//! label areas from [`super::axis`], colours and markers from [`super::palette`], the legend in
//! a panel of its own right of the plot so it never covers data.

use std::path::Path;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::axis::{self, Axis, Units, DESC_FONT, TICK_FONT};
use super::palette::{self, Marker};

/// Width and height of every plot, in pixels.
pub const SIZE: (u32, u32) = (1100, 680);

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
    /// What the x values are (bytes are labelled 55M, 672M).
    pub x_units: Units,
    /// Ticks of the x axis in its own values (the measured sizes or concurrencies); empty:
    /// chosen from the range.
    pub x_ticks: Vec<f64>,
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

/// An f64 axis whose ticks are placed by hand (plotters would choose its own).
struct Ticked {
    inner: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Ticked {
    fn new(r: std::ops::Range<f64>, a: &Axis) -> Ticked {
        Ticked {
            inner: r.into(),
            ticks: a.ticks.clone(),
        }
    }
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

/// The coordinates of both chart kinds: f64 axes with the ticks placed by hand.
type Coords = Cartesian2d<Ticked, Ticked>;

/// How a legend entry is drawn.
#[derive(Debug, Clone, Copy)]
enum Mark {
    /// A line with the series' marker.
    Line(RGBColor, Marker, bool),
    /// A cross (tier marks).
    Cross(RGBColor),
    /// A filled box (bar parts).
    Fill(RGBColor),
}

fn on<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, chart: &Chart) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let (title, entries) = match chart {
        Chart::Lines(p) => (&p.title, line_entries(p)),
        Chart::Bars(p) => (&p.title, bar_entries(p)),
    };
    let root = root.titled(title, ("sans-serif", 24))?;
    let width = legend_width(&entries);
    let (plot, panel) = root.split_horizontally(root.dim_in_pixel().0 - width);
    match chart {
        Chart::Lines(p) => lines(&plot, p)?,
        Chart::Bars(p) => bars(&plot, p)?,
    }
    legend(&panel, &entries)?;
    root.present()
}

/// The range of `vals` padded by 5 % (half a unit around a single value); 0..1 when empty.
/// A log axis is padded by at least 0.15 (decades), so its end points stand clear of the edge.
fn range(vals: impl Iterator<Item = f64>, from_zero: bool, log: bool) -> std::ops::Range<f64> {
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
    let pad = if log {
        ((hi - lo) * 0.05).max(0.15)
    } else {
        (hi - lo) * 0.05
    };
    (if from_zero && lo >= 0.0 {
        0.0
    } else {
        lo - pad
    })..(hi + pad)
}

/// The ticks of one axis over `r`.
fn axis_of(r: &std::ops::Range<f64>, log: bool, units: Units, measured: &[f64]) -> Axis {
    match (log, measured.is_empty()) {
        (true, _) => axis::log(r.clone(), units, measured),
        (false, true) => axis::linear(r.clone(), units),
        (false, false) => axis::at(measured, units),
    }
}

/// The label of the tick at `v` (none between ticks).
fn tick_label(a: &Axis, v: f64) -> String {
    a.ticks
        .iter()
        .position(|t| (t - v).abs() < 1e-9)
        .map(|i| a.labels[i].clone())
        .unwrap_or_default()
}

/// A chart over `x` and `y` with its mesh drawn: ticks where the axes say, the y label area
/// as wide as the widest y label needs.
fn chart_on<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    (xr, xa, x_desc): (std::ops::Range<f64>, &Axis, &str),
    (yr, ya, y_desc): (std::ops::Range<f64>, &Axis, &str),
    x_mesh: bool,
) -> Result<ChartContext<'a, DB, Coords>, DrawingAreaErrorKind<DB::ErrorType>> {
    let mut chart = ChartBuilder::on(area)
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(axis::label_area(&ya.labels))
        .build_cartesian_2d(Ticked::new(xr, xa), Ticked::new(yr, ya))?;
    let xf = |v: &f64| tick_label(xa, *v);
    let yf = |v: &f64| tick_label(ya, *v);
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&xf)
        .y_label_formatter(&yf)
        .label_style(TICK_FONT)
        .axis_desc_style(DESC_FONT);
    if !x_mesh {
        mesh.disable_x_mesh();
    }
    mesh.draw()?;
    Ok(chart)
}

/// Legend entries of a line plot: each line its colour and marker; marks (tier centres) a
/// cross in the colour of the line before them, the one they belong to.
fn line_entries(p: &LinePlot) -> Vec<(String, Mark)> {
    let mut k = 0;
    p.series
        .iter()
        .map(|s| {
            let mark = if s.marks_only {
                Mark::Cross(palette::line_style(k.max(1) - 1).0)
            } else {
                let (c, m, f) = palette::line_style(k);
                k += 1;
                Mark::Line(c, m, f)
            };
            (s.name.clone(), mark)
        })
        .collect()
}

fn lines<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: &LinePlot) -> DrawResult<DB> {
    let pts = || p.series.iter().flat_map(|s| s.points.iter());
    let xr = range(pts().map(|q| q.0), false, p.x_log);
    let yr = range(pts().map(|q| q.1), !p.y_log, p.y_log);
    let xa = axis_of(&xr, p.x_log, p.x_units, &p.x_ticks);
    let ya = axis_of(&yr, p.y_log, Units::Plain, &[]);
    let mut chart = chart_on(area, (xr, &xa, &p.x_label), (yr, &ya, &p.y_label), true)?;
    // Earlier lines are drawn wider, so a later line that coincides (a twin that agrees)
    // leaves both colours visible.
    let mut k = 0;
    for (s, (_, mark)) in p.series.iter().zip(line_entries(p)) {
        match mark {
            Mark::Cross(c) => {
                chart.draw_series(
                    s.points
                        .iter()
                        .map(|&q| Cross::new(q, 7, c.stroke_width(2))),
                )?;
            }
            Mark::Line(c, m, filled) => {
                let wide = 5 - k.min(3);
                chart.draw_series(LineSeries::new(s.points.clone(), c.stroke_width(wide)))?;
                let style = if filled {
                    c.filled()
                } else {
                    c.stroke_width(2)
                };
                for &q in &s.points {
                    put_marker(chart.plotting_area(), q, (m, wide + 2), style)?;
                }
                k += 1;
            }
            Mark::Fill(_) => {}
        }
    }
    if p.series.is_empty() {
        no_data(area)?;
    }
    Ok(())
}

/// Draws a marker of kind `m` centred on `at`, in any coordinate system.
fn put_marker<DB: DrawingBackend, CT: CoordTranslate>(
    area: &DrawingArea<DB, CT>,
    at: CT::From,
    (m, r): (Marker, u32),
    style: ShapeStyle,
) -> DrawResult<DB>
where
    CT::From: Clone + 'static,
{
    let h = r as i32;
    match m {
        Marker::Circle => area.draw(&Circle::new(at, r, style)),
        Marker::Triangle => area.draw(&TriangleMarker::new(at, r + 2, style)),
        Marker::Square => {
            area.draw(&(EmptyElement::at(at) + Rectangle::new([(-h, -h), (h, h)], style)))
        }
    }
}

fn no_data<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    let (w, h) = area.dim_in_pixel();
    area.draw(&Text::new(
        "no data: the JSON report lists the runs that would fill this plot",
        (w as i32 / 2, h as i32 / 2),
        ("sans-serif", 20)
            .into_font()
            .into_text_style(area)
            .pos(Pos::new(HPos::Center, VPos::Center)),
    ))
}

/// Legend entries' width: the widest name in the tick font, the mark and the gaps.
fn legend_width(entries: &[(String, Mark)]) -> u32 {
    let widest = entries
        .iter()
        .map(|(n, _)| axis::text_width(n, TICK_FONT))
        .max()
        .unwrap_or(0);
    (widest + 60).min(SIZE.0 * 2 / 5)
}

/// The legend: one row per entry, from the top of its panel.
fn legend<DB: DrawingBackend>(
    panel: &DrawingArea<DB, Shift>,
    entries: &[(String, Mark)],
) -> DrawResult<DB> {
    for (i, (name, mark)) in entries.iter().enumerate() {
        let y = 40 + 24 * i as i32;
        match *mark {
            Mark::Line(c, m, filled) => {
                panel.draw(&PathElement::new(vec![(4, y), (34, y)], c.stroke_width(2)))?;
                let style = if filled {
                    c.filled()
                } else {
                    c.stroke_width(2)
                };
                put_marker(panel, (19, y), (m, 5), style)?;
            }
            Mark::Cross(c) => panel.draw(&Cross::new((19, y), 6, c.stroke_width(2)))?,
            Mark::Fill(c) => {
                panel.draw(&Rectangle::new([(10, y - 7), (28, y + 7)], c.filled()))?;
                panel.draw(&Rectangle::new(
                    [(10, y - 7), (28, y + 7)],
                    BLACK.stroke_width(1),
                ))?;
            }
        }
        panel.draw(&Text::new(
            name.clone(),
            (42, y),
            TICK_FONT
                .into_font()
                .into_text_style(panel)
                .pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
    }
    Ok(())
}

/// The parts of every bar, each named once, in first-seen order.
fn part_names(p: &BarPlot) -> Vec<&str> {
    let mut parts: Vec<&str> = Vec::new();
    for (_, ps) in &p.bars {
        for (name, _) in ps {
            if !parts.contains(&name.as_str()) {
                parts.push(name);
            }
        }
    }
    parts
}

fn bar_entries(p: &BarPlot) -> Vec<(String, Mark)> {
    part_names(p)
        .into_iter()
        .enumerate()
        .map(|(k, n)| (n.to_string(), Mark::Fill(palette::bar_fill(k))))
        .collect()
}

fn bars<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: &BarPlot) -> DrawResult<DB> {
    let top = p
        .bars
        .iter()
        .map(|(_, parts)| parts.iter().map(|(_, v)| v.max(0.0)).sum::<f64>())
        .fold(0.0, f64::max);
    let top = if top > 0.0 { top * 1.12 } else { 1.0 };
    let n = p.bars.len().max(1);
    // Category i spans i..i+1; its tick, label and bar sit at i + 0.5.
    let xa = Axis {
        ticks: (0..p.bars.len()).map(|i| i as f64 + 0.5).collect(),
        labels: p.bars.iter().map(|b| b.0.clone()).collect(),
    };
    let ya = axis::linear(0.0..top, Units::Plain);
    let mut chart = chart_on(
        area,
        (0.0..n as f64, &xa, ""),
        (0.0..top, &ya, &p.y_label),
        false,
    )?;
    for (k, part) in part_names(p).iter().enumerate() {
        let fill = palette::bar_fill(k);
        for (i, (_, ps)) in p.bars.iter().enumerate() {
            let below: f64 = ps
                .iter()
                .take_while(|(n, _)| n != part)
                .map(|(_, v)| v.max(0.0))
                .sum();
            let Some(v) = ps.iter().find(|(n, _)| n == part).map(|x| x.1.max(0.0)) else {
                continue;
            };
            let corners = [(i as f64 + 0.25, below), (i as f64 + 0.75, below + v)];
            chart.draw_series([
                Rectangle::new(corners, fill.filled()),
                Rectangle::new(corners, BLACK.stroke_width(1)),
            ])?;
        }
    }
    totals(&mut chart, p, top)?;
    if p.bars.is_empty() {
        no_data(area)?;
    }
    Ok(())
}

/// Each bar's true sum above it; a negative part is not drawn, and says so.
fn totals<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Coords>,
    p: &BarPlot,
    top: f64,
) -> DrawResult<DB> {
    for (i, (_, ps)) in p.bars.iter().enumerate() {
        let drawn: f64 = ps.iter().map(|(_, v)| v.max(0.0)).sum();
        let sum: f64 = ps.iter().map(|(_, v)| v).sum();
        let negative = ps
            .iter()
            .filter(|(_, v)| *v < 0.0)
            .map(|(n, v)| format!("{n} {}", axis::number_label(*v, 1)))
            .collect::<Vec<_>>();
        let mut text = format!("{} {}", axis::number_label(sum, 1), unit_of(&p.y_label));
        if !negative.is_empty() {
            text.push_str(&format!(" (not drawn: {})", negative.join(", ")));
        }
        let style = ("sans-serif", 16.0)
            .into_font()
            .into_text_style(chart.plotting_area())
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        chart.draw_series(std::iter::once(Text::new(
            text,
            (i as f64 + 0.5, drawn + top * 0.01),
            style,
        )))?;
    }
    Ok(())
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
    fn ranges_labels_and_units() {
        assert_eq!(unit_of("TTFT (ms)"), "ms");
        assert_eq!(range(std::iter::empty(), false, false), 0.0..1.0);
        let r = range([5.0].into_iter(), false, false);
        assert!(r.start < 5.0 && r.end > 5.0);
        let r = range([6.0, 8.0].into_iter(), false, true);
        assert!(r.start <= 5.85 && r.end >= 8.15, "{r:?}");
        let r = range([5.0].into_iter(), false, true);
        assert!(r.start < 5.0 && r.end > 5.0);
        let a = axis_of(&(0.0..10_000.0), false, Units::Plain, &[]);
        assert_eq!(tick_label(&a, 8000.0), "8000");
        assert_eq!(tick_label(&a, 8442.7), "");
    }

    #[test]
    fn the_legend_panel_fits_its_widest_name() {
        let e = vec![
            ("a".to_string(), Mark::Fill(palette::BARS[0])),
            (
                "network many-to-one tcp (672M)".to_string(),
                Mark::Cross(palette::LINES[0]),
            ),
        ];
        let w = legend_width(&e);
        assert!(w >= axis::text_width("network many-to-one tcp (672M)", TICK_FONT) + 42);
        assert!(w <= SIZE.0 * 2 / 5);
    }
}

//! Line charts as standalone SVG, for the figures `compare` writes into
//! `docs/`: a few series of (x, y) points, linear or logarithmic axes, a
//! legend, no dependencies. Deterministic output, so a chart in the
//! repository changes only when its figures do.

use std::fmt::Write as _;

/// How an axis maps its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Evenly spaced values from zero (y) or from the smallest x.
    Linear,
    /// Powers of ten evenly spaced: for figures that span decades.
    Log,
    /// The x values are indexes into the chart's labels, evenly spaced
    /// (for sweeps such as concurrency 1, 10, 50, 200).
    Categories,
}

/// One line of a chart.
pub struct Series {
    pub label: String,
    pub colour: &'static str,
    /// (x, y) points, in order of x; points with a y of zero or less are
    /// left out of a logarithmic chart.
    pub points: Vec<(f64, f64)>,
}

/// A chart: its title, its axes and its lines.
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub x_scale: Scale,
    /// The labels of a [`Scale::Categories`] x axis.
    pub x_categories: Vec<String>,
    pub y_label: String,
    pub y_scale: Scale,
    pub series: Vec<Series>,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 360.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// One axis: where values go, and where its ticks are.
struct Axis {
    scale: Scale,
    low: f64,
    high: f64,
    from: f64,
    to: f64,
}

impl Axis {
    /// An axis of `scale` drawn from `from` to `to` (pixels) for values
    /// spanning `(low, high)`: whole decades (log), zero to a round top
    /// (linear), or one step per category.
    fn fit(
        scale: Scale,
        (low, high): (f64, f64),
        categories: usize,
        (from, to): (f64, f64),
    ) -> Axis {
        let (low, high) = match scale {
            Scale::Log => decades(low, high),
            Scale::Linear => (0.0, round_top(high)),
            Scale::Categories => (0.0, categories.saturating_sub(1) as f64),
        };
        Axis {
            scale,
            low,
            high,
            from,
            to,
        }
    }

    fn place(&self, value: f64) -> f64 {
        let share = match self.scale {
            Scale::Log => {
                (value.max(self.low).log10() - self.low.log10())
                    / (self.high.log10() - self.low.log10())
            }
            Scale::Linear | Scale::Categories => {
                if self.high > self.low {
                    (value - self.low) / (self.high - self.low)
                } else {
                    0.5
                }
            }
        };
        self.from + (self.to - self.from) * share
    }

    /// Tick values: powers of ten (log), five even steps (linear), every
    /// index (categories).
    fn ticks(&self) -> Vec<f64> {
        match self.scale {
            Scale::Log => {
                let mut ticks = Vec::new();
                let mut tick = self.low;
                while tick <= self.high * 1.0001 {
                    ticks.push(tick);
                    tick *= 10.0;
                }
                ticks
            }
            Scale::Linear => (0..=5)
                .map(|step| self.low + (self.high - self.low) * step as f64 / 5.0)
                .collect(),
            Scale::Categories => (self.low as usize..=self.high as usize)
                .map(|index| index as f64)
                .collect(),
        }
    }
}

/// The smallest power of ten at or below `value`, and the smallest at or
/// above.
fn decades(low: f64, high: f64) -> (f64, f64) {
    let floor = 10f64.powf(low.log10().floor());
    let ceil = 10f64.powf(high.log10().ceil());
    (floor, if ceil > floor { ceil } else { floor * 10.0 })
}

/// A round top for a linear axis from zero: 1, 2 or 5 times a power of ten.
fn round_top(max: f64) -> f64 {
    let max = max.max(1e-9);
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|step| step * magnitude)
        .find(|top| *top >= max)
        .unwrap_or(max)
}

/// A tick's label: whole numbers without decimals, small ones with as many
/// as they need.
fn tick_label(value: f64) -> String {
    if value >= 100.0 || value == value.round() {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.1}")
    } else {
        let label = format!("{value:.3}");
        label.trim_end_matches('0').to_string()
    }
}

impl Chart {
    /// The chart as an SVG document.
    pub fn svg(&self) -> String {
        let visible = |y: f64| self.y_scale != Scale::Log || y > 0.0;
        let points: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|series| series.points.iter().copied())
            .filter(|(_, y)| visible(*y))
            .collect();
        let span = |values: Vec<f64>, empty: (f64, f64)| {
            if values.is_empty() {
                return empty;
            }
            values
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), value| {
                    (low.min(*value), high.max(*value))
                })
        };
        let x_span = span(points.iter().map(|(x, _)| *x).collect(), (0.0, 1.0));
        let y_span = span(points.iter().map(|(_, y)| *y).collect(), (1.0, 10.0));
        let x_axis = Axis::fit(
            self.x_scale,
            x_span,
            self.x_categories.len(),
            (LEFT, WIDTH - RIGHT),
        );
        // A y axis has no categories: its values are always numbers.
        let y_scale = match self.y_scale {
            Scale::Categories => Scale::Linear,
            scale => scale,
        };
        let y_axis = Axis::fit(y_scale, y_span, 0, (HEIGHT - BOTTOM, TOP));

        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            svg,
            r##"<rect width="100%" height="100%" fill="#ffffff"/><text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"##,
            WIDTH / 2.0,
            escape(&self.title)
        );
        for tick in y_axis.ticks() {
            let y = y_axis.place(tick);
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e2e8f0"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                WIDTH - RIGHT,
                LEFT - 8.0,
                y + 4.0,
                tick_label(tick)
            );
        }
        for tick in x_axis.ticks() {
            let label = match self.x_scale {
                Scale::Categories => self
                    .x_categories
                    .get(tick as usize)
                    .cloned()
                    .unwrap_or_default(),
                _ => tick_label(tick),
            };
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
                x_axis.place(tick),
                HEIGHT - BOTTOM + 18.0,
                escape(&label)
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
            HEIGHT - 10.0,
            escape(&self.x_label)
        );
        let _ = writeln!(
            svg,
            r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>"#,
            TOP + (HEIGHT - TOP - BOTTOM) / 2.0,
            TOP + (HEIGHT - TOP - BOTTOM) / 2.0,
            escape(&self.y_label)
        );
        for (index, series) in self.series.iter().enumerate() {
            let placed: Vec<(f64, f64)> = series
                .points
                .iter()
                .filter(|(_, y)| visible(*y))
                .map(|(x, y)| (x_axis.place(*x), y_axis.place(*y)))
                .collect();
            let line: Vec<String> = placed
                .iter()
                .map(|(x, y)| format!("{x:.1},{y:.1}"))
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{}" stroke-width="2.5" points="{}"/>"#,
                series.colour,
                line.join(" ")
            );
            for (x, y) in &placed {
                let _ = writeln!(
                    svg,
                    r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{}"/>"#,
                    series.colour
                );
            }
            let legend_y = TOP + 8.0 + 18.0 * index as f64;
            let _ = writeln!(
                svg,
                r#"<rect x="{}" y="{:.1}" width="14" height="4" fill="{}"/><text x="{}" y="{:.1}">{}</text>"#,
                LEFT + 12.0,
                legend_y - 4.0,
                series.colour,
                LEFT + 32.0,
                legend_y + 2.0,
                escape(&series.label)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

/// `text` safe inside SVG text and attribute values.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(y_scale: Scale, points: Vec<(f64, f64)>) -> Chart {
        Chart {
            title: "t <&>".into(),
            x_label: "x".into(),
            x_scale: Scale::Linear,
            x_categories: Vec::new(),
            y_label: "y".into(),
            y_scale,
            series: vec![Series {
                label: "s".into(),
                colour: "#000000",
                points,
            }],
        }
    }

    #[test]
    fn a_log_axis_spans_whole_decades_and_places_points_inside_the_plot() {
        let svg = chart(Scale::Log, vec![(1.0, 0.4), (2.0, 300.0)]).svg();
        // Ticks 0.1, 1, 10, 100, 1000.
        for tick in [">0.1<", ">1<", ">10<", ">100<", ">1000<"] {
            assert!(svg.contains(tick), "no tick {tick} in {svg}");
        }
        assert!(!svg.contains(">10000<"));
        let axis = Axis {
            scale: Scale::Log,
            low: 0.1,
            high: 1000.0,
            from: 310.0,
            to: 40.0,
        };
        assert_eq!(axis.place(0.1), 310.0);
        assert_eq!(axis.place(1000.0), 40.0);
        assert!((axis.place(10.0) - 175.0).abs() < 1e-9);
    }

    #[test]
    fn a_log_chart_leaves_out_points_it_cannot_place_and_text_is_escaped() {
        let svg = chart(Scale::Log, vec![(1.0, 0.0), (2.0, 5.0)]).svg();
        assert_eq!(svg.matches("<circle").count(), 1);
        assert!(svg.contains("t &lt;&amp;&gt;"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn an_empty_chart_is_still_a_document() {
        let svg = chart(Scale::Linear, Vec::new()).svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }
}

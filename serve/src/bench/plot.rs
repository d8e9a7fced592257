//! The benchmarks' charts, each written as PNG and SVG (plotters; the text in DejaVu Sans, compiled into the
//! binary by `build.rs`): lines of a measure against a swept parameter per series (throughput against batch
//! size or concurrency, on a log axis), accuracy against speed with the Pareto front marked, and latency
//! distributions as cumulative curves.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

/// DejaVu Sans, or empty when the build found no font (`deploy/fetch-assets.sh` fetches it).
static FONT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/fonts/DejaVuSans.ttf"));
const FAMILY: &str = "sans-serif";
const SIZE: (u32, u32) = (1100, 600);

/// One named curve.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One named point of an accuracy-against-speed chart.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    pub speed: f64,
    pub accuracy: f64,
}

/// Titles of a chart.
#[derive(Debug, Clone)]
pub struct Labels {
    pub title: String,
    pub x: String,
    pub y: String,
}

/// A chart that can draw itself on any plotters backend.
trait Chart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

/// Lines through each series' points; x on a log scale (batch sizes, concurrency, request rates).
pub struct Lines<'a> {
    pub labels: Labels,
    pub series: &'a [Series],
    pub log_x: bool,
}

/// Accuracy (y) against speed (x): the variants on the Pareto front (none both faster and more accurate)
/// filled and joined, the others hollow.
pub struct Pareto<'a> {
    pub labels: Labels,
    pub candidates: &'a [Candidate],
}

/// Each series' values as a cumulative distribution: x the value, y the share of samples at or below it.
pub struct Distribution<'a> {
    pub labels: Labels,
    pub samples: &'a [(String, Vec<f64>)],
}

/// Writes `stem.png` and `stem.svg`; returns their paths.
fn save(chart: &impl Chart, stem: &Path) -> anyhow::Result<Vec<PathBuf>> {
    register_font()?;
    let (png, svg) = (stem.with_extension("png"), stem.with_extension("svg"));
    {
        let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
        chart.draw(&root).map_err(anyhow::Error::msg).with_context(|| format!("drawing {}", png.display()))?;
        root.present().map_err(|e| anyhow::anyhow!("writing {}: {e}", png.display()))?;
    }
    {
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        chart.draw(&root).map_err(anyhow::Error::msg).with_context(|| format!("drawing {}", svg.display()))?;
        root.present().map_err(|e| anyhow::anyhow!("writing {}: {e}", svg.display()))?;
    }
    Ok(vec![png, svg])
}

fn register_font() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            if FONT.is_empty() {
                return Err("this build has no plot font (run deploy/fetch-assets.sh, then rebuild)".into());
            }
            plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
                .map_err(|_| "the compiled-in plot font is not a valid TrueType font".to_string())
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Writes a line chart as `stem.png` and `stem.svg`.
pub fn lines(stem: &Path, chart: &Lines) -> anyhow::Result<Vec<PathBuf>> {
    save(chart, stem)
}

/// Writes an accuracy-against-speed chart as `stem.png` and `stem.svg`.
pub fn pareto(stem: &Path, chart: &Pareto) -> anyhow::Result<Vec<PathBuf>> {
    save(chart, stem)
}

/// Writes cumulative distributions as `stem.png` and `stem.svg`.
pub fn distribution(stem: &Path, chart: &Distribution) -> anyhow::Result<Vec<PathBuf>> {
    save(chart, stem)
}

/// The names of the candidates on the Pareto front: none other is at least as fast and as accurate and
/// better in one of the two.
pub fn pareto_front(candidates: &[Candidate]) -> Vec<&str> {
    candidates
        .iter()
        .filter(|c| {
            !candidates.iter().any(|o| {
                o.speed >= c.speed && o.accuracy >= c.accuracy && (o.speed > c.speed || o.accuracy > c.accuracy)
            })
        })
        .map(|c| c.name.as_str())
        .collect()
}

/// `(low, high)` padded by a share of the span (a flat range gets a span of its own).
fn padded(values: impl Iterator<Item = f64>, share: f64) -> (f64, f64) {
    let (low, high) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
    if !low.is_finite() {
        return (0.0, 1.0);
    }
    let span = if high > low { high - low } else { low.abs().max(1.0) * 0.1 };
    (low - span * share, high + span * share)
}

/// An axis value without trailing zeros: 8, 0.25, 1.2k.
fn short(v: f64) -> String {
    if v.abs() >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v.fract() == 0.0 || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn text(size: u32) -> TextStyle<'static> {
    (FAMILY, size).into_font().into()
}

/// One line of a legend: a colour drawn as a line or as a dot (filled or hollow).
struct Entry {
    name: String,
    color: RGBAColor,
    mark: Mark,
}

#[derive(Clone, Copy, PartialEq)]
enum Mark {
    Line,
    Dot { filled: bool },
}

/// Width of the legend column at the right of every chart, pixels.
const LEGEND_WIDTH: u32 = 300;

/// The title, a mesh with axis titles on `x` × `y` in which `body` draws the data, and the legend in a column
/// of its own at the right (so it never covers the data).
fn frame<DB, X, Y>(
    root: &DrawingArea<DB, Shift>,
    labels: &Labels,
    (x, y): (X, Y),
    legend: &[Entry],
    body: impl FnOnce(&mut ChartContext<DB, Cartesian2d<X::CoordDescType, Y::CoordDescType>>) -> Result<(), String>,
) -> Result<(), String>
where
    DB: DrawingBackend,
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let area = root.titled(&labels.title, text(18)).map_err(|e| e.to_string())?;
    let width = area.dim_in_pixel().0;
    let (plot_area, legend_area) = area.split_horizontally(width.saturating_sub(LEGEND_WIDTH));
    let mut chart = ChartBuilder::on(&plot_area)
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x, y)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(&labels.x)
        .y_desc(&labels.y)
        .x_label_formatter(&|v| short(*v))
        .y_label_formatter(&|v| short(*v))
        .label_style(text(14))
        .axis_desc_style(text(16))
        .draw()
        .map_err(|e| e.to_string())?;
    body(&mut chart)?;
    for (i, entry) in legend.iter().enumerate() {
        let y = 24 + 24 * i as i32;
        let result = match entry.mark {
            Mark::Line => legend_area.draw(&PathElement::new(vec![(8, y), (32, y)], entry.color.stroke_width(3))),
            Mark::Dot { filled: true } => legend_area.draw(&Circle::new((20, y), 6, entry.color.filled())),
            Mark::Dot { filled: false } => legend_area.draw(&Circle::new((20, y), 6, entry.color.stroke_width(2))),
        };
        result.map_err(|e| e.to_string())?;
        legend_area.draw(&Text::new(entry.name.clone(), (40, y - 8), text(14))).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The `i`th series colour.
fn color(i: usize) -> RGBAColor {
    Palette99::pick(i).to_rgba()
}

/// Draws each series as a line, its points marked when `marks`.
fn draw_series<DB, X, Y>(
    chart: &mut ChartContext<DB, Cartesian2d<X, Y>>,
    series: &[Series],
    marks: bool,
) -> Result<(), String>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (i, s) in series.iter().enumerate() {
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), color(i).stroke_width(2)))
            .map_err(|e| e.to_string())?;
        if marks {
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 4, color(i).filled())))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// One legend line per series.
fn series_legend(series: &[Series]) -> Vec<Entry> {
    series.iter().enumerate().map(|(i, s)| Entry { name: s.name.clone(), color: color(i), mark: Mark::Line }).collect()
}

impl Chart for Lines<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let xs = || self.series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
        let (_, y_high) = padded(self.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)), 0.1);
        let y = 0.0..y_high.max(f64::MIN_POSITIVE);
        if self.log_x && xs().all(|x| x > 0.0) {
            let (low, high) = (xs().fold(f64::INFINITY, f64::min), xs().fold(0.0, f64::max));
            let x = (low / 1.5..high * 1.5).log_scale();
            frame(root, &self.labels, (x, y), &series_legend(self.series), |chart| {
                draw_series(chart, self.series, true)
            })
        } else {
            let (low, high) = padded(xs(), 0.05);
            frame(root, &self.labels, (low..high, y), &series_legend(self.series), |chart| {
                draw_series(chart, self.series, true)
            })
        }
    }
}

impl Chart for Pareto<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let x = padded(self.candidates.iter().map(|c| c.speed).chain([0.0]), 0.05);
        let y = padded(self.candidates.iter().map(|c| c.accuracy), 0.15);
        let front = pareto_front(self.candidates);
        let on_front = |c: &Candidate| front.contains(&c.name.as_str());
        let front_color = RED.mix(0.6);
        let mut legend = vec![Entry { name: "Pareto front".into(), color: front_color, mark: Mark::Line }];
        legend.extend(self.candidates.iter().enumerate().map(|(i, c)| Entry {
            name: format!("{}{}", c.name, if on_front(c) { " (front)" } else { "" }),
            color: color(i),
            mark: Mark::Dot { filled: on_front(c) },
        }));
        frame(root, &self.labels, (x.0..x.1, y.0..y.1), &legend, |chart| {
            let mut line: Vec<(f64, f64)> =
                self.candidates.iter().filter(|c| on_front(c)).map(|c| (c.speed, c.accuracy)).collect();
            line.sort_by(|a, b| a.0.total_cmp(&b.0));
            chart.draw_series(LineSeries::new(line, front_color.stroke_width(2))).map_err(|e| e.to_string())?;
            for (i, c) in self.candidates.iter().enumerate() {
                let style = if on_front(c) { color(i).filled() } else { color(i).stroke_width(2) };
                chart.draw_series([Circle::new((c.speed, c.accuracy), 7, style)]).map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    }
}

impl Chart for Distribution<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let series: Vec<Series> = self
            .samples
            .iter()
            .map(|(name, values)| {
                let mut sorted = values.clone();
                sorted.sort_by(f64::total_cmp);
                let n = sorted.len().max(1) as f64;
                let points = sorted.iter().enumerate().map(|(i, &v)| (v, (i + 1) as f64 / n)).collect();
                Series { name: name.clone(), points }
            })
            .collect();
        let x = padded(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).chain([0.0]), 0.05);
        frame(root, &self.labels, (x.0..x.1, 0.0..1.02), &series_legend(&series), |chart| {
            draw_series(chart, &series, false)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(name: &str, speed: f64, accuracy: f64) -> Candidate {
        Candidate { name: name.into(), speed, accuracy }
    }

    #[test]
    fn the_pareto_front_holds_the_undominated() {
        let all = [
            candidate("fp32", 100.0, 1.0),
            candidate("fp16", 90.0, 0.9999),
            candidate("int8", 300.0, 0.98),
            candidate("slow-bad", 80.0, 0.97),
            candidate("q4", 300.0, 0.95),
        ];
        assert_eq!(pareto_front(&all), vec!["fp32", "int8"]);
    }

    #[test]
    fn charts_are_written_as_png_and_svg() {
        if FONT.is_empty() {
            eprintln!("skipped: no plot font in this build");
            return;
        }
        let dir = std::env::temp_dir().join(format!("ferroserve-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let series = [
            Series { name: "a".into(), points: vec![(1.0, 10.0), (8.0, 50.0), (32.0, 80.0)] },
            Series { name: "b".into(), points: vec![(1.0, 20.0), (8.0, 90.0), (32.0, 150.0)] },
        ];
        let labels = Labels { title: "t".into(), x: "batch".into(), y: "texts/s".into() };
        let written =
            lines(&dir.join("lines"), &Lines { labels: labels.clone(), series: &series, log_x: true }).unwrap();
        let png = std::fs::read(&written[0]).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), SIZE.0);
        let svg = std::fs::read_to_string(&written[1]).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>") && svg.contains("texts/s"));
        let samples = [("a".to_string(), vec![3.0, 1.0, 2.0])];
        distribution(&dir.join("cdf"), &Distribution { labels: labels.clone(), samples: &samples }).unwrap();
        let all = [candidate("x", 1.0, 1.0), candidate("y", 2.0, 0.9)];
        pareto(&dir.join("pareto"), &Pareto { labels, candidates: &all }).unwrap();
        assert!(std::fs::read_to_string(dir.join("pareto.svg")).unwrap().contains("y (front)"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

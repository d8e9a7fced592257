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
const SIZE: (u32, u32) = (960, 600);

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

/// A mesh and axis titles on `x` × `y`, then `body` draws the data.
fn frame<DB, X, Y>(
    root: &DrawingArea<DB, Shift>,
    labels: &Labels,
    (x, y): (X, Y),
    legend: SeriesLabelPosition,
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
    let mut chart = ChartBuilder::on(root)
        .caption(&labels.title, text(18))
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
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.85))
        .label_font(text(14))
        .position(legend)
        .draw()
        .map_err(|e| e.to_string())
}

/// Draws each series as a line with its points marked, labelled in the legend.
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
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(&s.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        if marks {
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

impl Chart for Lines<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let xs = || self.series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
        let (_, y_high) = padded(self.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)), 0.1);
        let y = 0.0..y_high.max(f64::MIN_POSITIVE);
        if self.log_x && xs().all(|x| x > 0.0) {
            let (low, high) = (xs().fold(f64::INFINITY, f64::min), xs().fold(0.0, f64::max));
            let x = (low / 1.5..high * 1.5).log_scale();
            frame(root, &self.labels, (x, y), SeriesLabelPosition::UpperLeft, |chart| {
                draw_series(chart, self.series, true)
            })
        } else {
            let (low, high) = padded(xs(), 0.05);
            frame(root, &self.labels, (low..high, y), SeriesLabelPosition::UpperLeft, |chart| {
                draw_series(chart, self.series, true)
            })
        }
    }
}

impl Chart for Pareto<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        // Room on the right for the names written beside the points.
        let (low, high) = padded(self.candidates.iter().map(|c| c.speed).chain([0.0]), 0.05);
        let x = (low, high + (high - low) * 0.25);
        let y = padded(self.candidates.iter().map(|c| c.accuracy), 0.15);
        let front = pareto_front(self.candidates);
        frame(root, &self.labels, (x.0..x.1, y.0..y.1), SeriesLabelPosition::LowerLeft, |chart| {
            let mut line: Vec<(f64, f64)> = self
                .candidates
                .iter()
                .filter(|c| front.contains(&c.name.as_str()))
                .map(|c| (c.speed, c.accuracy))
                .collect();
            line.sort_by(|a, b| a.0.total_cmp(&b.0));
            let front_style = RED.mix(0.6).stroke_width(2);
            chart
                .draw_series(LineSeries::new(line, front_style))
                .map_err(|e| e.to_string())?
                .label("Pareto front")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], front_style));
            for (i, c) in self.candidates.iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                let on_front = front.contains(&c.name.as_str());
                let style = if on_front { color.filled() } else { color.stroke_width(2) };
                chart
                    .draw_series([Circle::new((c.speed, c.accuracy), 7, style)])
                    .map_err(|e| e.to_string())?
                    .label(format!("{}{}", c.name, if on_front { " (front)" } else { "" }))
                    .legend(move |(x, y)| Circle::new((x + 10, y), 5, style));
                chart
                    .draw_series([Text::new(c.name.clone(), (c.speed, c.accuracy), text(13))])
                    .map_err(|e| e.to_string())?;
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
        frame(root, &self.labels, (x.0..x.1, 0.0..1.02), SeriesLabelPosition::LowerRight, |chart| {
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

//! `bench load`'s outputs: a table on the terminal (and appended to a Markdown results file when asked),
//! `load.json` (everything, samples included), `load.csv` (one row per server and level), and plots:
//! throughput against concurrency or rate per server, and the latency (and, for streams, time to first
//! token) distributions of each level.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use super::{Level, LoadReport};
use crate::bench::plot::{self, Distribution, Labels, Lines, Series};
use crate::bench::report::{plots_or_warn, write_json_csv};

/// The table of every server and level.
pub fn table(report: &LoadReport) -> String {
    let stream = report.targets.iter().flat_map(|t| &t.levels).any(|l| l.ttft_ms.is_some());
    let mut out =
        format!("| server | level | ok | errors | rejected | req/s | {}/s | p50 ms | p90 ms | p99 ms |", report.unit);
    if stream {
        out.push_str(" TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms |");
    }
    out.push_str(" server peak RSS MiB |\n|");
    out.push_str(&"---|".repeat(10 + if stream { 4 } else { 0 } + 1));
    out.push('\n');
    for target in &report.targets {
        for l in &target.levels {
            let _ = write!(
                out,
                "| {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} |",
                target.url,
                l.level,
                l.ok,
                l.errors,
                l.rejected,
                l.requests_per_second,
                l.throughput,
                l.latency_ms.p50,
                l.latency_ms.p90,
                l.latency_ms.p99
            );
            if stream {
                let (t, i) = (l.ttft_ms.unwrap_or_default(), l.itl_ms.unwrap_or_default());
                let _ = write!(out, " {:.1} | {:.1} | {:.2} | {:.2} |", t.p50, t.p99, i.p50, i.p99);
            }
            let rss = l.server_peak_rss_mib.map_or("-".into(), |m| format!("{m:.0}"));
            let _ = writeln!(out, " {rss} |");
        }
    }
    for (target, error) in
        report.targets.iter().flat_map(|t| t.levels.iter().filter_map(move |l| Some((t, l.first_error.as_ref()?))))
    {
        let _ = writeln!(out, "\nfirst error from {}: {error}", target.url);
    }
    out
}

/// One CSV row per server and level.
pub fn csv(report: &LoadReport) -> String {
    let mut out = String::from(
        "server,level,concurrency,rate,ok,errors,rejected,seconds,requests_per_second,throughput,latency_ms_p50,\
         latency_ms_p90,latency_ms_p99,ttft_ms_p50,ttft_ms_p99,itl_ms_p50,itl_ms_p99,server_peak_rss_mib\n",
    );
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_default();
    for target in &report.targets {
        for l in &target.levels {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{},{},{},{},{}",
                target.url,
                l.level,
                l.concurrency.map(|c| c.to_string()).unwrap_or_default(),
                opt(l.rate),
                l.ok,
                l.errors,
                l.rejected,
                l.seconds,
                l.requests_per_second,
                l.throughput,
                l.latency_ms.p50,
                l.latency_ms.p90,
                l.latency_ms.p99,
                opt(l.ttft_ms.map(|p| p.p50)),
                opt(l.ttft_ms.map(|p| p.p99)),
                opt(l.itl_ms.map(|p| p.p50)),
                opt(l.itl_ms.map(|p| p.p99)),
                opt(l.server_peak_rss_mib),
            );
        }
    }
    out
}

/// The swept value of a level (concurrency or rate).
fn x(level: &Level) -> f64 {
    level.rate.unwrap_or(level.concurrency.unwrap_or(1) as f64)
}

/// Draws the plots into `out`; returns the files' names.
pub fn plots(report: &LoadReport, out: &Path) -> anyhow::Result<Vec<String>> {
    let open_loop = report.targets.iter().flat_map(|t| &t.levels).any(|l| l.rate.is_some());
    let title = |what: &str| format!("{} over {}: {what} ({})", report.model, report.api.name(), report.date);
    let series: Vec<Series> = report
        .targets
        .iter()
        .map(|t| Series { name: t.url.clone(), points: t.levels.iter().map(|l| (x(l), l.throughput)).collect() })
        .collect();
    let mut written = plot::lines(
        &out.join("throughput"),
        &Lines {
            labels: Labels {
                title: title("throughput"),
                x: if open_loop { "requests sent per second" } else { "concurrent clients" }.into(),
                y: format!("{} per second", report.unit),
            },
            series: &series,
            log_x: true,
        },
    )?;
    let several = report.targets.len() > 1;
    let samples = |pick: fn(&Level) -> &Vec<f64>| -> Vec<(String, Vec<f64>)> {
        report
            .targets
            .iter()
            .flat_map(|t| {
                t.levels.iter().filter(|l| !pick(l).is_empty()).map(move |l| {
                    let name = if several { format!("{} {}", t.url, l.level) } else { l.level.clone() };
                    (name, pick(l).clone())
                })
            })
            .collect()
    };
    let labels = |what: &str| Labels { title: title(what), x: "ms".into(), y: "share of requests at or below".into() };
    written.extend(plot::distribution(
        &out.join("latency"),
        &Distribution { labels: labels("request latency"), samples: &samples(|l| &l.latencies) },
    )?);
    let ttfts = samples(|l| &l.ttfts);
    if !ttfts.is_empty() {
        written.extend(plot::distribution(
            &out.join("ttft"),
            &Distribution { labels: labels("time to first token"), samples: &ttfts },
        )?);
    }
    Ok(written.iter().filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).collect())
}

/// Draws the plots, prints the table, writes `load.json` and `load.csv` into `out`, and appends the table
/// to `results` with the machine and date.
pub fn write(report: &mut LoadReport, out: &Path, results: Option<&Path>) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    report.plots = plots_or_warn(plots(report, out));
    let (json, csv_path) = write_json_csv(out, "load", report, &csv(report))?;
    let heading = format!(
        "{}, {}: {} over {}, {} text(s) per request{} (`ferroserve bench load`)",
        report.date,
        report.machine,
        report.model,
        report.api.name(),
        report.batch,
        if report.note.is_empty() { String::new() } else { format!("; {}", report.note) }
    );
    let table = table(report);
    println!(
        "{heading}\n\n{table}\nwrote {}, {} and {} plots in {}",
        json.display(),
        csv_path.display(),
        report.plots.len(),
        out.display()
    );
    if let Some(path) = results {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        write!(file, "\n{heading}\n\n{table}").with_context(|| format!("appending to {}", path.display()))?;
    }
    Ok(())
}

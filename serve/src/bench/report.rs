//! The variant comparison's outputs: a table on the terminal, `variants.json` (everything), `variants.csv`
//! (one row per variant and batch size), the plots (throughput against batch size, accuracy against speed with
//! the Pareto front, latency distributions; PNG and SVG), the recommendation, and the process's resident
//! memory.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::plot::{self, Candidate, Distribution, Labels, Lines, Pareto, Series};
use super::{VariantResult, VariantsReport};

/// The fastest variant (throughput at the largest batch size) whose accuracy against the reference reaches
/// `bound`; the reference itself always qualifies.
pub fn recommend(results: &[VariantResult], reference: &str, bound: f64) -> Option<String> {
    results
        .iter()
        .filter(|r| r.name == reference || r.accuracy() >= bound)
        .max_by(|a, b| a.top_throughput().total_cmp(&b.top_throughput()))
        .map(|r| r.name.clone())
}

/// Nearest-rank percentile of sorted values (0 when empty).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// The table printed at the end of a run.
pub fn table(report: &VariantsReport) -> String {
    let generation = report.task == "generation";
    let unit = if generation { "tok/s" } else { "texts/s" };
    let mut out = String::new();
    let batches: Vec<usize> =
        report.variants.first().map(|v| v.speed.iter().map(|s| s.batch).collect()).unwrap_or_default();
    let _ = write!(out, "| variant | file MB | load s | RSS MiB |");
    for b in &batches {
        let _ = write!(out, " {unit} @{b} | p50 ms @{b} |");
    }
    let accuracy = if generation {
        " prefill tok/s | token agreement | identical | perplexity |"
    } else {
        " cosine mean | cosine p1 | cosine min | top-10 kept |"
    };
    let _ = writeln!(out, "{accuracy}");
    let _ = writeln!(out, "|{}", "---|".repeat(4 + 2 * batches.len() + 4));
    for v in &report.variants {
        let _ = write!(
            out,
            "| {}{} | {:.1} | {:.2} | {:.0} |",
            v.name,
            if v.name == report.reference { " (reference)" } else { "" },
            v.file_bytes as f64 / 1e6,
            v.load_seconds,
            v.rss_peak_mib
        );
        for s in &v.speed {
            let _ = write!(out, " {:.0} | {:.1} |", s.throughput, s.latency_ms_p50);
        }
        if generation {
            let prefill = v.speed.first().and_then(|s| s.prefill_tokens_per_second).unwrap_or(0.0);
            let (agree, identical) = match &v.agreement {
                Some(a) => (format!("{:.1}%", a.token_agreement * 100.0), format!("{}/{}", a.identical, a.prompts)),
                None => ("100%".into(), "all".into()),
            };
            let _ = writeln!(out, " {prefill:.0} | {agree} | {identical} | {:.2} |", v.perplexity.unwrap_or(f64::NAN));
        } else {
            let _ = match &v.drift {
                Some(d) => writeln!(
                    out,
                    " {:.4} | {:.4} | {:.4} | {:.0}% |",
                    d.cosine_mean,
                    d.cosine_p1,
                    d.cosine_min,
                    d.neighbour_overlap * 100.0
                ),
                None => writeln!(out, " 1 | 1 | 1 | 100% |"),
            };
        }
    }
    match (&report.recommendation, &report.bound) {
        (Some(name), Some((measure, bound))) => {
            let _ = writeln!(out, "\nfastest with {measure} >= {bound}: {name}");
        }
        (None, Some((measure, bound))) => {
            let _ = writeln!(out, "\nno variant reaches {measure} >= {bound}");
        }
        _ => {}
    }
    out
}

/// One CSV row per variant and batch size.
pub fn csv(report: &VariantsReport) -> String {
    let mut out = String::from(
        "variant,backend,dtype,file_bytes,load_seconds,rss_peak_mib,batch,throughput,latency_ms_p50,\
         latency_ms_p90,latency_ms_p99,prefill_tokens_per_second,cosine_mean,cosine_p1,cosine_min,\
         neighbour_overlap,token_agreement,identical,perplexity\n",
    );
    let field = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
    for v in &report.variants {
        let d = v.drift.as_ref();
        let a = v.agreement.as_ref();
        let reference = v.name == report.reference;
        // The reference's accuracy against itself is 1; a measure the task lacks stays empty.
        let own = |measure: Option<f64>, applies: bool| field(measure.or((reference && applies).then_some(1.0)));
        let embedding = report.task == "embedding";
        for s in &v.speed {
            let _ = writeln!(
                out,
                "{},{},{},{},{:.4},{:.1},{},{:.2},{:.3},{:.3},{:.3},{},{},{},{},{},{},{},{}",
                v.name,
                v.backend,
                v.dtype,
                v.file_bytes,
                v.load_seconds,
                v.rss_peak_mib,
                s.batch,
                s.throughput,
                s.latency_ms_p50,
                s.latency_ms_p90,
                s.latency_ms_p99,
                field(s.prefill_tokens_per_second),
                own(d.map(|d| d.cosine_mean), embedding),
                own(d.map(|d| d.cosine_p1), embedding),
                own(d.map(|d| d.cosine_min), embedding),
                own(d.map(|d| d.neighbour_overlap), embedding),
                own(a.map(|a| a.token_agreement), !embedding),
                a.map(|a| a.identical.to_string()).unwrap_or_default(),
                field(v.perplexity),
            );
        }
    }
    out
}

/// Draws the three charts into `out`; returns the files' names.
pub fn plots(report: &VariantsReport, out: &Path) -> anyhow::Result<Vec<String>> {
    let (unit, accuracy) = if report.task == "generation" {
        ("generated tokens/s", "token agreement with the reference")
    } else {
        ("texts/s", "cosine with the reference, 1st percentile")
    };
    let title = |what: &str| {
        format!(
            "{}: {what} ({}, {})",
            report.model,
            report.machine.split(", flags:").next().unwrap_or_default(),
            report.date
        )
    };
    let series: Vec<Series> = report
        .variants
        .iter()
        .map(|v| Series {
            name: v.name.clone(),
            points: v.speed.iter().map(|s| (s.batch as f64, s.throughput)).collect(),
        })
        .collect();
    let mut written = plot::lines(
        &out.join("throughput"),
        &Lines {
            labels: Labels { title: title("throughput"), x: "batch size".into(), y: unit.into() },
            series: &series,
            log_x: true,
        },
    )?;
    let top = report.variants.first().and_then(|v| v.speed.last()).map_or(0, |s| s.batch);
    let candidates: Vec<Candidate> = report
        .variants
        .iter()
        .map(|v| Candidate { name: v.name.clone(), speed: v.top_throughput(), accuracy: v.accuracy() })
        .collect();
    written.extend(plot::pareto(
        &out.join("pareto"),
        &Pareto {
            labels: Labels {
                title: title("accuracy against speed"),
                x: format!("{unit} at batch {top}"),
                y: accuracy.into(),
            },
            candidates: &candidates,
        },
    )?);
    let first = report.variants.first().and_then(|v| v.speed.first()).map_or(1, |s| s.batch);
    let samples: Vec<(String, Vec<f64>)> = report
        .variants
        .iter()
        .filter_map(|v| v.speed.first().map(|s| (v.name.clone(), s.latencies_ms.clone())))
        .collect();
    let per = if report.task == "generation" { "decode step" } else { "call" };
    written.extend(plot::distribution(
        &out.join("latency"),
        &Distribution {
            labels: Labels {
                title: title(&format!("latency per {per} at batch {first}")),
                x: "ms".into(),
                y: "share of samples at or below".into(),
            },
            samples: &samples,
        },
    )?);
    Ok(written.iter().filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).collect())
}

/// Draws the plots, prints the table, and writes `variants.json` and `variants.csv` into `out`. A build
/// without the plot font still writes the table and files (and says so).
pub fn write(report: &mut VariantsReport, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    report.plots = plots_or_warn(plots(report, out));
    let (json, csv_path) = write_json_csv(out, "variants", report, &csv(report))?;
    println!("{} on {} ({} inputs, {})\n", report.model, report.machine, report.inputs, report.date);
    print!("{}", table(report));
    println!(
        "\nwrote {}, {} and {} plots in {}",
        json.display(),
        csv_path.display(),
        report.plots.len(),
        out.display()
    );
    Ok(())
}

/// The plots written, or none with a warning (a build without the plot font, say): the tables and files
/// matter more than the pictures.
pub fn plots_or_warn(plots: anyhow::Result<Vec<String>>) -> Vec<String> {
    plots.unwrap_or_else(|e| {
        eprintln!("warning: no plots: {e:#}");
        Vec::new()
    })
}

/// Writes `{stem}.json` (the report) and `{stem}.csv` into `out`; returns their paths.
pub fn write_json_csv(
    out: &Path,
    stem: &str,
    report: &impl serde::Serialize,
    csv: &str,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let json = out.join(format!("{stem}.json"));
    std::fs::write(&json, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let csv_path = out.join(format!("{stem}.csv"));
    std::fs::write(&csv_path, csv).with_context(|| format!("writing {}", csv_path.display()))?;
    Ok((json, csv_path))
}

/// Resident memory of this process, MiB (0 where /proc is not there).
pub fn rss_mib() -> f64 {
    memory_mib("self", "VmRSS:").unwrap_or(0.0)
}

/// A memory line (`VmRSS:`, `VmHWM:`, ...) of `/proc/{process}/status`, MiB.
pub fn memory_mib(process: &str, line: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{process}/status")).ok()?;
    let kib: f64 = status.lines().find(|l| l.starts_with(line))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::super::{Agreement, Drift, Speed};
    use super::*;

    fn variant(name: &str, speed: f64, p1: Option<f64>) -> VariantResult {
        VariantResult {
            name: name.into(),
            backend: "onnx".into(),
            dtype: "f32".into(),
            file_bytes: 1_000_000,
            load_seconds: 0.5,
            rss_loaded_mib: 100.0,
            rss_peak_mib: 120.0,
            speed: vec![Speed {
                batch: 8,
                throughput: speed,
                latency_ms_p50: 1.0,
                latency_ms_p90: 2.0,
                latency_ms_p99: 3.0,
                prefill_tokens_per_second: None,
                latencies_ms: vec![1.0, 2.0, 3.0],
            }],
            drift: p1.map(|p| Drift { cosine_min: p, cosine_mean: p, cosine_p1: p, neighbour_overlap: 0.9, k: 10 }),
            agreement: None,
            perplexity: None,
        }
    }

    fn report(task: &str, variants: Vec<VariantResult>, bound: (&str, f64)) -> VariantsReport {
        VariantsReport {
            model: "m".into(),
            task: task.into(),
            unit: "texts".into(),
            reference: "ref".into(),
            inputs: 10,
            machine: super::super::machine::describe(),
            date: crate::utc::today(),
            variants,
            bound: Some((bound.0.into(), bound.1)),
            recommendation: Some("int8".into()),
            plots: Vec::new(),
        }
    }

    #[test]
    fn the_fastest_variant_within_the_bound_is_recommended() {
        let results =
            vec![variant("ref", 100.0, None), variant("fp16", 150.0, Some(0.9999)), variant("int8", 300.0, Some(0.98))];
        assert_eq!(recommend(&results, "ref", 0.99).as_deref(), Some("fp16"));
        assert_eq!(recommend(&results, "ref", 0.97).as_deref(), Some("int8"));
        assert_eq!(recommend(&results, "ref", 0.99999).as_deref(), Some("ref"), "the reference always qualifies");
        let mut q4 = variant("q4", 500.0, None);
        q4.agreement = Some(Agreement { token_agreement: 0.85, identical: 3, prompts: 10 });
        assert_eq!(recommend(&[variant("ref", 100.0, None), q4.clone()], "ref", 0.9).as_deref(), Some("ref"));
        assert_eq!(recommend(&[variant("ref", 100.0, None), q4], "ref", 0.8).as_deref(), Some("q4"));
    }

    #[test]
    fn percentiles_tables_and_csv() {
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.99), 4.0);
        let r = report(
            "embedding",
            vec![variant("ref", 100.0, None), variant("int8", 300.0, Some(0.98))],
            ("cosine_p1", 0.97),
        );
        let t = table(&r);
        assert!(
            t.contains("| ref (reference) |")
                && t.contains("0.9800")
                && t.contains("fastest with cosine_p1 >= 0.97: int8"),
            "{t}"
        );
        let rows = csv(&r);
        assert_eq!(rows.lines().count(), 3);
        assert!(rows.lines().nth(1).unwrap().ends_with(",1.000000,1.000000,1.000000,1.000000,,,"), "{rows}");
        assert!(rows.lines().nth(2).unwrap().starts_with("int8,onnx,f32,1000000,0.5000,120.0,8,300.00"));
        let mut q4 = variant("int8", 300.0, None);
        q4.agreement = Some(Agreement { token_agreement: 0.85, identical: 3, prompts: 10 });
        q4.perplexity = Some(12.5);
        let g = report("generation", vec![variant("ref", 100.0, None), q4], ("token_agreement", 0.8));
        let t = table(&g);
        assert!(t.contains("tok/s @8") && t.contains("| 85.0% | 3/10 | 12.50 |"), "{t}");
        let rows = csv(&g);
        assert!(rows.lines().nth(2).unwrap().ends_with(",,,,,0.850000,3,12.500000"), "{rows}");
    }
}

//! The variant comparison's outputs: a table on the terminal, `variants.json` (everything) and `variants.csv`
//! (one row per variant and batch size), the recommendation, and the process's resident memory.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use super::{VariantResult, VariantsReport};

/// The fastest variant (texts/s at the largest batch size) whose 1st-percentile cosine against the reference
/// reaches `bound`; the reference itself always qualifies.
pub fn recommend(results: &[VariantResult], reference: &str, bound: f64) -> Option<String> {
    let speed = |r: &VariantResult| r.speed.last().map_or(0.0, |s| s.texts_per_second);
    results
        .iter()
        .filter(|r| r.name == reference || r.drift.as_ref().is_some_and(|d| d.cosine_p1 >= bound))
        .max_by(|a, b| speed(a).total_cmp(&speed(b)))
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
    let mut out = String::new();
    let batches: Vec<usize> =
        report.variants.first().map(|v| v.speed.iter().map(|s| s.batch).collect()).unwrap_or_default();
    let _ = write!(out, "| variant | file MB | load s | RSS MiB |");
    for b in &batches {
        let _ = write!(out, " texts/s @{b} | p50 ms @{b} |");
    }
    let _ = writeln!(out, " cosine mean | cosine p1 | cosine min | top-10 kept |");
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
            let _ = write!(out, " {:.0} | {:.1} |", s.texts_per_second, s.latency_ms_p50);
        }
        match &v.drift {
            Some(d) => {
                let _ = writeln!(
                    out,
                    " {:.4} | {:.4} | {:.4} | {:.0}% |",
                    d.cosine_mean,
                    d.cosine_p1,
                    d.cosine_min,
                    d.neighbour_overlap * 100.0
                );
            }
            None => {
                let _ = writeln!(out, " 1 | 1 | 1 | 100% |");
            }
        }
    }
    match (&report.recommendation, report.min_cosine) {
        (Some(name), Some(bound)) => {
            let _ = writeln!(out, "\nfastest with cosine p1 >= {bound}: {name}");
        }
        (None, Some(bound)) => {
            let _ = writeln!(out, "\nno variant reaches cosine p1 >= {bound}");
        }
        _ => {}
    }
    out
}

/// One CSV row per variant and batch size.
pub fn csv(report: &VariantsReport) -> String {
    let mut out = String::from(
        "variant,backend,dtype,file_bytes,load_seconds,rss_peak_mib,batch,texts_per_second,latency_ms_p50,\
         latency_ms_p90,latency_ms_p99,cosine_mean,cosine_p1,cosine_min,neighbour_overlap\n",
    );
    for v in &report.variants {
        let d = v.drift.as_ref();
        let drift = |f: fn(&super::Drift) -> f64| d.map_or(1.0, f);
        for s in &v.speed {
            let _ = writeln!(
                out,
                "{},{},{},{},{:.4},{:.1},{},{:.2},{:.3},{:.3},{:.3},{:.6},{:.6},{:.6},{:.4}",
                v.name,
                v.backend,
                v.dtype,
                v.file_bytes,
                v.load_seconds,
                v.rss_peak_mib,
                s.batch,
                s.texts_per_second,
                s.latency_ms_p50,
                s.latency_ms_p90,
                s.latency_ms_p99,
                drift(|d| d.cosine_mean),
                drift(|d| d.cosine_p1),
                drift(|d| d.cosine_min),
                drift(|d| d.neighbour_overlap),
            );
        }
    }
    out
}

/// Prints the table and writes `variants.json` and `variants.csv` into `out`.
pub fn write(report: &VariantsReport, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let json = out.join("variants.json");
    std::fs::write(&json, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let csv_path = out.join("variants.csv");
    std::fs::write(&csv_path, csv(report)).with_context(|| format!("writing {}", csv_path.display()))?;
    println!("{} on {} ({} texts, {})\n", report.model, report.machine, report.texts, report.date);
    print!("{}", table(report));
    println!("\nwrote {} and {}", json.display(), csv_path.display());
    Ok(())
}

/// Resident memory of this process, MiB (0 where /proc is not there).
pub fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::super::{Drift, Speed};
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
                texts_per_second: speed,
                latency_ms_p50: 1.0,
                latency_ms_p90: 2.0,
                latency_ms_p99: 3.0,
            }],
            drift: p1.map(|p| Drift { cosine_min: p, cosine_mean: p, cosine_p1: p, neighbour_overlap: 0.9, k: 10 }),
        }
    }

    #[test]
    fn the_fastest_variant_within_the_bound_is_recommended() {
        let results =
            vec![variant("ref", 100.0, None), variant("fp16", 150.0, Some(0.9999)), variant("int8", 300.0, Some(0.98))];
        assert_eq!(recommend(&results, "ref", 0.99).as_deref(), Some("fp16"));
        assert_eq!(recommend(&results, "ref", 0.97).as_deref(), Some("int8"));
        assert_eq!(recommend(&results, "ref", 0.99999).as_deref(), Some("ref"), "the reference always qualifies");
    }

    #[test]
    fn percentiles_tables_and_csv() {
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.99), 4.0);
        let report = VariantsReport {
            model: "m".into(),
            reference: "ref".into(),
            texts: 10,
            machine: super::super::machine::describe(),
            date: super::super::machine::today(),
            variants: vec![variant("ref", 100.0, None), variant("int8", 300.0, Some(0.98))],
            recommendation: Some("int8".into()),
            min_cosine: Some(0.97),
        };
        let t = table(&report);
        assert!(
            t.contains("| ref (reference) |")
                && t.contains("0.9800")
                && t.contains("fastest with cosine p1 >= 0.97: int8")
        );
        let csv = csv(&report);
        assert_eq!(csv.lines().count(), 3);
        assert!(csv.lines().nth(2).unwrap().starts_with("int8,onnx,f32,1000000,0.5000,120.0,8,300.00"));
    }
}

//! `ferroserve bench variants`: the variants of an embedding model compared in process (no server) on speed,
//! memory and accuracy. Each variant of the model repository (`NAME` and `NAME:*`) is loaded in turn and
//! embeds the same texts at each batch size: load time, throughput and latency percentiles per batch size,
//! the process's resident memory, the weight file's size, and the drift of its vectors from a reference
//! variant (`drift.rs`). Results go to the terminal as a table and to JSON and CSV files (`report.rs`), with a
//! recommendation: the fastest variant whose 1st-percentile cosine reaches `--min-cosine`.

mod drift;
pub mod machine;
mod report;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use ferroserve_models::config::DeviceSpec;
use ferroserve_models::{EmbedderInfo, Task, load_embedder};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

pub use drift::{Drift, drift};

use crate::repository::{ModelEntry, read_repository};

/// What `ferroserve bench variants` was asked.
#[derive(Debug, Clone)]
pub struct VariantsArgs {
    pub model: String,
    pub repository: PathBuf,
    /// Only these variants (full names or the part after `:`); empty: all.
    pub variants: Vec<String>,
    /// One text per line.
    pub data: PathBuf,
    /// At most this many texts.
    pub limit: usize,
    pub batches: Vec<usize>,
    /// The variant others are compared with; `None`: the first Candle F32 one, else the first.
    pub reference: Option<String>,
    pub min_cosine: Option<f64>,
    pub threads: usize,
    pub out: PathBuf,
}

/// One batch size's speed.
#[derive(Debug, Clone, Serialize)]
pub struct Speed {
    pub batch: usize,
    pub texts_per_second: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p90: f64,
    pub latency_ms_p99: f64,
}

/// Everything measured of one variant.
#[derive(Debug, Clone, Serialize)]
pub struct VariantResult {
    pub name: String,
    pub backend: String,
    pub dtype: String,
    pub file_bytes: u64,
    pub load_seconds: f64,
    /// Resident memory of the process once loaded and at its highest while embedding, MiB (variants load one
    /// after another in one process: read the growth, not the total).
    pub rss_loaded_mib: f64,
    pub rss_peak_mib: f64,
    pub speed: Vec<Speed>,
    pub drift: Option<Drift>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct VariantsReport {
    pub model: String,
    pub reference: String,
    pub texts: usize,
    pub machine: String,
    pub date: String,
    pub variants: Vec<VariantResult>,
    pub recommendation: Option<String>,
    pub min_cosine: Option<f64>,
}

/// Runs the comparison and writes its files; returns the report.
pub fn variants(args: &VariantsArgs) -> anyhow::Result<VariantsReport> {
    let entries = read_repository(&args.repository)
        .with_context(|| format!("reading model repository {}", args.repository.display()))?;
    let chosen = choose(entries, args)?;
    let texts = read_texts(&args.data, args.limit)?;
    let reference = match &args.reference {
        Some(r) => chosen.iter().find(|e| matches(e.name(), r)).map(|e| e.name().to_string()),
        None => chosen
            .iter()
            .find(|e| e.model.backend.as_str() == "candle" && format!("{:?}", e.model.dtype) == "F32")
            .or(chosen.first())
            .map(|e| e.name().to_string()),
    }
    .with_context(|| format!("reference {:?} is not one of the variants", args.reference))?;
    // The reference first, so every other variant can be compared as it finishes.
    let mut order: Vec<&ModelEntry> = chosen.iter().filter(|e| e.name() == reference).collect();
    order.extend(chosen.iter().filter(|e| e.name() != reference));
    let mut results = Vec::new();
    let mut reference_vectors: Option<Vec<Vec<f32>>> = None;
    for entry in order {
        let (mut result, vectors) = measure(entry, &texts, args)?;
        match &reference_vectors {
            None => reference_vectors = Some(vectors),
            Some(r) => result.drift = Some(drift(r, &vectors, 10)),
        }
        results.push(result);
    }
    let recommendation = args.min_cosine.and_then(|bound| report::recommend(&results, &reference, bound));
    let report = VariantsReport {
        model: args.model.clone(),
        reference,
        texts: texts.len(),
        machine: machine::describe(),
        date: machine::today(),
        variants: results,
        recommendation,
        min_cosine: args.min_cosine,
    };
    report::write(&report, &args.out)?;
    Ok(report)
}

/// `name` is `wanted`, or its variant part is.
fn matches(name: &str, wanted: &str) -> bool {
    name == wanted || name.split_once(':').is_some_and(|(_, variant)| variant == wanted)
}

/// The embedding entries of the model (`NAME` and `NAME:*`), filtered by `--variants`.
fn choose(entries: Vec<ModelEntry>, args: &VariantsArgs) -> anyhow::Result<Vec<ModelEntry>> {
    let prefix = format!("{}:", args.model);
    let chosen: Vec<ModelEntry> = entries
        .into_iter()
        .filter(|e| e.model.task == Task::Embedding)
        .filter(|e| e.name() == args.model || e.name().starts_with(&prefix))
        .filter(|e| args.variants.is_empty() || args.variants.iter().any(|v| matches(e.name(), v)))
        .collect();
    anyhow::ensure!(
        !chosen.is_empty(),
        "no embedding model named {} (or {}*) in {}{}",
        args.model,
        prefix,
        args.repository.display(),
        if args.variants.is_empty() { String::new() } else { format!(" among {:?}", args.variants) }
    );
    Ok(chosen)
}

fn read_texts(path: &Path, limit: usize) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let texts: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty()).take(limit).map(str::to_string).collect();
    anyhow::ensure!(texts.len() >= 2, "{} holds fewer than two texts", path.display());
    Ok(texts)
}

/// Loads one variant, embeds the texts at each batch size, and returns its figures and the vectors of the
/// first pass (batch by batch, the same vectors as any other batching up to float rounding).
fn measure(
    entry: &ModelEntry,
    texts: &[String],
    args: &VariantsArgs,
) -> anyhow::Result<(VariantResult, Vec<Vec<f32>>)> {
    let name = entry.name().to_string();
    let started = Instant::now();
    let info = EmbedderInfo::load(&entry.model)?;
    let mut embedder = load_embedder(&entry.model, &info, &DeviceSpec::Cpu, args.threads)?;
    let load_seconds = started.elapsed().as_secs_f64();
    let rss_loaded_mib = report::rss_mib();
    let mut rss_peak_mib = rss_loaded_mib;
    let ids = match info.tokenizer.encode(texts, true)? {
        Ok(ids) => ids,
        Err(too_long) => anyhow::bail!("{name}: {too_long}"),
    };
    let bar = ProgressBar::new((args.batches.len() * texts.len()) as u64).with_style(
        ProgressStyle::with_template("{msg:40} [{bar:30}] {pos}/{len} texts ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(name.clone());
    let mut first: Option<Vec<Vec<f32>>> = None;
    let mut speed = Vec::new();
    for &batch in &args.batches {
        let mut vectors = Vec::with_capacity(texts.len());
        let mut latencies = Vec::new();
        let run = Instant::now();
        for chunk in ids.chunks(batch.max(1)) {
            let seqs: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
            let call = Instant::now();
            vectors.extend(embedder.embed(&seqs)?);
            latencies.push(call.elapsed().as_secs_f64() * 1000.0);
            rss_peak_mib = rss_peak_mib.max(report::rss_mib());
            bar.inc(chunk.len() as u64);
        }
        let seconds = run.elapsed().as_secs_f64();
        latencies.sort_by(f64::total_cmp);
        speed.push(Speed {
            batch,
            texts_per_second: texts.len() as f64 / seconds.max(f64::MIN_POSITIVE),
            latency_ms_p50: report::percentile(&latencies, 0.50),
            latency_ms_p90: report::percentile(&latencies, 0.90),
            latency_ms_p99: report::percentile(&latencies, 0.99),
        });
        first.get_or_insert(vectors);
    }
    bar.finish_and_clear();
    let result = VariantResult {
        name,
        backend: entry.model.backend.as_str().to_string(),
        dtype: format!("{:?}", entry.model.dtype).to_lowercase(),
        file_bytes: std::fs::metadata(entry.model.weights_path()).map_or(0, |m| m.len()),
        load_seconds,
        rss_loaded_mib,
        rss_peak_mib,
        speed,
        drift: None,
    };
    Ok((result, first.unwrap_or_default()))
}

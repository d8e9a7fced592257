//! `ferroserve bench variants`: the variants of a model compared in process (no server) on speed, memory and
//! accuracy. The variants are the model repository's `NAME` and `NAME:*` entries, plus the `NAME` entry
//! converted at load to each `--dtypes` weight format. Each is loaded in turn and run on the same inputs at
//! each batch size: embedding models embed texts (`embedding.rs`), generation models decode greedily from
//! prompts and score a text (`generation.rs`). Measured: load time, throughput and latency percentiles per
//! batch size, the process's resident memory, the weight file's size, and the accuracy against a reference
//! variant (`drift.rs`). Results go to the terminal as a table, to JSON and CSV files and to PNG and SVG plots
//! (`report.rs`, `plot.rs`), with a recommendation: the fastest variant within the accuracy bound given.

mod drift;
mod embedding;
mod generation;
pub mod llm;
pub mod load;
pub mod machine;
pub mod plot;
mod report;
pub mod runs;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use anyhow::Context;
use ferroserve_models::config::{DType, DeviceSpec};
use ferroserve_models::{Backend, Task};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

pub use drift::{Agreement, Drift, agreement, drift, perplexity};

use crate::repository::{ModelEntry, read_repository};

/// What `ferroserve bench variants` was asked.
#[derive(Debug, Clone)]
pub struct VariantsArgs {
    pub model: String,
    pub repository: PathBuf,
    /// Only these variants (full names or the part after `:`); empty: all.
    pub variants: Vec<String>,
    /// Also the `NAME` entry converted at load to each of these weight formats (`f32`, `f16`, `q8_0`, ...).
    pub dtypes: Vec<String>,
    /// One text (embedding models) or prompt (generation models) per line.
    pub data: PathBuf,
    /// At most this many texts, or prompts [`None`: 1000 texts, 16 prompts].
    pub limit: Option<usize>,
    /// Batch sizes [empty: 1, 8, 32 for embeddings; 1, 4 for generation].
    pub batches: Vec<usize>,
    /// Generation: most new tokens per prompt, and tokens of the text perplexity is measured on.
    pub max_tokens: usize,
    pub perplexity_tokens: usize,
    /// The variant others are compared with; `None`: the first Candle F32 one, else the first.
    pub reference: Option<String>,
    /// Accuracy bounds of the recommendation: embeddings' 1st-percentile cosine, generation's token agreement.
    pub min_cosine: Option<f64>,
    pub min_agreement: Option<f64>,
    pub device: DeviceSpec,
    pub threads: usize,
    pub out: PathBuf,
}

/// One batch size's speed.
#[derive(Debug, Clone, Serialize)]
pub struct Speed {
    pub batch: usize,
    /// Texts per second (embedding), or generated tokens per second summed over the batch (generation).
    pub throughput: f64,
    /// Per call (embedding) or per decode step (generation, the inter-token latency).
    pub latency_ms_p50: f64,
    pub latency_ms_p90: f64,
    pub latency_ms_p99: f64,
    /// Generation: prompt tokens per second while prefilling this batch's prompts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefill_tokens_per_second: Option<f64>,
    /// Every latency measured, ms (the latency plot's samples).
    pub latencies_ms: Vec<f64>,
}

/// Everything measured of one variant.
#[derive(Debug, Clone, Serialize)]
pub struct VariantResult {
    pub name: String,
    pub backend: String,
    pub dtype: String,
    pub file_bytes: u64,
    pub load_seconds: f64,
    /// Resident memory of the process once loaded and at its highest while running, MiB (variants load one
    /// after another in one process: read the growth, not the total).
    pub rss_loaded_mib: f64,
    pub rss_peak_mib: f64,
    pub speed: Vec<Speed>,
    /// Embedding: the vectors' drift from the reference's (`None` for the reference).
    pub drift: Option<Drift>,
    /// Generation: greedy outputs' agreement with the reference's (`None` for the reference).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agreement: Option<Agreement>,
    /// Generation: perplexity of the text (each variant's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub perplexity: Option<f64>,
}

impl VariantResult {
    /// Throughput at the largest batch size.
    pub fn top_throughput(&self) -> f64 {
        self.speed.last().map_or(0.0, |s| s.throughput)
    }

    /// The accuracy the recommendation bounds (1 for the reference): the 1st-percentile cosine of an
    /// embedding variant, the token agreement of a generation variant.
    pub fn accuracy(&self) -> f64 {
        match (&self.drift, &self.agreement) {
            (Some(d), _) => d.cosine_p1,
            (None, Some(a)) => a.token_agreement,
            (None, None) => 1.0,
        }
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct VariantsReport {
    pub model: String,
    /// `embedding` or `generation`.
    pub task: String,
    /// What `throughput` counts per second: `texts` or `tokens`.
    pub unit: String,
    pub reference: String,
    /// Texts embedded, or prompts generated from.
    pub inputs: usize,
    pub machine: String,
    pub date: String,
    pub variants: Vec<VariantResult>,
    /// The bound the recommendation honours: its measure (`cosine_p1`, `token_agreement`) and value.
    pub bound: Option<(String, f64)>,
    pub recommendation: Option<String>,
    /// The plot files written, relative to the output folder.
    pub plots: Vec<String>,
}

/// Runs the comparison and writes its files; returns the report.
pub fn variants(args: &VariantsArgs) -> anyhow::Result<VariantsReport> {
    let entries = read_repository(&args.repository)
        .with_context(|| format!("reading model repository {}", args.repository.display()))?;
    let chosen = choose(entries, args)?;
    let task = chosen[0].model.task;
    let embedding = task == Task::Embedding;
    let args = &VariantsArgs {
        limit: Some(args.limit.unwrap_or(if embedding { 1000 } else { 16 })),
        batches: if !args.batches.is_empty() {
            args.batches.clone()
        } else if embedding {
            vec![1, 8, 32]
        } else {
            vec![1, 4]
        },
        ..args.clone()
    };
    anyhow::ensure!(args.batches.iter().all(|&b| b > 0), "batch sizes must be at least 1");
    let reference = match &args.reference {
        Some(r) => chosen.iter().find(|e| matches(e.name(), r)),
        None => {
            chosen.iter().find(|e| e.model.backend == Backend::Candle && e.model.dtype == DType::F32).or(chosen.first())
        }
    }
    .map(|e| e.name().to_string())
    .with_context(|| format!("reference {:?} is not one of the variants", args.reference))?;
    // The reference first, so every other variant can be compared as it finishes.
    let mut order: Vec<&ModelEntry> = chosen.iter().filter(|e| e.name() == reference).collect();
    order.extend(chosen.iter().filter(|e| e.name() != reference));
    let inputs = read_lines(&args.data, args.limit.unwrap_or(usize::MAX))?;
    let (unit, bound, results) = match task {
        Task::Embedding => ("texts", args.min_cosine.map(|b| ("cosine_p1", b)), embedding::run(&order, &inputs, args)?),
        Task::Generation => {
            ("tokens", args.min_agreement.map(|b| ("token_agreement", b)), generation::run(&order, &inputs, args)?)
        }
        other => {
            anyhow::bail!("{}: bench variants compares embedding and generation models, not {other:?}", args.model)
        }
    };
    let recommendation = bound.and_then(|(_, b)| report::recommend(&results, &reference, b));
    let mut report = VariantsReport {
        model: args.model.clone(),
        task: if task == Task::Embedding { "embedding" } else { "generation" }.into(),
        unit: unit.into(),
        reference,
        inputs: inputs.len(),
        machine: machine::describe(),
        date: crate::utc::today(),
        variants: results,
        bound: bound.map(|(m, b)| (m.to_string(), b)),
        recommendation,
        plots: Vec::new(),
    };
    report::write(&mut report, &args.out)?;
    Ok(report)
}

/// `name` is `wanted`, or its variant part is.
fn matches(name: &str, wanted: &str) -> bool {
    name == wanted || name.split_once(':').is_some_and(|(_, variant)| variant == wanted)
}

/// The entries of the model (`NAME` and `NAME:*`), filtered by `--variants`, then `NAME` converted to each
/// of `--dtypes` (named `NAME[dtype]`).
fn choose(entries: Vec<ModelEntry>, args: &VariantsArgs) -> anyhow::Result<Vec<ModelEntry>> {
    let prefix = format!("{}:", args.model);
    let family: Vec<ModelEntry> = entries
        .into_iter()
        .filter(|e| matches!(e.model.task, Task::Embedding | Task::Generation))
        .filter(|e| e.name() == args.model || e.name().starts_with(&prefix))
        .collect();
    let mut chosen: Vec<ModelEntry> = family
        .iter()
        .filter(|e| args.variants.is_empty() || args.variants.iter().any(|v| matches(e.name(), v)))
        .cloned()
        .collect();
    for dtype in &args.dtypes {
        let base = family
            .iter()
            .find(|e| e.name() == args.model)
            .with_context(|| format!("--dtypes converts the {} entry, which the repository lacks", args.model))?;
        let parsed: DType = serde_json::from_value(serde_json::Value::String(dtype.clone()))
            .map_err(|_| anyhow::anyhow!("unknown dtype {dtype:?} (f32, f16, bf16, q8_0, q4_1 or stored)"))?;
        if base.model.backend == Backend::Onnx {
            anyhow::bail!("--dtypes converts Candle models at load; {} is an ONNX model", args.model);
        }
        let mut variant = base.clone();
        variant.model.dtype = parsed;
        variant.model.name = format!("{}[{dtype}]", args.model);
        chosen.push(variant);
    }
    anyhow::ensure!(
        !chosen.is_empty(),
        "no embedding or generation model named {} (or {}*) in {}{}",
        args.model,
        prefix,
        args.repository.display(),
        if args.variants.is_empty() { String::new() } else { format!(" among {:?}", args.variants) }
    );
    anyhow::ensure!(
        chosen.iter().all(|e| e.model.task == chosen[0].model.task),
        "the variants of {} are not all of one task",
        args.model
    );
    Ok(chosen)
}

fn read_lines(path: &Path, limit: usize) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let lines: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty()).take(limit).map(str::to_string).collect();
    anyhow::ensure!(lines.len() >= 2, "{} holds fewer than two texts", path.display());
    Ok(lines)
}

/// The figures every variant has, measured around its load.
struct Loaded {
    name: String,
    backend: String,
    dtype: String,
    file_bytes: u64,
    load_seconds: f64,
    rss_loaded_mib: f64,
}

impl Loaded {
    fn new(entry: &ModelEntry, load_seconds: f64) -> Self {
        Loaded {
            name: entry.name().to_string(),
            backend: entry.model.backend.as_str().to_string(),
            dtype: format!("{:?}", entry.model.dtype).to_lowercase(),
            file_bytes: std::fs::metadata(entry.model.weights_path()).map_or(0, |m| m.len()),
            load_seconds,
            rss_loaded_mib: report::rss_mib(),
        }
    }

    fn finish(self, rss_peak_mib: f64, speed: Vec<Speed>) -> VariantResult {
        VariantResult {
            name: self.name,
            backend: self.backend,
            dtype: self.dtype,
            file_bytes: self.file_bytes,
            load_seconds: self.load_seconds,
            rss_loaded_mib: self.rss_loaded_mib,
            rss_peak_mib: rss_peak_mib.max(self.rss_loaded_mib),
            speed,
            drift: None,
            agreement: None,
            perplexity: None,
        }
    }
}

/// Latency percentiles of unsorted samples, as a `Speed`.
fn speed(batch: usize, throughput: f64, mut latencies_ms: Vec<f64>, prefill: Option<f64>) -> Speed {
    latencies_ms.sort_by(f64::total_cmp);
    Speed {
        batch,
        throughput,
        latency_ms_p50: report::percentile(&latencies_ms, 0.50),
        latency_ms_p90: report::percentile(&latencies_ms, 0.90),
        latency_ms_p99: report::percentile(&latencies_ms, 0.99),
        prefill_tokens_per_second: prefill,
        latencies_ms,
    }
}

/// A progress bar over `len` units of one variant's work.
fn progress(name: &str, len: usize, unit: &str) -> ProgressBar {
    let template = format!("{{msg:40}} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{elapsed}})");
    let bar = ProgressBar::new(len as u64)
        .with_style(ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar.set_message(name.to_string());
    bar
}

//! `ferroserve export onnx` and `ferroserve quantize`: model folders written in another format or precision,
//! with progress bars; the tokenizer and configs travel along so the result is ready to serve.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ferroserve_models::export::export_bert_onnx;
use ferroserve_models::llm::{GgufTarget, requantize_gguf};
use ferroserve_models::onnx::proto::ModelProto;
use ferroserve_models::quantize::{
    ActivationRanges, Granularity, Int4Options, QuantizeReport, activation_ranges, convert_fp16,
    quantize_embedding_tables, quantize_int4, quantize_int8, quantize_int8_static, text_feeds,
};
use indicatif::{ProgressBar, ProgressStyle};
use prost::Message;

use crate::cli::QuantizeTarget;

/// Files of a checkpoint that the ONNX folder needs too (tokenizer, configs, pooling).
const COMPANIONS: &[&str] = &[
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
];

fn progress_bar(message: &'static str, unit: &str) -> ProgressBar {
    let template = format!("{{msg}} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{elapsed}})");
    let bar = ProgressBar::new(0)
        .with_style(ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar.set_message(message);
    bar
}

pub fn export_onnx(checkpoint: &Path, output: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(output).with_context(|| format!("creating {}", output.display()))?;
    let bar = progress_bar("exporting to ONNX", "layers");
    let model = output.join("model.onnx");
    export_bert_onnx(checkpoint, &model, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish();
    copy_companions(checkpoint, output)?;
    report(&model)
}

/// `ferroserve quantize`; `calibration` (a text file and the most lines to use) serves `int8-static`;
/// `int8_embeddings` also stores large embedding tables as int8 rows (ONNX INT8 and INT4 targets).
pub fn quantize(
    model_dir: &Path,
    output: &Path,
    to: QuantizeTarget,
    calibration: Option<&(PathBuf, usize)>,
    int8_embeddings: bool,
) -> anyhow::Result<()> {
    let gguf = match to {
        QuantizeTarget::Q8_0 => Some(GgufTarget::Q8_0),
        QuantizeTarget::Q4_0 => Some(GgufTarget::Q4_0),
        QuantizeTarget::Q4K => Some(GgufTarget::Q4K),
        QuantizeTarget::Int8
        | QuantizeTarget::Int8PerTensor
        | QuantizeTarget::Int8Static
        | QuantizeTarget::Int4
        | QuantizeTarget::Fp16 => None,
    };
    match gguf {
        Some(target) => requantize(model_dir, output, target),
        None => quantize_onnx(model_dir, output, to, calibration, int8_embeddings),
    }
}

/// An ONNX model folder's INT8, INT4 or FP16 variant.
fn quantize_onnx(
    model_dir: &Path,
    output: &Path,
    to: QuantizeTarget,
    calibration: Option<&(PathBuf, usize)>,
    int8_embeddings: bool,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !(int8_embeddings && to == QuantizeTarget::Fp16),
        "--int8-embeddings goes with the int8 and int4 targets, not fp16"
    );
    let input = model_dir.join("model.onnx");
    let bytes = std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
    let mut model =
        ModelProto::decode(bytes.as_slice()).with_context(|| format!("{} is not an ONNX model", input.display()))?;
    let int8 = |model: &mut ModelProto, granularity| -> anyhow::Result<QuantizeReport> {
        let bar = progress_bar("quantizing MatMul weights", "MatMuls");
        let summary = quantize_int8(model, granularity, |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })?;
        bar.finish();
        Ok(summary)
    };
    let mut summary = match to {
        QuantizeTarget::Int8 => int8(&mut model, Granularity::PerChannel)?,
        QuantizeTarget::Int8PerTensor => int8(&mut model, Granularity::PerTensor)?,
        QuantizeTarget::Int8Static => {
            let (path, limit) = calibration.context("int8-static needs --calibration FILE")?;
            let ranges = calibrate(&model, model_dir, path, *limit)?;
            let bar = progress_bar("quantizing MatMul weights", "MatMuls");
            let summary = quantize_int8_static(&mut model, Granularity::PerChannel, &ranges, |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })?;
            bar.finish();
            summary
        }
        QuantizeTarget::Int4 => {
            let bar = progress_bar("quantizing MatMul weights to 4 bits", "MatMuls");
            let summary = quantize_int4(&mut model, Int4Options::default(), |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })?;
            bar.finish();
            summary
        }
        QuantizeTarget::Fp16 => convert_fp16(&mut model)?,
        QuantizeTarget::Q8_0 | QuantizeTarget::Q4_0 | QuantizeTarget::Q4K => {
            anyhow::bail!("{to:?} is a GGUF format: give a .gguf file")
        }
    };
    if int8_embeddings {
        quantize_embedding_tables(&mut model, &mut summary)?;
    }
    anyhow::ensure!(summary.matmuls > 0, "{} has no float32 weights to convert", input.display());
    std::fs::create_dir_all(output).with_context(|| format!("creating {}", output.display()))?;
    let out = output.join("model.onnx");
    std::fs::write(&out, model.encode_to_vec()).with_context(|| format!("writing {}", out.display()))?;
    copy_companions(model_dir, output)?;
    println!(
        "{} weights converted: {:.1} MB -> {:.1} MB",
        summary.matmuls,
        summary.bytes_before as f64 / 1e6,
        summary.bytes_after as f64 / 1e6
    );
    report(&out)
}

/// The activation ranges of `model` (a text encoder in `model_dir`) over the first `limit` lines of `texts`.
fn calibrate(model: &ModelProto, model_dir: &Path, texts: &Path, limit: usize) -> anyhow::Result<ActivationRanges> {
    let text = std::fs::read_to_string(texts).with_context(|| format!("reading {}", texts.display()))?;
    let lines: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty()).take(limit).map(String::from).collect();
    anyhow::ensure!(!lines.is_empty(), "{} holds no calibration texts", texts.display());
    let feeds = text_feeds(model, model_dir, &lines, 16)?;
    let bar = progress_bar("calibrating activation ranges", "batches");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ranges = activation_ranges(model, &feeds, threads, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish();
    anyhow::ensure!(!ranges.is_empty(), "calibration saw none of the MatMul activations");
    println!("calibrated {} activation ranges on {} texts", ranges.len(), lines.len());
    Ok(ranges)
}

/// A GGUF file re-quantized to `dtype`.
fn requantize(input: &Path, output: &Path, to: GgufTarget) -> anyhow::Result<()> {
    anyhow::ensure!(
        input.extension().is_some_and(|e| e == "gguf") && input.is_file(),
        "{} is not a .gguf file (GGUF targets take a GGUF model file)",
        input.display()
    );
    let out = if output.extension().is_some_and(|e| e == "gguf") {
        if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        output.to_path_buf()
    } else {
        std::fs::create_dir_all(output).with_context(|| format!("creating {}", output.display()))?;
        let stem = input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let stem = stem.rsplit_once('.').map_or(stem.as_str(), |(name, _)| name).to_string();
        output.join(format!("{stem}.{}.gguf", to.name()))
    };
    let bar = progress_bar("re-quantizing tensors", "tensors");
    let summary = requantize_gguf(input, &out, to, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish();
    println!(
        "{} of {} tensors re-quantized to {}: {:.1} MB -> {:.1} MB",
        summary.requantized,
        summary.tensors,
        to.name(),
        summary.bytes_before as f64 / 1e6,
        summary.bytes_after as f64 / 1e6
    );
    if !summary.fallback.is_empty() {
        let first: Vec<&str> = summary.fallback.iter().take(3).map(String::as_str).collect();
        println!(
            "{} matrices have rows that do not split into {}'s blocks and are Q5_0 (as llama.cpp does): {}{}",
            summary.fallback.len(),
            to.name(),
            first.join(", "),
            if summary.fallback.len() > first.len() { ", ..." } else { "" }
        );
    }
    println!("wrote {}", out.display());
    Ok(())
}

fn report(model: &Path) -> anyhow::Result<()> {
    let size = std::fs::metadata(model).map(|m| m.len()).unwrap_or(0);
    println!("wrote {} ({:.1} MB) and the tokenizer and configs beside it", model.display(), size as f64 / 1e6);
    Ok(())
}

fn copy_companions(from_dir: &Path, output: &Path) -> anyhow::Result<()> {
    if from_dir == output {
        return Ok(());
    }
    for file in COMPANIONS {
        let from = from_dir.join(file);
        if from.exists() {
            let to = output.join(file);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
        }
    }
    Ok(())
}

//! `ferroserve export onnx`: a checkpoint folder written as an ONNX model folder, with a progress bar.

use std::path::Path;

use anyhow::Context;
use ferroserve_models::export::export_bert_onnx;
use indicatif::{ProgressBar, ProgressStyle};

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

pub fn export_onnx(checkpoint: &Path, output: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(output).with_context(|| format!("creating {}", output.display()))?;
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} layers ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("exporting to ONNX");
    let model = output.join("model.onnx");
    export_bert_onnx(checkpoint, &model, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish();
    for file in COMPANIONS {
        let from = checkpoint.join(file);
        if from.exists() {
            let to = output.join(file);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
        }
    }
    let size = std::fs::metadata(&model).map(|m| m.len()).unwrap_or(0);
    println!("wrote {} ({:.1} MB) and the tokenizer and configs beside it", model.display(), size as f64 / 1e6);
    Ok(())
}

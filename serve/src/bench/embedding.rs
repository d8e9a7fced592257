//! The embedding side of `bench variants`: each variant embeds the same texts at each batch size (texts/s and
//! per-call latency), and its vectors of the first pass are compared with the reference's (`drift.rs`).

use std::time::Instant;

use ferroserve_models::{EmbedderInfo, load_embedder};

use super::{Loaded, Speed, VariantResult, VariantsArgs, drift, progress, report, speed};
use crate::repository::ModelEntry;

/// Measures each variant in `order` (the reference first) on `texts`.
pub fn run(order: &[&ModelEntry], texts: &[String], args: &VariantsArgs) -> anyhow::Result<Vec<VariantResult>> {
    let mut results = Vec::new();
    let mut reference: Option<Vec<Vec<f32>>> = None;
    for entry in order {
        let (mut result, vectors) = measure(entry, texts, args)?;
        match &reference {
            None => reference = Some(vectors),
            Some(r) => result.drift = Some(drift(r, &vectors, 10)),
        }
        results.push(result);
    }
    Ok(results)
}

/// Loads one variant, embeds the texts at each batch size, and returns its figures and the vectors of the
/// first pass (batch by batch, the same vectors as any other batching up to float rounding).
fn measure(
    entry: &ModelEntry,
    texts: &[String],
    args: &VariantsArgs,
) -> anyhow::Result<(VariantResult, Vec<Vec<f32>>)> {
    let started = Instant::now();
    let info = EmbedderInfo::load(&entry.model)?;
    let mut embedder = load_embedder(&entry.model, &info, &args.device, args.threads, 0)?;
    let loaded = Loaded::new(entry, started.elapsed().as_secs_f64());
    let mut rss_peak_mib = loaded.rss_loaded_mib;
    let ids = match info.tokenizer.encode(texts, true)? {
        Ok(ids) => ids,
        Err(too_long) => anyhow::bail!("{}: {too_long}", loaded.name),
    };
    let bar = progress(&loaded.name, args.batches.len() * texts.len(), "texts");
    let mut first: Option<Vec<Vec<f32>>> = None;
    let mut speeds: Vec<Speed> = Vec::new();
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
        let seconds = run.elapsed().as_secs_f64().max(f64::MIN_POSITIVE);
        speeds.push(speed(batch, texts.len() as f64 / seconds, latencies, None));
        first.get_or_insert(vectors);
    }
    bar.finish_and_clear();
    Ok((loaded.finish(rss_peak_mib, speeds), first.unwrap_or_default()))
}

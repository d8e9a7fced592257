//! The generation side of `bench variants`. Each variant answers every prompt (a user message in the model's
//! chat template) greedily, `batch` sequences at a time: their prompts prefilled in one forward pass, then one
//! decode step for all of them per token, a sequence leaving the batch at its end token or `max_tokens`, as
//! the server's scheduler runs them. Measured per batch size: generated tokens/s over the decode steps,
//! prompt tokens/s over the prefill, and each step's latency (the inter-token latency). The outputs of the
//! first batch size are compared with the reference's (token agreement), and the perplexity of the first
//! `perplexity_tokens` tokens of the data (the lines joined) is computed from each position's logits.

use std::time::Instant;

use anyhow::Context;
use ferroserve_models::config::DeviceSpec;
use ferroserve_models::llm::sampling::argmax;
use ferroserve_models::llm::{ChatMessage, KvCache, LanguageModel, SeqStep, load_language_model};

use super::{Loaded, Speed, VariantResult, VariantsArgs, agreement, perplexity, progress, report, speed};
use crate::repository::ModelEntry;

/// Measures each variant in `order` (the reference first) on `lines` (one prompt each).
pub fn run(order: &[&ModelEntry], lines: &[String], args: &VariantsArgs) -> anyhow::Result<Vec<VariantResult>> {
    anyhow::ensure!(
        args.device == DeviceSpec::Cpu,
        "bench variants runs generation models on the CPU (--device cpu); compare GPU lanes with `bench load`"
    );
    let pool = rayon::ThreadPoolBuilder::new().num_threads(args.threads.max(1)).build()?;
    let mut results = Vec::new();
    let mut reference: Option<Vec<Vec<u32>>> = None;
    for entry in order {
        let (mut result, outputs) = pool.install(|| measure(entry, lines, args))?;
        match &reference {
            None => reference = Some(outputs),
            Some(r) => result.agreement = Some(agreement(r, &outputs)),
        }
        results.push(result);
    }
    Ok(results)
}

/// Loads one variant and measures it; returns its figures and its greedy outputs at the first batch size.
fn measure(
    entry: &ModelEntry,
    lines: &[String],
    args: &VariantsArgs,
) -> anyhow::Result<(VariantResult, Vec<Vec<u32>>)> {
    let started = Instant::now();
    let lm = load_language_model(&entry.model, entry.generation.max_context_tokens, &DeviceSpec::Cpu)?;
    let loaded = Loaded::new(entry, started.elapsed().as_secs_f64());
    let prompts = lines.iter().map(|l| prompt(&lm, l)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut rss_peak_mib = loaded.rss_loaded_mib;
    let bar = progress(&loaded.name, args.batches.len() * prompts.len() + args.perplexity_tokens, "sequences, tokens");
    let mut first: Option<Vec<Vec<u32>>> = None;
    let mut speeds: Vec<Speed> = Vec::new();
    for &batch in &args.batches {
        let mut pass = Pass::default();
        for group in prompts.chunks(batch.max(1)) {
            let outputs = decode(&lm, group, args.max_tokens, &mut pass)?;
            pass.outputs.extend(outputs);
            rss_peak_mib = rss_peak_mib.max(report::rss_mib());
            bar.inc(group.len() as u64);
        }
        let generated: usize = pass.outputs.iter().map(Vec::len).sum();
        let prefill = pass.prompt_tokens as f64 / pass.prefill_seconds.max(f64::MIN_POSITIVE);
        let throughput = generated as f64 / pass.decode_seconds.max(f64::MIN_POSITIVE);
        speeds.push(speed(batch, throughput, pass.step_ms, Some(prefill)));
        first.get_or_insert(pass.outputs);
    }
    let ppl = score(&lm, lines, args.perplexity_tokens, &|| bar.inc(1))?;
    bar.finish_and_clear();
    let mut result = loaded.finish(rss_peak_mib, speeds);
    result.perplexity = Some(ppl);
    Ok((result, first.unwrap_or_default()))
}

/// The prompt of one line: a user message in the chat template, or the line itself without one.
fn prompt(lm: &LanguageModel, line: &str) -> anyhow::Result<Vec<u32>> {
    let message = ChatMessage { role: "user".into(), content: line.to_string() };
    match lm.info.chat_prompt(&[message]) {
        Some(ids) => Ok(ids?),
        None => Ok(lm.info.tokenizer.encode(line, false)?),
    }
}

/// Timings and outputs of one batch size's pass over the prompts.
#[derive(Default)]
struct Pass {
    prompt_tokens: usize,
    prefill_seconds: f64,
    decode_seconds: f64,
    step_ms: Vec<f64>,
    outputs: Vec<Vec<u32>>,
}

/// Greedy answers to `group`, decoded together; timings go to `pass`.
fn decode(lm: &LanguageModel, group: &[Vec<u32>], max_tokens: usize, pass: &mut Pass) -> anyhow::Result<Vec<Vec<u32>>> {
    let mut caches: Vec<KvCache> = group.iter().map(|_| lm.model.new_cache()).collect();
    let started = Instant::now();
    let mut steps: Vec<SeqStep<'_, KvCache>> = group
        .iter()
        .zip(caches.iter_mut())
        .map(|(tokens, cache)| SeqStep { tokens, cache, want_logits: true })
        .collect();
    let logits = lm.model.forward(&mut steps)?;
    drop(steps);
    pass.prefill_seconds += started.elapsed().as_secs_f64();
    pass.prompt_tokens += group.iter().map(Vec::len).sum::<usize>();
    let mut next: Vec<u32> = logits.iter().map(|l| l.as_deref().map_or(0, argmax)).collect();
    let mut outputs: Vec<Vec<u32>> = vec![Vec::new(); group.len()];
    let mut live: Vec<usize> = (0..group.len()).collect();
    let decoding = Instant::now();
    loop {
        live.retain(|&i| outputs[i].len() < max_tokens && !lm.info.stop_ids.contains(&next[i]));
        if live.is_empty() {
            break;
        }
        for &i in &live {
            outputs[i].push(next[i]);
        }
        let step = Instant::now();
        let fed: Vec<[u32; 1]> = live.iter().map(|&i| [next[i]]).collect();
        let mut steps: Vec<SeqStep<'_, KvCache>> = caches
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| live.contains(i))
            .zip(&fed)
            .map(|((_, cache), tokens)| SeqStep { tokens, cache, want_logits: true })
            .collect();
        let logits = lm.model.forward(&mut steps)?;
        pass.step_ms.push(step.elapsed().as_secs_f64() * 1000.0);
        for (&i, l) in live.iter().zip(&logits) {
            next[i] = l.as_deref().map_or(0, argmax);
        }
    }
    pass.decode_seconds += decoding.elapsed().as_secs_f64();
    Ok(outputs)
}

/// Perplexity of the first `tokens` tokens of the lines joined, fed one position at a time.
fn score(lm: &LanguageModel, lines: &[String], tokens: usize, tick: &dyn Fn()) -> anyhow::Result<f64> {
    let ids = lm.info.tokenizer.encode(&lines.join("\n"), false)?;
    let ids = &ids[..ids.len().min(tokens + 1)];
    anyhow::ensure!(ids.len() >= 2, "the data holds fewer than two tokens to measure perplexity on");
    let mut cache = lm.model.new_cache();
    let mut steps = Vec::with_capacity(ids.len() - 1);
    for pair in ids.windows(2) {
        let logits = lm.model.forward(&mut [SeqStep { tokens: &pair[..1], cache: &mut cache, want_logits: true }])?;
        let logits = logits.into_iter().next().flatten().context("the model returned no logits")?;
        steps.push((logits, pair[1]));
        tick();
    }
    Ok(perplexity(&steps))
}

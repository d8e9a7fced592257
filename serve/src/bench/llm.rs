//! `ferroserve bench llm`: the generation engine in process on one long prompt and on batched streams —
//! prefill tokens/s, and aggregate greedy decode tokens/s of 1, 4, 16 ... streams decoded together — the
//! measures `benches/llama-cpp/baseline.mjs` takes of llama.cpp, so `benches/llm.sh` can set them side by
//! side. Prints one JSON object.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use ferroserve_models::config::{DType, DeviceSpec};
use ferroserve_models::llm::sampling::argmax;
use ferroserve_models::llm::{KvCache, LanguageModel, SeqStep, load_language_model};
use serde::Serialize;

use crate::repository::read_repository;

/// What `ferroserve bench llm` was asked.
#[derive(Debug, Clone)]
pub struct LlmArgs {
    pub model: String,
    pub repository: PathBuf,
    /// The weight format to convert to at load (`None`: the entry's).
    pub dtype: Option<String>,
    pub prompt_file: PathBuf,
    pub threads: usize,
    /// Tokens each stream generates.
    pub tokens: usize,
    pub streams: Vec<usize>,
    /// Each measure is the best of this many runs.
    pub repeats: usize,
    pub device: DeviceSpec,
}

/// The figures, in the shape `baseline.mjs` prints them.
#[derive(Debug, Serialize)]
pub struct LlmReport {
    pub device: String,
    /// The kernel family that ran (on the CPU `FERROSERVE_CPU_KERNELS`, `auto` resolved; `candle` on a GPU).
    pub kernels: String,
    pub threads: usize,
    pub prompt_tokens: usize,
    pub prefill_tok_s: f64,
    /// Streams → aggregate tokens/s.
    pub decode: std::collections::BTreeMap<usize, f64>,
}

/// Runs the measures on a pool of `args.threads` threads.
pub fn run(args: &LlmArgs) -> anyhow::Result<LlmReport> {
    let entries = read_repository(&args.repository)
        .with_context(|| format!("reading model repository {}", args.repository.display()))?;
    let mut entry = entries
        .into_iter()
        .find(|e| e.name() == args.model)
        .with_context(|| format!("no model {} in {}", args.model, args.repository.display()))?;
    if let Some(dtype) = &args.dtype {
        entry.model.dtype = serde_json::from_value::<DType>(serde_json::Value::String(dtype.clone()))
            .map_err(|_| anyhow::anyhow!("unknown dtype {dtype:?} (f32, f16, q8_0, q4_1 or stored)"))?;
    }
    let lm = load_language_model(&entry.model, entry.generation.max_context_tokens, &args.device)?;
    let text = std::fs::read_to_string(&args.prompt_file)
        .with_context(|| format!("reading {}", args.prompt_file.display()))?;
    let prompt = lm.info.tokenizer.encode(&text, false)?;
    anyhow::ensure!(!prompt.is_empty(), "the prompt file holds no tokens");
    let pool = rayon::ThreadPoolBuilder::new().num_threads(args.threads.max(1)).build()?;
    let repeats = args.repeats.max(1);
    pool.install(|| {
        let mut prefill = 0.0f64;
        for _ in 0..repeats {
            let mut cache = lm.model.new_cache();
            let started = Instant::now();
            lm.model.forward(&mut [SeqStep { tokens: &prompt, cache: &mut cache, want_logits: true }])?;
            prefill = prefill.max(prompt.len() as f64 / started.elapsed().as_secs_f64());
        }
        let mut decode = std::collections::BTreeMap::new();
        for &streams in &args.streams {
            let mut best = 0.0f64;
            for _ in 0..repeats {
                best = best.max(decode_rate(&lm, streams, args.tokens)?);
            }
            decode.insert(streams, best);
        }
        Ok(LlmReport {
            device: args.device.to_string(),
            kernels: match args.device {
                DeviceSpec::Cpu => ferroserve_models::llm::linear::cpu_kernels()?.map_or("candle", |isa| isa.name()),
                DeviceSpec::Cuda(_) => "candle",
            }
            .to_string(),
            threads: args.threads,
            prompt_tokens: prompt.len(),
            prefill_tok_s: prefill,
            decode,
        })
    })
}

/// `streams` sequences, each with a short prompt of its own, decoded together greedily for `tokens` tokens
/// (end tokens ignored): generated tokens per second of decoding.
fn decode_rate(lm: &LanguageModel, streams: usize, tokens: usize) -> anyhow::Result<f64> {
    let prompts = (0..streams)
        .map(|j| Ok(lm.info.tokenizer.encode(&format!("Package {j}: a tool that"), false)?))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut caches: Vec<KvCache> = prompts.iter().map(|_| lm.model.new_cache()).collect();
    let mut steps: Vec<SeqStep<'_, KvCache>> = prompts
        .iter()
        .zip(caches.iter_mut())
        .map(|(tokens, cache)| SeqStep { tokens, cache, want_logits: false })
        .collect();
    lm.model.forward(&mut steps)?;
    drop(steps);
    let first = lm.info.tokenizer.encode(" is", false)?;
    let mut next = vec![first.first().copied().unwrap_or(0); streams];
    let started = Instant::now();
    for _ in 0..tokens {
        let fed: Vec<[u32; 1]> = next.iter().map(|&t| [t]).collect();
        let mut steps: Vec<SeqStep<'_, KvCache>> =
            caches.iter_mut().zip(&fed).map(|(cache, tokens)| SeqStep { tokens, cache, want_logits: true }).collect();
        let logits = lm.model.forward(&mut steps)?;
        for (n, l) in next.iter_mut().zip(&logits) {
            *n = l.as_deref().map_or(0, argmax);
        }
    }
    Ok((streams * tokens) as f64 / started.elapsed().as_secs_f64())
}

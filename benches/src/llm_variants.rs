//! `llm-variants`: loads one GGUF language model in each weight format (F32, F16, Q8_0, Q4_1), runs greedy
//! decoding over fixed prompts with each, and reports load time, prompt and decode tokens/s, and agreement
//! with F32 (the reference numerics): prompts whose output is identical, and the share of tokens that match
//! F32's at the same position. Appends a table to a Markdown results file with the machine and date.
//!
//! ```text
//! cargo run --release -p ferroserve-bench --bin llm-variants -- --prompts 20 --max-tokens 32
//! ```

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use ferroserve_models::DType;
use ferroserve_models::config::ModelConfig;
use ferroserve_models::llm::{ChatMessage, LanguageModel, SeqStep, load_language_model, sampling::argmax};

#[derive(Debug, Parser)]
#[command(about = "Speed and greedy agreement of a GGUF model's weight formats")]
struct Args {
    #[arg(long, default_value = "deploy/model-repository/SmolLM2-135M-Instruct.toml")]
    config: PathBuf,
    /// Prompts: the first N lines of this file, each asked as "Explain in one sentence: <line>".
    #[arg(long, default_value = "tests/data/sentences.txt")]
    sentences: PathBuf,
    #[arg(long, default_value_t = 20)]
    prompts: usize,
    #[arg(long, default_value_t = 32)]
    max_tokens: usize,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[arg(long, default_value = "benches/RESULTS.md")]
    results: String,
}

struct Run {
    dtype: DType,
    load: Duration,
    prompt_tokens: usize,
    prefill: Duration,
    decode_tokens: usize,
    decode: Duration,
    outputs: Vec<Vec<u32>>,
}

fn run(
    lm: &LanguageModel,
    prompts: &[Vec<u32>],
    max_tokens: usize,
) -> anyhow::Result<(Duration, Duration, usize, Vec<Vec<u32>>)> {
    let (mut prefill, mut decode, mut decode_tokens) = (Duration::ZERO, Duration::ZERO, 0);
    let mut outputs = Vec::new();
    for prompt in prompts {
        let mut cache = lm.model.new_cache();
        let started = Instant::now();
        let logits = lm.model.forward(&mut [SeqStep { tokens: prompt, cache: &mut cache, want_logits: true }])?;
        prefill += started.elapsed();
        let mut next = argmax(&logits[0].clone().context("logits")?);
        let mut out = Vec::new();
        let started = Instant::now();
        while out.len() < max_tokens && !lm.info.stop_ids.contains(&next) {
            out.push(next);
            let logits = lm.model.forward(&mut [SeqStep { tokens: &[next], cache: &mut cache, want_logits: true }])?;
            next = argmax(&logits[0].clone().context("logits")?);
            decode_tokens += 1;
        }
        decode += started.elapsed();
        outputs.push(out);
    }
    Ok((prefill, decode, decode_tokens, outputs))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(args.threads).build()?;
    let base = ModelConfig::from_file(&args.config)?;
    let lines: Vec<String> =
        std::fs::read_to_string(&args.sentences)?.lines().take(args.prompts).map(String::from).collect();
    let mut runs = Vec::new();
    for dtype in [DType::F32, DType::F16, DType::Q8_0, DType::Q4_1] {
        let mut config = base.clone();
        config.dtype = dtype;
        let started = Instant::now();
        let lm = load_language_model(&config, 4096)?;
        let load = started.elapsed();
        let template = lm.info.template.as_ref().context("chat template")?;
        let prompts = lines
            .iter()
            .map(|l| {
                let m = ChatMessage { role: "user".into(), content: format!("Explain in one sentence: {l}") };
                Ok(lm.info.tokenizer.encode(&template.render(&[m], true).map_err(anyhow::Error::msg)?, true)?)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (prefill, decode, decode_tokens, outputs) = pool.install(|| run(&lm, &prompts, args.max_tokens))?;
        let prompt_tokens = prompts.iter().map(Vec::len).sum();
        println!(
            "{dtype:?}: load {:.1} s, prompt {:.1} tok/s, decode {:.1} tok/s",
            load.as_secs_f64(),
            prompt_tokens as f64 / prefill.as_secs_f64(),
            decode_tokens as f64 / decode.as_secs_f64()
        );
        runs.push(Run { dtype, load, prompt_tokens, prefill, decode_tokens, decode, outputs });
    }
    let reference = &runs[0].outputs;
    let (date, cpu) = (ferroserve_bench::machine::today(), ferroserve_bench::machine::describe());
    let mut table = format!(
        "\n{date}, {cpu}, {} threads: {} greedy, {} prompts, up to {} new tokens each (`llm-variants`)\n\n\
         | format | load s | prompt tok/s | decode tok/s | prompts identical to F32 | tokens agreeing with F32 |\n|---|---|---|---|---|---|\n",
        args.threads,
        args.config.display(),
        args.prompts,
        args.max_tokens
    );
    for r in &runs {
        let identical = r.outputs.iter().zip(reference).filter(|(a, b)| a == b).count();
        let (agree, total) = r.outputs.iter().zip(reference).fold((0, 0), |(agree, total), (a, b)| {
            let same = a.iter().zip(b).take_while(|(x, y)| x == y).count();
            (agree + same, total + b.len().max(a.len()))
        });
        writeln!(
            table,
            "| {:?} | {:.1} | {:.1} | {:.1} | {identical}/{} | {:.1}% |",
            r.dtype,
            r.load.as_secs_f64(),
            r.prompt_tokens as f64 / r.prefill.as_secs_f64(),
            r.decode_tokens as f64 / r.decode.as_secs_f64(),
            reference.len(),
            100.0 * agree as f64 / total.max(1) as f64
        )?;
    }
    print!("{table}");
    if !args.results.is_empty() {
        use std::io::Write;
        std::fs::OpenOptions::new().append(true).open(&args.results)?.write_all(table.as_bytes())?;
    }
    Ok(())
}

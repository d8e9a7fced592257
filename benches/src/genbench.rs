//! `genbench`: measures text generation on a running ferroserve over HTTP (OpenAI `/v1/completions`,
//! streamed): decode tokens/s of one stream, aggregate tokens/s at several stream counts, prompt (prefill)
//! tokens/s, and time to first token for a cold 500-token prefix versus the same prefix cached. Appends rows
//! to a Markdown results file with the machine and date.
//!
//! ```text
//! cargo run --release -p ferroserve-bench --bin genbench -- --streams 1,2,4,8,16 --max-tokens 64
//! ```

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(about = "Generation benchmark for ferroserve (streamed /v1/completions)")]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    http: String,
    #[arg(long, default_value = "SmolLM2-135M-Instruct")]
    model: String,
    /// Concurrent stream counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16")]
    streams: Vec<usize>,
    /// Tokens each stream generates (end-of-generation tokens are ignored so every stream is this long).
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// Length of the shared prefix for the time-to-first-token test, in made-up words (~4 tokens each).
    #[arg(long, default_value_t = 123)]
    prefix_words: usize,
    /// Free text for the results table (machine notes, config).
    #[arg(long, default_value = "")]
    note: String,
    /// Markdown file to append result rows to; none when empty.
    #[arg(long, default_value = "benches/RESULTS.md")]
    results: String,
}

/// One streamed request's timings.
struct Timing {
    first_token: Duration,
    total: Duration,
    completion_tokens: usize,
    prompt_tokens: usize,
    cached_tokens: usize,
}

async fn stream(client: &reqwest::Client, args: &Args, prompt: &str, max_tokens: usize) -> anyhow::Result<Timing> {
    let body = json!({
        "model": args.model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
        "ignore_eos": true, "stream": true, "stream_options": {"include_usage": true},
    });
    let started = Instant::now();
    let mut response = client.post(format!("{}/v1/completions", args.http)).json(&body).send().await?;
    if !response.status().is_success() {
        bail!("HTTP {}: {}", response.status(), response.text().await?);
    }
    let mut first_token = None;
    let mut usage = Value::Null;
    let mut buffer = String::new();
    while let Some(chunk) = response.chunk().await? {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let Some(data) = event.trim().strip_prefix("data: ") else { continue };
            if data == "[DONE]" {
                continue;
            }
            let v: Value = serde_json::from_str(data).context("chunk JSON")?;
            if v["choices"].as_array().is_some_and(|c| !c.is_empty()) {
                first_token.get_or_insert_with(|| started.elapsed());
            }
            if !v["usage"].is_null() {
                usage = v["usage"].clone();
            }
        }
    }
    let count = |k: &str| usage[k].as_u64().unwrap_or(0) as usize;
    Ok(Timing {
        first_token: first_token.context("no token arrived")?,
        total: started.elapsed(),
        completion_tokens: count("completion_tokens"),
        prompt_tokens: count("prompt_tokens"),
        cached_tokens: usage["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0) as usize,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = reqwest::Client::new();
    let (date, machine) = (ferroserve_bench::machine::today(), ferroserve_bench::machine::describe());
    let head = format!("| {date} | {machine} | {} | {} |", args.model, args.note);
    let mut rows = Vec::new();
    // Warm up (first-call allocations, page faults of the weights).
    stream(&client, &args, "Hello", 8).await?;

    for &n in &args.streams {
        let started = Instant::now();
        let runs = (0..n).map(|i| {
            let (client, args) = (&client, &args);
            async move { stream(client, args, &format!("Story {i}: Once upon a time"), args.max_tokens).await }
        });
        let timings = futures_join(runs).await?;
        let wall = started.elapsed().as_secs_f64();
        let tokens: usize = timings.iter().map(|t| t.completion_tokens).sum();
        // Each stream's tokens over its whole request time (what its client sees): a stream can never be
        // faster than all streams together. Timing from the first chunk on instead gave impossible rates
        // when a stream's chunks arrived in one burst (its first and last chunk a moment apart).
        let per_stream: f64 =
            timings.iter().map(|t| t.completion_tokens as f64 / t.total.as_secs_f64().max(1e-9)).sum::<f64>()
                / n as f64;
        let ttft_ms = timings.iter().map(|t| t.first_token.as_secs_f64() * 1000.0).sum::<f64>() / n as f64;
        let line = format!(
            "{head} streams {n} x {} tokens | {:.1} tok/s aggregate | {per_stream:.1} tok/s per stream | TTFT {ttft_ms:.0} ms |",
            args.max_tokens,
            tokens as f64 / wall
        );
        println!("{line}");
        rows.push(line);
    }

    // Prefill: a long prompt, one output token; and time to first token cold versus with the prefix cached.
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos();
    let words: Vec<String> =
        (0..args.prefix_words).map(|i| format!("w{}", (i * 7919 + nonce as usize) % 1000)).collect();
    let prefix = format!("Run {nonce}. Reference notes: {}.", words.join(" "));
    let cold = stream(&client, &args, &format!("{prefix} Question one: summarize."), 1).await?;
    let warm = stream(&client, &args, &format!("{prefix} Question two: list the first words."), 1).await?;
    let line = format!(
        "{head} prefill {} tokens | {:.1} prompt tok/s | TTFT cold {:.0} ms | TTFT with {} cached tokens {:.0} ms ({:.1}x) |",
        cold.prompt_tokens,
        cold.prompt_tokens as f64 / cold.first_token.as_secs_f64(),
        cold.first_token.as_secs_f64() * 1000.0,
        warm.cached_tokens,
        warm.first_token.as_secs_f64() * 1000.0,
        cold.first_token.as_secs_f64() / warm.first_token.as_secs_f64()
    );
    println!("{line}");
    rows.push(line);

    if !args.results.is_empty() {
        let mut text = String::from("\n");
        for r in rows {
            writeln!(text, "{r}")?;
        }
        use std::io::Write;
        std::fs::OpenOptions::new().append(true).create(true).open(&args.results)?.write_all(text.as_bytes())?;
    }
    Ok(())
}

/// Runs futures concurrently and collects their results in order.
async fn futures_join<T>(
    runs: impl Iterator<Item = impl std::future::Future<Output = anyhow::Result<T>>>,
) -> anyhow::Result<Vec<T>> {
    futures::future::join_all(runs).await.into_iter().collect()
}

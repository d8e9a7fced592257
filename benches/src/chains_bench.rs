//! Chain overhead: the `rag` example chain (`POST /chains/rag/invoke`) against the same steps called one by
//! one over HTTP by the client (`/collections/debian-packages/points/query` with the question as a document,
//! then `/v1/chat/completions` with the same messages), at several concurrencies, on a server whose caches
//! are off (benches/chains.sh starts it). Prints one JSON object per (mode, concurrency).
//!
//! cargo run --release -p ferroserve-bench --bin chains-bench -- --url http://127.0.0.1:18080

use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:18080")]
    url: String,
    /// Requests per (mode, concurrency).
    #[arg(long, default_value_t = 48)]
    requests: usize,
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    concurrency: Vec<usize>,
    #[arg(long, default_value_t = 24)]
    max_tokens: usize,
    #[arg(long, default_value = "SmolLM2-135M-Instruct")]
    model: String,
}

const QUESTIONS: [&str; 8] = [
    "Which program edits raster images like photos?",
    "What is a command line tool to download files from the web?",
    "Which terminal multiplexer keeps shell sessions running?",
    "Which relational database server should I install?",
    "Which version control system do I use for source code?",
    "What can play video files?",
    "How do I compress files into zip archives?",
    "What converts documents between markup formats?",
];

const SYSTEM: &str = "You answer questions about Debian packages using only the package descriptions given. Name the package that fits best.";

/// The three calls the chain makes, from the client.
async fn direct(client: &reqwest::Client, args: &Args, question: &str) -> anyhow::Result<()> {
    let hits: Value = client
        .post(format!("{}/collections/debian-packages/points/query", args.url))
        .json(&json!({"query": {"text": question}, "limit": 4, "with_payload": true}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let docs: String = hits["result"]["points"]
        .as_array()
        .map(|p| p.iter().map(|h| format!("- {}\n", h["payload"]["text"].as_str().unwrap_or_default())).collect())
        .unwrap_or_default();
    let user = format!("Package descriptions:\n{docs}\nQuestion: {question}");
    client
        .post(format!("{}/v1/chat/completions", args.url))
        .json(&json!({"model": args.model, "max_tokens": args.max_tokens, "temperature": 0.7,
                      "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]}))
        .send()
        .await?
        .error_for_status()?
        .json::<Value>()
        .await?;
    Ok(())
}

async fn chain(client: &reqwest::Client, args: &Args, question: &str) -> anyhow::Result<()> {
    client
        .post(format!("{}/chains/rag/invoke", args.url))
        .json(&json!({"input": {"question": question},
                      "config": {"configurable": {"max_tokens": args.max_tokens, "temperature": 0.7}}}))
        .send()
        .await?
        .error_for_status()?
        .json::<Value>()
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(300)).build()?;
    // Warm-up: both paths once.
    direct(&client, &args, QUESTIONS[0]).await?;
    chain(&client, &args, QUESTIONS[0]).await?;
    for &concurrency in &args.concurrency {
        for mode in ["direct", "chain"] {
            let started = Instant::now();
            let latencies: Vec<f64> = futures::stream::iter(0..args.requests)
                .map(|i| {
                    let (client, args) = (&client, &args);
                    async move {
                        let q = QUESTIONS[i % QUESTIONS.len()];
                        let t = Instant::now();
                        match mode {
                            "direct" => direct(client, args, q).await,
                            _ => chain(client, args, q).await,
                        }
                        .map(|()| t.elapsed().as_secs_f64())
                    }
                })
                .buffer_unordered(concurrency)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<anyhow::Result<_>>()?;
            let wall = started.elapsed().as_secs_f64();
            let mut sorted = latencies.clone();
            sorted.sort_by(f64::total_cmp);
            let p = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
            println!(
                "{}",
                json!({"mode": mode, "concurrency": concurrency, "requests": args.requests,
                       "requests_per_sec": args.requests as f64 / wall, "p50_ms": p(0.5) * 1e3, "p90_ms": p(0.9) * 1e3})
            );
        }
    }
    Ok(())
}

//! `loadgen`: drives a running ferroserve with embedding requests over HTTP (OpenAI `/v1/embeddings`) or
//! gRPC (`ferroserve.v1.Inference/Embed`) at given concurrency levels, prints throughput and latency
//! percentiles, and appends one row per run to a Markdown results file with the machine and date.
//!
//! ```text
//! cargo run --release -p ferroserve-bench -- --protocol http,grpc --concurrency 1,8,32 --requests 2000
//! ```

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use ferroserve_proto::ferroserve::v1::{EmbedRequest, inference_client::InferenceClient};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(about = "Load generator for ferroserve embeddings (HTTP and gRPC)")]
struct Args {
    /// Base URL of the HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    http: String,
    /// URL of the gRPC API.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    grpc: String,
    /// Protocols to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "http,grpc")]
    protocol: Vec<Protocol>,
    /// Concurrency levels (clients sending one request at a time each), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    concurrency: Vec<usize>,
    /// Requests per run (ignored when --duration is set).
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Run each level for this many seconds instead of a fixed count.
    #[arg(long)]
    duration: Option<f64>,
    /// Texts per request.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Model to call.
    #[arg(long, default_value = "all-MiniLM-L6-v2")]
    model: String,
    /// One text per line; the requests cycle through them.
    #[arg(long, default_value = "tests/data/sentences.txt")]
    sentences: PathBuf,
    /// Use only the first N lines (the reference file's first 800 are short).
    #[arg(long, default_value_t = 800)]
    first: usize,
    /// Requests sent before measuring, to warm up.
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    /// Markdown file to append result rows to; none when empty.
    #[arg(long, default_value = "benches/RESULTS.md")]
    results: String,
    /// Open loop: send this many requests per second whatever the answers (needs --duration); the
    /// concurrency levels are ignored. For overload tests.
    #[arg(long)]
    rate: Option<f64>,
    /// The server's process id: its peak resident memory (VmHWM) goes into the results.
    #[arg(long)]
    server_pid: Option<u32>,
    /// A note for the results row (the server's configuration, say).
    #[arg(long, default_value = "")]
    note: String,
    /// Cache mode sent with every request (header / metadata `x-ferroserve-cache`): default, skip, refresh, only.
    #[arg(long)]
    cache: Option<String>,
    /// Make every text unique (a suffix with the run and request number), so no request can hit a cache.
    #[arg(long)]
    unique: bool,
    /// API key sent with every request (`authorization: Bearer`).
    #[arg(long, env = "LOADGEN_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

impl Args {
    /// The headers (or metadata) every request carries.
    fn headers(&self) -> Vec<(&'static str, String)> {
        let cache = self.cache.clone().map(|mode| ("x-ferroserve-cache", mode));
        let key = self.api_key.as_ref().map(|key| ("authorization", format!("Bearer {key}")));
        cache.into_iter().chain(key).collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    Http,
    Grpc,
}

#[derive(Clone)]
enum Client {
    Http { client: reqwest::Client, url: String, headers: Vec<(&'static str, String)> },
    Grpc(InferenceClient<tonic::transport::Channel>, Vec<(&'static str, String)>),
}

impl Client {
    async fn new(protocol: Protocol, args: &Args) -> anyhow::Result<Self> {
        Ok(match protocol {
            Protocol::Http => Client::Http {
                client: reqwest::Client::builder().pool_max_idle_per_host(1024).build()?,
                url: format!("{}/v1/embeddings", args.http),
                headers: args.headers(),
            },
            Protocol::Grpc => {
                Client::Grpc(InferenceClient::connect(args.grpc.clone()).await.context("gRPC connect")?, args.headers())
            }
        })
    }

    /// Sends one request; `Ok(false)` when the server refused it as overloaded (429 / RESOURCE_EXHAUSTED).
    async fn embed(&mut self, model: &str, inputs: Vec<String>) -> anyhow::Result<bool> {
        match self {
            Client::Http { client, url, headers } => {
                let mut request = client.post(url.as_str()).json(&json!({"model": model, "input": inputs}));
                for (name, value) in headers.iter() {
                    request = request.header(*name, value.as_str());
                }
                let r = request.send().await?;
                if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    return Ok(false);
                }
                anyhow::ensure!(r.status().is_success(), "HTTP {}", r.status());
                r.bytes().await?;
            }
            Client::Grpc(c, headers) => {
                let mut request =
                    tonic::Request::new(EmbedRequest { model: model.into(), inputs, ..Default::default() });
                for (name, value) in headers.iter() {
                    if let Ok(value) = value.parse() {
                        request.metadata_mut().insert(*name, value);
                    }
                }
                match c.embed(request).await {
                    Err(s) if s.code() == tonic::Code::ResourceExhausted => return Ok(false),
                    r => r?,
                };
            }
        }
        Ok(true)
    }

    /// Sends one request and files the result.
    async fn send(&mut self, model: &str, inputs: Vec<String>, outcome: &mut Outcome) {
        let t = Instant::now();
        match self.embed(model, inputs).await {
            Ok(true) => outcome.latencies.push(t.elapsed()),
            Ok(false) => outcome.rejected += 1,
            Err(_) => outcome.errors += 1,
        }
    }
}

#[derive(Default)]
struct Outcome {
    /// Of the requests answered with success.
    latencies: Vec<Duration>,
    errors: usize,
    rejected: usize,
    elapsed: Duration,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        self.rejected += other.rejected;
    }
}

fn inputs(texts: &[String], i: usize, batch: usize) -> Vec<String> {
    (0..batch)
        .map(|k| {
            let text = &texts[(i * batch + k) % texts.len()];
            match UNIQUE.get() {
                Some(run) => format!("{text} [{run}-{}]", NEXT_UNIQUE.fetch_add(1, Ordering::Relaxed)),
                None => text.clone(),
            }
        })
        .collect()
}

/// Set by `--unique`: a per-run tag that, with a counter, makes every text new.
static UNIQUE: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
static NEXT_UNIQUE: AtomicUsize = AtomicUsize::new(0);

/// Open loop: one request every 1/rate seconds for `seconds`, whatever the answers.
async fn run_open(client: &Client, args: &Args, texts: Arc<Vec<String>>, rate: f64, seconds: f64) -> Outcome {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    let mut i = 0;
    while started.elapsed().as_secs_f64() < seconds {
        tick.tick().await;
        let (mut client, model, inputs) = (client.clone(), args.model.clone(), inputs(&texts, i, args.batch));
        tasks.spawn(async move {
            let mut outcome = Outcome::default();
            client.send(&model, inputs, &mut outcome).await;
            outcome
        });
        i += 1;
    }
    let mut outcome = Outcome::default();
    while let Some(done) = tasks.join_next().await {
        if let Ok(o) = done {
            outcome.merge(o);
        }
    }
    outcome.elapsed = started.elapsed();
    outcome.latencies.sort();
    outcome
}

/// How long one level runs: a number of requests, or seconds.
#[derive(Clone, Copy)]
enum Load {
    Requests(usize),
    Seconds(f64),
}

async fn run_level(client: &Client, args: &Args, texts: Arc<Vec<String>>, concurrency: usize, load: Load) -> Outcome {
    let next = Arc::new(AtomicUsize::new(0));
    let (limit, deadline) = match load {
        Load::Requests(n) => (n, None),
        Load::Seconds(s) => (usize::MAX, Some(Instant::now() + Duration::from_secs_f64(s))),
    };
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (mut client, texts, next, model) = (client.clone(), texts.clone(), next.clone(), args.model.clone());
            let batch = args.batch;
            tokio::spawn(async move {
                let mut outcome = Outcome::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= limit || deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    client.send(&model, inputs(&texts, i, batch), &mut outcome).await;
                }
                outcome
            })
        })
        .collect();
    let mut outcome = Outcome::default();
    for w in workers {
        if let Ok(o) = w.await {
            outcome.merge(o);
        }
    }
    outcome.elapsed = started.elapsed();
    outcome.latencies.sort();
    outcome
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.unique {
        let _ = UNIQUE.set(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos());
    }
    let text =
        std::fs::read_to_string(&args.sentences).with_context(|| format!("reading {}", args.sentences.display()))?;
    let texts: Arc<Vec<String>> =
        Arc::new(text.lines().filter(|l| !l.is_empty()).take(args.first).map(String::from).collect());
    anyhow::ensure!(!texts.is_empty(), "no sentences in {}", args.sentences.display());
    let (machine, date) = (ferroserve_bench::machine::describe(), ferroserve_bench::machine::today());
    println!("machine: {machine}; date: {date}; model: {}; texts/request: {}", args.model, args.batch);
    println!(
        "| protocol | concurrency | ok | errors | rejected | req/s | texts/s | p50 ms | p90 ms | p99 ms | peak RSS |"
    );
    let levels: Vec<String> = match args.rate {
        Some(rate) => vec![format!("open {rate}/s")],
        None => args.concurrency.iter().map(usize::to_string).collect(),
    };
    let mut rows = String::new();
    for &protocol in &args.protocol {
        let client = Client::new(protocol, &args).await?;
        for (level, &concurrency) in levels.iter().zip(args.concurrency.iter().chain(std::iter::repeat(&1))) {
            run_level(&client, &args, texts.clone(), concurrency, Load::Requests(args.warmup)).await;
            let o = match (args.rate, args.duration) {
                (Some(rate), Some(secs)) => run_open(&client, &args, texts.clone(), rate, secs).await,
                (Some(_), None) => anyhow::bail!("--rate needs --duration"),
                (None, d) => {
                    let load = d.map_or(Load::Requests(args.requests), Load::Seconds);
                    run_level(&client, &args, texts.clone(), concurrency, load).await
                }
            };
            let n = o.latencies.len();
            let rps = n as f64 / o.elapsed.as_secs_f64();
            let rss = args.server_pid.and_then(peak_rss_mib).map_or("-".to_string(), |m| format!("{m:.0}"));
            let row = format!(
                "| {protocol:?} | {level} | {n} | {} | {} | {rps:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {rss} |",
                o.errors,
                o.rejected,
                rps * args.batch as f64,
                percentile(&o.latencies, 0.5),
                percentile(&o.latencies, 0.9),
                percentile(&o.latencies, 0.99)
            );
            println!("{row}");
            let _ = writeln!(
                rows,
                "| {date} | {machine} | {} | {} {row}",
                args.model,
                if args.note.is_empty() { "-" } else { &args.note },
            );
        }
    }
    if !args.results.is_empty() {
        append_rows(&args.results, &rows)?;
        println!("appended to {}", args.results);
    }
    Ok(())
}

const HEADER: &str = "| date | machine | model | note | protocol | concurrency | ok | errors | rejected | req/s | texts/s | p50 ms | p90 ms | p99 ms | server peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";

/// Peak resident memory of a process (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Appends rows under the load-generator table of the results file, creating the table when missing.
fn append_rows(path: &str, rows: &str) -> anyhow::Result<()> {
    let mut text = std::fs::read_to_string(path).unwrap_or_default();
    const TITLE: &str = "## Embedding load (loadgen)\n\n";
    if !text.contains(TITLE) {
        if !text.is_empty() && !text.ends_with("\n\n") {
            text.push('\n');
        }
        text.push_str(TITLE);
        text.push_str(HEADER);
        text.push_str(rows);
    } else {
        // Insert after the last row of that table.
        let start = text.find(TITLE).unwrap_or(0) + TITLE.len();
        let end = text[start..].find("\n\n").map(|i| start + i + 1).unwrap_or(text.len());
        text.insert_str(end, rows);
    }
    std::fs::write(path, text)?;
    Ok(())
}

//! `ferroserve bench load`: a load generator for any server that speaks OpenAI embeddings or chat, TEI,
//! KServe v2 or ferroserve's gRPC, ours or a peer's (`client.rs`). Closed loop: N clients each sending one
//! request at a time, for a sweep of N; open loop: requests at fixed rates whatever the answers. Each level
//! starts with warm-up requests and runs for a count of requests or a duration. With `--compare URL2` the
//! same sweep runs against a second server in the same run. Outputs as `bench variants` (`report.rs`): a
//! table, JSON, CSV and plots.

mod client;
mod report;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

pub use client::{Api, Client, Outcome, RequestShape, Sample};

use super::machine;
use super::report::memory_mib;

/// What `ferroserve bench load` was asked.
#[derive(Debug, Clone)]
pub struct LoadArgs {
    /// The server, then the one `--compare` names.
    pub urls: Vec<String>,
    pub api: Api,
    pub shape: RequestShape,
    /// Closed-loop concurrency levels (ignored when `rates` is given).
    pub concurrency: Vec<usize>,
    /// Open-loop request rates per second.
    pub rates: Vec<f64>,
    /// Requests per closed-loop level, unless `duration` is set.
    pub requests: usize,
    /// Seconds per level (required for open-loop rates).
    pub duration: Option<f64>,
    pub warmup: usize,
    /// Texts per request (embedding APIs).
    pub batch: usize,
    /// One text or prompt per line; requests cycle through them.
    pub data: PathBuf,
    pub limit: usize,
    /// Make every text unique, so no request can hit a cache.
    pub unique: bool,
    /// A local server's process id: its peak resident memory goes into the results.
    pub server_pid: Option<u32>,
    pub note: String,
    pub out: PathBuf,
    /// A Markdown file the table is appended to, with the machine and date.
    pub results: Option<PathBuf>,
}

/// One level's figures against one server.
#[derive(Debug, Clone, Serialize)]
pub struct Level {
    /// `c=8` (closed loop) or `r=50/s` (open loop).
    pub level: String,
    pub concurrency: Option<usize>,
    pub rate: Option<f64>,
    pub ok: usize,
    pub errors: usize,
    pub rejected: usize,
    pub seconds: f64,
    pub requests_per_second: f64,
    /// Texts or generated tokens per second.
    pub throughput: f64,
    pub latency_ms: Percentiles,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<Percentiles>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub itl_ms: Option<Percentiles>,
    /// The server process's peak resident memory after this level (`--server-pid`).
    pub server_peak_rss_mib: Option<f64>,
    /// The first error's message, to tell a wrong URL from a bad model name.
    pub first_error: Option<String>,
    pub latencies: Vec<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ttfts: Vec<f64>,
}

/// Nearest-rank percentiles of a level's samples, ms.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

impl Percentiles {
    fn of(sorted: &[f64]) -> Self {
        let p = |q| super::report::percentile(sorted, q);
        Percentiles { p50: p(0.50), p90: p(0.90), p99: p(0.99) }
    }
}

/// The sweep against one server.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub url: String,
    pub levels: Vec<Level>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub api: Api,
    pub model: String,
    pub unit: String,
    pub batch: usize,
    pub machine: String,
    pub date: String,
    pub note: String,
    pub targets: Vec<Target>,
    pub plots: Vec<String>,
}

/// Runs the sweep against every URL and writes the outputs; returns the report.
pub async fn load(args: &LoadArgs) -> anyhow::Result<LoadReport> {
    anyhow::ensure!(args.rates.is_empty() || args.duration.is_some(), "open-loop --rate needs --duration");
    anyhow::ensure!(args.rates.iter().all(|r| *r > 0.0), "rates must be above 0");
    anyhow::ensure!(
        args.concurrency.iter().all(|c| *c > 0) && args.batch > 0,
        "concurrency and batch must be at least 1"
    );
    let text = std::fs::read_to_string(&args.data).with_context(|| format!("reading {}", args.data.display()))?;
    let texts: Arc<Vec<String>> =
        Arc::new(text.lines().map(str::trim).filter(|l| !l.is_empty()).take(args.limit).map(String::from).collect());
    anyhow::ensure!(!texts.is_empty(), "no texts in {}", args.data.display());
    let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut targets = Vec::new();
    for (server, url) in args.urls.iter().enumerate() {
        let client = Client::connect(url, args.api).await?;
        let mut levels = Vec::new();
        let plan: Vec<(Option<usize>, Option<f64>)> = if args.rates.is_empty() {
            args.concurrency.iter().map(|&c| (Some(c), None)).collect()
        } else {
            args.rates.iter().map(|&r| (None, Some(r))).collect()
        };
        for (level, (concurrency, rate)) in plan.into_iter().enumerate() {
            // Every level of every server sends the same texts, or with --unique texts no level sent before.
            let tag = args.unique.then(|| format!("{run}-{server}-{level}"));
            let inputs = Inputs { texts: texts.clone(), batch: args.batch, tag, next: Arc::new(AtomicUsize::new(0)) };
            closed(&client, args, &inputs, concurrency.unwrap_or(1), Stop::Requests(args.warmup)).await;
            let (outcomes, seconds) = match (concurrency, rate) {
                (_, Some(rate)) => open(&client, args, &inputs, rate, args.duration.unwrap_or(1.0)).await,
                (Some(c), None) => {
                    let stop = args.duration.map_or(Stop::Requests(args.requests), Stop::Seconds);
                    closed(&client, args, &inputs, c, stop).await
                }
                (None, None) => unreachable!("every level has a concurrency or a rate"),
            };
            let level = summarize(concurrency, rate, outcomes, seconds, args.server_pid);
            eprintln!("{url} {}: {} ok, {:.1} {}/s", level.level, level.ok, level.throughput, args.api.unit());
            levels.push(level);
        }
        targets.push(Target { url: url.clone(), levels });
    }
    let mut report = LoadReport {
        api: args.api,
        model: args.shape.model.clone(),
        unit: args.api.unit().into(),
        batch: args.batch,
        machine: machine::describe(),
        date: crate::utc::today(),
        note: args.note.clone(),
        targets,
        plots: Vec::new(),
    };
    report::write(&mut report, &args.out, args.results.as_deref())?;
    Ok(report)
}

/// The texts of request `i`: the next `batch` lines, cycling; tagged to be unique when asked.
#[derive(Clone)]
struct Inputs {
    texts: Arc<Vec<String>>,
    batch: usize,
    tag: Option<String>,
    next: Arc<AtomicUsize>,
}

impl Inputs {
    fn take(&self) -> Vec<String> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (0..self.batch)
            .map(|k| {
                let text = &self.texts[(i * self.batch + k) % self.texts.len()];
                match &self.tag {
                    Some(tag) => format!("{text} [{tag}-{i}-{k}]"),
                    None => text.clone(),
                }
            })
            .collect()
    }
}

/// When a closed-loop level ends.
#[derive(Clone, Copy)]
enum Stop {
    Requests(usize),
    Seconds(f64),
}

/// `concurrency` clients, each sending its next request when the last is answered.
async fn closed(
    client: &Client,
    args: &LoadArgs,
    inputs: &Inputs,
    concurrency: usize,
    stop: Stop,
) -> (Vec<Outcome>, f64) {
    let sent = Arc::new(AtomicUsize::new(0));
    let (limit, deadline) = match stop {
        Stop::Requests(n) => (n, None),
        Stop::Seconds(s) => (usize::MAX, Some(Instant::now() + Duration::from_secs_f64(s))),
    };
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (mut client, shape, sent) = (client.clone(), args.shape.clone(), sent.clone());
            let inputs = inputs.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                while sent.fetch_add(1, Ordering::Relaxed) < limit && deadline.is_none_or(|d| Instant::now() < d) {
                    outcomes.push(client.send(&shape, inputs.take()).await);
                }
                outcomes
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for worker in workers {
        outcomes.extend(worker.await.unwrap_or_default());
    }
    (outcomes, started.elapsed().as_secs_f64())
}

/// One request every 1/rate seconds for `seconds`, whatever the answers; the level's time runs until the
/// last answer.
async fn open(client: &Client, args: &LoadArgs, inputs: &Inputs, rate: f64, seconds: f64) -> (Vec<Outcome>, f64) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    while started.elapsed().as_secs_f64() < seconds {
        tick.tick().await;
        let (mut client, shape, texts) = (client.clone(), args.shape.clone(), inputs.take());
        tasks.spawn(async move { client.send(&shape, texts).await });
    }
    let mut outcomes = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(outcome) = done {
            outcomes.push(outcome);
        }
    }
    (outcomes, started.elapsed().as_secs_f64())
}

fn summarize(
    concurrency: Option<usize>,
    rate: Option<f64>,
    outcomes: Vec<Outcome>,
    seconds: f64,
    server_pid: Option<u32>,
) -> Level {
    let (mut ok, mut errors, mut rejected, mut first_error) = (Vec::<Sample>::new(), 0, 0, None);
    for outcome in outcomes {
        match outcome {
            Outcome::Ok(sample) => ok.push(sample),
            Outcome::Rejected => rejected += 1,
            Outcome::Error(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v
    };
    let latencies = sorted(ok.iter().map(|s| s.latency_ms).collect());
    let ttfts = sorted(ok.iter().filter_map(|s| s.ttft_ms).collect());
    let itls = sorted(ok.iter().flat_map(|s| s.itl_ms.iter().copied()).collect());
    let seconds = seconds.max(f64::MIN_POSITIVE);
    Level {
        level: match (concurrency, rate) {
            (_, Some(r)) => format!("r={r}/s"),
            (c, None) => format!("c={}", c.unwrap_or(1)),
        },
        concurrency,
        rate,
        ok: ok.len(),
        errors,
        rejected,
        seconds,
        requests_per_second: ok.len() as f64 / seconds,
        throughput: ok.iter().map(|s| s.items).sum::<usize>() as f64 / seconds,
        latency_ms: Percentiles::of(&latencies),
        ttft_ms: (!ttfts.is_empty()).then(|| Percentiles::of(&ttfts)),
        itl_ms: (!itls.is_empty()).then(|| Percentiles::of(&itls)),
        server_peak_rss_mib: server_pid.and_then(|pid| memory_mib(&pid.to_string(), "VmHWM:")),
        first_error,
        latencies,
        ttfts,
    }
}

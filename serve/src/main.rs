//! The `ferroserve` binary.

use std::process::ExitCode;

use clap::Parser;
use ferroserve::bench::VariantsArgs;
use ferroserve::bench::load::{LoadArgs, RequestShape};
use ferroserve::cli::{BenchCommand, Cli, Command, ExportCommand, LlmCommand, LoadCommand, VariantsCommand};
use ferroserve::config::ServerConfig;
use ferroserve::threads::ThreadBudget;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Export(ExportCommand::Onnx { checkpoint, output }) => {
            ferroserve::export::export_onnx(&checkpoint, &output)
        }
        Command::Quantize { model, output, to, calibration, calibration_limit, int8_embeddings } => {
            let calibration = calibration.map(|path| (path, calibration_limit));
            ferroserve::export::quantize(&model, &output, to, calibration.as_ref(), int8_embeddings)
        }
        Command::HashKey => hash_key(),
        Command::Bench(BenchCommand::Variants(command)) => bench_variants(*command),
        Command::Bench(BenchCommand::Load(command)) => bench_load(*command),
        Command::Bench(BenchCommand::Llm(command)) => bench_llm(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `ferroserve bench variants`: the command line as the benchmark's arguments.
fn bench_variants(c: VariantsCommand) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let args = VariantsArgs {
        model: c.model,
        repository: c.model_repository,
        variants: c.variants,
        dtypes: c.dtypes,
        data: c.data,
        limit: c.limit,
        batches: c.batch,
        max_tokens: c.max_tokens,
        perplexity_tokens: c.perplexity_tokens,
        reference: c.reference,
        min_cosine: c.min_cosine,
        min_agreement: c.min_agreement,
        device: c.device.parse().map_err(anyhow::Error::msg)?,
        threads: c.threads.unwrap_or(cores),
        out: c.out,
    };
    ferroserve::bench::variants(&args).map(|_| ())
}

/// `ferroserve bench llm`: the figures as one JSON line on stdout.
fn bench_llm(c: LlmCommand) -> anyhow::Result<()> {
    let args = ferroserve::bench::llm::LlmArgs {
        model: c.model,
        repository: c.model_repository,
        dtype: c.dtype,
        prompt_file: c.prompt_file,
        threads: c.threads,
        tokens: c.tokens,
        streams: c.streams,
        repeats: c.repeats,
        device: c.device.parse().map_err(anyhow::Error::msg)?,
    };
    println!("{}", serde_json::to_string(&ferroserve::bench::llm::run(&args)?)?);
    Ok(())
}

/// `ferroserve bench load`: the command line as the load run's arguments, on a runtime of its own.
fn bench_load(c: LoadCommand) -> anyhow::Result<()> {
    let headers = c
        .cache
        .map(|mode| ("x-ferroserve-cache".to_string(), mode))
        .into_iter()
        .chain(c.api_key.map(|key| ("authorization".to_string(), format!("Bearer {key}"))))
        .collect();
    let args = LoadArgs {
        urls: std::iter::once(c.url).chain(c.compare).collect(),
        api: c.api,
        shape: RequestShape {
            model: c.model,
            max_tokens: c.max_tokens,
            ignore_eos: c.ignore_eos,
            system: c.system,
            kserve_input: c.kserve_input,
            headers,
        },
        concurrency: c.concurrency,
        rates: c.rate,
        requests: c.requests,
        duration: c.duration,
        warmup: c.warmup,
        batch: c.batch,
        data: c.data,
        limit: c.limit,
        unique: c.unique,
        server_pid: c.server_pid,
        note: c.note,
        out: c.out,
        results: c.results,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(ferroserve::bench::load::load(&args)).map(|_| ())
}

/// Reads one key from standard input (so it stays out of the shell history) and prints its digest.
fn hash_key() -> anyhow::Result<()> {
    let mut key = String::new();
    std::io::stdin().read_line(&mut key)?;
    let key = key.trim();
    anyhow::ensure!(!key.is_empty(), "no key on standard input");
    println!("{}", ferroserve::api::auth::hex_digest(key));
    Ok(())
}

fn serve(args: ferroserve::cli::ServeArgs) -> anyhow::Result<()> {
    let config = ServerConfig::load(&args)?;
    let telemetry = ferroserve::telemetry::init_tracing(config.log_format, &config.tracing)?;
    let models = ferroserve::server::read_models(&config)?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let budget = ThreadBudget::plan(&models, config.io_threads, config.onnx_solo_sessions, cores);
    budget.log();
    // Pool threads spin only where no other lane computes on the CPU (see threads.rs).
    ferroserve_models::onnx::share_compute_pool(ferroserve_models::onnx::SharedPool {
        threads: budget.cores,
        spin: budget.shared_pool_spins,
        nice: budget.shared_pool_nice,
        solo_sessions: budget.solo_sessions,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(budget.io_threads)
        .thread_name("ferroserve-io")
        .enable_all()
        .build()?;
    let served = runtime.block_on(ferroserve::server::run(config, models, budget));
    telemetry.shutdown();
    served
}

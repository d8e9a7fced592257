//! Command-line interface: `ferroserve <subcommand>`. Every `serve` option can also come from an
//! environment variable (`FERROSERVE_*`) or the TOML config file; a flag beats the environment, which
//! beats the file, which beats the built-in default.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "ferroserve", version, about = "Serve machine-learning models over REST and gRPC")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the model repository and serve it over HTTP and gRPC until SIGINT/SIGTERM.
    Serve(Box<ServeArgs>),
    /// Print the SHA-256 of an API key read from standard input, as `[[auth.keys]] sha256` takes it.
    HashKey,
    /// Convert a checkpoint to another format.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Compare variants of a model on speed, memory and accuracy.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Write a quantized variant of an ONNX model folder (INT8: any ONNX model whose MatMuls have constant
    /// weights; FP16: any ONNX model with float32 weights) or of a GGUF file (Q8_0, Q4_0, Q4_K).
    Quantize {
        /// Folder with model.onnx (and its tokenizer and configs, copied along), or a .gguf file.
        #[arg(long)]
        model: PathBuf,
        /// Output folder (created); the variant goes to OUTPUT/model.onnx, or for GGUF to
        /// OUTPUT/<name>.<TO>.gguf (or OUTPUT itself when it ends in .gguf).
        #[arg(long)]
        output: PathBuf,
        /// int8: dynamic quantization of MatMul weights, one scale per output channel (recommended);
        /// int8-per-tensor: one scale per weight matrix (smaller, less accurate); int8-static: activations
        /// quantized with fixed ranges measured on --calibration texts; int4: 4-bit weights in blocks of 32
        /// (ONNX Runtime's MatMulNBits, INT8 activations); fp16: weights and compute in half precision, inputs
        /// and outputs unchanged. q8_0, q4_0, q4_k: a GGUF model's weight matrices re-quantized offline (rows
        /// that do not split into Q4_K's 256-value blocks fall back to Q5_0).
        #[arg(long, value_enum)]
        to: QuantizeTarget,
        /// int8-static: texts to calibrate on, one per line (representative of what the model will embed).
        #[arg(long, required_if_eq("to", "int8-static"))]
        calibration: Option<PathBuf>,
        /// int8-static: at most this many calibration texts.
        #[arg(long, default_value_t = 256)]
        calibration_limit: usize,
        /// int8, int8-static, int4: also store large embedding tables (the word embeddings) as int8 rows with a
        /// scale each. MiniLM's INT8 file: 58.6 -> 23.5 MB and 40 MiB less memory at the same accuracy, but ONNX
        /// Runtime no longer fuses its embedding layer: a third slower at batch 1, as fast at batch 32.
        #[arg(long)]
        int8_embeddings: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QuantizeTarget {
    Int8,
    Int8PerTensor,
    Int8Static,
    Int4,
    Fp16,
    #[value(name = "q8_0")]
    Q8_0,
    #[value(name = "q4_0")]
    Q4_0,
    #[value(name = "q4_k")]
    Q4K,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Every variant of an embedding or generation model (NAME and NAME:* in the model repository, and NAME
    /// converted at load to each --dtypes format), in this process: load time, memory, file size, throughput
    /// and latency per batch size, and the accuracy of each against a reference variant (embeddings: cosine
    /// min / mean / 1st percentile, top-10 neighbours kept; generation: greedy token agreement, perplexity,
    /// prefill tokens/s). Writes a table, JSON, CSV, and PNG and SVG plots.
    Variants(Box<VariantsCommand>),
    /// Load a running server, ours or a peer's, over OpenAI embeddings or chat (streamed), TEI, KServe v2 or
    /// ferroserve's gRPC: closed-loop concurrency sweeps or open-loop rates, latency percentiles, time to
    /// first token and inter-token latency of streams, `--compare` for a second server in the same run.
    /// Writes a table, JSON, CSV, and PNG and SVG plots.
    Load(Box<LoadCommand>),
    /// A generation model's engine in this process: prefill tokens/s of one long prompt and aggregate greedy
    /// decode tokens/s of streams decoded together, as JSON (the measures benches/llm.sh also takes of
    /// llama.cpp on the same GGUF file).
    Llm(LlmCommand),
}

/// The options of `ferroserve bench llm`.
#[derive(Debug, Args)]
pub struct LlmCommand {
    /// The generation model's name in the model repository.
    #[arg(long, default_value = "SmolLM2-135M-Instruct")]
    pub model: String,
    #[arg(long, default_value = "deploy/model-repository")]
    pub model_repository: PathBuf,
    /// Convert the weights at load to this format (f32, f16, q8_0, q4_1, stored) instead of the entry's.
    #[arg(long)]
    pub dtype: Option<String>,
    /// The prompt whose prefill is timed (plain text, no chat template).
    #[arg(long)]
    pub prompt_file: PathBuf,
    /// Compute threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Tokens each stream generates.
    #[arg(long, default_value_t = 64)]
    pub tokens: usize,
    /// Streams decoded together, comma-separated levels.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub streams: Vec<usize>,
    /// Each figure is the best of this many runs.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Where the model runs: cpu, or cuda:N in builds with the cuda feature.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// The options of `ferroserve bench load`.
#[derive(Debug, Args)]
pub struct LoadCommand {
    /// Base URL of the server (for --api grpc, its gRPC endpoint).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// A second server, measured with the same sweep in the same run.
    #[arg(long)]
    pub compare: Option<String>,
    #[arg(long, value_enum, default_value = "openai-embeddings")]
    pub api: crate::bench::load::Api,
    /// The model to call (the path of KServe's infer route; the `model` field of OpenAI requests).
    #[arg(long, default_value = "all-MiniLM-L6-v2")]
    pub model: String,
    /// Closed loop: concurrent clients, each sending one request at a time; comma-separated levels.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    pub concurrency: Vec<usize>,
    /// Open loop: requests per second whatever the answers, comma-separated levels (needs --duration;
    /// replaces --concurrency).
    #[arg(long, value_delimiter = ',')]
    pub rate: Vec<f64>,
    /// Requests per closed-loop level (unless --duration is given).
    #[arg(long, default_value_t = 1000)]
    pub requests: usize,
    /// Seconds per level.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Requests sent before each level is measured.
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// Texts per request (embedding APIs).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Chat: most tokens per answer.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// Chat: ask the server to ignore end-of-generation tokens (`ignore_eos`, as vLLM and ferroserve take it),
    /// so every answer is --max-tokens long.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Chat: a system message sent with every request (a prefix all requests share).
    #[arg(long)]
    pub system: Option<String>,
    /// KServe: the name of the BYTES input that takes the texts.
    #[arg(long, default_value = "text")]
    pub kserve_input: String,
    /// Texts or prompts, one per line; requests cycle through them.
    #[arg(long, default_value = "tests/data/sentences.txt")]
    pub data: PathBuf,
    /// Use at most this many lines of --data.
    #[arg(long, default_value_t = 800)]
    pub limit: usize,
    /// Make every text unique, so no request can hit a cache: a tag of about ten word pieces is appended, so
    /// the texts cost more to embed (`--cache skip` keeps them as they are, on servers that take it).
    #[arg(long)]
    pub unique: bool,
    /// Cache mode sent with every request (`x-ferroserve-cache`: default, skip, refresh, only).
    #[arg(long)]
    pub cache: Option<String>,
    /// API key sent with every request (`authorization: Bearer`).
    #[arg(long, env = "FERROSERVE_BENCH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// A local server's process id: its peak resident memory goes into the results.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// A note for the results (the server's configuration, say).
    #[arg(long, default_value = "")]
    pub note: String,
    /// Folder for load.json, load.csv and the plots.
    #[arg(long, default_value = "target/bench-load")]
    pub out: PathBuf,
    /// A Markdown file to append the table to, with the machine and date.
    #[arg(long)]
    pub results: Option<PathBuf>,
}

/// The options of `ferroserve bench variants`.
#[derive(Debug, Args)]
pub struct VariantsCommand {
    /// The model (its variants are the repository's NAME and NAME:* entries).
    #[arg(long)]
    pub model: String,
    #[arg(long, default_value = "deploy/model-repository")]
    pub model_repository: PathBuf,
    /// Only these variants, comma-separated (full names or the part after ':').
    #[arg(long, value_delimiter = ',')]
    pub variants: Vec<String>,
    /// Also NAME converted at load to each of these weight formats, comma-separated (f32, f16, bf16, q8_0,
    /// q4_1, stored), named NAME[dtype]. Candle models only.
    #[arg(long, value_delimiter = ',')]
    pub dtypes: Vec<String>,
    /// Texts (embedding) or prompts (generation), one per line.
    #[arg(long, default_value = "tests/data/sentences.txt")]
    pub data: PathBuf,
    /// At most this many texts or prompts [default: 1000 texts, 16 prompts].
    #[arg(long)]
    pub limit: Option<usize>,
    /// Batch sizes, comma-separated [default: 1,8,32 for embeddings, 1,4 for generation].
    #[arg(long, value_delimiter = ',')]
    pub batch: Vec<usize>,
    /// Generation: most new tokens per prompt.
    #[arg(long, default_value_t = 32)]
    pub max_tokens: usize,
    /// Generation: tokens of the data the perplexity is measured on.
    #[arg(long, default_value_t = 256)]
    pub perplexity_tokens: usize,
    /// The variant the others are compared with [default: the Candle F32 one, else the first].
    #[arg(long)]
    pub reference: Option<String>,
    /// Embeddings: recommend the fastest variant whose 1st-percentile cosine reaches this.
    #[arg(long)]
    pub min_cosine: Option<f64>,
    /// Generation: recommend the fastest variant whose greedy token agreement reaches this.
    #[arg(long)]
    pub min_agreement: Option<f64>,
    /// Where the variants run: cpu, or cuda:N in builds with the cuda feature (embedding models).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Compute threads per variant [default: every core].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Folder for variants.json, variants.csv and the plots.
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Write a BERT-family safetensors checkpoint as an ONNX model (opset 17; inputs input_ids,
    /// attention_mask, token_type_ids; output last_hidden_state, as Optimum's feature-extraction export),
    /// into a folder with the checkpoint's tokenizer and configs, ready for `backend = "onnx"`.
    Onnx {
        /// Checkpoint folder: config.json, model.safetensors, tokenizer.json.
        #[arg(long)]
        checkpoint: PathBuf,
        /// Output folder (created); the model goes to OUTPUT/model.onnx.
        #[arg(long)]
        output: PathBuf,
    },
}

/// Options of `ferroserve serve`. Unset options fall back to the config file, then to defaults.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML config file (see deploy/ferroserve.toml for every key).
    #[arg(long, env = "FERROSERVE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address of the HTTP API (REST: OpenAI, TEI, health, metrics) [default: 127.0.0.1:8080].
    #[arg(long, env = "FERROSERVE_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Address of the gRPC API [default: 127.0.0.1:50051].
    #[arg(long, env = "FERROSERVE_GRPC_ADDR")]
    pub grpc_addr: Option<SocketAddr>,
    /// Folder with one `<model>.toml` per served model [default: deploy/model-repository].
    #[arg(long, env = "FERROSERVE_MODEL_REPOSITORY")]
    pub model_repository: Option<PathBuf>,
    /// Largest HTTP request body in bytes; larger bodies get 413 [default: 2097152].
    #[arg(long, env = "FERROSERVE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Most texts one request may carry [default: 2048].
    #[arg(long, env = "FERROSERVE_MAX_CLIENT_BATCH_SIZE")]
    pub max_client_batch_size: Option<usize>,
    /// Seconds that in-flight requests get to finish after SIGINT/SIGTERM [default: 30].
    #[arg(long, env = "FERROSERVE_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// Worker threads of the async runtime (I/O only; compute runs on lane threads) [default: one per core].
    #[arg(long, env = "FERROSERVE_IO_THREADS")]
    pub io_threads: Option<usize>,
    /// Whether ONNX models on the shared pool get a second session whose threads spin, used while no other
    /// lane computes (a lone request runs faster; made on first use, it costs about the model's weights again
    /// in memory) [default: true].
    #[arg(long, env = "FERROSERVE_ONNX_SOLO_SESSIONS")]
    pub onnx_solo_sessions: Option<bool>,
    /// Shared Redis cache, e.g. redis://127.0.0.1:6379/0 (overrides `cache.redis_url` of the config file).
    #[arg(long, env = "FERROSERVE_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Folder of the vector collections (overrides `vectors.path`) [default: data/collections].
    #[arg(long, env = "FERROSERVE_VECTORS_PATH")]
    pub vectors_path: Option<PathBuf>,
    /// Folder of the chain definitions (overrides `chains.path`) [default: `chains` beside the model repository].
    #[arg(long, env = "FERROSERVE_CHAINS_PATH")]
    pub chains_path: Option<PathBuf>,
    /// Folder of `ferroserve bench` results the web console's bench page shows (overrides `ui.bench_results`).
    #[arg(long, env = "FERROSERVE_BENCH_RESULTS")]
    pub bench_results: Option<PathBuf>,
    /// Seconds between checks of the model repository for changed files, reloading those models (overrides
    /// `server.repository_poll_secs`) [default: 0, never].
    #[arg(long, env = "FERROSERVE_REPOSITORY_POLL_SECS")]
    pub repository_poll_secs: Option<u64>,
    /// Most MiB of model weights loaded at once; loading a model through the repository API unloads the least
    /// recently used ones (overrides `server.max_loaded_mb`) [default: 0, no limit].
    #[arg(long, env = "FERROSERVE_MAX_LOADED_MB")]
    pub max_loaded_mb: Option<u64>,
    /// Log line format [default: text]. Levels come from RUST_LOG (default `info`).
    #[arg(long, env = "FERROSERVE_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

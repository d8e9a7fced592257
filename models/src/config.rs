//! One model's configuration, as written in a model repository file (`<repository>/<name>.toml`).
//!
//! Paths inside a config are relative to the file that names them, so a repository folder can be moved
//! as a whole. Everything that can be read from the checkpoint itself (pooling, normalization, the input
//! limit) is optional here and overrides what the checkpoint says.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::ModelError;
use crate::pooling::Pooling;

/// What a model does; decides which endpoints accept it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Embedding,
    /// Text generation (a GGUF language model): `/v1/completions`, `/v1/chat/completions`, gRPC `Generate`.
    Generation,
}

/// Which inference library runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Candle,
    /// ONNX Runtime; `weights` names the `.onnx` file (default `model.onnx`).
    Onnx,
}

/// Numeric type of weights and compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DType {
    #[default]
    F32,
    /// Half precision weights and compute: for GPUs (on AVX2 CPUs it is slower than F32).
    F16,
    Bf16,
    /// Linear layers on Q8_0-quantized weights (quantized at load; Candle backend), the rest in F32.
    #[serde(rename = "q8_0")]
    Q8_0,
    /// Linear layers in GGML Q4_1 (language models: as SmolLM2's GGUF stores them).
    #[serde(rename = "q4_1")]
    Q4_1,
}

/// Where a lane runs: `cpu`, or `cuda:N` in builds with the `cuda` feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| format!("unknown device {s:?}: expected \"cpu\" or \"cuda:N\"")),
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Batching, queueing and scheduling of one model. Defaults suit a small CPU machine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchingConfig {
    /// Most sequences in one forward pass (a lane may set its own).
    pub max_batch_size: usize,
    /// Most padded tokens in one forward pass: longest sequence × sequences (a lane may set its own).
    pub max_batch_tokens: usize,
    /// How long a batch that is not full may wait for more requests, in milliseconds. 0: a free lane
    /// takes what is queued at once (requests still batch while lanes are busy).
    pub max_queue_delay_ms: u64,
    /// Most sequences waiting; a request that does not fit is refused at once (429 / RESOURCE_EXHAUSTED).
    /// A request larger than this is admitted only into an empty queue.
    pub max_queue_size: usize,
    /// Number of priority levels; requests say 0 (served first) to `priority_levels - 1`.
    pub priority_levels: u8,
    /// Priority of requests that do not say one.
    pub default_priority: u8,
    /// Deadline of requests that do not say one, in milliseconds; 0: none.
    pub default_timeout_ms: u64,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        BatchingConfig {
            max_batch_size: 32,
            max_batch_tokens: 16_384,
            max_queue_delay_ms: 0,
            max_queue_size: 1024,
            priority_levels: 3,
            default_priority: 1,
            default_timeout_ms: 30_000,
        }
    }
}

/// One lane: a worker thread that owns a device and a copy of (or share in) the weights.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaneConfig {
    pub device: DeviceSpec,
    /// CPU threads of this lane's forward passes; by default the cores are shared out between CPU lanes.
    #[serde(default)]
    pub threads: Option<usize>,
    /// This lane's own batch limits (a GPU lane takes larger batches than a CPU lane).
    #[serde(default)]
    pub max_batch_size: Option<usize>,
    #[serde(default)]
    pub max_batch_tokens: Option<usize>,
}

/// A model as the repository describes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The name clients address the model by.
    pub name: String,
    pub task: Task,
    pub backend: Backend,
    /// Folder of the checkpoint (config.json, tokenizer.json, weights).
    pub path: PathBuf,
    /// Weight file inside `path`; `model.safetensors` when absent.
    #[serde(default)]
    pub weights: Option<PathBuf>,
    #[serde(default)]
    pub dtype: DType,
    /// Pooling of token states into one vector; read from `1_Pooling/config.json` when absent.
    #[serde(default)]
    pub pooling: Option<Pooling>,
    /// L2-normalize embeddings by default; read from `modules.json` when absent.
    #[serde(default)]
    pub normalize: Option<bool>,
    /// Most tokens one input may have (special tokens included); from the checkpoint when absent.
    #[serde(default)]
    pub max_input_tokens: Option<usize>,
    #[serde(default)]
    pub batching: BatchingConfig,
    #[serde(default = "default_lanes")]
    pub lanes: Vec<LaneConfig>,
    /// Continuous batching, memory and prefix reuse of a generation model.
    #[serde(default)]
    pub generation: GenerationConfig,
    /// Semantic response cache of a generation model (opt-in): similar conversations get a stored answer.
    #[serde(default)]
    pub semantic_cache: Option<SemanticCacheConfig>,
}

/// The semantic response cache of one generation model: a request whose conversation is similar enough to one
/// already answered (same parameters) gets that answer without generating.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SemanticCacheConfig {
    /// The embedding model (of the same repository) that embeds conversations.
    pub embedding_model: String,
    /// Least cosine similarity for a hit, both of the whole conversation and of its last message.
    #[serde(default = "default_semantic_threshold")]
    pub threshold: f32,
    /// Most answers kept (oldest go first); they also expire after `cache.response_ttl_secs`.
    #[serde(default = "default_semantic_entries")]
    pub max_entries: usize,
}

fn default_semantic_threshold() -> f32 {
    0.95
}

fn default_semantic_entries() -> usize {
    4096
}

/// How a generation model schedules sequences and spends memory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerationConfig {
    /// Most sequences generating at once (each decode step runs them as one batch).
    pub max_num_seqs: usize,
    /// Most tokens one forward pass computes: decode tokens of running sequences plus prompt chunks. A long
    /// prompt is prefilled over several steps so running streams keep getting tokens.
    pub max_batch_tokens: usize,
    /// Most prompt plus output tokens of one sequence (capped by the model's context length).
    pub max_context_tokens: usize,
    /// Memory for the KV caches of running sequences, MiB; a sequence is admitted only when its prompt plus
    /// `max_tokens` fits.
    pub kv_cache_mb: usize,
    /// Memory for reusable prompt prefixes, MiB; 0 turns prefix reuse off.
    pub prefix_cache_mb: usize,
    /// Shortest prompt prefix worth caching or reusing, tokens.
    pub prefix_min_tokens: usize,
    /// Most requests waiting for a slot; beyond it requests get 429 / RESOURCE_EXHAUSTED at once.
    pub max_waiting: usize,
    /// `max_tokens` of requests that name none.
    pub default_max_tokens: usize,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig {
            max_num_seqs: 16,
            max_batch_tokens: 256,
            max_context_tokens: 4096,
            kv_cache_mb: 1024,
            prefix_cache_mb: 256,
            prefix_min_tokens: 16,
            max_waiting: 256,
            default_max_tokens: 256,
        }
    }
}

fn default_lanes() -> Vec<LaneConfig> {
    vec![LaneConfig { device: DeviceSpec::Cpu, threads: None, max_batch_size: None, max_batch_tokens: None }]
}

impl ModelConfig {
    /// Reads a config file and resolves its relative paths against the file's folder.
    pub fn from_file(file: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(file).map_err(|e| ModelError::io(file, e))?;
        let mut config: ModelConfig = toml::from_str(&text).map_err(|e| ModelError::config(file, e.to_string()))?;
        let base = file.parent().unwrap_or(Path::new("."));
        config.path = base.join(&config.path);
        config.validate().map_err(|m| ModelError::config(file, m))?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.contains(char::is_whitespace) {
            return Err(format!("name {:?} must be non-empty and without spaces", self.name));
        }
        let b = &self.batching;
        if b.max_batch_size == 0 || b.max_queue_size == 0 || b.max_batch_tokens == 0 {
            return Err("batching.max_batch_size, max_batch_tokens and max_queue_size must be at least 1".into());
        }
        if b.priority_levels == 0 || b.default_priority >= b.priority_levels {
            return Err(format!(
                "batching.default_priority ({}) must be below batching.priority_levels ({})",
                b.default_priority, b.priority_levels
            ));
        }
        if self
            .lanes
            .iter()
            .any(|l| l.threads == Some(0) || l.max_batch_size == Some(0) || l.max_batch_tokens == Some(0))
        {
            return Err("lane threads, max_batch_size and max_batch_tokens must be at least 1".into());
        }
        if self.lanes.is_empty() {
            return Err("at least one lane is needed".into());
        }
        let g = &self.generation;
        if g.max_num_seqs == 0 || g.max_batch_tokens == 0 || g.max_context_tokens == 0 || g.kv_cache_mb == 0 {
            return Err(
                "generation.max_num_seqs, max_batch_tokens, max_context_tokens and kv_cache_mb must be at least 1"
                    .into(),
            );
        }
        if g.max_batch_tokens < g.max_num_seqs {
            return Err(format!(
                "generation.max_batch_tokens ({}) must be at least max_num_seqs ({}): every running sequence \
                 needs one token per step",
                g.max_batch_tokens, g.max_num_seqs
            ));
        }
        if g.default_max_tokens == 0 {
            return Err("generation.default_max_tokens must be at least 1".into());
        }
        if self.task == Task::Generation && self.backend != Backend::Candle {
            return Err("generation models run on the candle backend (a GGUF file in `weights`)".into());
        }
        if self.task == Task::Generation && self.lanes.iter().any(|l| l.device != DeviceSpec::Cpu) {
            return Err("generation models run on one CPU lane for now".into());
        }
        if let Some(s) = &self.semantic_cache {
            if self.task != Task::Generation {
                return Err("semantic_cache is for generation models".into());
            }
            if !(s.threshold > 0.0 && s.threshold <= 1.0) {
                return Err(format!("semantic_cache.threshold must be in (0, 1], got {}", s.threshold));
            }
            if s.max_entries == 0 {
                return Err("semantic_cache.max_entries must be at least 1".into());
            }
        }
        if self.max_input_tokens == Some(0) {
            return Err("max_input_tokens must be at least 1".into());
        }
        Ok(())
    }

    /// The weight file to load: `weights`, else the backend's usual name.
    pub fn weights_path(&self) -> PathBuf {
        let default = match self.backend {
            Backend::Candle => "model.safetensors",
            Backend::Onnx => "model.onnx",
        };
        self.path.join(self.weights.as_deref().unwrap_or(Path::new(default)))
    }
}

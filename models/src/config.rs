//! One model's configuration as the model layer sees it: the top-level keys of a model repository file
//! (`<repository>/<name>.toml`). The file's tables (`[batching]`, `[[lanes]]`, `[generation]`,
//! `[semantic_cache]`) are serving settings, read by the server crate.
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
    /// Any ONNX model, served as its graph's named tensors (KServe v2 `/infer`).
    Tensor,
}

impl Task {
    /// The name used in configs and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Embedding => "embedding",
            Task::Generation => "generation",
            Task::Tensor => "tensor",
        }
    }
}

/// Which inference library runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Candle,
    /// ONNX Runtime; `weights` names the `.onnx` file (default `model.onnx`).
    Onnx,
}

impl Backend {
    /// The name used in configs and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Candle => "candle",
            Backend::Onnx => "onnx",
        }
    }
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
    /// Language models: every weight in the format its GGUF file stores it (Q4_0, Q4_K, Q5_0, ... as written
    /// by `ferroserve quantize` or llama.cpp), nothing converted at load.
    Stored,
}

/// Where a lane runs: `cpu`, or `cuda:N` in builds with the `cuda` feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
}

impl DeviceSpec {
    /// The Candle device: a CUDA device only in a binary built with the `cuda` feature (and a GPU), else a
    /// clear refusal.
    pub fn candle(&self) -> Result<candle_core::Device, ModelError> {
        match self {
            DeviceSpec::Cpu => Ok(candle_core::Device::Cpu),
            DeviceSpec::Cuda(n) if candle_core::utils::cuda_is_available() => Ok(candle_core::Device::new_cuda(*n)?),
            DeviceSpec::Cuda(n) => {
                Err(ModelError::Unsupported(format!("device cuda:{n} needs a binary built with the `cuda` feature")))
            }
        }
    }
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
    /// Cut inputs longer than `max_input_tokens` instead of refusing them, for requests that do not say
    /// (TEI's `--auto-truncate`).
    #[serde(default)]
    pub truncate: bool,
}

impl ModelConfig {
    /// Reads the model keys of a config file (see the module doc) and resolves its relative paths.
    pub fn from_file(file: &Path) -> Result<Self, ModelError> {
        let (keys, _tables) = split_tables(read_toml(file)?);
        ModelConfig::from_keys(keys, file)
    }

    /// The config from the top-level keys of `file` (already read); unknown keys are errors.
    pub fn from_keys(keys: toml::Table, file: &Path) -> Result<Self, ModelError> {
        let mut config: ModelConfig =
            toml::Value::Table(keys).try_into().map_err(|e: toml::de::Error| ModelError::config(file, e.message()))?;
        let base = file.parent().unwrap_or(Path::new("."));
        config.path = base.join(&config.path);
        config.validate().map_err(|m| ModelError::config(file, m))?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.contains(char::is_whitespace) {
            return Err(format!("name {:?} must be non-empty and without spaces", self.name));
        }
        if self.task == Task::Generation && self.backend != Backend::Candle {
            return Err("generation models run on the candle backend (a GGUF file in `weights`)".into());
        }
        if self.task == Task::Tensor && self.backend != Backend::Onnx {
            return Err("tensor models run on the onnx backend (an .onnx file in `weights`)".into());
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

/// Reads a TOML file as a table, naming the file in errors.
pub fn read_toml(file: &Path) -> Result<toml::Table, ModelError> {
    let text = std::fs::read_to_string(file).map_err(|e| ModelError::io(file, e))?;
    text.parse().map_err(|e: toml::de::Error| ModelError::config(file, e.message()))
}

/// Splits a config file's table into its plain keys (the model's) and its tables and arrays of tables
/// (the server's).
pub fn split_tables(table: toml::Table) -> (toml::Table, toml::Table) {
    let is_table = |v: &toml::Value| match v {
        toml::Value::Table(_) => true,
        toml::Value::Array(items) => !items.is_empty() && items.iter().all(toml::Value::is_table),
        _ => false,
    };
    table.into_iter().partition(|(_, v)| !is_table(v))
}

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
}

/// Which inference library runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Candle,
}

/// Numeric type of weights and compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DType {
    #[default]
    F32,
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

/// Batching and queueing limits of one model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchingConfig {
    /// Most sequences one forward pass takes.
    pub max_batch_size: usize,
    /// Most batches waiting for a lane; past it requests are refused at once (429).
    pub max_queue_size: usize,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        BatchingConfig { max_batch_size: 32, max_queue_size: 256 }
    }
}

/// One lane: a worker thread that owns a device and a copy of (or share in) the weights.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaneConfig {
    pub device: DeviceSpec,
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
}

fn default_lanes() -> Vec<LaneConfig> {
    vec![LaneConfig { device: DeviceSpec::Cpu }]
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
        if self.batching.max_batch_size == 0 || self.batching.max_queue_size == 0 {
            return Err("batching.max_batch_size and batching.max_queue_size must be at least 1".into());
        }
        if self.lanes.is_empty() {
            return Err("at least one lane is needed".into());
        }
        if self.max_input_tokens == Some(0) {
            return Err("max_input_tokens must be at least 1".into());
        }
        Ok(())
    }

    /// The weight file to load.
    pub fn weights_path(&self) -> PathBuf {
        self.path.join(self.weights.as_deref().unwrap_or(Path::new("model.safetensors")))
    }
}

//! The batching settings of an embedding model (`[batching]` of its repository file) and its lanes
//! (`[[lanes]]`).

use std::path::PathBuf;

use ferroserve_models::DeviceSpec;
use ferroserve_models::config::{Backend, ModelConfig};
use serde::Deserialize;

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
    /// Tensor models: batch sizes (rows) to form when enough requests wait — a batch stops waiting once it
    /// reaches one, and takes the largest one the waiting requests fill (Triton's `preferred_batch_size`).
    pub preferred_batch_sizes: Vec<usize>,
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
            preferred_batch_sizes: Vec::new(),
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
    /// Embedding models: this lane runs another backend's files of the same model (the ONNX export on CPU
    /// lanes beside Candle on GPU lanes, say). `backend`, `path` (relative to the model file) and `weights`
    /// replace the model's for this lane; the tokenizer, pooling, limits and name stay the model's, and the
    /// lane must agree with the first lane on probe texts (`min_cosine`) or the model does not load.
    #[serde(default)]
    pub backend: Option<Backend>,
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub weights: Option<PathBuf>,
    /// Least cosine between this lane's vectors and the first lane's on the load-time probe texts
    /// (default 0.999: the same numerics up to rounding; lower it to admit a quantized lane).
    #[serde(default)]
    pub min_cosine: Option<f64>,
    /// CPU lanes: this lane's share of the cores while other lanes compute too, relative to theirs (default
    /// 1). A lane computing alone gets every core whatever its weight. See `threads.rs`.
    #[serde(default)]
    pub weight: Option<f64>,
}

impl LaneConfig {
    /// One CPU lane with the default thread share: what a model without `[[lanes]]` gets.
    pub fn cpu() -> Self {
        LaneConfig {
            device: DeviceSpec::Cpu,
            threads: None,
            max_batch_size: None,
            max_batch_tokens: None,
            backend: None,
            path: None,
            weights: None,
            min_cosine: None,
            weight: None,
        }
    }

    /// Whether this lane runs files of its own rather than the model's.
    pub fn overrides_model(&self) -> bool {
        self.backend.is_some() || self.path.is_some() || self.weights.is_some()
    }

    /// The model as this lane runs it: the model's config with the lane's backend and files.
    pub fn model_config(&self, model: &ModelConfig) -> ModelConfig {
        let mut config = model.clone();
        if let Some(backend) = self.backend {
            config.backend = backend;
            // The model's weight file name belongs to its own backend.
            config.weights = None;
        }
        if let Some(path) = &self.path {
            config.path = path.clone();
        }
        if let Some(weights) = &self.weights {
            config.weights = Some(weights.clone());
        }
        config
    }
}

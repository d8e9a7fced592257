//! The embedding-model interface that lanes drive, and loading a model's shared parts and per-lane parts.

use std::path::Path;

use serde::Deserialize;

use crate::candle_bert::CandleBert;
use crate::config::{Backend, DeviceSpec, ModelConfig};
use crate::error::ModelError;
use crate::onnx::OnnxEmbedder;
use crate::pooling::Pooling;
use crate::tokenizer::TextTokenizer;

/// An encoder that turns token-id sequences into pooled vectors. One instance belongs to one lane;
/// `&mut self` lets backends whose sessions are not shareable (ONNX Runtime) implement it too.
pub trait Embedder: Send {
    /// Embeds a batch of token-id sequences (special tokens included, not padded). Returns one pooled,
    /// not yet normalized vector per sequence, in order.
    fn embed(&mut self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, ModelError>;
}

/// A batch padded to its longest sequence: row-major ids and attention mask (1 real, 0 padding), as `T`.
pub(crate) struct Padded<T> {
    pub ids: Vec<T>,
    pub mask: Vec<T>,
    pub longest: usize,
}

/// Pads every sequence of `batch` with `pad_id` to the longest one.
pub(crate) fn pad_batch<T: From<u32> + Copy>(batch: &[&[u32]], pad_id: u32) -> Padded<T> {
    let longest = batch.iter().map(|s| s.len()).max().unwrap_or(0);
    let (pad, one, zero) = (T::from(pad_id), T::from(1), T::from(0));
    let mut ids = Vec::with_capacity(batch.len() * longest);
    let mut mask = Vec::with_capacity(batch.len() * longest);
    for seq in batch {
        ids.extend(seq.iter().map(|&t| T::from(t)));
        ids.extend(std::iter::repeat_n(pad, longest - seq.len()));
        mask.extend(std::iter::repeat_n(one, seq.len()));
        mask.extend(std::iter::repeat_n(zero, longest - seq.len()));
    }
    Padded { ids, mask, longest }
}

/// What every lane of a model shares: the tokenizer and facts read from the checkpoint.
#[derive(Clone)]
pub struct EmbedderInfo {
    pub tokenizer: TextTokenizer,
    /// Length of the vectors the model returns.
    pub dimensions: usize,
    pub pooling: Pooling,
    /// Normalize unless the request says otherwise.
    pub normalize: bool,
}

#[derive(Deserialize)]
struct CheckpointConfig {
    hidden_size: usize,
    max_position_embeddings: usize,
}

impl EmbedderInfo {
    /// Reads the tokenizer and the checkpoint's metadata; config values override the checkpoint's.
    pub fn load(config: &ModelConfig) -> Result<Self, ModelError> {
        let ckpt: CheckpointConfig = read_json(&config.path.join("config.json"))?;
        let limit = match config.max_input_tokens {
            Some(n) => n,
            None => sentence_transformers_max_len(&config.path)?.unwrap_or(ckpt.max_position_embeddings),
        };
        if limit > ckpt.max_position_embeddings {
            return Err(ModelError::config(
                &config.path,
                format!("max_input_tokens {limit} exceeds the model's {} positions", ckpt.max_position_embeddings),
            ));
        }
        let pooling = match config.pooling {
            Some(p) => p,
            None => Pooling::from_sentence_transformers(&config.path)?.unwrap_or(Pooling::Mean),
        };
        let normalize = match config.normalize {
            Some(n) => n,
            None => sentence_transformers_normalizes(&config.path)?,
        };
        let tokenizer = TextTokenizer::from_file(&config.path.join("tokenizer.json"), limit)?;
        Ok(EmbedderInfo { tokenizer, dimensions: ckpt.hidden_size, pooling, normalize })
    }
}

/// Loads one lane's copy of the model on `device`. On the CPU, `threads` is the size of the lane's own
/// compute pool (lanes never share one, so they cannot oversubscribe each other).
pub fn load_embedder(
    config: &ModelConfig,
    info: &EmbedderInfo,
    device: &DeviceSpec,
    threads: usize,
) -> Result<Box<dyn Embedder>, ModelError> {
    match (config.backend, device) {
        (Backend::Candle, DeviceSpec::Cpu) => {
            let model = Box::new(CandleBert::load(config, info.pooling, device)?);
            Ok(Box::new(OnPool::new(model, threads, &config.name)?))
        }
        (Backend::Candle, DeviceSpec::Cuda(_)) => Ok(Box::new(CandleBert::load(config, info.pooling, device)?)),
        // ONNX Runtime sizes its own intra-op pool.
        (Backend::Onnx, DeviceSpec::Cpu) => {
            let pad_id = read_json::<PadId>(&config.path.join("config.json"))?.pad_token_id;
            Ok(Box::new(OnnxEmbedder::load(&config.weights_path(), info.pooling, pad_id, threads)?))
        }
        (Backend::Onnx, DeviceSpec::Cuda(_)) => Err(ModelError::Unsupported(format!(
            "model {:?}: the ONNX backend runs on the CPU only; use backend = \"candle\" for GPU lanes",
            config.name
        ))),
    }
}

#[derive(Deserialize)]
struct PadId {
    #[serde(default)]
    pad_token_id: u32,
}

/// Runs an embedder's forward passes on a thread pool of its own.
struct OnPool {
    inner: Box<dyn Embedder>,
    pool: rayon::ThreadPool,
}

impl OnPool {
    fn new(inner: Box<dyn Embedder>, threads: usize, model: &str) -> Result<Self, ModelError> {
        let name = model.to_string();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(move |i| format!("{name}-compute-{i}"))
            .build()
            .map_err(|e| ModelError::Backend(format!("cannot start {threads} compute threads: {e}")))?;
        Ok(OnPool { inner, pool })
    }
}

impl Embedder for OnPool {
    fn embed(&mut self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, ModelError> {
        let inner = &mut self.inner;
        self.pool.install(|| inner.embed(batch))
    }
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::config(path, e.to_string()))
}

fn sentence_transformers_max_len(dir: &Path) -> Result<Option<usize>, ModelError> {
    #[derive(Deserialize)]
    struct SentenceBert {
        max_seq_length: Option<usize>,
    }
    let path = dir.join("sentence_bert_config.json");
    if !path.exists() {
        return Ok(None);
    }
    Ok(read_json::<SentenceBert>(&path)?.max_seq_length)
}

/// True when the sentence-transformers pipeline (`modules.json`) ends in a Normalize module.
fn sentence_transformers_normalizes(dir: &Path) -> Result<bool, ModelError> {
    #[derive(Deserialize)]
    struct Module {
        #[serde(rename = "type")]
        kind: String,
    }
    let path = dir.join("modules.json");
    if !path.exists() {
        return Ok(false);
    }
    let modules: Vec<Module> = read_json(&path)?;
    Ok(modules.iter().any(|m| m.kind.ends_with(".Normalize")))
}

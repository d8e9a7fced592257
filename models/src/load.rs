//! Loading an embedding model: what every lane shares ([`EmbedderInfo`]: tokenizer and checkpoint facts)
//! and one lane's own copy of the weights on its device, on the backend the config names.

use crate::candle_bert::CandleBert;
use crate::checkpoint::Checkpoint;
use crate::config::{Backend, DeviceSpec, ModelConfig};
use crate::embedder::Embedder;
use crate::error::ModelError;
use crate::onnx::OnnxEmbedder;
use crate::pooling::Pooling;
use crate::tokenizer::TextTokenizer;

/// What every lane of a model shares: the tokenizer and facts read from the checkpoint.
#[derive(Clone)]
pub struct EmbedderInfo {
    pub tokenizer: TextTokenizer,
    /// Length of the vectors the model returns.
    pub dimensions: usize,
    pub pooling: Pooling,
    /// Normalize unless the request says otherwise.
    pub normalize: bool,
    /// Id padding fills batches with.
    pub pad_token_id: u32,
}

impl EmbedderInfo {
    /// Reads the tokenizer and the checkpoint's metadata; config values override the checkpoint's.
    pub fn load(config: &ModelConfig) -> Result<Self, ModelError> {
        let ckpt = Checkpoint::read(&config.path)?;
        let limit = config.max_input_tokens.or(ckpt.max_seq_length).unwrap_or(ckpt.max_position_embeddings);
        if limit > ckpt.max_position_embeddings {
            return Err(ModelError::config(
                &config.path,
                format!("max_input_tokens {limit} exceeds the model's {} positions", ckpt.max_position_embeddings),
            ));
        }
        let tokenizer = TextTokenizer::from_file(&config.path.join("tokenizer.json"), limit)?;
        Ok(EmbedderInfo {
            tokenizer,
            dimensions: ckpt.hidden_size,
            pooling: config.pooling.or(ckpt.pooling).unwrap_or(Pooling::Mean),
            normalize: config.normalize.unwrap_or(ckpt.normalizes),
            pad_token_id: ckpt.pad_token_id,
        })
    }
}

/// Loads one lane's copy of the model on `device`. On the CPU, `threads` is the size of the lane's own
/// compute pool (0 for an ONNX lane: ONNX Runtime's shared pool) and `nice` its threads' nice value (see
/// `cpu_share.rs`; 0 leaves them as they are).
pub fn load_embedder(
    config: &ModelConfig,
    info: &EmbedderInfo,
    device: &DeviceSpec,
    threads: usize,
    nice: i32,
) -> Result<Box<dyn Embedder>, ModelError> {
    match (config.backend, device) {
        (Backend::Candle, DeviceSpec::Cpu) => {
            let model = Box::new(CandleBert::load(config, info.pooling, device)?);
            Ok(Box::new(OnPool::new(model, threads, nice, &config.name)?))
        }
        (Backend::Candle, DeviceSpec::Cuda(_)) => Ok(Box::new(CandleBert::load(config, info.pooling, device)?)),
        // ONNX Runtime sizes its own intra-op pool.
        (Backend::Onnx, DeviceSpec::Cpu) => {
            Ok(Box::new(OnnxEmbedder::load(&config.weights_path(), info.pooling, info.pad_token_id, threads, nice)?))
        }
        (Backend::Onnx, DeviceSpec::Cuda(_)) => Err(ModelError::Unsupported(format!(
            "model {:?}: the ONNX backend runs on the CPU only; use backend = \"candle\" for GPU lanes",
            config.name
        ))),
    }
}

/// Runs an embedder's forward passes on a thread pool of its own.
struct OnPool {
    inner: Box<dyn Embedder>,
    pool: rayon::ThreadPool,
}

impl OnPool {
    fn new(inner: Box<dyn Embedder>, threads: usize, nice: i32, model: &str) -> Result<Self, ModelError> {
        let name = model.to_string();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(move |i| format!("{name}-compute-{i}"))
            .start_handler(move |_| crate::cpu_share::lower_current_thread(nice))
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

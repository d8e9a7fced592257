//! Language models: GGUF loading, the BPE tokenizer and chat template from the GGUF metadata, a Llama
//! decoder that batches sequences of different lengths, sampling, incremental detokenization with stop
//! strings, and prefix KV reuse. The scheduler that drives them (continuous batching) lives in the server.

pub mod chat_template;
mod gguf_check;
pub mod linear;
pub mod llama;
pub mod prefix_cache;
pub mod requantize;
pub mod sampling;
pub mod step;
pub mod text_stream;
pub mod tokenizer;

use std::fs::File;
use std::io::{BufReader, Read, Seek};

use candle_core::Device;
use candle_core::quantized::{GgmlDType, gguf_file};

pub use chat_template::{ChatMessage, ChatTemplate};
pub use llama::{KvCache, Llama, LlamaShape, WeightFormat};
pub use prefix_cache::{PrefixCache, PrefixHit};
pub use requantize::{GgufTarget, RequantizeReport, requantize_gguf};
pub use sampling::{Sampler, SamplingParams, TokenLogprobs};
pub use step::{KvState, SeqStep, StepModel};
pub use text_stream::{TextDelta, TextStream};
pub use tokenizer::GgufTokenizer;

use crate::config::{DType, DeviceSpec, ModelConfig};
use crate::error::ModelError;

/// End-of-generation tokens besides the EOS id, when the vocabulary has them (as llama.cpp does).
const END_TOKENS: [&str; 4] = ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>"];

/// What request handlers need of a language model (shared, read-only): tokenizer, chat template, limits.
pub struct LanguageInfo {
    pub tokenizer: GgufTokenizer,
    pub template: Option<ChatTemplate>,
    /// Tokens that end generation.
    pub stop_ids: Vec<u32>,
    /// Most tokens of prompt plus output.
    pub context_length: usize,
    pub shape: LlamaShape,
}

impl LanguageInfo {
    /// Prompt ids of a conversation rendered with the chat template: the template's control tokens are
    /// parsed, the messages' contents are plain text (a control token written in a message cannot open
    /// a turn). `None` without a chat template.
    pub fn chat_prompt(&self, messages: &[ChatMessage]) -> Option<Result<Vec<u32>, ChatPromptError>> {
        let template = self.template.as_ref()?;
        Some(match template.render_parts(messages, true) {
            Ok(parts) => self.tokenizer.encode_parts(&parts).map_err(ChatPromptError::Tokenizer),
            Err(reason) => Err(ChatPromptError::Template(reason)),
        })
    }
}

/// Why a conversation has no prompt.
#[derive(Debug, thiserror::Error)]
pub enum ChatPromptError {
    /// The template refused the conversation (roles out of order, ...): the request is at fault.
    #[error("chat template: {0}")]
    Template(String),
    #[error(transparent)]
    Tokenizer(ModelError),
}

/// A loaded language model: the weights (owned by the scheduler thread) and the shared facts.
pub struct LanguageModel {
    pub model: Llama,
    pub info: LanguageInfo,
}

/// The weight format a model config's `dtype` asks for.
pub fn weight_format(dtype: DType) -> WeightFormat {
    match dtype {
        DType::Q8_0 => WeightFormat::Quantized(GgmlDType::Q8_0),
        DType::Q4_1 => WeightFormat::Quantized(GgmlDType::Q4_1),
        DType::F16 | DType::Bf16 => WeightFormat::F16,
        DType::F32 => WeightFormat::F32,
        DType::Stored => WeightFormat::Stored,
    }
}

/// What a GGUF file says before its weights: the metadata and tensor table, the tokenizer and the chat template.
pub struct GgufHeader {
    pub content: gguf_file::Content,
    pub tokenizer: GgufTokenizer,
    pub template: Option<ChatTemplate>,
}

/// Reads a GGUF file's header, metadata and tensor table (every length checked against `file_len` before
/// anything is allocated), then the tokenizer and chat template its metadata holds. Weights are not read.
/// What the server reads of a model file before trusting it, and what `benches/fuzz` feeds arbitrary bytes.
pub fn read_gguf<R: Read + Seek>(reader: &mut R, file_len: u64) -> Result<GgufHeader, String> {
    let content = read_gguf_content(reader, file_len)?;
    let tokenizer = GgufTokenizer::from_gguf(&content).map_err(|e| e.to_string())?;
    let token_text = |id: Option<u32>| id.and_then(|i| tokenizer.token(i)).unwrap_or_default().to_string();
    let template = match content.metadata.get("tokenizer.chat_template") {
        Some(v) => Some(
            ChatTemplate::new(
                v.to_string().map_err(|e| e.to_string())?,
                &token_text(tokenizer.bos_id),
                &token_text(tokenizer.eos_id),
            )
            .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    Ok(GgufHeader { content, tokenizer, template })
}

/// A GGUF file's metadata and tensor table, every length checked against `file_len` before it is parsed.
pub fn read_gguf_content<R: Read + Seek>(reader: &mut R, file_len: u64) -> Result<gguf_file::Content, String> {
    gguf_check::check_header(reader, file_len)?;
    reader.rewind().map_err(|e| e.to_string())?;
    let content = gguf_file::Content::read(reader).map_err(|e| e.to_string())?;
    gguf_check::check_tensors(&content, file_len)?;
    Ok(content)
}

/// Loads a GGUF language model on `device`. `context_limit` caps the model's own context length. On the CPU
/// it runs on the kernels `FERROSERVE_CPU_KERNELS` chooses (see `linear.rs`); on a CUDA device on Candle's.
pub fn load_language_model(
    config: &ModelConfig,
    context_limit: usize,
    device: &DeviceSpec,
) -> Result<LanguageModel, ModelError> {
    let kernels = if *device == DeviceSpec::Cpu { linear::cpu_kernels()? } else { None };
    load(config, context_limit, &device.candle()?, kernels)
}

/// [`load_language_model`] on the CPU with the given kernel family (`None`: Candle's kernels), whatever
/// `FERROSERVE_CPU_KERNELS` says.
pub fn load_language_model_with_kernels(
    config: &ModelConfig,
    context_limit: usize,
    kernels: Option<ferroserve_kernels::Isa>,
) -> Result<LanguageModel, ModelError> {
    load(config, context_limit, &Device::Cpu, kernels)
}

fn load(
    config: &ModelConfig,
    context_limit: usize,
    device: &Device,
    kernels: Option<ferroserve_kernels::Isa>,
) -> Result<LanguageModel, ModelError> {
    let path = config.weights_path();
    let file = File::open(&path).map_err(|e| ModelError::io(&path, e))?;
    let file_len = file.metadata().map_err(|e| ModelError::io(&path, e))?.len();
    let mut reader = BufReader::new(file);
    let GgufHeader { content, tokenizer, template } = read_gguf(&mut reader, file_len)
        .map_err(|e| ModelError::config(&path, format!("not a readable GGUF file: {e}")))?;
    let model = Llama::load_with_kernels(&content, &mut reader, weight_format(config.dtype), device, kernels)?;
    tracing::info!(
        model = %config.name,
        device = ?device.location(),
        kernels = kernels.map_or("candle", |isa| isa.name()),
        "language model weights loaded (kernels: FERROSERVE_CPU_KERNELS on the CPU, default auto; Candle's on a GPU)"
    );
    let mut stop_ids: Vec<u32> = tokenizer.eos_id.into_iter().collect();
    stop_ids.extend(END_TOKENS.iter().filter_map(|t| tokenizer.token_id(t)));
    stop_ids.sort_unstable();
    stop_ids.dedup();
    let shape = model.shape().clone();
    let info =
        LanguageInfo { tokenizer, template, stop_ids, context_length: shape.context_length.min(context_limit), shape };
    Ok(LanguageModel { model, info })
}

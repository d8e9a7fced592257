//! The model layer of ferroserve: model configs, checkpoint reading, tokenizers, pooling, and the
//! inference backends (Candle and ONNX Runtime for encoders, a GGUF Llama for generation), plus export and
//! quantization. It knows nothing of HTTP, gRPC, queues or caches: the server crate owns those (and the
//! serving settings of a model: batching, lanes, generation scheduling) and calls into this crate from its
//! lane and scheduler threads.
//!
//! Encoders: [`Embedder`] is the trait lanes drive (`embedder`); `candle_bert` and `onnx` implement it;
//! `load` picks the backend for a config and device. Generation: `llm`.

pub mod candle_bert;
pub mod checkpoint;
pub mod config;
pub mod cpu_share;
pub mod embedder;
pub mod error;
pub mod export;
pub mod json_number;
pub mod llm;
pub mod load;
pub mod onnx;
pub mod pooling;
pub mod quantize;
mod quantized_bert;
pub mod tokenizer;

pub use config::{Backend, DType, DeviceSpec, ModelConfig, Task};
pub use embedder::Embedder;
pub use error::ModelError;
pub use load::{EmbedderInfo, load_embedder};
pub use pooling::Pooling;
pub use tokenizer::{InputTooLong, TextTokenizer};

//! The model layer of ferroserve: model configs and the model repository, tokenizers, pooling, and the
//! inference backends (Candle today; ONNX Runtime next). It knows nothing of HTTP, gRPC or queues: the
//! server crate owns those and calls into this crate from its lane threads.

pub mod candle_bert;
pub mod config;
pub mod embedder;
pub mod error;
pub mod export;
pub mod llm;
pub mod onnx;
pub mod pooling;
pub mod quantize;
mod quantized_bert;
pub mod repository;
pub mod tokenizer;

pub use config::{Backend, DType, DeviceSpec, ModelConfig, SemanticCacheConfig, Task};
pub use embedder::{Embedder, EmbedderInfo, load_embedder};
pub use error::ModelError;
pub use pooling::Pooling;
pub use tokenizer::{InputTooLong, TextTokenizer};

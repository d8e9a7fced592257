//! ONNX Runtime backend, through the `ort` crate with the runtime library loaded at run time (no
//! download at build time): a generic path (named tensors in, named tensors out) and an embedding path
//! (token ids in, pooled vectors out), plus the ONNX format's own types for reading and writing models.

mod embedder;
mod runtime;
mod session;
mod solo;
mod tensor;

/// The ONNX format's protobuf types (`proto/onnx/onnx.proto`).
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

pub use embedder::OnnxEmbedder;
pub use runtime::{RUNTIME_ENV, SharedPool, runtime_library, share_compute_pool};
pub use session::{OnnxModel, TensorSpec, check_inputs};
pub use tensor::{ElementType, NamedTensor, TensorData};

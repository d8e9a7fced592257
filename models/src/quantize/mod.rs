//! Quantized variants of ONNX models, as graph rewrites on the ONNX protobuf: they work on any ONNX file
//! whose MatMuls have constant weights, not only on ferroserve's own exports.

mod int8;
mod tensors;

pub use int8::{Granularity, quantize_int8};

/// What a rewrite changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuantizeReport {
    /// MatMuls rewritten.
    pub matmuls: usize,
    /// Weights stored before and after, in bytes.
    pub bytes_before: usize,
    pub bytes_after: usize,
}

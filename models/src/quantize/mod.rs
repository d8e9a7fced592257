//! Quantized variants of ONNX models, as graph rewrites on the ONNX protobuf: they work on any ONNX file
//! whose MatMuls have constant weights, not only on ferroserve's own exports.

mod calibrate;
mod embedding_table;
mod fp16;
mod int4;
mod int8;
mod integer_weights;
mod tensors;

pub use calibrate::{activation_ranges, text_feeds};
pub use embedding_table::quantize_embedding_tables;
pub use fp16::convert_fp16;
pub use int4::{Int4Options, quantize_int4};
pub use int8::{ActivationRanges, Granularity, quantize_int8, quantize_int8_static};
pub use integer_weights::{cpu_prefers_signed_weights, fit_integer_weights};

/// What a rewrite changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuantizeReport {
    /// Tensors rewritten (MatMul weights and embedding tables for INT8, float initializers for FP16).
    pub matmuls: usize,
    /// Weights stored before and after, in bytes.
    pub bytes_before: usize,
    pub bytes_after: usize,
}

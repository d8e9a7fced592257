//! CPU kernels for LLM decoders: quantized matrix products `y = x · Wᵀ` with weights in 8- or 4-bit blocks
//! of 32 values (GGML's Q8_0, Q4_0 and Q4_1, and Q4_K's sub-blocks) and activations quantized per row into 8-bit blocks, as
//! llama.cpp does, and a fused causal attention.
//!
//! - [`PackedWeights`]: the weights repacked once at load into the kernels' layout — eight output columns
//!   interleaved four values at a time, one column per 32-bit lane, scales widened to `f32`, values stored as
//!   the chosen instruction set wants them (llama.cpp's "repack").
//! - [`QuantizedRows`]: a batch of activation rows quantized into reusable buffers (no allocation per step
//!   once they have grown).
//! - [`attention`]: causal attention of a sequence's new tokens against its KV cache, fused per query row.
//! - [`swiglu`]: a Llama MLP's activation, `silu(gate) × up`, in one pass over a fused gate-and-up product.
//! - [`matmul`]: the product, tiled (several rows × eight columns share every load) and split over the
//!   current rayon pool's threads by output columns, so a lane's thread budget bounds it.
//!
//! Every instruction set computes bit-identical results: each block's integer dot product is exact, and the
//! floating-point work (per block: convert, scale, one fused multiply-add into the column's sum, and one
//! more for a 4-bit block's minimum) is the same sequence on every path, the scalar reference included. A
//! row's result never depends on how many other rows share the call, so greedy decoding is the same alone and
//! batched.

mod activation;
mod attention;
mod exp;
mod isa;
mod matmul;
mod pack;
mod rows;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use activation::swiglu;
pub use attention::{AttentionInput, AttentionShape, attention};
pub use isa::Isa;
pub use matmul::{matmul, matmul_to_vec};
pub use pack::{PackError, PackedWeights, WeightBits};
pub use rows::QuantizedRows;

/// Values per quantization block (weights and activations).
pub const BLOCK: usize = 32;
/// Output columns interleaved together in [`PackedWeights`].
pub const GROUP: usize = 8;

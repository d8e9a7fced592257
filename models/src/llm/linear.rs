//! The decoder's linear layers: on CPU, Q8_0, Q4_0, Q4_1 and Q4_K weights run on ferroserve's own kernels
//! (`ferroserve-kernels`: weights repacked at load, SIMD chosen at run time, one GEMM for a whole prefill);
//! elsewhere, and for the formats those kernels do not cover (F32, F16, the other K-quants), Candle's
//! `QMatMul`.
//!
//! `FERROSERVE_CPU_KERNELS` picks the CPU kernel family at load: `auto` (default: the fastest this CPU
//! runs), `avx512-vnni`, `avx2`, `scalar`, or `candle` (Candle's own kernels, the pre-existing path).

use std::cell::RefCell;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{CpuStorage, CustomOp1, D, InplaceOp1, Layout, Module, Shape, Storage, Tensor};
use ferroserve_kernels::{Isa, PackedWeights, QuantizedRows};

use crate::error::ModelError;

/// A linear layer `y = x · Wᵀ`.
pub enum Linear {
    /// 8-bit blocks on ferroserve's CPU kernels.
    Packed(Arc<PackedWeights>),
    /// Candle's quantized or float product.
    Candle(QMatMul),
}

impl Linear {
    /// The layer for `weights`: repacked for `isa` when they are Q8_0, Q4_0, Q4_1 or Q4_K blocks on the CPU
    /// and a kernel family is chosen, Candle's product otherwise.
    pub fn new(weights: QMatMul, isa: Option<Isa>) -> Result<Self, ModelError> {
        match (&weights, isa) {
            (QMatMul::QTensor(q), Some(isa)) if q.device().is_cpu() => match pack(q, isa)? {
                Some(packed) => Ok(Linear::Packed(Arc::new(packed))),
                None => Ok(Linear::Candle(weights)),
            },
            _ => Ok(Linear::Candle(weights)),
        }
    }

    /// The product of `x` (`[..., k]`) with the weights: `[..., n]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Linear::Packed(weights) => x.apply_op1_no_bwd(&PackedOp(weights)),
            Linear::Candle(m) => m.forward(x),
        }
    }
}

/// Linear layers that take the same input (a layer's query, key and value projections; its gate and up
/// projections): one product over their weights side by side when all of them run on the CPU kernels — the
/// input quantized once, one parallel pass instead of one each — and otherwise one product per layer.
pub enum SharedInput {
    Fused { weights: Arc<PackedWeights>, widths: Vec<usize> },
    Separate(Vec<Linear>),
}

impl SharedInput {
    /// Fuses `parts` where the kernels can concatenate their weights (same family, value width and inner
    /// dimension); keeps them apart otherwise.
    pub fn new(parts: Vec<Linear>) -> Self {
        let packed: Option<Vec<&PackedWeights>> = parts
            .iter()
            .map(|layer| match layer {
                Linear::Packed(weights) => Some(&**weights),
                Linear::Candle(_) => None,
            })
            .collect();
        if let Some(packed) = packed
            && let Ok(weights) = PackedWeights::concat(&packed)
        {
            let widths = packed.iter().map(|w| w.n()).collect();
            return SharedInput::Fused { weights: Arc::new(weights), widths };
        }
        SharedInput::Separate(parts)
    }

    /// Each layer's product of `x` (`[..., k]`), in the order given to `new`; fused, they are views of one
    /// product's columns.
    pub fn forward<const N: usize>(&self, x: &Tensor) -> candle_core::Result<[Tensor; N]> {
        let products: Vec<Tensor> = match self {
            SharedInput::Fused { weights, widths } => {
                let all = x.apply_op1_no_bwd(&PackedOp(weights))?;
                let mut at = 0;
                widths
                    .iter()
                    .map(|&n| {
                        at += n;
                        all.narrow(D::Minus1, at - n, n)
                    })
                    .collect::<candle_core::Result<_>>()?
            }
            SharedInput::Separate(parts) => {
                parts.iter().map(|layer| layer.forward(x)).collect::<candle_core::Result<_>>()?
            }
        };
        let count = products.len();
        products.try_into().map_err(|_| candle_core::Error::Msg(format!("{count} products where {N} were expected")))
    }

    /// `silu(gate) × up` for two layers, the gate projection first (a Llama MLP's activation): fused, one
    /// pass over their one product on the kernels ([`ferroserve_kernels::swiglu`]); apart, Candle's
    /// operations on the two products.
    pub fn swiglu(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            SharedInput::Fused { weights, widths } if widths.len() == 2 && widths[0] == widths[1] => {
                let both = x.apply_op1_no_bwd(&PackedOp(weights))?;
                let n = widths[0];
                let mut dims = both.dims().to_vec();
                let rows = both.elem_count() / (2 * n).max(1);
                let mut out = vec![0.0f32; rows * n];
                with_cpu_f32(&both, |values| ferroserve_kernels::swiglu(weights.isa(), values, rows, n, &mut out))?
                    .map_err(candle_core::Error::Msg)?;
                if let Some(last) = dims.last_mut() {
                    *last = n;
                }
                Tensor::from_vec(out, dims, x.device())
            }
            _ => {
                let [gate, up] = self.forward(x)?;
                candle_nn::ops::silu(&gate)? * up
            }
        }
    }
}

/// The blocks of `q` repacked for `isa`; `None` for a format the kernels do not cover.
fn pack(q: &QTensor, isa: Isa) -> Result<Option<PackedWeights>, ModelError> {
    let from = match q.dtype() {
        GgmlDType::Q8_0 => PackedWeights::from_q8_0,
        GgmlDType::Q4_0 => PackedWeights::from_q4_0,
        GgmlDType::Q4_1 => PackedWeights::from_q4_1,
        GgmlDType::Q4K => PackedWeights::from_q4_k,
        _ => return Ok(None),
    };
    let (n, k) = q.shape().dims2()?;
    from(&q.data()?, n, k, isa)
        .map(Some)
        .map_err(|e| ModelError::Backend(format!("packing a {n}x{k} {:?} weight: {e}", q.dtype())))
}

/// The kernel family for CPU linear layers, from `FERROSERVE_CPU_KERNELS` (see the module doc); `None`
/// means Candle's kernels.
pub fn cpu_kernels() -> Result<Option<Isa>, ModelError> {
    let choice = std::env::var("FERROSERVE_CPU_KERNELS").unwrap_or_default();
    let isa = match choice.trim() {
        "" | "auto" => return Ok(Some(Isa::detect())),
        "candle" => return Ok(None),
        "scalar" => Isa::Scalar,
        "avx2" => Isa::Avx2,
        "avx512-vnni" => Isa::Avx512Vnni,
        other => {
            return Err(ModelError::Unsupported(format!(
                "FERROSERVE_CPU_KERNELS={other:?}: expected auto, avx512-vnni, avx2, scalar or candle"
            )));
        }
    };
    if !isa.is_available() {
        return Err(ModelError::Unsupported(format!(
            "FERROSERVE_CPU_KERNELS={}: this CPU lacks the instructions (it runs {:?})",
            isa.name(),
            Isa::available().iter().map(|i| i.name()).collect::<Vec<_>>()
        )));
    }
    Ok(Some(isa))
}

thread_local! {
    /// Each thread's quantized activations, kept between products so that steps do not allocate them.
    static ROWS: RefCell<QuantizedRows> = RefCell::new(QuantizedRows::new());
}

/// The packed product as a Candle operation (CPU only; packed weights are only made for CPU tensors).
struct PackedOp<'a>(&'a PackedWeights);

impl CustomOp1 for PackedOp<'_> {
    fn name(&self) -> &'static str {
        "packed-quantized-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let w = self.0;
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("packed matmul expects f32 activations");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("packed matmul expects contiguous activations");
        };
        let dims = layout.dims();
        let k = dims.last().copied().unwrap_or(0);
        if k != w.k() {
            candle_core::bail!("packed matmul: activations of width {k}, weights of width {}", w.k());
        }
        let m = (end - start) / k.max(1);
        let mut out = Vec::new();
        let mut run = |rows: &mut QuantizedRows| {
            rows.quantize(&data[start..end], m, k, w.isa())?;
            ferroserve_kernels::matmul_to_vec(w, rows, &mut out)
        };
        // A pool thread waiting inside `matmul` may run another product it stole: that one gets fresh buffers.
        ROWS.with(|cell| match cell.try_borrow_mut() {
            Ok(mut rows) => run(&mut rows),
            Err(_) => run(&mut QuantizedRows::new()),
        })
        .map_err(|e| candle_core::Error::Msg(format!("packed matmul: {e}")))?;
        let mut shape = dims.to_vec();
        if let Some(last) = shape.last_mut() {
            *last = w.n();
        }
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}

/// Runs `f` on a contiguous CPU `f32` tensor's values.
pub(crate) fn with_cpu_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let (Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) = (&*storage, layout.contiguous_offsets()) else {
        candle_core::bail!("expected a contiguous f32 tensor on the CPU");
    };
    Ok(f(&data[start..end]))
}

/// `f` on the elements of a contiguous f32 tensor on the CPU, writable: the tensor's storage changes in place,
/// for every tensor that shares it.
pub(crate) fn with_cpu_f32_mut<R>(t: &Tensor, f: impl FnOnce(&mut [f32]) -> R) -> candle_core::Result<R> {
    /// Candle's hook for changing a tensor's storage in place, carrying `f` in and its result out.
    struct Access<F, R> {
        f: RefCell<Option<F>>,
        result: RefCell<Option<R>>,
    }
    impl<F: FnOnce(&mut [f32]) -> R, R> InplaceOp1 for Access<F, R> {
        fn name(&self) -> &'static str {
            "cpu-f32-in-place"
        }

        fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
            let (CpuStorage::F32(data), Some((start, end))) = (storage, layout.contiguous_offsets()) else {
                candle_core::bail!("expected a contiguous f32 tensor on the CPU");
            };
            if let Some(f) = self.f.borrow_mut().take() {
                *self.result.borrow_mut() = Some(f(&mut data[start..end]));
            }
            Ok(())
        }
    }
    let access = Access { f: RefCell::new(Some(f)), result: RefCell::new(None) };
    t.inplace_op1(&access)?;
    access.result.into_inner().ok_or_else(|| candle_core::Error::Msg("expected a tensor on the CPU".into()))
}

/// `f` on the rows of a two-dimensional f32 tensor on the CPU whose rows are contiguous but may be spaced
/// apart (a view of some columns of a wider matrix): the elements from the first row's start, and the
/// distance between rows.
pub(crate) fn with_cpu_f32_rows<R>(t: &Tensor, f: impl FnOnce(&[f32], usize) -> R) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let (Storage::Cpu(CpuStorage::F32(data)), [rows, width], [stride, 1]) = (&*storage, layout.dims(), layout.stride())
    else {
        candle_core::bail!("expected a matrix of f32 rows on the CPU");
    };
    let start = layout.start_offset();
    if *rows > 0 && start + (rows - 1) * stride + width > data.len() {
        candle_core::bail!("matrix rows past their storage");
    }
    Ok(f(&data[start..], *stride))
}

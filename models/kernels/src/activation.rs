//! The SwiGLU activation of a Llama MLP, `silu(gate) × up`, over a product whose columns hold the gate
//! projection and then the up projection (as a fused gate-and-up product leaves them), written row by row
//! into a buffer of half the width: one pass where separate operations would make the sigmoid, the product
//! and two intermediate tensors.
//!
//! `silu(g) = g · σ(g)`, with `σ` from [`exp`] of `−|g|` (so the exponential never overflows): `g / (1 + e)`
//! for `g ≥ 0`, `g · e / (1 + e)` below. Every instruction set does these operations in this order, so the
//! results are the same bits on every path.

use rayon::prelude::*;

use crate::Isa;
use crate::exp::exp;

/// Elements below which one thread does the whole call.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 16;

/// `out[r][j] = silu(gate_up[r][j]) × gate_up[r][n + j]` for `rows` rows of `2n` values.
pub fn swiglu(isa: Isa, gate_up: &[f32], rows: usize, n: usize, out: &mut [f32]) -> Result<(), String> {
    if gate_up.len() != rows * 2 * n || out.len() != rows * n {
        return Err(format!(
            "swiglu of {rows} rows of {n}: {} inputs (want {}) and {} outputs (want {})",
            gate_up.len(),
            rows * 2 * n,
            out.len(),
            rows * n
        ));
    }
    isa.require()?;
    if n == 0 {
        return Ok(());
    }
    let one = |(input, output): (&[f32], &mut [f32])| {
        let (gate, up) = input.split_at(n);
        #[cfg(target_arch = "x86_64")]
        if isa != Isa::Scalar {
            // SAFETY: `require` checked that this CPU runs `isa`; every non-scalar family has AVX2 and FMA.
            return unsafe { crate::x86::swiglu_avx2(gate, up, output) };
        }
        for ((o, &g), &u) in output.iter_mut().zip(gate).zip(up) {
            *o = silu(g) * u;
        }
    };
    if rows * n < PARALLEL_MIN_ELEMENTS {
        gate_up.chunks_exact(2 * n).zip(out.chunks_exact_mut(n)).for_each(one);
    } else {
        gate_up.par_chunks_exact(2 * n).zip(out.par_chunks_exact_mut(n)).for_each(one);
    }
    Ok(())
}

/// `g · σ(g)`; the reference the vector paths match.
pub(crate) fn silu(g: f32) -> f32 {
    let e = exp(-g.abs());
    let numerator = if g >= 0.0 { g } else { g * e };
    numerator / (1.0 + e)
}

#[cfg(test)]
mod tests {
    /// Against `g / (1 + e^−g)` in f64 over [-100, 100]: within a few parts in 10⁷, or below `g` times
    /// `exp`'s floor of 1.6e-38 where the exact value is smaller still (gates under -87).
    #[test]
    fn silu_is_close_to_the_exact_value() {
        for i in -100_000..=100_000 {
            let g = i as f32 / 1000.0;
            let want = g as f64 / (1.0 + (-(g as f64)).exp());
            let have = super::silu(g) as f64;
            let bound = 4e-7 * want.abs() + 1.7e-38 * (g as f64).abs();
            assert!((have - want).abs() <= bound, "silu({g}) = {have}, exactly {want}");
        }
        assert_eq!(super::silu(0.0), 0.0);
        assert!(super::silu(f32::NAN).is_nan());
    }
}

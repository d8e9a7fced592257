//! The exponential the kernels share (the softmax's weights, the MLP's sigmoid): Cephes' `expf` in
//! operations every instruction set has, so that the scalar reference and the vector paths (`x86::exp8`)
//! give the same bits. C's `expf` is not used: its results differ between libraries and it has no vector form.

/// Arguments below this give `exp(EXP_MIN)` (1.6e-38, the least with a normal result): a softmax weight
/// that small is nothing beside the largest one's 1.
pub(crate) const EXP_MIN: f32 = -87.0;
/// `ln 2` split in a high part exact in a few bits and the rest (Cephes' `expf` reduction).
pub(crate) const LN2_HI: f32 = 0.693_359_4;
pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
/// Cephes' `expf` polynomial for `(e^r − 1 − r) / r²` on `|r| ≤ ln 2 / 2`, highest degree first.
pub(crate) const EXP_POLY: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5];

/// `e^x` for `x ≤ 0` within two units in the last place (Cephes' `expf`: `x = n ln 2 + r`, a degree-7
/// polynomial in `r`, times `2^n`), in operations every instruction set has, so the vector paths give these
/// bits: a maximum, one rounding to an integer (ties to even), fused multiply-adds, and `2^n` built from
/// its exponent bits.
pub(crate) fn exp(x: f32) -> f32 {
    let x = x.max(EXP_MIN);
    let n = (x * std::f32::consts::LOG2_E).round_ties_even();
    let r = n.mul_add(-LN2_HI, x);
    let r = n.mul_add(-LN2_LO, r);
    let p = EXP_POLY[1..].iter().fold(EXP_POLY[0], |p, &c| p.mul_add(r, c));
    let y = p.mul_add(r * r, r) + 1.0;
    // n is in -126..=0 here, so 2^n is a normal float.
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    /// Every 2⁻¹⁰ step of the range (85k points) and its ends, against the exact exponential.
    #[test]
    fn exp_is_within_two_ulp_of_the_exact_value() {
        let points = (0..=87 * 1024).map(|i| -(i as f32) / 1024.0).chain([-0.0, -1e-30, -86.999_99]);
        for x in points {
            let (have, want) = (super::exp(x) as f64, (x as f64).exp());
            let ulp = (want as f32).next_up() as f64 - want as f32 as f64;
            assert!((have - want).abs() <= 2.0 * ulp, "exp({x}) = {have}, exactly {want}");
        }
        assert_eq!(super::exp(-1000.0), super::exp(super::EXP_MIN), "clamped below");
        assert_eq!(super::exp(f32::NAN), super::exp(super::EXP_MIN), "NaN as f32::max takes it");
    }
}

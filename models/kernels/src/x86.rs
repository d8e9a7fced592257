//! The x86-64 kernels: AVX2 (`vpmaddubsw`, then `vpmaddwd`) and AVX-512 VNNI on 256-bit registers
//! (`vpdpbusd`). Weights come interleaved (see `pack::interleaved`): one 32-byte load holds a run of four
//! values of each of the group's eight columns, and the row's four matching values are broadcast to every
//! lane, so each 32-bit lane accumulates its own column's block sum and one register holds the eight
//! columns' exact integer dot products — no horizontal sums. For 8-bit weights AVX2 multiplies |w| by
//! a·sign(w), and VNNI multiplies w + 128 by a with the +128 cancelled by starting from −128 × the row's sum
//! of values; 4-bit weights are unsigned nibbles, split into two runs' bytes and multiplied as they are.
//! The floating-point steps per block are the scalar reference's, eight columns at a time. Rows and the
//! weight width are const parameters so the accumulators stay in registers.

use std::arch::x86_64::*;

use crate::pack::RUN;
use crate::scalar::Tile;
use crate::{BLOCK, GROUP};

/// Runs in a block: eight of four values.
const RUNS: usize = BLOCK / RUN;

/// Run `j` of block `b` for the group's eight columns, as bytes: for 4-bit weights, runs `j` and `j + 4` come
/// from the same 32 bytes (low and high nibbles), and `j` counts the byte runs (0..4).
#[inline(always)]
unsafe fn load_run<const FOUR: bool>(t: &Tile<'_>, b: usize, j: usize) -> [__m256i; 2] {
    let bytes = if FOUR { BLOCK / 2 } else { BLOCK } * GROUP;
    // SAFETY: the caller runs with AVX2; the group's slice holds `blocks` blocks of `bytes` (checked in
    // `matmul`), and run `j` lies within block `b`.
    unsafe {
        let raw = _mm256_loadu_si256(t.w_qs.as_ptr().add(b * bytes + j * GROUP * RUN) as *const __m256i);
        if FOUR {
            let low = _mm256_set1_epi8(0x0f);
            [_mm256_and_si256(raw, low), _mm256_and_si256(_mm256_srli_epi16(raw, 4), low)]
        } else {
            [raw, raw]
        }
    }
}

/// The block's run `j` of row `ab`'s values, in every lane.
#[inline(always)]
unsafe fn broadcast_run(t: &Tile<'_>, ab: usize, j: usize) -> __m256i {
    // SAFETY: the caller runs with AVX2; row-block `ab` lies within `a_qs` (checked in `matmul`).
    unsafe { _mm256_set1_epi32((t.a_qs.as_ptr().add(ab * BLOCK + j * RUN) as *const i32).read_unaligned()) }
}

/// Adds row-block `ab`'s terms to the row's eight column sums, the scalar reference's operations: the dot
/// products converted and scaled (row scale × column scales), then for 4-bit weights the minimums (column
/// minimums × row scale) times the row's sum of values.
#[inline(always)]
unsafe fn accumulate<const FOUR: bool>(t: &Tile<'_>, b: usize, ab: usize, dot: __m256i, acc: __m256) -> __m256 {
    // SAFETY: the caller runs with AVX2 and FMA; block `b` has eight scales (and minimums for 4-bit weights)
    // in the group's slices, and row-block `ab` a scale and a sum.
    unsafe {
        let sa = _mm256_set1_ps(*t.a_scales.get_unchecked(ab));
        let ws = _mm256_loadu_ps(t.w_scales.as_ptr().add(b * GROUP));
        let acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(sa, ws), acc);
        if FOUR {
            let mins = _mm256_loadu_ps(t.w_mins.as_ptr().add(b * GROUP));
            _mm256_fmadd_ps(_mm256_mul_ps(mins, sa), _mm256_set1_ps(*t.a_sums.get_unchecked(ab) as f32), acc)
        } else {
            acc
        }
    }
}

/// Each row's eight column sums into its slot.
#[inline(always)]
fn store<const R: usize>(acc: &[__m256; R], out: &mut [[f32; GROUP]]) {
    for (v, slot) in acc.iter().zip(out.iter_mut()) {
        // SAFETY: the slot holds eight floats; callers run with AVX2.
        unsafe { _mm256_storeu_ps(slot.as_mut_ptr(), *v) };
    }
}

/// The AVX2 kernel on `R` rows: run by run within a block, so that only one run's weights (and their
/// magnitudes) are live beside the rows' integer and float sums.
/// Safety: the CPU has AVX2 and FMA; `t` holds `R` rows and `out` has `R` slots.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn tile_avx2<const R: usize, const FOUR: bool>(t: &Tile<'_>, out: &mut [[f32; GROUP]]) {
    let kb = t.blocks;
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..kb {
        let mut dot = [_mm256_setzero_si256(); R];
        let mut run = |w: __m256i, j: usize| {
            let abs_w = if FOUR { w } else { _mm256_sign_epi8(w, w) };
            for (r, dot) in dot.iter_mut().enumerate() {
                // SAFETY: row `r` of the tile, run `j` of the block.
                let a = unsafe { broadcast_run(t, r * kb + b, j) };
                let signed_a = if FOUR { a } else { _mm256_sign_epi8(a, w) };
                *dot = _mm256_add_epi32(*dot, _mm256_madd_epi16(_mm256_maddubs_epi16(abs_w, signed_a), ones));
            }
        };
        for j in 0..if FOUR { RUNS / 2 } else { RUNS } {
            // SAFETY: run `j` of block `b`.
            let [w, high] = unsafe { load_run::<FOUR>(t, b, j) };
            run(w, j);
            if FOUR {
                run(high, j + RUNS / 2);
            }
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: block `b` of row `r`.
            *acc = unsafe { accumulate::<FOUR>(t, b, r * kb + b, dot[r], *acc) };
        }
    }
    store(&acc, out);
}

/// The VNNI kernel on `R` rows. The block's eight runs of weights stay in registers across the rows; each
/// row's dot products start from the +128 correction (8-bit) or zero and take one `vpdpbusd` per run.
/// Safety: the CPU has AVX2, FMA, AVX-512 VL and VNNI; `t` holds `R` rows and `out` has `R` slots.
#[target_feature(enable = "avx2,fma,avx512f,avx512vl,avx512vnni")]
pub(crate) unsafe fn tile_vnni<const R: usize, const FOUR: bool>(t: &Tile<'_>, out: &mut [[f32; GROUP]]) {
    let kb = t.blocks;
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..kb {
        let mut w = [_mm256_setzero_si256(); RUNS];
        for j in 0..if FOUR { RUNS / 2 } else { RUNS } {
            // SAFETY: run `j` of block `b`.
            let [low, high] = unsafe { load_run::<FOUR>(t, b, j) };
            w[j] = low;
            if FOUR {
                w[j + RUNS / 2] = high;
            }
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            let ab = r * kb + b;
            // SAFETY: row-block `ab` lies within the tile's rows.
            let start = if FOUR { 0 } else { -128 * unsafe { *t.a_sums.get_unchecked(ab) } };
            let mut dot = _mm256_set1_epi32(start);
            for (j, &wj) in w.iter().enumerate() {
                // SAFETY: as above.
                dot = _mm256_dpbusd_epi32(dot, wj, unsafe { broadcast_run(t, ab, j) });
            }
            // SAFETY: as above.
            *acc = unsafe { accumulate::<FOUR>(t, b, ab, dot, *acc) };
        }
    }
    store(&acc, out);
}

/// The eight lanes summed in `attention::hsum8`'s order.
#[target_feature(enable = "avx2")]
fn hsum(v: __m256) -> f32 {
    let halves = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let pairs = _mm_add_ps(halves, _mm_movehl_ps(halves, halves));
    _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps(pairs, pairs, 1)))
}

/// `attention::rows_with` with the AVX2 passes, compiled whole for AVX2 so that they inline. Safety: the
/// CPU has AVX2 and FMA; the rows are as `rows_with` wants them.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn attention_rows_avx2<const G: usize>(
    rows: &crate::attention::SharedRows<'_, G>,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    crate::attention::rows_with::<Avx2Row, G>(rows, scores, out);
}

/// The AVX2 passes of attention rows; only reached through `attention_rows_avx2`.
struct Avx2Row;

impl crate::attention::RowOps for Avx2Row {
    #[inline(always)]
    fn scores(q: &[f32], k: &[f32], scale: f32, scores: &mut [f32]) {
        // SAFETY: only called from `attention_rows_avx2`, which runs with AVX2 and FMA.
        unsafe { scores_avx2(q, k, scale, scores) }
    }

    #[inline(always)]
    fn scores_pair(q: [&[f32]; 2], k: &[f32], scale: f32, scores: [&mut [f32]; 2]) {
        // SAFETY: as in `scores`.
        unsafe { scores_pair_avx2(q, k, scale, scores) }
    }

    #[inline(always)]
    fn exp_shifted(scores: &mut [f32], max: f32) -> f32 {
        // SAFETY: as in `scores`.
        unsafe { exp_shifted_avx2(scores, max) }
    }

    #[inline(always)]
    fn weighted_sums<const G: usize>(p: &[f32], v: &[f32], out: &mut [f32]) {
        // SAFETY: as in `scores`.
        unsafe { weighted_sums_avx2::<G>(p, v, out) }
    }
}

/// `RowOps::scores` eight keys at a time: the query is loaded once per eight keys, each key keeps its own
/// accumulator (the same chain of multiply-adds as one dot product), and the eight horizontal sums are done
/// together by `hsum_eight`. Safety: the CPU has AVX2 and FMA; the head dimension is a multiple of 8 and `k`
/// holds `scores.len()` keys.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn scores_avx2(q: &[f32], k: &[f32], scale: f32, scores: &mut [f32]) {
    let hd = q.len();
    let scale8 = _mm256_set1_ps(scale);
    let mut eights = scores.chunks_exact_mut(8);
    for (g, out) in (&mut eights).enumerate() {
        let keys = k[g * 8 * hd..][..8 * hd].as_ptr();
        let mut acc = [_mm256_setzero_ps(); 8];
        for c in (0..hd).step_by(8) {
            // SAFETY: `c + 8 <= hd`, and key `j < 8` of this group starts at `j * hd` within `keys`.
            let x = unsafe { _mm256_loadu_ps(q.as_ptr().add(c)) };
            for (j, acc) in acc.iter_mut().enumerate() {
                // SAFETY: as above.
                *acc = _mm256_fmadd_ps(x, unsafe { _mm256_loadu_ps(keys.add(j * hd + c)) }, *acc);
            }
        }
        // SAFETY: `out` holds 8 floats.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), _mm256_mul_ps(hsum_eight(acc), scale8)) };
    }
    let done = scores.len() / 8 * 8;
    for (j, score) in scores[done..].iter_mut().enumerate() {
        // SAFETY: as in the caller's contract.
        *score = unsafe { dot_avx2(q, &k[(done + j) * hd..][..hd]) } * scale;
    }
}

/// `RowOps::scores_pair`: two queries against four keys at a time, each key loaded once for both, each
/// (query, key) its own accumulator (the chain of one dot product), the eight horizontal sums done together by
/// `hsum_eight`; the keys past the last four one dot product at a time. Safety: as `scores_avx2`, both rows
/// of scores as long.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn scores_pair_avx2(q: [&[f32]; 2], k: &[f32], scale: f32, scores: [&mut [f32]; 2]) {
    let hd = q[0].len();
    let [first, second] = scores;
    let scale8 = _mm256_set1_ps(scale);
    let fours = first.len() / 4;
    for g in 0..fours {
        let keys = k[g * 4 * hd..][..4 * hd].as_ptr();
        // Accumulators 0..4: the first query against keys 0..4; 4..8: the second against the same keys.
        let mut acc = [_mm256_setzero_ps(); 8];
        for c in (0..hd).step_by(8) {
            // SAFETY: `c + 8 <= hd`, and key `j < 4` of this group starts at `j * hd` within `keys`.
            let (x0, x1) = unsafe { (_mm256_loadu_ps(q[0].as_ptr().add(c)), _mm256_loadu_ps(q[1].as_ptr().add(c))) };
            for j in 0..4 {
                // SAFETY: as above.
                let key = unsafe { _mm256_loadu_ps(keys.add(j * hd + c)) };
                acc[j] = _mm256_fmadd_ps(x0, key, acc[j]);
                acc[4 + j] = _mm256_fmadd_ps(x1, key, acc[4 + j]);
            }
        }
        let sums = _mm256_mul_ps(hsum_eight(acc), scale8);
        // SAFETY: both rows hold `4 × fours` scores and more.
        unsafe {
            _mm_storeu_ps(first.as_mut_ptr().add(4 * g), _mm256_castps256_ps128(sums));
            _mm_storeu_ps(second.as_mut_ptr().add(4 * g), _mm256_extractf128_ps(sums, 1));
        }
    }
    for j in 4 * fours..first.len() {
        let key = &k[j * hd..][..hd];
        // SAFETY: as in the caller's contract.
        unsafe {
            first[j] = dot_avx2(q[0], key) * scale;
            second[j] = dot_avx2(q[1], key) * scale;
        }
    }
}

/// The horizontal sums of eight registers, lane `j` of the result being `hsum(v[j])` to the bit: the same
/// additions in the same pairs (high half plus low half, then elements 0 + 2 and 1 + 3, then those two),
/// done for all eight at once by shuffles.
#[inline]
#[target_feature(enable = "avx2")]
fn hsum_eight(v: [__m256; 8]) -> __m256 {
    // Registers j and j + 4 share one: [lo(j) + hi(j) | lo(j+4) + hi(j+4)].
    let halves: [__m256; 4] = std::array::from_fn(|j| {
        _mm256_add_ps(_mm256_permute2f128_ps(v[j], v[j + 4], 0x20), _mm256_permute2f128_ps(v[j], v[j + 4], 0x31))
    });
    // [h0 + h2, h1 + h3] of two registers side by side, in each 128-bit half.
    let pairs = |a: __m256, b: __m256| {
        let (a, b) = (_mm256_castps_pd(a), _mm256_castps_pd(b));
        _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(a, b)), _mm256_castpd_ps(_mm256_unpackhi_pd(a, b)))
    };
    _mm256_hadd_ps(pairs(halves[0], halves[1]), pairs(halves[2], halves[3]))
}

/// `RowOps::exp_shifted` eight scores at a time, `exp::exp`'s operations on vectors (the same bits), summed
/// in eight lanes; the scores past the last eight by `exp::exp` itself, added in order after the lanes' sum.
/// Safety: the CPU has AVX2 and FMA.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_shifted_avx2(scores: &mut [f32], max: f32) -> f32 {
    let mut lanes = _mm256_setzero_ps();
    let mut eights = scores.chunks_exact_mut(8);
    for s in &mut eights {
        // SAFETY: `s` holds 8 floats.
        let x = _mm256_sub_ps(unsafe { _mm256_loadu_ps(s.as_ptr()) }, _mm256_set1_ps(max));
        let e = exp8(x);
        lanes = _mm256_add_ps(lanes, e);
        // SAFETY: as above.
        unsafe { _mm256_storeu_ps(s.as_mut_ptr(), e) };
    }
    eights.into_remainder().iter_mut().fold(hsum(lanes), |sum, s| {
        *s = crate::exp::exp(*s - max);
        sum + *s
    })
}

/// `activation::swiglu`'s row on eight lanes at a time, `activation::silu`'s operations (the same bits); the
/// elements past the last eight by `silu` itself. Safety: the CPU has AVX2 and FMA; the slices have one
/// length.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn swiglu_avx2(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let sign = _mm256_set1_ps(-0.0);
    let one = _mm256_set1_ps(1.0);
    let done = out.len() / 8 * 8;
    let mut eights = out.chunks_exact_mut(8);
    for (i, o) in (&mut eights).enumerate() {
        // SAFETY: element `8i + 7` is inside all three slices, which have one length.
        let (g, u) = unsafe { (_mm256_loadu_ps(gate.as_ptr().add(8 * i)), _mm256_loadu_ps(up.as_ptr().add(8 * i))) };
        let e = exp8(_mm256_or_ps(g, sign));
        // g >= 0 takes g; below (NaN too, which compares false, as in the scalar branch) g · e.
        let numerator = _mm256_blendv_ps(_mm256_mul_ps(g, e), g, _mm256_cmp_ps(g, _mm256_setzero_ps(), _CMP_GE_OQ));
        let silu = _mm256_div_ps(numerator, _mm256_add_ps(one, e));
        // SAFETY: `o` holds 8 floats.
        unsafe { _mm256_storeu_ps(o.as_mut_ptr(), _mm256_mul_ps(silu, u)) };
    }
    for ((o, &g), &u) in eights.into_remainder().iter_mut().zip(&gate[done..]).zip(&up[done..]) {
        *o = crate::activation::silu(g) * u;
    }
}

/// `exp::exp` on eight lanes, its operations in its order (the same bits).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn exp8(x: __m256) -> __m256 {
    use crate::exp::{EXP_MIN, EXP_POLY, LN2_HI, LN2_LO};
    let splat = _mm256_set1_ps;
    // `max_ps` keeps the second operand where `x` is NaN, as `f32::max` does.
    let x = _mm256_max_ps(x, splat(EXP_MIN));
    let n = _mm256_round_ps(
        _mm256_mul_ps(x, splat(std::f32::consts::LOG2_E)),
        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
    );
    let r = _mm256_fmadd_ps(n, splat(-LN2_HI), x);
    let r = _mm256_fmadd_ps(n, splat(-LN2_LO), r);
    let p = EXP_POLY[1..].iter().fold(splat(EXP_POLY[0]), |p, &c| _mm256_fmadd_ps(p, r, splat(c)));
    let y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), splat(1.0));
    let two_n =
        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
    _mm256_mul_ps(y, two_n)
}

/// `RowOps::weighted_sums` over the head dimension in strips whose sums stay in registers while every key
/// passes: up to 64 values for one row, 32 for two or three (the value registers loaded once for all of
/// them), 16 for four; then narrower strips for what is left. Safety: the CPU has AVX2 and FMA;
/// `out.len()` is `G ×` a multiple of 8 and `v` holds `p.len() / G` values of that length.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn weighted_sums_avx2<const G: usize>(p: &[f32], v: &[f32], out: &mut [f32]) {
    let hd = out.len() / G;
    let widest = match G {
        1 => 8,
        2 | 3 => 4,
        _ => 2,
    };
    let mut offset = 0;
    for n in [8, 4, 2, 1] {
        // Only the widest strip repeats; each narrower one fits at most once in what is left.
        while n <= widest && hd - offset >= 8 * n {
            // SAFETY: the strip lies inside the head dimension.
            unsafe {
                match n {
                    8 => weighted_strip::<G, 8>(p, v, hd, offset, out),
                    4 => weighted_strip::<G, 4>(p, v, hd, offset, out),
                    2 => weighted_strip::<G, 2>(p, v, hd, offset, out),
                    _ => weighted_strip::<G, 1>(p, v, hd, offset, out),
                }
            }
            offset += 8 * n;
        }
    }
}

/// Elements `offset .. offset + 8N` of `G` rows' weighted sums. Safety: as `weighted_sums_avx2`, and
/// `offset + 8N <= hd`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn weighted_strip<const G: usize, const N: usize>(
    p: &[f32],
    v: &[f32],
    hd: usize,
    offset: usize,
    out: &mut [f32],
) {
    let keys = p.len() / G;
    let mut acc = [[_mm256_setzero_ps(); N]; G];
    for j in 0..keys {
        // SAFETY: value `j` spans `j * hd .. (j + 1) * hd` of `v`, and the strip lies inside it.
        let row = unsafe { v.as_ptr().add(j * hd + offset) };
        // SAFETY: row `g` of the weights holds `keys` values.
        let a: [__m256; G] = std::array::from_fn(|g| _mm256_set1_ps(unsafe { *p.get_unchecked(g * keys + j) }));
        // One value register live at a time: `G × N` sums, `G` weights and it fit the sixteen registers.
        for r in 0..N {
            // SAFETY: as above.
            let x = unsafe { _mm256_loadu_ps(row.add(8 * r)) };
            for (acc, a) in acc.iter_mut().zip(&a) {
                acc[r] = _mm256_fmadd_ps(*a, x, acc[r]);
            }
        }
    }
    for (g, acc) in acc.iter().enumerate() {
        for (r, acc) in acc.iter().enumerate() {
            // SAFETY: the strip lies inside row `g` of `out`.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(g * hd + offset + 8 * r), *acc) };
        }
    }
}

/// `a · b` in eight lanes (lengths equal, a multiple of 8). Safety: the CPU has AVX2 and FMA.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        // SAFETY: each chunk holds 8 floats.
        let (x, y) = unsafe { (_mm256_loadu_ps(x.as_ptr()), _mm256_loadu_ps(y.as_ptr())) };
        acc = _mm256_fmadd_ps(x, y, acc);
    }
    hsum(acc)
}

/// `pack::quantize_block` with AVX2, operation for operation (largest magnitude, scale, rounding half away
/// from zero as truncation plus a correction), so the values and scale are the same bits. Safety: the CPU
/// has AVX2; `x` holds 32 values.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn quantize_block_avx2(x: &[f32], out: &mut [i8; BLOCK]) -> f32 {
    let sign = _mm256_set1_ps(-0.0);
    // SAFETY: `x` holds 32 floats (the caller's chunk).
    let v: [__m256; 4] = std::array::from_fn(|i| unsafe { _mm256_loadu_ps(x.as_ptr().add(8 * i)) });
    // max(abs, m) keeps m where abs is NaN, as the scalar comparison does.
    let mut m = _mm256_setzero_ps();
    for vi in v {
        m = _mm256_max_ps(_mm256_andnot_ps(sign, vi), m);
    }
    let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    let amax = _mm_cvtss_f32(_mm_max_ss(m2, _mm_shuffle_ps(m2, m2, 1)));
    let scale = amax / 127.0;
    let inverse = _mm256_set1_ps(if scale != 0.0 { 1.0 / scale } else { 0.0 });
    let (half, one) = (_mm256_set1_ps(0.5), _mm256_set1_ps(1.0));
    let q: [__m256i; 4] = std::array::from_fn(|i| {
        let y = _mm256_mul_ps(v[i], inverse);
        let t = _mm256_cvtepi32_ps(_mm256_cvttps_epi32(y));
        let away = _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_sub_ps(y, t)), half, _CMP_GE_OQ);
        let step = _mm256_and_ps(away, _mm256_or_ps(one, _mm256_and_ps(sign, y)));
        _mm256_cvttps_epi32(_mm256_add_ps(t, step))
    });
    // Narrow to bytes (values are within ±127), then undo the lane interleaving of the packs.
    let packed = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    let ordered = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    // SAFETY: `out` holds 32 bytes.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, ordered) };
    scale
}

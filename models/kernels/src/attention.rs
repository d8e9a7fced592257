//! Causal attention of one sequence's new tokens against its cached keys and values, fused (scores,
//! softmax and weighted sum per query row, nothing materialized but one row of scores per query head).
//! Query heads that share a key/value head (grouped-query attention) are computed together at each row, up
//! to four at a time, so that the weighted sum loads each value once for all of them.
//!
//! Every query row is computed on its own, in a fixed order over the keys, so a token's output is the same
//! bits whether its prompt was prefilled whole, in chunks, or one token per step, and whichever instruction
//! set runs it: scores are dot products with eight lanes of fused multiply-adds summed in the `hsum8` order;
//! the softmax's exponentials are [`exp`]'s, summed in eight lanes (then the `hsum8` order, then the keys past
//! the last eight); the weighted sum is one fused multiply-add per element and key, keys in order.

use rayon::prelude::*;

use crate::Isa;
use crate::exp::exp;

/// Work (query rows × keys × head dimension) below which one thread does the whole call.
const PARALLEL_MIN_WORK: usize = 1 << 18;

/// Largest head dimension (the per-row results live on the stack).
const MAX_HEAD_DIM: usize = 256;
/// Most query heads computed together over one key/value head.
const MAX_SHARED: usize = 4;

/// Head counts and sizes of one attention layer.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    pub heads: usize,
    /// Key/value heads; each serves `heads / kv_heads` query heads.
    pub kv_heads: usize,
    /// A multiple of 8.
    pub head_dim: usize,
    /// Multiplies every score (usually 1/√head_dim).
    pub scale: f32,
}

/// One sequence's operands. Query row `i` sits at position `past + i` and sees keys `0..=past + i`.
pub struct AttentionInput<'a> {
    /// `[q_rows][heads × head_dim]` (each token's heads side by side, as the projection makes them); this
    /// sequence's rows are `q_row0 .. q_row0 + t`.
    pub q: &'a [f32],
    pub q_rows: usize,
    pub q_row0: usize,
    /// New tokens of this sequence.
    pub t: usize,
    /// Tokens cached before them.
    pub past: usize,
    /// `[kv_heads][capacity][head_dim]`, filled up to `past + t`.
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub capacity: usize,
}

/// Writes the attention output, `[t][heads × head_dim]` row-major, into `out`.
pub fn attention(isa: Isa, shape: AttentionShape, input: &AttentionInput<'_>, out: &mut [f32]) -> Result<(), String> {
    let AttentionShape { heads, kv_heads, head_dim: hd, .. } = shape;
    let seen = input.past + input.t;
    if hd == 0
        || hd > MAX_HEAD_DIM
        || !hd.is_multiple_of(8)
        || kv_heads == 0
        || heads == 0
        || !heads.is_multiple_of(kv_heads)
    {
        return Err(format!("unsupported attention shape {shape:?}"));
    }
    if input.q.len() < heads * input.q_rows * hd
        || input.q_row0 + input.t > input.q_rows
        || seen > input.capacity
        || input.k.len() < kv_heads * input.capacity * hd
        || input.v.len() < kv_heads * input.capacity * hd
        || out.len() != input.t * heads * hd
    {
        return Err("attention operands do not match their shapes".into());
    }
    isa.require()?;
    let isa = if isa == Isa::Scalar { Isa::Scalar } else { Isa::Avx2 };
    let parallel = heads * input.t * seen * hd >= PARALLEL_MIN_WORK;
    // Query heads per task: those sharing a key/value head, at most four, unless that leaves the pool
    // fewer than two tasks per thread (one-token decodes of few key/value heads).
    let shared = heads / kv_heads;
    let mut together = shared.min(MAX_SHARED);
    if parallel && kv_heads * shared.div_ceil(together) * input.t < 2 * rayon::current_num_threads() {
        together = 1;
    }
    let chunks = shared.div_ceil(together);
    let out = SharedOut(out.as_mut_ptr());
    let one = |task: usize| {
        let (head_chunk, i) = (task / input.t, task % input.t);
        let (kvh, chunk) = (head_chunk / chunks, head_chunk % chunks);
        let h0 = kvh * shared + chunk * together;
        let n = together.min((kvh + 1) * shared - h0);
        let mut result = [0.0f32; MAX_SHARED * MAX_HEAD_DIM];
        let result = &mut result[..n * hd];
        SCORES.with_borrow_mut(|scores| rows(isa, shape, input, h0..h0 + n, i, scores, result));
        // SAFETY: each task writes its own heads' `n × hd` elements of row `i` (the heads are adjacent in a
        // row), inside `out` (length checked).
        unsafe { std::ptr::copy_nonoverlapping(result.as_ptr(), out.at(i * heads * hd + h0 * hd), n * hd) };
    };
    let tasks = kv_heads * chunks * input.t;
    if parallel {
        (0..tasks).into_par_iter().for_each(one);
    } else {
        (0..tasks).for_each(one);
    }
    Ok(())
}

/// The output buffer, written by tasks at disjoint elements.
struct SharedOut(*mut f32);
// SAFETY: tasks write disjoint elements and the buffer outlives the parallel loop.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The element at `offset`. Safety: `offset` is inside the buffer.
    unsafe fn at(&self, offset: usize) -> *mut f32 {
        // SAFETY: per the caller.
        unsafe { self.0.add(offset) }
    }
}

thread_local! {
    /// Each thread's rows of scores, kept between calls.
    static SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Query row `i` of heads `hs` (at most [`MAX_SHARED`], sharing one key/value head) into `out`
/// (`head_dim` values per head).
fn rows(
    isa: Isa,
    shape: AttentionShape,
    input: &AttentionInput<'_>,
    hs: std::ops::Range<usize>,
    i: usize,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let hd = shape.head_dim;
    let kvh = hs.start / (shape.heads / shape.kv_heads);
    let q = |h: usize| &input.q[((input.q_row0 + i) * shape.heads + h) * hd..][..hd];
    let keys = input.past + i + 1;
    let base = kvh * input.capacity * hd;
    let (k, v) = (&input.k[base..][..keys * hd], &input.v[base..][..keys * hd]);
    /// `run` on the heads `hs.start + g` for the listed `g`.
    macro_rules! heads {
        ($($g:literal)+) => {
            run(isa, &SharedRows { q: [$(q(hs.start + $g)),+], k, v, scale: shape.scale }, scores, out)
        };
    }
    match hs.len() {
        1 => heads!(0),
        2 => heads!(0 1),
        3 => heads!(0 1 2),
        _ => heads!(0 1 2 3),
    }
}

/// Query rows of `G` heads and the keys and values they share (as many keys as the slices hold).
pub(crate) struct SharedRows<'a, const G: usize> {
    pub q: [&'a [f32]; G],
    pub k: &'a [f32],
    pub v: &'a [f32],
    /// Multiplies every score.
    pub scale: f32,
}

/// `rows_with` on `isa`'s passes.
fn run<const G: usize>(isa: Isa, rows: &SharedRows<'_, G>, scores: &mut Vec<f32>, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Scalar {
        // SAFETY: `attention` checked that this CPU runs `isa` (`Isa::require`); every non-scalar family has
        // AVX2 and FMA; `rows` hands over the queries, keys and values as `rows_with` wants them.
        return unsafe { crate::x86::attention_rows_avx2(rows, scores, out) };
    }
    let _ = isa;
    rows_with::<Portable, G>(rows, scores, out)
}

/// The vector passes of a row, per instruction set.
pub(crate) trait RowOps {
    /// `scores[j] = (q · key j) × scale` for the first `scores.len()` keys of `k`: each dot product with
    /// eight lanes of fused multiply-adds over the head dimension in order, summed in the `hsum8` order.
    fn scores(q: &[f32], k: &[f32], scale: f32, scores: &mut [f32]);
    /// `scores` for two queries against the same keys (the same bits as two calls).
    fn scores_pair(q: [&[f32]; 2], k: &[f32], scale: f32, scores: [&mut [f32]; 2]);
    /// `s ← exp(s − max)` for every score, each by [`exp`]; returns their sum: the whole eights in eight
    /// lanes (score `j` into lane `j mod 8`, in order) summed in the `hsum8` order, then the rest in order.
    fn exp_shifted(scores: &mut [f32], max: f32) -> f32;
    /// For each of `G` rows of weights (`p`, `G × keys`): `out row = Σ p[j] · value j` from zero, keys in
    /// order, one fused multiply-add per element and key (`out`: `G × head_dim`).
    fn weighted_sums<const G: usize>(p: &[f32], v: &[f32], out: &mut [f32]);
}

/// Plain Rust; the reference.
struct Portable;

impl RowOps for Portable {
    fn scores(q: &[f32], k: &[f32], scale: f32, scores: &mut [f32]) {
        for (score, key) in scores.iter_mut().zip(k.chunks_exact(q.len())) {
            let mut lanes = [0.0f32; 8];
            for (x, y) in q.chunks_exact(8).zip(key.chunks_exact(8)) {
                for l in 0..8 {
                    lanes[l] = x[l].mul_add(y[l], lanes[l]);
                }
            }
            *score = hsum8(lanes) * scale;
        }
    }

    fn scores_pair(q: [&[f32]; 2], k: &[f32], scale: f32, scores: [&mut [f32]; 2]) {
        for (q, scores) in q.into_iter().zip(scores) {
            Self::scores(q, k, scale, scores);
        }
    }

    fn exp_shifted(scores: &mut [f32], max: f32) -> f32 {
        let mut lanes = [0.0f32; 8];
        let mut eights = scores.chunks_exact_mut(8);
        for eight in &mut eights {
            for (s, lane) in eight.iter_mut().zip(&mut lanes) {
                *s = exp(*s - max);
                *lane += *s;
            }
        }
        eights.into_remainder().iter_mut().fold(hsum8(lanes), |sum, s| {
            *s = exp(*s - max);
            sum + *s
        })
    }

    fn weighted_sums<const G: usize>(p: &[f32], v: &[f32], out: &mut [f32]) {
        let hd = out.len() / G;
        for (p, out) in p.chunks_exact(p.len() / G).zip(out.chunks_exact_mut(hd)) {
            Self::weighted_sum(p, v, out);
        }
    }
}

impl Portable {
    /// One row of `RowOps::weighted_sums`.
    fn weighted_sum(p: &[f32], v: &[f32], out: &mut [f32]) {
        out.fill(0.0);
        for (&p, value) in p.iter().zip(v.chunks_exact(out.len())) {
            for (y, x) in out.iter_mut().zip(value) {
                *y = p.mul_add(*x, *y);
            }
        }
    }
}

/// `rows` with `O`'s operations: each head's scores (two heads at a time), the softmax's exponentials and their
/// sum, then the weighted sums of all `G` in key order, then one division per head. `out` holds `G ×
/// head_dim` values.
#[inline(always)]
pub(crate) fn rows_with<O: RowOps, const G: usize>(rows: &SharedRows<'_, G>, scores: &mut Vec<f32>, out: &mut [f32]) {
    let SharedRows { q, k, v, scale } = *rows;
    let hd = out.len() / G;
    let keys = k.len() / hd;
    // Every score is written by `O::scores`: only longer rows' new elements are filled first.
    scores.resize(G * keys, 0.0);
    // Scores two heads at a time (each key loaded once for both), then each head's softmax.
    let mut each = scores.chunks_exact_mut(keys);
    for pair in q.chunks(2) {
        match (pair, each.next(), each.next()) {
            ([q0, q1], Some(s0), Some(s1)) => O::scores_pair([q0, q1], k, scale, [s0, s1]),
            (_, Some(s0), _) => O::scores(pair[0], k, scale, s0),
            _ => {}
        }
    }
    let mut sums = [0.0f32; G];
    for (scores, sum) in scores.chunks_exact_mut(keys).zip(&mut sums) {
        let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
        *sum = O::exp_shifted(scores, max);
    }
    O::weighted_sums::<G>(scores, v, out);
    for (out, sum) in out.chunks_exact_mut(hd).zip(sums) {
        let inverse = 1.0 / sum;
        for o in out.iter_mut() {
            *o *= inverse;
        }
    }
}

/// The eight lanes summed as `_mm256` code does it: halves added, then pairs, then the last two.
fn hsum8(v: [f32; 8]) -> f32 {
    let s = [v[0] + v[4], v[1] + v[5], v[2] + v[6], v[3] + v[7]];
    (s[0] + s[2]) + (s[1] + s[3])
}

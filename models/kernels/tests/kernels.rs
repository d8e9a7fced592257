//! Every kernel family this CPU runs against the scalar reference (bit for bit), the scalar reference
//! against an `f32` product (within the quantization error), and the invariances decoding relies on.

use ferroserve_kernels::{Isa, PackedWeights, QuantizedRows, matmul, matmul_to_vec};

/// A small deterministic generator (xorshift), values roughly normal-ish in [-scale, scale].
struct Values(u64);

impl Values {
    fn take(&mut self, len: usize, scale: f32) -> Vec<f32> {
        (0..len)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                let u = (self.0 >> 40) as f32 / (1u64 << 24) as f32;
                (u * 2.0 - 1.0) * scale
            })
            .collect()
    }
}

fn product(isa: Isa, w: &[f32], x: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    apply(&PackedWeights::quantize(w, n, k, isa).unwrap(), x, m)
}

/// `x` (`m` rows) times packed weights, on the weights' instruction set.
fn apply(packed: &PackedWeights, x: &[f32], m: usize) -> Vec<f32> {
    let mut rows = QuantizedRows::new();
    rows.quantize(x, m, packed.k(), packed.isa()).unwrap();
    let mut out = vec![f32::NAN; m * packed.n()];
    matmul(packed, &rows, &mut out).unwrap();
    out
}

/// Shapes that exercise one and many blocks, partial column groups, and every row count of a partial tile
/// (1 to 7 rows; 12 is a full and a partial tile of eight, and three full tiles of four).
const SHAPES: [(usize, usize, usize); 10] = [
    (1, 4, 32),
    (2, 8, 64),
    (3, 6, 64),
    (4, 17, 32),
    (5, 13, 96),
    (6, 9, 32),
    (7, 192, 576),
    (12, 20, 160),
    (16, 36, 1536),
    (33, 64, 128),
];

#[test]
fn every_family_matches_the_scalar_reference_bit_for_bit() {
    let mut values = Values(0x9e37_79b9_7f4a_7c15);
    println!("kernel families on this CPU: {:?}", Isa::available());
    for (m, n, k) in SHAPES {
        let w = values.take(n * k, 0.1);
        let mut x = values.take(m * k, 3.0);
        x[0] = 40.0; // an outlier, as real activations have
        let reference = product(Isa::Scalar, &w, &x, m, n, k);
        for &isa in Isa::available() {
            let got = product(isa, &w, &x, m, n, k);
            assert!(
                got.iter().zip(&reference).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{isa:?} differs from scalar at m={m} n={n} k={k}"
            );
        }
    }
}

#[test]
fn the_scalar_reference_is_close_to_the_f32_product() {
    let mut values = Values(42);
    for (m, n, k) in SHAPES {
        let w = values.take(n * k, 0.1);
        let x = values.take(m * k, 3.0);
        let got = product(Isa::Scalar, &w, &x, m, n, k);
        for r in 0..m {
            for c in 0..n {
                let exact: f64 = (0..k).map(|i| w[c * k + i] as f64 * x[r * k + i] as f64).sum();
                // Rounding each weight and activation to 1/254 of its block's range moves each product by
                // at most ~1/127 of |w||x| at the block maxima; over k terms with random signs the error
                // grows like sqrt(k). The bound below (3 · sqrt(k) · 0.1 · 3 / 127) holds with margin.
                let bound = 3.0 * (k as f64).sqrt() * 0.3 / 127.0;
                assert!((got[r * n + c] as f64 - exact).abs() < bound, "m={m} n={n} k={k} row {r} col {c}");
            }
        }
    }
}

#[test]
fn a_row_gives_the_same_bits_alone_and_in_any_batch() {
    let mut values = Values(7);
    let (n, k) = (40, 256);
    let w = values.take(n * k, 0.05);
    let x = values.take(9 * k, 1.0);
    for &isa in Isa::available() {
        let batched = product(isa, &w, &x, 9, n, k);
        for r in 0..9 {
            let alone = product(isa, &w, &x[r * k..(r + 1) * k], 1, n, k);
            assert_eq!(alone, batched[r * n..(r + 1) * n], "{isa:?} row {r}");
        }
    }
}

#[test]
fn matmul_to_vec_gives_the_product_whatever_the_vector_held() {
    let mut values = Values(23);
    for &isa in Isa::available() {
        for (m, n, k) in SHAPES {
            let w = PackedWeights::quantize(&values.take(n * k, 1.0), n, k, isa).unwrap();
            let x = values.take(m * k, 1.0);
            let want = apply(&w, &x, m);
            let mut rows = QuantizedRows::new();
            rows.quantize(&x, m, k, isa).unwrap();
            for held in [0, 3, m * n + 100] {
                let mut out = vec![7.0; held];
                matmul_to_vec(&w, &rows, &mut out).unwrap();
                assert_eq!(out, want, "{isa:?} m={m} n={n} k={k}, the vector held {held}");
            }
        }
    }
}

#[test]
fn thread_count_does_not_change_the_result() {
    let mut values = Values(11);
    let (m, n, k) = (6, 256, 512);
    let w = values.take(n * k, 0.05);
    let x = values.take(m * k, 1.0);
    for &isa in Isa::available() {
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let three = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let a = one.install(|| product(isa, &w, &x, m, n, k));
        let b = three.install(|| product(isa, &w, &x, m, n, k));
        assert_eq!(a, b, "{isa:?}");
    }
}

#[test]
fn q8_0_blocks_repack_to_the_same_product_as_quantizing() {
    let mut values = Values(5);
    let (m, n, k) = (3, 10, 64);
    let w = values.take(n * k, 0.2);
    let x = values.take(m * k, 1.0);
    // GGML Q8_0 bytes: f16 scale then 32 i8 values per block. The scale is stored as f16, so quantize with
    // scales that are exact in f16 to compare with `PackedWeights::quantize`.
    let mut data = Vec::new();
    let mut dequantized = Vec::new();
    for block in w.chunks(32) {
        let amax = block.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let scale = half::f16::from_f32(amax / 127.0);
        data.extend_from_slice(&scale.to_le_bytes());
        for v in block {
            let q = (v / scale.to_f32()).round().clamp(-127.0, 127.0) as i8;
            data.push(q as u8);
            dequantized.push(q as f32 * scale.to_f32());
        }
    }
    for &isa in Isa::available() {
        let out = apply(&PackedWeights::from_q8_0(&data, n, k, isa).unwrap(), &x, m);
        for r in 0..m {
            for c in 0..n {
                let exact: f32 = (0..k).map(|i| dequantized[c * k + i] * x[r * k + i]).sum();
                assert!(
                    (out[r * n + c] - exact).abs() < 0.05,
                    "{isa:?} row {r} col {c}: {} vs {exact}",
                    out[r * n + c]
                );
            }
        }
    }
}

#[test]
fn concatenated_weights_give_each_part_s_columns() {
    let (m, k) = (5, 96);
    let mut values = Values(17);
    let x = values.take(m * k, 1.0);
    // Whole groups, then a last part with a partial group; products of 5 rows (a full and a partial tile).
    let widths = [8, 16, 6];
    for &isa in Isa::available() {
        let parts: Vec<PackedWeights> =
            widths.iter().map(|&n| PackedWeights::quantize(&values.take(n * k, 1.0), n, k, isa).unwrap()).collect();
        let all = PackedWeights::concat(&parts.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!(all.n(), 30);
        let together = apply(&all, &x, m);
        let mut column = 0;
        for part in &parts {
            let alone = apply(part, &x, m);
            for r in 0..m {
                let got = &together[r * 30 + column..][..part.n()];
                assert_eq!(got, &alone[r * part.n()..][..part.n()], "{isa:?}: row {r}, columns from {column}");
            }
            column += part.n();
        }
    }
    let quantize = |n: usize, k: usize, isa: Isa| PackedWeights::quantize(&vec![0.5; n * k], n, k, isa).unwrap();
    let (six, eight, wide) = (quantize(6, 32, Isa::Scalar), quantize(8, 32, Isa::Scalar), quantize(8, 64, Isa::Scalar));
    assert!(PackedWeights::concat(&[&six, &eight]).is_err(), "a partial group before another part");
    assert!(PackedWeights::concat(&[&eight, &wide]).is_err(), "different widths");
    assert!(PackedWeights::concat(&[]).is_err(), "nothing");
    if let Some(&other) = Isa::available().iter().find(|&&isa| isa != Isa::Scalar) {
        assert!(PackedWeights::concat(&[&eight, &quantize(8, 32, other)]).is_err(), "different instruction sets");
    }
}

#[test]
fn swiglu_gives_the_same_bits_on_every_family_and_silu_times_up() {
    // 3 rows of 2 × 45 values (five groups of eight and a remainder), gates over ±12, and a large product that
    // takes the parallel path.
    for (rows, n) in [(3, 45), (64, 1536)] {
        let mut values = Values(rows as u64 * 31 + n as u64);
        let gate_up = values.take(rows * 2 * n, 12.0);
        let run = |isa: Isa| {
            let mut out = vec![f32::NAN; rows * n];
            ferroserve_kernels::swiglu(isa, &gate_up, rows, n, &mut out).unwrap();
            out
        };
        let reference = run(Isa::Scalar);
        for r in 0..rows {
            for j in 0..n {
                let (g, u) = (gate_up[r * 2 * n + j] as f64, gate_up[r * 2 * n + n + j] as f64);
                let want = g / (1.0 + (-g).exp()) * u;
                let have = reference[r * n + j] as f64;
                assert!((have - want).abs() <= 1e-6 * want.abs().max(1e-6), "row {r}, {j}: {have} vs {want}");
            }
        }
        for &isa in Isa::available() {
            assert_eq!(run(isa), reference, "{isa:?}, {rows} rows of {n}");
        }
    }
    let mut out = vec![0.0; 4];
    assert!(ferroserve_kernels::swiglu(Isa::Scalar, &[0.0; 7], 1, 4, &mut out).is_err(), "a short input");
}

#[test]
fn mismatched_operands_are_refused() {
    let w = PackedWeights::quantize(&[0.5; 64], 2, 32, Isa::Scalar).unwrap();
    let mut rows = QuantizedRows::new();
    rows.quantize(&[1.0; 64], 1, 64, Isa::Scalar).unwrap();
    assert!(matmul(&w, &rows, &mut [0.0; 2]).is_err(), "inner dimensions differ");
    rows.quantize(&[1.0; 64], 2, 32, Isa::Scalar).unwrap();
    assert!(matmul(&w, &rows, &mut [0.0; 3]).is_err(), "output too short");
    assert!(matmul(&w, &rows, &mut [0.0; 4]).is_ok());
    assert!(PackedWeights::quantize(&[0.0; 30], 1, 30, Isa::Scalar).is_err(), "not whole blocks");
    assert!(PackedWeights::from_q8_0(&[0; 33], 1, 32, Isa::Scalar).is_err(), "short data");
}

mod attention {
    use super::Values;
    use ferroserve_kernels::{AttentionInput, AttentionShape, Isa, attention};

    const SHAPE: AttentionShape = AttentionShape { heads: 6, kv_heads: 2, head_dim: 16, scale: 0.25 };
    const CAPACITY: usize = 40;

    /// Queries, keys and values.
    type Operands = (Vec<f32>, Vec<f32>, Vec<f32>);

    /// Keys and values for `CAPACITY` positions, queries for `rows` positions, in `shape`.
    fn operands(shape: AttentionShape, rows: usize) -> Operands {
        let mut values = Values(99);
        let kv = shape.kv_heads * CAPACITY * shape.head_dim;
        (values.take(shape.heads * rows * shape.head_dim, 2.0), values.take(kv, 2.0), values.take(kv, 1.0))
    }

    /// Rows `start..start + t` of the queries (`operands`' three), at positions `start..`, against keys up to
    /// their own.
    fn run(isa: Isa, shape: AttentionShape, operands: &Operands, q_rows: usize, start: usize, t: usize) -> Vec<f32> {
        let (q, k, v) = operands;
        let input = AttentionInput { q, q_rows, q_row0: start, t, past: start, k, v, capacity: CAPACITY };
        let mut out = vec![f32::NAN; t * shape.heads * shape.head_dim];
        attention(isa, shape, &input, &mut out).unwrap();
        out
    }

    #[test]
    fn matches_a_plain_softmax_attention() {
        let all = operands(SHAPE, 30);
        let got = run(Isa::Scalar, SHAPE, &all, 30, 0, 30);
        let (q, k, v) = &all;
        let (hd, n_rep) = (SHAPE.head_dim, SHAPE.heads / SHAPE.kv_heads);
        for h in 0..SHAPE.heads {
            let base = (h / n_rep) * CAPACITY * hd;
            for i in 0..30 {
                let qi = &q[(i * SHAPE.heads + h) * hd..][..hd];
                let scores: Vec<f64> = (0..=i)
                    .map(|j| (0..hd).map(|d| qi[d] as f64 * k[base + j * hd + d] as f64).sum::<f64>() * 0.25)
                    .collect();
                let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = weights.iter().sum();
                for d in 0..hd {
                    let want: f64 = (0..=i).map(|j| weights[j] / sum * v[base + j * hd + d] as f64).sum();
                    let have = got[i * SHAPE.heads * hd + h * hd + d] as f64;
                    // f32 rounding over at most 30 keys of magnitude ~1: well under 1e-5.
                    assert!((have - want).abs() < 1e-5, "head {h} row {i} dim {d}: {have} vs {want}");
                }
            }
        }
    }

    #[test]
    fn every_family_and_every_chunking_gives_the_same_bits() {
        // Head dimensions of one to three register strips and their remainders; 30 keys are three groups of
        // eight and six single keys in the vector paths. Query heads per key/value head: 1 to 4 computed
        // together, and 6 as four and two.
        let layouts = [(6, 2), (4, 4), (4, 2), (8, 2), (12, 2)];
        for (head_dim, (heads, kv_heads)) in
            [8, 16, 24, 64, 72, 120, 136].into_iter().flat_map(|d| layouts.map(|l| (d, l)))
        {
            let shape = AttentionShape { head_dim, heads, kv_heads, ..SHAPE };
            let all = operands(shape, 30);
            let run = |isa: Isa, start: usize, t: usize| run(isa, shape, &all, 30, start, t);
            let whole = run(Isa::Scalar, 0, 30);
            let width = shape.heads * head_dim;
            for &isa in Isa::available() {
                let at = format!("{isa:?}, head_dim {head_dim}, {heads} heads over {kv_heads}");
                assert_eq!(run(isa, 0, 30), whole, "{at}, whole prompt");
                // The same rows computed in chunks (3 + 11 + 16) and one by one, as chunked prefill and decode do.
                for (start, t) in [(0, 3), (3, 11), (14, 16)] {
                    let part = run(isa, start, t);
                    let want = &whole[start * width..(start + t) * width];
                    assert_eq!(part, want, "{at}, rows {start}..{}", start + t);
                }
                for i in 0..30 {
                    let want = &whole[i * width..(i + 1) * width];
                    assert_eq!(run(isa, i, 1), want, "{at}, row {i}");
                }
            }
        }
    }

    #[test]
    fn bad_shapes_are_refused() {
        let (q, k, v) = operands(SHAPE, 4);
        let input = AttentionInput { q: &q, q_rows: 4, q_row0: 2, t: 3, past: 0, k: &k, v: &v, capacity: CAPACITY };
        assert!(attention(Isa::Scalar, SHAPE, &input, &mut vec![0.0; 3 * 96]).is_err(), "rows past the queries");
        let odd = AttentionShape { head_dim: 12, ..SHAPE };
        let input = AttentionInput { q: &q, q_rows: 4, q_row0: 0, t: 4, past: 0, k: &k, v: &v, capacity: CAPACITY };
        assert!(attention(Isa::Scalar, odd, &input, &mut vec![0.0; 4 * 72]).is_err(), "head_dim not a multiple of 8");
        let headless = AttentionShape { heads: 0, ..SHAPE };
        assert!(attention(Isa::Scalar, headless, &input, &mut []).is_err(), "no query heads");
    }
}

mod four_bit {
    use super::{SHAPES, Values};
    use ferroserve_kernels::{Isa, PackedWeights};

    /// GGML bytes of `w` (`n` rows of `k`) in Q4_1 (`min = true`) or Q4_0, and the values they hold.
    fn encode(w: &[f32], min: bool) -> (Vec<u8>, Vec<f32>) {
        let (mut bytes, mut values) = (Vec::new(), Vec::new());
        for block in w.chunks(32) {
            let lo = block.iter().cloned().fold(f32::MAX, f32::min);
            let hi = block.iter().cloned().fold(f32::MIN, f32::max);
            let (d, m) = if min { ((hi - lo) / 15.0, lo) } else { (hi.abs().max(lo.abs()) / 7.0, 0.0) };
            let (d, m) = (half::f16::from_f32(d), half::f16::from_f32(m));
            bytes.extend_from_slice(&d.to_le_bytes());
            if min {
                bytes.extend_from_slice(&m.to_le_bytes());
            }
            let q: Vec<u8> = block
                .iter()
                .map(|&x| {
                    let q = if min { (x - m.to_f32()) / d.to_f32() } else { x / d.to_f32() + 8.0 };
                    q.round().clamp(0.0, 15.0) as u8
                })
                .collect();
            bytes.extend((0..16).map(|j| q[j] | (q[j + 16] << 4)));
            let offset = if min { m.to_f32() } else { -8.0 * d.to_f32() };
            values.extend(q.iter().map(|&q| q as f32 * d.to_f32() + offset));
        }
        (bytes, values)
    }

    fn product(isa: Isa, bytes: &[u8], min: bool, x: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let from = if min { PackedWeights::from_q4_1 } else { PackedWeights::from_q4_0 };
        super::apply(&from(bytes, n, k, isa).unwrap(), x, m)
    }

    #[test]
    fn q4_0_and_q4_1_match_the_scalar_reference_and_the_values_they_hold() {
        let mut values = Values(0xabcdef);
        for min in [false, true] {
            for (m, n, k) in SHAPES {
                let w = values.take(n * k, 0.1);
                let x = values.take(m * k, 2.0);
                let (bytes, held) = encode(&w, min);
                let reference = product(Isa::Scalar, &bytes, min, &x, m, n, k);
                for r in 0..m {
                    for c in 0..n {
                        let exact: f64 = (0..k).map(|i| held[c * k + i] as f64 * x[r * k + i] as f64).sum();
                        // Only the activations are rounded (to 1/254 of each block's range): the bound of the
                        // 8-bit test, with the weights' magnitude.
                        let bound = 3.0 * (k as f64).sqrt() * 0.1 * 2.0 / 127.0;
                        let got = reference[r * n + c] as f64;
                        assert!((got - exact).abs() < bound, "min={min} m={m} n={n} k={k} [{r},{c}]: {got} vs {exact}");
                    }
                }
                for &isa in Isa::available() {
                    let got = product(isa, &bytes, min, &x, m, n, k);
                    assert!(
                        got.iter().zip(&reference).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{isa:?} differs from scalar (min={min} m={m} n={n} k={k})"
                    );
                    let alone = product(isa, &bytes, min, &x[..k], 1, n, k);
                    assert_eq!(alone, got[..n], "{isa:?}: the first row alone (min={min} m={m})");
                }
            }
        }
    }

    #[test]
    fn short_4_bit_data_is_refused() {
        assert!(PackedWeights::from_q4_0(&[0; 17], 1, 32, Isa::Scalar).is_err());
        assert!(PackedWeights::from_q4_1(&[0; 18], 1, 32, Isa::Scalar).is_err());
        assert!(PackedWeights::from_q4_1(&[0; 20], 1, 32, Isa::Scalar).is_ok());
    }
}

mod k_quants {
    use super::Values;
    use ferroserve_kernels::{Isa, PackedWeights};

    /// GGML's `dequantize_row_q4_K`, written from its definition: per 64 values, the low nibbles of 32 bytes
    /// with one sub-block's scale and minimum, then their high nibbles with the next one's.
    fn dequantize_q4_k(data: &[u8]) -> Vec<f32> {
        let mut out = Vec::new();
        for sb in data.chunks(144) {
            let d = half::f16::from_le_bytes([sb[0], sb[1]]).to_f32();
            let dmin = half::f16::from_le_bytes([sb[2], sb[3]]).to_f32();
            let q = &sb[4..16];
            let scale_min = |j: usize| -> (f32, f32) {
                let (sc, m) = if j < 4 {
                    (q[j] & 63, q[j + 4] & 63)
                } else {
                    ((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
                };
                (d * sc as f32, dmin * m as f32)
            };
            for chunk in 0..4 {
                let bytes = &sb[16 + 32 * chunk..][..32];
                let (d1, m1) = scale_min(2 * chunk);
                let (d2, m2) = scale_min(2 * chunk + 1);
                out.extend(bytes.iter().map(|b| d1 * (b & 0xf) as f32 - m1));
                out.extend(bytes.iter().map(|b| d2 * (b >> 4) as f32 - m2));
            }
        }
        out
    }

    /// Random but valid Q4_K super-blocks (every byte pattern is one), with small f16 scales.
    fn random_q4_k(supers: usize, seed: u64) -> Vec<u8> {
        let mut values = Values(seed);
        let mut bytes = Vec::new();
        for _ in 0..supers {
            let r = values.take(2 + 12 + 128, 1.0);
            bytes.extend_from_slice(&half::f16::from_f32(r[0].abs() * 0.002).to_le_bytes());
            bytes.extend_from_slice(&half::f16::from_f32(r[1].abs() * 0.002).to_le_bytes());
            bytes.extend(r[2..].iter().map(|v| ((v + 1.0) * 127.9) as u8));
        }
        bytes
    }

    #[test]
    fn q4_k_weights_give_the_products_of_their_values_on_every_family() {
        let (m, n, k) = (5, 12, 512);
        let data = random_q4_k(n * k / 256, 3);
        let held = dequantize_q4_k(&data);
        let x = Values(8).take(m * k, 1.5);
        let mut reference: Option<Vec<f32>> = None;
        for &isa in Isa::available() {
            let out = super::apply(&PackedWeights::from_q4_k(&data, n, k, isa).unwrap(), &x, m);
            for r in 0..m {
                for c in 0..n {
                    let exact: f64 = (0..k).map(|i| held[c * k + i] as f64 * x[r * k + i] as f64).sum();
                    let scale = (0..k).map(|i| held[c * k + i].abs()).fold(0.0f32, f32::max) as f64;
                    // Activations rounded to 1/254 of their block's range (as in the 8-bit test).
                    let bound = 3.0 * (k as f64).sqrt() * scale * 1.5 / 127.0;
                    let got = out[r * n + c] as f64;
                    assert!((got - exact).abs() < bound, "{isa:?} [{r},{c}]: {got} vs {exact}");
                }
            }
            match &reference {
                None => reference = Some(out),
                Some(want) => assert!(want.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits()), "{isa:?}"),
            }
        }
        assert!(PackedWeights::from_q4_k(&data, n, 500, Isa::Scalar).is_err(), "not whole super-blocks");
    }
}

#[test]
fn activation_rounding_is_round_half_away_from_zero() {
    // Values that land exactly on and next to .5 after scaling by 127 / 127 (the block's largest is 127).
    let mut x = [0.0f32; 32];
    x[0] = 127.0;
    let probes = [0.5, -0.5, 1.5, -2.5, 0.49999997, -0.49999997, 126.5, -126.5, 3.2, -3.7];
    x[1..=probes.len()].copy_from_slice(&probes);
    let want: f32 = x.iter().map(|v| v.round() * v.round()).sum();
    for &isa in Isa::available() {
        let w = PackedWeights::quantize(&x, 1, 32, isa).unwrap();
        let mut rows = QuantizedRows::new();
        rows.quantize(&x, 1, 32, isa).unwrap();
        // The product of x with itself quantized both ways is sum(round(x)^2) · scale², scale = 1.
        let mut out = [0.0f32];
        matmul(&w, &rows, &mut out).unwrap();
        assert_eq!(out[0], want, "{isa:?}");
    }
}

//! Scalar INT8 quantization (Qdrant's `scalar` quantization with `type: int8`): each component becomes
//! `round(x / scale)` clamped to ±127, one scale per graph, chosen so that the `quantile` of component
//! magnitudes maps to 127 (outliers beyond it clamp). A vector takes a quarter of its f32 size, and
//! distances are integer dot products: `dot(a, b) ≈ scale² · Σ qa·qb`, `|a − b|² ≈ scale² · Σ (qa − qb)²`.
//!
//! The integer kernels run on the widest SIMD the CPU has (AVX-512BW or AVX2, chosen at run time) or on
//! portable code; every path the machine has is tested against a plain reference.

use serde::{Deserialize, Serialize};

use super::distance::Distance;

/// A collection's quantization setting (Qdrant's `quantization_config.scalar`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScalarQuantization {
    /// Share of component magnitudes the scale covers without clamping, in (0.5, 1].
    pub quantile: f32,
}

impl Default for ScalarQuantization {
    fn default() -> Self {
        ScalarQuantization { quantile: 0.99 }
    }
}

/// How a search uses quantized vectors (Qdrant's `params.quantization`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantizationSearch {
    /// Ignore the quantized vectors: score every candidate at full precision without the graph.
    pub ignore: bool,
    /// Re-score the graph's candidates with the full-precision vectors.
    pub rescore: bool,
    /// Take `oversampling × limit` candidates from the graph before re-scoring (≥ 1).
    pub oversampling: f32,
}

impl Default for QuantizationSearch {
    fn default() -> Self {
        QuantizationSearch { ignore: false, rescore: true, oversampling: 1.0 }
    }
}

/// The fitted encoder of one graph.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantizer {
    /// The value of one step.
    pub scale: f32,
}

impl Quantizer {
    /// Fits the scale to `vectors`: their `quantile` component magnitude becomes 127.
    pub fn fit<'a>(vectors: impl Iterator<Item = &'a [f32]>, quantile: f32) -> Self {
        let mut magnitudes: Vec<f32> = vectors.flat_map(|v| v.iter().map(|x| x.abs())).collect();
        if magnitudes.is_empty() {
            return Quantizer { scale: 1.0 / 127.0 };
        }
        let at = ((magnitudes.len() - 1) as f32 * quantile.clamp(0.5, 1.0)).round() as usize;
        let (_, bound, _) = magnitudes.select_nth_unstable_by(at, f32::total_cmp);
        let bound = if *bound > 0.0 { *bound } else { 1.0 };
        Quantizer { scale: bound / 127.0 }
    }

    pub fn encode(&self, v: &[f32]) -> Vec<i8> {
        v.iter().map(|x| (x / self.scale).round().clamp(-127.0, 127.0) as i8).collect()
    }

    /// The approximate score (as [`Distance::score`] gives it) behind a graph distance over codes.
    pub fn score(&self, distance: Distance, graph_distance: f32) -> f32 {
        let scaled = graph_distance * self.scale * self.scale;
        match distance {
            Distance::Cosine | Distance::Dot => -scaled,
            Distance::Euclid => scaled.max(0.0).sqrt(),
        }
    }
}

#[cfg(test)]
type Kernel = fn(&[i8], &[i8]) -> i32;

/// The graph's distance over codes for `distance` (smaller is closer: `−Σ qa·qb` for `Cosine` and `Dot`,
/// `Σ (qa − qb)²` for `Euclid`; unscaled, see [`Quantizer::score`]), bound to the best kernel this CPU has.
pub fn graph_distance(distance: Distance) -> fn(&[i8], &[i8]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if x86::has_avx512bw() {
        return match distance {
            Distance::Cosine | Distance::Dot => |a, b| -(x86::dot512(a, b) as f32),
            Distance::Euclid => |a, b| x86::l2_512(a, b) as f32,
        };
    }
    #[cfg(target_arch = "x86_64")]
    if x86::has_avx2() {
        return match distance {
            Distance::Cosine | Distance::Dot => |a, b| -(x86::dot256(a, b) as f32),
            Distance::Euclid => |a, b| x86::l2_256(a, b) as f32,
        };
    }
    match distance {
        Distance::Cosine | Distance::Dot => |a, b| -(portable::dot(a, b) as f32),
        Distance::Euclid => |a, b| portable::l2(a, b) as f32,
    }
}

/// `LANES` independent i32 sums of widened products, which compilers turn into `pmaddwd`-style code; the
/// same code is compiled for each CPU level.
mod portable {
    #[inline(always)]
    pub fn dot_lanes<const LANES: usize>(a: &[i8], b: &[i8]) -> i32 {
        let mut acc = [0i32; LANES];
        let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        let tail: i32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| i32::from(*x) * i32::from(*y)).sum();
        for (x, y) in ca.zip(cb) {
            for i in 0..LANES {
                acc[i] += i32::from(x[i]) * i32::from(y[i]);
            }
        }
        acc.iter().sum::<i32>() + tail
    }

    #[inline(always)]
    pub fn l2_lanes<const LANES: usize>(a: &[i8], b: &[i8]) -> i32 {
        let mut acc = [0i32; LANES];
        let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        let diff = |x: &i8, y: &i8| i32::from(*x) - i32::from(*y);
        let tail: i32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| diff(x, y) * diff(x, y)).sum();
        for (x, y) in ca.zip(cb) {
            for i in 0..LANES {
                let d = diff(&x[i], &y[i]);
                acc[i] += d * d;
            }
        }
        acc.iter().sum::<i32>() + tail
    }

    pub fn dot(a: &[i8], b: &[i8]) -> i32 {
        dot_lanes::<16>(a, b)
    }

    pub fn l2(a: &[i8], b: &[i8]) -> i32 {
        l2_lanes::<16>(a, b)
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::portable::{dot_lanes, l2_lanes};

    pub fn has_avx2() -> bool {
        std::is_x86_feature_detected!("avx2")
    }

    pub fn has_avx512bw() -> bool {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw") && has_avx2()
    }

    pub fn dot256(a: &[i8], b: &[i8]) -> i32 {
        // SAFETY: chosen only when `has_avx2` (see `kernels`).
        unsafe { dot_avx2(a, b) }
    }

    pub fn l2_256(a: &[i8], b: &[i8]) -> i32 {
        // SAFETY: as above.
        unsafe { l2_avx2(a, b) }
    }

    pub fn dot512(a: &[i8], b: &[i8]) -> i32 {
        // SAFETY: chosen only when `has_avx512bw`.
        unsafe { dot_avx512(a, b) }
    }

    pub fn l2_512(a: &[i8], b: &[i8]) -> i32 {
        // SAFETY: as above.
        unsafe { l2_avx512(a, b) }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn dot_avx2(a: &[i8], b: &[i8]) -> i32 {
        dot_lanes::<16>(a, b)
    }

    #[target_feature(enable = "avx2")]
    unsafe fn l2_avx2(a: &[i8], b: &[i8]) -> i32 {
        l2_lanes::<16>(a, b)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx2")]
    unsafe fn dot_avx512(a: &[i8], b: &[i8]) -> i32 {
        dot_lanes::<32>(a, b)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx2")]
    unsafe fn l2_avx512(a: &[i8], b: &[i8]) -> i32 {
        l2_lanes::<32>(a, b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(n: usize, seed: u32) -> Vec<i8> {
        (0..n)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 255) as i32 - 127)
            .map(|x| x as i8)
            .collect()
    }

    /// Every path this machine has, and the portable one, give exactly the integer reference.
    #[test]
    fn kernels_are_exact_on_every_path() {
        let mut paths: Vec<(&str, Kernel, Kernel)> = vec![("portable", portable::dot, portable::l2)];
        #[cfg(target_arch = "x86_64")]
        if x86::has_avx2() {
            paths.push(("avx2", x86::dot256, x86::l2_256));
        }
        #[cfg(target_arch = "x86_64")]
        if x86::has_avx512bw() {
            paths.push(("avx512bw", x86::dot512, x86::l2_512));
        }
        for n in [0, 1, 15, 16, 17, 33, 384, 1000] {
            let (a, b) = (codes(n, 1), codes(n, 7));
            let dot: i32 = a.iter().zip(&b).map(|(x, y)| i32::from(*x) * i32::from(*y)).sum();
            let l2: i32 = a.iter().zip(&b).map(|(x, y)| (i32::from(*x) - i32::from(*y)).pow(2)).sum();
            for (name, d, l) in &paths {
                assert_eq!(d(&a, &b), dot, "{name} dot, n={n}");
                assert_eq!(l(&a, &b), l2, "{name} l2, n={n}");
            }
        }
    }

    #[test]
    fn encoding_keeps_dot_products_close() {
        let a: Vec<f32> = (0..384).map(|i| ((i * 37 % 101) as f32 - 50.0) / 400.0).collect();
        let b: Vec<f32> = (0..384).map(|i| ((i * 53 % 97) as f32 - 48.0) / 400.0).collect();
        let q = Quantizer::fit([a.as_slice(), b.as_slice()].into_iter(), 0.99);
        let (qa, qb) = (q.encode(&a), q.encode(&b));
        let exact: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let approx = q.score(Distance::Dot, graph_distance(Distance::Dot)(&qa, &qb));
        let magnitude: f32 = a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum();
        assert!((exact - approx).abs() < 0.01 * magnitude, "{exact} vs {approx}");
        // Outliers clamp instead of wrapping.
        assert_eq!(q.encode(&[1e6, -1e6]), vec![127, -127]);
        // No vectors, or only zeros: a usable scale.
        assert!(Quantizer::fit(std::iter::empty(), 0.99).scale > 0.0);
        assert!(Quantizer::fit([[0.0f32; 4].as_slice()].into_iter(), 0.99).scale > 0.0);
    }
}

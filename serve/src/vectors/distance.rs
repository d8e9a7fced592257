//! Vector distances, as Qdrant scores them: `Cosine` (vectors normalized when stored, score = dot product),
//! `Dot` (score = dot product) and `Euclid` (score = L2 distance, smaller is closer). The dot product and the
//! squared L2 distance run on the widest SIMD the CPU has (AVX-512, or AVX2 + FMA, chosen at run time) or on
//! portable code; every path the machine has is tested against a plain reference.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// How a collection compares vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Distance {
    Cosine,
    Dot,
    Euclid,
}

impl Distance {
    /// The stored form of a vector: unit length for `Cosine` (a zero vector stays zero).
    pub fn prepare(self, mut v: Vec<f32>) -> Vec<f32> {
        if self == Distance::Cosine {
            let norm = dot(&v, &v).sqrt();
            if norm > 0.0 {
                v.iter_mut().for_each(|x| *x /= norm);
            }
        }
        v
    }

    /// The score of stored vector `v` against prepared query `q`.
    pub fn score(self, q: &[f32], v: &[f32]) -> f32 {
        match self {
            Distance::Cosine | Distance::Dot => dot(q, v),
            Distance::Euclid => l2_squared(q, v).sqrt(),
        }
    }

    /// The score behind a distance of [`graph_distance`].
    pub fn score_of_graph_distance(self, d: f32) -> f32 {
        match self {
            Distance::Cosine => 1.0 - d,
            Distance::Dot => -d,
            Distance::Euclid => d.max(0.0).sqrt(),
        }
    }

    /// Whether score `a` is closer than score `b`.
    pub fn better(self, a: f32, b: f32) -> bool {
        match self {
            Distance::Euclid => a < b,
            _ => a > b,
        }
    }

    /// Whether `score` passes a `score_threshold` (at least it; at most it for `Euclid`).
    pub fn passes(self, score: f32, threshold: f32) -> bool {
        match self {
            Distance::Euclid => score <= threshold,
            _ => score >= threshold,
        }
    }
}

type Kernel = fn(&[f32], &[f32]) -> f32;

struct Kernels {
    dot: Kernel,
    l2: Kernel,
}

fn kernels() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if x86::has_avx512() {
            return Kernels { dot: x86::dot512, l2: x86::l2_squared512 };
        }
        #[cfg(target_arch = "x86_64")]
        if x86::has_avx2() {
            return Kernels { dot: x86::dot, l2: x86::l2_squared };
        }
        Kernels { dot: portable::dot, l2: portable::l2_squared }
    })
}

/// The graph's distance for `distance` (smaller is closer: `1 − dot` for unit vectors, `−dot`, squared
/// L2), bound to the best kernel this CPU has once, so the graph's inner loop calls it directly.
pub fn graph_distance(distance: Distance) -> fn(&[f32], &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if x86::has_avx512() {
        return match distance {
            Distance::Cosine => |a, b| 1.0 - x86::dot512(a, b),
            Distance::Dot => |a, b| -x86::dot512(a, b),
            Distance::Euclid => x86::l2_squared512,
        };
    }
    #[cfg(target_arch = "x86_64")]
    if x86::has_avx2() {
        return match distance {
            Distance::Cosine => |a, b| 1.0 - x86::dot(a, b),
            Distance::Dot => |a, b| -x86::dot(a, b),
            Distance::Euclid => x86::l2_squared,
        };
    }
    match distance {
        Distance::Cosine => |a, b| 1.0 - portable::dot(a, b),
        Distance::Dot => |a, b| -portable::dot(a, b),
        Distance::Euclid => portable::l2_squared,
    }
}

/// Dot product of two vectors of the same length.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    (kernels().dot)(a, b)
}

/// Cosine similarity accumulated in f64 (0 when either vector is zero): for measuring how far two models'
/// vectors are (shadow drift, variant benchmarks), where the score's own rounding must not show.
pub fn cosine_f64(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na.sqrt() * nb.sqrt()) }
}

/// Squared L2 distance of two vectors of the same length.
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    (kernels().l2)(a, b)
}

/// `LANES` independent sums, which compilers vectorize; the same code is compiled for each CPU level (8 lanes
/// fill an AVX2 register, 16 an AVX-512 one).
mod portable {
    #[inline(always)]
    pub fn dot_lanes<const LANES: usize>(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0f32; LANES];
        let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
        for (x, y) in ca.zip(cb) {
            for i in 0..LANES {
                acc[i] = x[i].mul_add(y[i], acc[i]);
            }
        }
        acc.iter().sum::<f32>() + tail
    }

    #[inline(always)]
    pub fn l2_lanes<const LANES: usize>(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0f32; LANES];
        let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| (x - y) * (x - y)).sum();
        for (x, y) in ca.zip(cb) {
            for i in 0..LANES {
                let d = x[i] - y[i];
                acc[i] = d.mul_add(d, acc[i]);
            }
        }
        acc.iter().sum::<f32>() + tail
    }

    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        dot_lanes::<8>(a, b)
    }

    pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
        l2_lanes::<8>(a, b)
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::portable::{dot_lanes, l2_lanes};

    pub fn has_avx2() -> bool {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }

    pub fn has_avx512() -> bool {
        std::is_x86_feature_detected!("avx512f") && has_avx2()
    }

    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: chosen only when `has_avx2` (see `kernels` and `graph_distance`).
        unsafe { dot_avx2(a, b) }
    }

    pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: as above.
        unsafe { l2_avx2(a, b) }
    }

    pub fn dot512(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: chosen only when `has_avx512`.
        unsafe { dot_avx512(a, b) }
    }

    pub fn l2_squared512(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: as above.
        unsafe { l2_avx512(a, b) }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        dot_lanes::<8>(a, b)
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn l2_avx2(a: &[f32], b: &[f32]) -> f32 {
        l2_lanes::<8>(a, b)
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        dot_lanes::<16>(a, b)
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn l2_avx512(a: &[f32], b: &[f32]) -> f32 {
        l2_lanes::<16>(a, b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference_dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum()
    }

    fn vectors(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 2000) as f32 / 1000.0 - 1.0)
            .collect()
    }

    /// Every path this machine has, and the portable one, agree with an f64 reference within f32 rounding
    /// of a sum of `n` products (relative 1e-5 of the sum of magnitudes).
    #[test]
    fn kernels_agree_with_the_reference_on_every_path() {
        let mut paths: Vec<(&str, Kernel, Kernel)> = vec![("portable", portable::dot, portable::l2_squared)];
        #[cfg(target_arch = "x86_64")]
        if x86::has_avx2() {
            paths.push(("avx2", x86::dot, x86::l2_squared));
        }
        #[cfg(target_arch = "x86_64")]
        if x86::has_avx512() {
            paths.push(("avx512", x86::dot512, x86::l2_squared512));
        }
        for n in [0, 1, 7, 8, 9, 384, 1000] {
            let (a, b) = (vectors(n, 1), vectors(n, 7));
            let magnitude: f64 = a.iter().zip(&b).map(|(x, y)| f64::from((x * y).abs())).sum::<f64>() + 1e-9;
            let l2: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
            for (name, d, l) in &paths {
                assert!((f64::from(d(&a, &b)) - reference_dot(&a, &b)).abs() <= 1e-5 * magnitude, "{name} dot, n={n}");
                assert!((f64::from(l(&a, &b)) - l2).abs() <= 1e-5 * (l2 + 1e-9), "{name} l2, n={n}");
            }
        }
    }

    #[test]
    fn scores_and_order() {
        let c = Distance::Cosine;
        let (a, b) = (c.prepare(vec![3.0, 4.0]), c.prepare(vec![6.0, 8.0]));
        assert!((c.score(&a, &b) - 1.0).abs() < 1e-6);
        assert_eq!(Distance::Euclid.score(&[0.0, 0.0], &[3.0, 4.0]), 5.0);
        assert!(Distance::Euclid.better(1.0, 2.0) && Distance::Dot.better(2.0, 1.0));
        assert!(Distance::Euclid.passes(1.0, 2.0) && !Distance::Dot.passes(1.0, 2.0));
        assert_eq!(c.prepare(vec![0.0, 0.0]), vec![0.0, 0.0]);
    }
}

//! How far a variant is from a reference on the same inputs. Embeddings: cosine per text (min, mean, 1st
//! percentile) and the overlap of each text's nearest neighbours among the others. Generation: agreement of
//! the greedy outputs, and perplexity from next-token log-probabilities.

use serde::Serialize;

use crate::generation::token_agreement;
use crate::vectors::cosine_f64 as cosine;

/// Accuracy of one variant against the reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drift {
    pub cosine_min: f64,
    pub cosine_mean: f64,
    /// The 1st percentile (nearest rank): 99% of the texts are at least this close.
    pub cosine_p1: f64,
    /// Share of each text's `k` nearest neighbours (by cosine, among the other texts) that the reference's
    /// `k` nearest also hold, averaged over the texts.
    pub neighbour_overlap: f64,
    pub k: usize,
}

/// The drift of `candidate` from `reference` (the same texts, in the same order).
pub fn drift(reference: &[Vec<f32>], candidate: &[Vec<f32>], k: usize) -> Drift {
    let mut cosines: Vec<f64> = reference.iter().zip(candidate).map(|(a, b)| cosine(a, b)).collect();
    cosines.sort_by(f64::total_cmp);
    let n = cosines.len();
    let mean = if n == 0 { 0.0 } else { cosines.iter().sum::<f64>() / n as f64 };
    let p1 = if n == 0 { 0.0 } else { cosines[(n as f64 * 0.01).ceil().max(1.0) as usize - 1] };
    let k = k.min(n.saturating_sub(1));
    let overlap = if k == 0 {
        1.0
    } else {
        let (a, b) = (neighbours(reference, k), neighbours(candidate, k));
        let shared: usize = a.iter().zip(&b).map(|(x, y)| x.iter().filter(|i| y.contains(i)).count()).sum();
        shared as f64 / (k * n) as f64
    };
    Drift {
        cosine_min: cosines.first().copied().unwrap_or(0.0),
        cosine_mean: mean,
        cosine_p1: p1,
        neighbour_overlap: overlap,
        k,
    }
}

/// Greedy outputs of a generation variant against the reference's, prompt by prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agreement {
    /// Mean over the prompts of the share of the reference's output positions where the variant produced the
    /// same token (the measure the shadow metric `ferroserve_shadow_token_agreement` records per request).
    pub token_agreement: f64,
    /// Prompts whose whole output is the reference's.
    pub identical: usize,
    pub prompts: usize,
}

/// The agreement of `candidate`'s outputs with `reference`'s (the same prompts, in the same order).
pub fn agreement(reference: &[Vec<u32>], candidate: &[Vec<u32>]) -> Agreement {
    let prompts = reference.len();
    let sum: f64 = reference.iter().zip(candidate).map(|(r, c)| token_agreement(r, c)).sum();
    Agreement {
        token_agreement: if prompts == 0 { 1.0 } else { sum / prompts as f64 },
        identical: reference.iter().zip(candidate).filter(|(r, c)| r == c).count(),
        prompts,
    }
}

/// Perplexity from each position's logits and the token that followed: exp of the mean negative
/// log-probability (log-softmax in f64).
pub fn perplexity(steps: &[(Vec<f32>, u32)]) -> f64 {
    if steps.is_empty() {
        return f64::NAN;
    }
    let nll: f64 = steps
        .iter()
        .map(|(logits, next)| {
            let max = logits.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
            let log_sum = logits.iter().map(|&x| (f64::from(x) - max).exp()).sum::<f64>().ln() + max;
            log_sum - logits.get(*next as usize).map_or(f64::NEG_INFINITY, |&x| f64::from(x))
        })
        .sum();
    (nll / steps.len() as f64).exp()
}

/// Each vector's `k` nearest others by cosine (ties by index).
fn neighbours(vectors: &[Vec<f32>], k: usize) -> Vec<Vec<usize>> {
    let unit: Vec<Vec<f64>> = vectors
        .iter()
        .map(|v| {
            let norm = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
            v.iter().map(|x| f64::from(*x) / norm).collect()
        })
        .collect();
    (0..unit.len())
        .map(|i| {
            let mut scored: Vec<(f64, usize)> = (0..unit.len())
                .filter(|&j| j != i)
                .map(|j| (unit[i].iter().zip(&unit[j]).map(|(a, b)| a * b).sum::<f64>(), j))
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            scored.into_iter().take(k).map(|(_, j)| j).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_drift() {
        // Four texts in 2-D. The candidate keeps texts 0 and 1, turns text 2 by 90° and text 3 by 60°.
        let reference = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![1.0, 1.0], vec![1.0, 0.0]];
        let half = 3f32.sqrt() / 2.0;
        let candidate = vec![vec![2.0, 0.0], vec![0.0, 1.0], vec![-1.0, 1.0], vec![0.5, half]];
        let d = drift(&reference, &candidate, 1);
        // Cosines 1, 1, 0, 0.5: min 0, mean 0.625, 1st percentile (nearest rank 1 of 4) 0.
        assert!((d.cosine_mean - 0.625).abs() < 1e-6, "{d:?}");
        assert!(d.cosine_min.abs() < 1e-9 && d.cosine_p1.abs() < 1e-9);
        // Nearest other text. Reference: 0→3 (cos 1), 1→2, 2→0 (tie 0/3/1 at 0.707: lowest index), 3→0.
        // Candidate: 0→3 (cos 0.5), 1→3 (0.866), 2→1 (0.707), 3→1 (0.866). Shared: text 0 only → 1 of 4.
        assert_eq!(d.neighbour_overlap, 0.25);
        let same = drift(&reference, &reference, 2);
        assert!((same.cosine_min - 1.0).abs() < 1e-12 && same.neighbour_overlap == 1.0);
        assert!((cosine(&[3.0, 4.0], &[4.0, 3.0]) - 0.96).abs() < 1e-9);
    }

    #[test]
    fn hand_computed_agreement_and_perplexity() {
        assert_eq!(token_agreement(&[1, 2, 3, 4], &[1, 2, 9, 4]), 0.75);
        assert_eq!(token_agreement(&[1, 2, 3, 4], &[1, 2]), 0.5, "a shorter answer disagrees past its end");
        // Prompt 1: identical; prompt 2: 3 of 4 positions; prompt 3: 0 of 2 → mean (1 + 0.75 + 0) / 3.
        let reference = vec![vec![5, 6], vec![1, 2, 3, 4], vec![7, 8]];
        let candidate = vec![vec![5, 6], vec![1, 2, 9, 4], vec![8, 7, 6]];
        let a = agreement(&reference, &candidate);
        assert!((a.token_agreement - 1.75 / 3.0).abs() < 1e-12 && a.identical == 1 && a.prompts == 3, "{a:?}");
        // Two positions over a 2-token vocabulary: uniform logits (p = 1/2), then logits (ln 3, 0) with the
        // second token following (p = 1/4): perplexity = exp((ln 2 + ln 4) / 2) = sqrt(8).
        let steps = vec![(vec![0.0, 0.0], 1), (vec![3f32.ln(), 0.0], 1)];
        assert!((perplexity(&steps) - 8f64.sqrt()).abs() < 1e-6, "{}", perplexity(&steps));
    }
}

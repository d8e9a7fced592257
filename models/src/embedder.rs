//! The embedding-model interface that lanes drive. Backends (`candle_bert`, `onnx`) implement it; loading
//! a model for a lane lives in `load`, so this trait depends on no backend.

use std::ops::Range;

use crate::error::ModelError;

/// An encoder that turns token-id sequences into pooled vectors. One instance belongs to one lane;
/// `&mut self` lets backends whose sessions are not shareable (ONNX Runtime) implement it too.
pub trait Embedder: Send {
    /// Embeds a batch of token-id sequences (special tokens included, not padded). Returns one pooled,
    /// not yet normalized vector per sequence, in order.
    fn embed(&mut self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, ModelError>;
}

/// A batch padded to its longest sequence: row-major ids and attention mask (1 real, 0 padding), as `T`.
pub(crate) struct Padded<T> {
    pub ids: Vec<T>,
    pub mask: Vec<T>,
    pub longest: usize,
}

/// Pads every sequence of `batch` with `pad_id` to the longest one.
pub(crate) fn pad_batch<T: From<u32> + Copy>(batch: &[&[u32]], pad_id: u32) -> Padded<T> {
    let longest = batch.iter().map(|s| s.len()).max().unwrap_or(0);
    let (pad, one, zero) = (T::from(pad_id), T::from(1), T::from(0));
    let mut ids = Vec::with_capacity(batch.len() * longest);
    let mut mask = Vec::with_capacity(batch.len() * longest);
    for seq in batch {
        ids.extend(seq.iter().map(|&t| T::from(t)));
        ids.extend(std::iter::repeat_n(pad, longest - seq.len()));
        mask.extend(std::iter::repeat_n(one, seq.len()));
        mask.extend(std::iter::repeat_n(zero, longest - seq.len()));
    }
    Padded { ids, mask, longest }
}

/// What one forward pass of an encoder costs on a CPU beyond its padded tokens, in tokens: MiniLM on ONNX
/// Runtime, 2 cores, took 2.1 ms for one 6-token text and 103 ms for 32 × 24 tokens (about 1.3 ms per pass
/// plus 0.13 ms per token), and batches of 32 real texts cut by length ran fastest at 12-16 (benches/RESULTS.md).
pub(crate) const CPU_PASS_COST_TOKENS: usize = 12;

/// Embeds `batch` as groups of similar length, one forward pass each (`run`), when that costs less than one
/// pass padded to the longest sequence: a pass is taken to cost `pass_cost` tokens plus its padded tokens
/// (longest × count). Short texts batched with a long one otherwise pay for the long one's length; a
/// CPU backend's cost grows with padded tokens, so splitting pays there (`length_groups`). Returns the vectors
/// in `batch`'s order.
pub(crate) fn embed_by_length(
    batch: &[&[u32]],
    pass_cost: usize,
    mut run: impl FnMut(&[&[u32]]) -> Result<Vec<Vec<f32>>, ModelError>,
) -> Result<Vec<Vec<f32>>, ModelError> {
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by_key(|&i| batch[i].len());
    let sorted: Vec<usize> = order.iter().map(|&i| batch[i].len()).collect();
    let groups = length_groups(&sorted, pass_cost);
    if groups.len() <= 1 {
        return run(batch);
    }
    let mut vectors = vec![Vec::new(); batch.len()];
    for group in groups {
        let members = &order[group];
        let seqs: Vec<&[u32]> = members.iter().map(|&i| batch[i]).collect();
        let out = run(&seqs)?;
        if out.len() != members.len() {
            return Err(ModelError::Backend(format!("{} sequences in, {} vectors out", members.len(), out.len())));
        }
        for (&i, v) in members.iter().zip(out) {
            vectors[i] = v;
        }
    }
    Ok(vectors)
}

/// Cuts ascending `sorted` lengths into consecutive ranges that minimize the total cost of their passes,
/// Σ (`pass_cost` + longest × count), exactly (dynamic programming over the cut points, O(n²)); on a tie the
/// fewer, larger passes.
pub(crate) fn length_groups(sorted: &[usize], pass_cost: usize) -> Vec<Range<usize>> {
    let n = sorted.len();
    // best[j]: the least cost of the first j sequences; start[j]: where the last range of that cut starts.
    let mut best = vec![0usize; n + 1];
    let mut start = vec![0usize; n + 1];
    for j in 1..=n {
        let longest = sorted[j - 1];
        let (cost, from) = (0..j)
            .map(|i| (best[i].saturating_add(pass_cost).saturating_add(longest.saturating_mul(j - i)), i))
            .min()
            .unwrap_or((0, 0));
        (best[j], start[j]) = (cost, from);
    }
    let mut ranges = Vec::new();
    let mut end = n;
    while end > 0 {
        ranges.push(start[end]..end);
        end = start[end];
    }
    ranges.reverse();
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(sorted: &[usize], ranges: &[Range<usize>], pass_cost: usize) -> usize {
        ranges.iter().map(|r| pass_cost + sorted[r.end - 1] * r.len()).sum()
    }

    /// Every way of cutting `n` items into consecutive ranges (2^(n-1)).
    fn all_cuts(n: usize) -> Vec<Vec<Range<usize>>> {
        (0..1u32 << (n - 1))
            .map(|mask| {
                let mut ranges = Vec::new();
                let mut begin = 0;
                for i in 1..n {
                    if mask & (1 << (i - 1)) != 0 {
                        ranges.push(begin..i);
                        begin = i;
                    }
                }
                ranges.push(begin..n);
                ranges
            })
            .collect()
    }

    #[test]
    fn groups_cost_no_more_than_any_other_cut() {
        let mut seed = 7u64;
        for case in 0..300 {
            let n = 1 + case % 10;
            let mut sorted: Vec<usize> = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    1 + (seed >> 33) as usize % 60
                })
                .collect();
            sorted.sort_unstable();
            let pass_cost = case % 25;
            let got = length_groups(&sorted, pass_cost);
            let flat: Vec<usize> = got.iter().flat_map(|r| r.clone()).collect();
            assert_eq!(flat, (0..n).collect::<Vec<_>>(), "ranges cover every sequence once, in order");
            let least = all_cuts(n).iter().map(|c| cost(&sorted, c, pass_cost)).min().unwrap();
            assert_eq!(cost(&sorted, &got, pass_cost), least, "{sorted:?} at pass cost {pass_cost}");
        }
    }

    #[test]
    fn equal_lengths_or_a_dear_pass_stay_one_pass_and_far_apart_lengths_split() {
        assert_eq!(length_groups(&[9; 32], 1), vec![0..32]);
        assert_eq!(length_groups(&[4, 5, 6, 120], 10_000), vec![0..4]);
        assert_eq!(length_groups(&[4, 5, 6, 120], 12), vec![0..3, 3..4]);
        assert!(length_groups(&[], 12).is_empty());
    }

    #[test]
    fn vectors_come_back_in_the_batch_order() {
        let seqs: Vec<Vec<u32>> = [30, 3, 31, 4, 2, 29].iter().map(|&n| (0..n).collect()).collect();
        let batch: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
        let mut passes = Vec::new();
        let out = embed_by_length(&batch, 12, |group| {
            passes.push(group.iter().map(|s| s.len()).collect::<Vec<_>>());
            Ok(group.iter().map(|s| vec![s.len() as f32]).collect())
        })
        .unwrap();
        assert_eq!(out, [30.0, 3.0, 31.0, 4.0, 2.0, 29.0].map(|l| vec![l]));
        assert_eq!(passes, vec![vec![2, 3, 4], vec![29, 30, 31]]);
        let err = embed_by_length(&batch, 12, |_| Ok(Vec::new())).unwrap_err().to_string();
        assert!(err.contains("3 sequences in, 0 vectors out"), "{err}");
    }
}

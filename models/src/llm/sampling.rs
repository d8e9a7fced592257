//! Choosing the next token from logits: penalties, temperature, top-k, top-p, min-p, seeded randomness,
//! and log-probabilities.
//!
//! The order follows vLLM and llama.cpp: penalties on the raw logits, then temperature, then the top-k,
//! min-p and top-p filters, then a draw. Temperature 0 is greedy (argmax after penalties). Each sequence has
//! its own random generator, seeded from the request's `seed` when given, so the same seed gives the same
//! text whatever else runs in the batch.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Sampling settings of one request, already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 is greedy.
    pub temperature: f32,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (1 = off).
    pub top_p: f32,
    /// Keep the `top_k` most likely tokens (0 = off).
    pub top_k: usize,
    /// Drop tokens less likely than `min_p` × the most likely one (0 = off).
    pub min_p: f32,
    /// Divides positive (multiplies negative) logits of tokens already in the prompt or output (1 = off).
    pub repetition_penalty: f32,
    /// Subtracted from a token's logit once per time it was generated (OpenAI semantics).
    pub frequency_penalty: f32,
    /// Subtracted from a token's logit if it was generated at all.
    pub presence_penalty: f32,
    pub seed: Option<u64>,
    /// Return the chosen token's log-probability and this many alternatives (None = no logprobs).
    pub logprobs: Option<usize>,
    /// Added to these tokens' logits before sampling (OpenAI's `logit_bias`: -100 bans, 100 forces).
    pub logit_bias: Vec<(u32, f32)>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: None,
            logprobs: None,
            logit_bias: Vec::new(),
        }
    }
}

impl SamplingParams {
    /// Whether the same request always gives the same output.
    pub fn is_deterministic(&self) -> bool {
        self.temperature == 0.0 || self.seed.is_some()
    }

    /// Checks ranges against a vocabulary of `vocab` tokens; the message names the field and what is allowed.
    pub fn validate(&self, vocab: usize) -> Result<(), String> {
        for &(token, bias) in &self.logit_bias {
            if token as usize >= vocab {
                return Err(format!("logit_bias: token {token} is not in the vocabulary (0 to {})", vocab - 1));
            }
            if !bias.is_finite() || !(-100.0..=100.0).contains(&bias) {
                return Err(format!("logit_bias: the bias of token {token} must be between -100 and 100, got {bias}"));
            }
        }
        let finite = |v: f32| v.is_finite();
        if !finite(self.temperature) || !(0.0..=2.0).contains(&self.temperature) {
            return Err(format!("temperature must be between 0 and 2, got {}", self.temperature));
        }
        if !finite(self.top_p) || self.top_p <= 0.0 || self.top_p > 1.0 {
            return Err(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !finite(self.min_p) || !(0.0..=1.0).contains(&self.min_p) {
            return Err(format!("min_p must be between 0 and 1, got {}", self.min_p));
        }
        if !finite(self.repetition_penalty) || self.repetition_penalty <= 0.0 || self.repetition_penalty > 10.0 {
            return Err(format!("repetition_penalty must be in (0, 10], got {}", self.repetition_penalty));
        }
        for (name, v) in [("frequency_penalty", self.frequency_penalty), ("presence_penalty", self.presence_penalty)] {
            if !finite(v) || !(-2.0..=2.0).contains(&v) {
                return Err(format!("{name} must be between -2 and 2, got {v}"));
            }
        }
        if let Some(n) = self.logprobs
            && n > 20
        {
            return Err(format!("top_logprobs must be at most 20, got {n}"));
        }
        Ok(())
    }
}

/// Log-probabilities of one generated token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    pub logprob: f32,
    /// The most likely tokens and their log-probabilities, most likely first.
    pub top: Vec<(u32, f32)>,
}

/// One sequence's sampler: settings, random generator and token counts.
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    /// Prompt and output tokens (for the repetition penalty).
    seen: Vec<bool>,
    /// Output tokens and how often each was generated.
    counts: HashMap<u32, u32>,
}

impl Sampler {
    pub fn new(params: SamplingParams, prompt: &[u32], vocab: usize) -> Self {
        let rng = StdRng::seed_from_u64(params.seed.unwrap_or_else(rand::random));
        let mut seen = vec![false; vocab];
        if params.repetition_penalty != 1.0 {
            for &t in prompt {
                if let Some(s) = seen.get_mut(t as usize) {
                    *s = true;
                }
            }
        }
        Sampler { params, rng, seen, counts: HashMap::new() }
    }

    /// Picks the next token from `logits` (changed in place) and records it.
    pub fn sample(&mut self, logits: &mut [f32]) -> (u32, Option<TokenLogprobs>) {
        let logprobs_of = self.params.logprobs.map(|n| (log_softmax(logits), n));
        self.apply_penalties(logits);
        let token = if self.params.temperature == 0.0 { argmax(logits) } else { self.draw(logits) };
        if let Some(s) = self.seen.get_mut(token as usize) {
            *s = true;
        }
        *self.counts.entry(token).or_default() += 1;
        let logprobs = logprobs_of.map(|(lp, n)| TokenLogprobs {
            logprob: lp.get(token as usize).copied().unwrap_or(f32::NEG_INFINITY),
            top: top_n(&lp, n),
        });
        (token, logprobs)
    }

    fn apply_penalties(&self, logits: &mut [f32]) {
        let p = &self.params;
        for &(token, bias) in &p.logit_bias {
            if let Some(l) = logits.get_mut(token as usize) {
                *l += bias;
            }
        }
        if p.repetition_penalty != 1.0 {
            for (l, _) in logits.iter_mut().zip(&self.seen).filter(|(_, s)| **s) {
                *l = if *l > 0.0 { *l / p.repetition_penalty } else { *l * p.repetition_penalty };
            }
        }
        if p.frequency_penalty != 0.0 || p.presence_penalty != 0.0 {
            for (&t, &n) in &self.counts {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l -= p.frequency_penalty * n as f32 + p.presence_penalty;
                }
            }
        }
    }

    fn draw(&mut self, logits: &[f32]) -> u32 {
        let p = &self.params;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        // Tokens more than 30 nats below the best (relative probability < 1e-13 at temperature 1) can never
        // matter: leaving them out keeps the sort small.
        let floor = max - 30.0 * p.temperature.max(1.0);
        let mut cands: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| **l >= floor)
            .map(|(i, l)| (i as u32, (l - max) / p.temperature))
            .collect();
        if cands.is_empty() {
            return argmax(logits); // only NaN logits: nothing to draw from
        }
        cands.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if p.top_k > 0 {
            cands.truncate(p.top_k);
        }
        let mut probs: Vec<f32> = cands.iter().map(|(_, l)| l.exp()).collect();
        let total: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= total);
        let mut keep = probs.len();
        if p.min_p > 0.0 {
            let threshold = p.min_p * probs[0];
            keep = probs.iter().take_while(|&&x| x >= threshold).count().max(1);
        }
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            let upto = probs.iter().take(keep).position(|&x| {
                acc += x;
                acc >= p.top_p
            });
            keep = upto.map_or(keep, |i| i + 1);
        }
        let mass: f32 = probs[..keep].iter().sum();
        let mut r = self.rng.random::<f32>() * mass;
        for (i, &x) in probs[..keep].iter().enumerate() {
            if r < x {
                return cands[i].0;
            }
            r -= x;
        }
        cands[keep - 1].0
    }
}

/// Index of the largest value (the first on ties).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u32
}

fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln() + max;
    logits.iter().map(|l| l - log_sum).collect()
}

fn top_n(logprobs: &[f32], n: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<u32> = (0..logprobs.len() as u32).collect();
    let n = n.min(idx.len());
    if n == 0 {
        return Vec::new();
    }
    idx.select_nth_unstable_by(n - 1, |a, b| logprobs[*b as usize].total_cmp(&logprobs[*a as usize]));
    idx.truncate(n);
    idx.sort_by(|a, b| logprobs[*b as usize].total_cmp(&logprobs[*a as usize]));
    idx.into_iter().map(|i| (i, logprobs[i as usize])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        vec![1.0, 3.0, 2.0, 0.5, 2.9]
    }

    #[test]
    fn greedy_takes_the_argmax() {
        let mut s = Sampler::new(SamplingParams { temperature: 0.0, ..Default::default() }, &[], 5);
        assert_eq!(s.sample(&mut logits()).0, 1);
    }

    #[test]
    fn same_seed_same_draws_and_different_seeds_differ() {
        let run = |seed| {
            let p = SamplingParams { temperature: 1.0, seed: Some(seed), ..Default::default() };
            let mut s = Sampler::new(p, &[], 5);
            (0..50).map(|_| s.sample(&mut logits()).0).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn top_k_and_top_p_restrict_the_draw() {
        let p = SamplingParams { top_k: 2, seed: Some(1), ..Default::default() };
        let mut s = Sampler::new(p, &[], 5);
        assert!((0..200).all(|_| [1, 4].contains(&s.sample(&mut logits()).0)));
        // Token 1 alone has probability ~0.38; top_p 0.3 keeps only it.
        let p = SamplingParams { top_p: 0.3, seed: Some(1), ..Default::default() };
        let mut s = Sampler::new(p, &[], 5);
        assert!((0..200).all(|_| s.sample(&mut logits()).0 == 1));
        // min_p 0.95: only tokens within 5% of the best survive: 1 (and 4 is at e^-0.1 = 0.905, dropped).
        let p = SamplingParams { min_p: 0.95, seed: Some(1), ..Default::default() };
        let mut s = Sampler::new(p, &[], 5);
        assert!((0..200).all(|_| s.sample(&mut logits()).0 == 1));
    }

    #[test]
    fn penalties_steer_away_from_repeats() {
        let p = SamplingParams { temperature: 0.0, presence_penalty: 2.0, ..Default::default() };
        let mut s = Sampler::new(p, &[], 5);
        assert_eq!(s.sample(&mut logits()).0, 1);
        assert_eq!(s.sample(&mut logits()).0, 4, "token 1 was penalized below token 4");
        let p = SamplingParams { temperature: 0.0, repetition_penalty: 2.0, ..Default::default() };
        let mut s = Sampler::new(p, &[1], 5);
        assert_eq!(s.sample(&mut logits()).0, 4, "prompt token 1 is penalized: 3.0 / 2 < 2.9");
    }

    #[test]
    fn logit_bias_bans_and_forces_tokens() {
        let p = SamplingParams { temperature: 0.0, logit_bias: vec![(1, -100.0)], ..Default::default() };
        assert_eq!(Sampler::new(p, &[], 5).sample(&mut logits()).0, 4, "the best token is banned");
        let p = SamplingParams { temperature: 1.0, seed: Some(3), logit_bias: vec![(0, 100.0)], ..Default::default() };
        let mut s = Sampler::new(p, &[], 5);
        assert!((0..20).all(|_| s.sample(&mut logits()).0 == 0), "a +100 bias forces the token");
    }

    #[test]
    fn logprobs_are_normalized_and_ranked() {
        let p = SamplingParams { temperature: 0.0, logprobs: Some(3), ..Default::default() };
        let mut s = Sampler::new(p, &[], 5);
        let (t, lp) = s.sample(&mut logits());
        let lp = lp.unwrap();
        assert_eq!(t, 1);
        assert_eq!(lp.top.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 4, 2]);
        let total: f32 = log_softmax(&logits()).iter().map(|x| x.exp()).sum();
        assert!((total - 1.0).abs() < 1e-5);
        assert!((lp.logprob - lp.top[0].1).abs() < 1e-7);
    }

    #[test]
    fn invalid_values_are_named() {
        let biased = SamplingParams { logit_bias: vec![(4, 101.0)], ..Default::default() };
        assert!(biased.validate(5).unwrap_err().contains("between -100 and 100"));
        let biased = SamplingParams { logit_bias: vec![(5, 1.0)], ..Default::default() };
        assert!(biased.validate(5).unwrap_err().contains("not in the vocabulary"));
        let bad = SamplingParams { temperature: -1.0, ..Default::default() };
        assert!(bad.validate(5).unwrap_err().contains("temperature"));
        let bad = SamplingParams { top_p: 0.0, ..Default::default() };
        assert!(bad.validate(5).unwrap_err().contains("top_p"));
        let bad = SamplingParams { frequency_penalty: 3.0, ..Default::default() };
        assert!(bad.validate(5).unwrap_err().contains("frequency_penalty"));
    }
}

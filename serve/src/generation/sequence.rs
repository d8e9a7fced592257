//! One running sequence: its prompt, KV cache, sampler and output text, and what it does at each step.

use std::time::Instant;

use ferroserve_models::llm::{KvState, LanguageInfo, Sampler, TextStream};
use tokio::sync::mpsc;

use super::{FinishReason, GenerationError, GenerationEvent, GenerationUsage, Submitted};

/// What a sequence contributes to the next forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Work {
    /// Prompt tokens `start..end` (a chunk; the last chunk wants logits).
    Prefill { start: usize, end: usize },
    /// The token sampled last step.
    Decode,
}

impl Work {
    /// Tokens this work feeds to the model.
    pub fn len(self) -> usize {
        match self {
            Work::Prefill { start, end } => end - start,
            Work::Decode => 1,
        }
    }
}

/// The work of every running sequence for one step, given each one's (prompt tokens prefilled, prompt length):
/// decode tokens first (one per stream), then prompt chunks in admission order, all within `budget` tokens,
/// so a long prompt is prefilled over several steps while the streams keep getting a token each step.
/// Returns the plan and its token count.
pub(super) fn plan(seqs: impl Iterator<Item = (usize, usize)> + Clone, budget: usize) -> (Vec<Option<Work>>, usize) {
    let mut left = budget;
    let mut plan: Vec<Option<Work>> = seqs.clone().map(|_| None).collect();
    for decoding in [true, false] {
        for (i, (prefilled, len)) in seqs.clone().enumerate() {
            if (prefilled == len) != decoding || left == 0 {
                continue;
            }
            let work = if decoding {
                Work::Decode
            } else {
                Work::Prefill { start: prefilled, end: len.min(prefilled + left) }
            };
            left -= work.len();
            plan[i] = Some(work);
        }
    }
    (plan, budget - left)
}

pub(super) struct Sequence<C> {
    pub prompt: Vec<u32>,
    /// Prompt tokens already in the cache (reused from the prefix cache or computed).
    pub prefilled: usize,
    pub cache: C,
    /// The token to feed at the next decode step.
    pub next: [u32; 1],
    pub sampler: Sampler,
    pub text: TextStream,
    pub generated: usize,
    pub max_tokens: usize,
    pub ignore_eos: bool,
    pub cached_tokens: usize,
    /// Tokens of KV budget held (prompt + max_tokens).
    pub reserved: usize,
    pub events: mpsc::UnboundedSender<GenerationEvent>,
    pub submitted: Instant,
    /// When it got its slot.
    pub admitted: Instant,
    pub first_token: Option<Instant>,
    /// From its slot to its last token; the scheduler's `step` spans link to it.
    pub span: tracing::Span,
}

/// What happened to a sequence after a step.
pub(super) enum Outcome {
    Continue,
    Finished(FinishReason),
    /// The client is gone.
    Cancelled,
}

impl<C: KvState> Sequence<C> {
    pub fn new(s: Submitted, cache: C, cached_tokens: usize, vocab: usize) -> Self {
        let Submitted { job, events, submitted, request_span, queue_span } = s;
        drop(queue_span);
        let span = tracing::info_span!(parent: &request_span, "generate", prompt_tokens = job.prompt.len() as i64,
                                       cached_tokens = cached_tokens as i64, max_tokens = job.max_tokens as i64,
                                       completion_tokens = tracing::field::Empty, finish_reason = tracing::field::Empty);
        let sampler = Sampler::new(job.params, &job.prompt, vocab);
        Sequence {
            reserved: job.prompt.len() + job.max_tokens,
            prefilled: cached_tokens,
            prompt: job.prompt,
            cache,
            next: [0],
            sampler,
            text: TextStream::new(job.stop),
            generated: 0,
            max_tokens: job.max_tokens,
            ignore_eos: job.ignore_eos,
            cached_tokens,
            events,
            submitted,
            admitted: Instant::now(),
            first_token: None,
            span,
        }
    }

    /// Takes the step's logits (present after a decode step or the last prompt chunk): samples the next
    /// token and sends its text.
    pub fn advance(&mut self, work: Work, logits: Option<Vec<f32>>, info: &LanguageInfo) -> Outcome {
        if let Work::Prefill { end, .. } = work {
            self.prefilled = end;
        }
        let Some(mut logits) = logits else { return Outcome::Continue };
        let (token, logprobs) = self.sampler.sample(&mut logits);
        self.first_token.get_or_insert_with(Instant::now);
        if !self.ignore_eos && info.stop_ids.contains(&token) {
            return Outcome::Finished(FinishReason::Stop);
        }
        self.generated += 1;
        self.next = [token];
        let delta = match self.text.push(&info.tokenizer, token) {
            Ok(d) => d,
            Err(e) => {
                let _ = self.events.send(GenerationEvent::Failed(GenerationError::Failed(e.to_string())));
                return Outcome::Cancelled;
            }
        };
        if self.events.send(GenerationEvent::Token { id: token, text: delta.text, logprobs }).is_err() {
            return Outcome::Cancelled;
        }
        if delta.stopped {
            Outcome::Finished(FinishReason::Stop)
        } else if self.generated >= self.max_tokens || self.cache.len() + 1 >= info.context_length {
            Outcome::Finished(FinishReason::Length)
        } else {
            Outcome::Continue
        }
    }

    /// Sends the final event.
    pub fn finish(&mut self, reason: FinishReason) {
        let usage = GenerationUsage {
            prompt_tokens: self.prompt.len(),
            completion_tokens: self.generated,
            cached_tokens: self.cached_tokens,
        };
        self.span.record("completion_tokens", self.generated as i64);
        self.span.record("finish_reason", tracing::field::debug(reason));
        let _ = self.events.send(GenerationEvent::Done { finish_reason: reason, text: self.text.finish(), usage });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_go_first_and_long_prompts_are_chunked() {
        // Two streams decoding, a 1,000-token prompt half done, a 300-token prompt not started.
        let seqs = [(1000, 1000), (500, 1000), (20, 20), (0, 300)];
        let (p, tokens) = plan(seqs.iter().copied(), 256);
        assert_eq!(p[0], Some(Work::Decode));
        assert_eq!(p[2], Some(Work::Decode));
        assert_eq!(p[1], Some(Work::Prefill { start: 500, end: 754 }), "the first prompt gets what is left");
        assert_eq!(p[3], None, "nothing left for the second prompt this step");
        assert_eq!(tokens, 256);
        // A small remainder goes to the next prompt.
        let (p, tokens) = plan([(990, 1000), (0, 300), (5, 5)].into_iter(), 64);
        assert_eq!(
            p,
            vec![
                Some(Work::Prefill { start: 990, end: 1000 }),
                Some(Work::Prefill { start: 0, end: 53 }),
                Some(Work::Decode)
            ]
        );
        assert_eq!(tokens, 64);
    }

    #[test]
    fn every_stream_decodes_when_the_budget_allows() {
        let (p, tokens) = plan(std::iter::repeat_n((8, 8), 16), 16);
        assert!(p.iter().all(|w| *w == Some(Work::Decode)));
        assert_eq!(tokens, 16);
    }
}

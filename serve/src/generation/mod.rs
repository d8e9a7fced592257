//! Continuous batching for language models: one scheduler thread per model owns the weights, the running
//! sequences' KV caches and the prefix cache, and advances every running sequence by one token per step.
//!
//! Sequences join and leave at step boundaries. A step is one forward pass over the next token of every
//! decoding sequence plus chunks of waiting prompts, within `max_batch_tokens`, so a long prompt is prefilled
//! over several steps while running streams keep receiving tokens. Requests wait (bounded by `max_waiting`)
//! when `max_num_seqs` sequences run or the KV budget is spent; beyond that they are refused at once.
//! A request whose receiver is dropped (the client went away) is stopped and its slot freed at the next step.

mod config;
mod error;
mod pace;
mod scheduler;
mod sequence;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use ferroserve_models::cpu_share::CpuShare;
use ferroserve_models::llm::{ChatMessage, LanguageInfo, SamplingParams, StepModel, TokenLogprobs};
use tokio::sync::mpsc;

pub use config::GenerationConfig;
pub use error::GenerationError;
use pace::Pace;

/// How closely a candidate's tokens follow a primary's (a shadowed variant's, a benchmarked one's): the
/// positions where both hold the same token, over the primary's length (1 for an empty primary).
pub fn token_agreement(primary: &[u32], candidate: &[u32]) -> f64 {
    if primary.is_empty() {
        return 1.0;
    }
    let same = primary.iter().zip(candidate).filter(|(a, b)| a == b).count();
    same as f64 / primary.len() as f64
}

/// The text to continue.
#[derive(Debug, Clone)]
pub enum Prompt {
    /// Raw text, continued as is (`/v1/completions`). Control tokens written in it are parsed.
    Text(String),
    /// A conversation, rendered with the model's chat template (`/v1/chat/completions`); control tokens
    /// written in its messages stay text.
    Chat(Vec<ChatMessage>),
}

/// One generation request, tokenized and validated.
pub struct GenerationJob {
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
    pub max_tokens: usize,
    pub stop: Vec<String>,
    /// Keep generating past end-of-generation tokens until `max_tokens` (for benchmarks).
    pub ignore_eos: bool,
    /// 0 is admitted first.
    pub priority: u8,
    /// Give up if not admitted by then.
    pub deadline: Option<Instant>,
}

/// Why a sequence ended, in OpenAI's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens` or the context length.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// Token counts of a finished request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenerationUsage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens whose KV came from the prefix cache (not recomputed).
    pub cached_tokens: usize,
}

/// What the scheduler sends back for a request, in order: tokens, then exactly one `Done` or `Failed`.
#[derive(Debug)]
pub enum GenerationEvent {
    Token {
        id: u32,
        /// Text this token completes (may be empty: part of a character, or held back as a possible stop string).
        text: String,
        logprobs: Option<TokenLogprobs>,
    },
    Done {
        finish_reason: FinishReason,
        /// Text held back until the end (nothing more can complete a stop string).
        text: String,
        usage: GenerationUsage,
    },
    Failed(GenerationError),
}

/// A job on its way to the scheduler.
pub(crate) struct Submitted {
    job: GenerationJob,
    events: mpsc::UnboundedSender<GenerationEvent>,
    submitted: Instant,
    /// The span of the request that submitted it (the parent of its `generate` span).
    request_span: tracing::Span,
    /// Open while it waits for a slot.
    queue_span: tracing::Span,
}

/// The handle request handlers use; cheap to share.
pub struct Generator {
    pub model: String,
    pub info: Arc<LanguageInfo>,
    pub config: GenerationConfig,
    jobs: std::sync::mpsc::Sender<Submitted>,
    /// Requests submitted and not yet admitted to a slot.
    waiting: Arc<AtomicUsize>,
    /// How fast sequences finish, for Retry-After.
    pace: Arc<Pace>,
}

impl Generator {
    /// Starts the scheduler thread for `model` with a compute pool of `threads`, sharing the cores as `share`
    /// says (inert on a GPU; see `cpu_share.rs`).
    pub fn start<M: StepModel>(
        name: &str,
        model: M,
        info: Arc<LanguageInfo>,
        config: GenerationConfig,
        threads: usize,
        share: CpuShare,
    ) -> Result<Self, GenerationError> {
        let (jobs, rx) = std::sync::mpsc::channel();
        let waiting = Arc::new(AtomicUsize::new(0));
        let pace = Arc::new(Pace::default());
        let counters = scheduler::Counters { waiting: waiting.clone(), pace: pace.clone() };
        let scheduler = scheduler::Scheduler::new(name, model, info.clone(), &config, counters, threads, share)?;
        std::thread::Builder::new()
            .name(format!("generate-{name}"))
            .spawn(move || scheduler.run(rx))
            .map_err(|e| GenerationError::Failed(format!("cannot start the scheduler thread: {e}")))?;
        Ok(Generator { model: name.to_string(), info, config, jobs, waiting, pace })
    }

    /// Queues `job`; events arrive on the returned receiver. Dropping the receiver cancels the request.
    pub fn submit(&self, job: GenerationJob) -> Result<mpsc::UnboundedReceiver<GenerationEvent>, GenerationError> {
        let reserve = job.prompt.len() + job.max_tokens;
        let budget_tokens = self.kv_budget_tokens();
        if reserve > budget_tokens {
            return Err(GenerationError::InvalidInput(format!(
                "prompt ({} tokens) plus max_tokens ({}) needs more KV memory than model {:?} has \
                 ({budget_tokens} tokens, generation.kv_cache_mb); lower max_tokens",
                job.prompt.len(),
                job.max_tokens,
                self.model
            )));
        }
        let waiting = self.waiting.fetch_add(1, Ordering::SeqCst);
        if waiting >= self.config.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            metrics::counter!("ferroserve_generation_rejected_total", "model" => self.model.clone()).increment(1);
            let retry_after = self.pace.retry_after(waiting, self.config.max_num_seqs);
            return Err(GenerationError::Overloaded { model: self.model.clone(), retry_after });
        }
        let (events, rx) = mpsc::unbounded_channel();
        let queue_span = tracing::info_span!("queue", model = %self.model, prompt_tokens = job.prompt.len() as i64);
        let submitted =
            Submitted { job, events, submitted: Instant::now(), request_span: tracing::Span::current(), queue_span };
        self.jobs.send(submitted).map_err(|_| {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            GenerationError::ShuttingDown
        })?;
        Ok(rx)
    }

    /// Tokens of KV cache the memory budget holds.
    pub fn kv_budget_tokens(&self) -> usize {
        self.config.kv_cache_mb * 1024 * 1024 / self.info.shape.kv_bytes_per_token().max(1)
    }
}

//! The scheduler thread of one language model: admits waiting requests into slots, builds each step's
//! batch (decode tokens first, then prompt chunks within the token budget), runs it, and hands out tokens.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Instant;

use ferroserve_models::cpu_share::CpuShare;
use ferroserve_models::llm::{KvState, LanguageInfo, PrefixCache, SeqStep, StepModel};

use super::pace::Pace;
use super::sequence::{Outcome, Sequence, Work, plan};
use super::{GenerationConfig, GenerationError, GenerationEvent, Submitted};

/// What the scheduler shares with the [`super::Generator`] handle.
pub(super) struct Counters {
    /// Requests submitted and not yet admitted.
    pub waiting: Arc<AtomicUsize>,
    pub pace: Arc<Pace>,
}

pub(super) struct Scheduler<M: StepModel> {
    model_name: String,
    model: M,
    info: Arc<LanguageInfo>,
    pool: rayon::ThreadPool,
    prefix: PrefixCache<M::Cache>,
    max_num_seqs: usize,
    max_batch_tokens: usize,
    budget_tokens: usize,
    waiting_count: Arc<AtomicUsize>,
    pace: Arc<Pace>,
    waiting: Vec<Submitted>,
    running: Vec<Sequence<M::Cache>>,
    /// The model's place among the lanes sharing the cores (inert on a GPU).
    share: CpuShare,
}

impl<M: StepModel> Scheduler<M> {
    pub fn new(
        name: &str,
        model: M,
        info: Arc<LanguageInfo>,
        config: &GenerationConfig,
        counters: Counters,
        threads: usize,
        share: CpuShare,
    ) -> Result<Self, GenerationError> {
        let nice = share.nice();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .start_handler(move |_| ferroserve_models::cpu_share::lower_current_thread(nice))
            .thread_name({
                let name = name.to_string();
                move |i| format!("{name}-compute-{i}")
            })
            .build()
            .map_err(|e| GenerationError::Failed(format!("cannot build the compute pool: {e}")))?;
        let budget_tokens = config.kv_cache_mb * 1024 * 1024 / info.shape.kv_bytes_per_token().max(1);
        Ok(Scheduler {
            model_name: name.to_string(),
            model,
            prefix: PrefixCache::new(config.prefix_cache_mb * 1024 * 1024, config.prefix_min_tokens),
            info,
            pool,
            max_num_seqs: config.max_num_seqs,
            max_batch_tokens: config.max_batch_tokens,
            budget_tokens,
            waiting_count: counters.waiting,
            pace: counters.pace,
            waiting: Vec::new(),
            running: Vec::new(),
            share,
        })
    }

    pub fn run(mut self, jobs: Receiver<Submitted>) {
        self.share.lower_this_thread();
        tracing::info!(model = %self.model_name, budget_tokens = self.budget_tokens, "generation scheduler started");
        loop {
            if self.running.is_empty() && self.waiting.is_empty() {
                self.report();
                match jobs.recv() {
                    Ok(job) => self.waiting.push(job),
                    Err(_) => break,
                }
            }
            loop {
                match jobs.try_recv() {
                    Ok(job) => self.waiting.push(job),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) if self.running.is_empty() && self.waiting.is_empty() => {
                        tracing::info!(model = %self.model_name, "generation scheduler stopped");
                        return;
                    }
                    Err(TryRecvError::Disconnected) => break,
                }
            }
            self.drop_abandoned();
            self.admit();
            if self.running.is_empty() {
                // Nothing admissible (only expired or cancelled work was waiting).
                continue;
            }
            self.step();
            // A lighter lane gives a busy heavier one its share (see `cpu_share.rs`).
            self.share.rest();
            self.report();
        }
    }

    /// Removes waiting requests whose client left or whose deadline passed.
    fn drop_abandoned(&mut self) {
        let now = Instant::now();
        let before = self.waiting.len();
        self.waiting.retain(|s| {
            if s.events.is_closed() {
                return false;
            }
            if s.job.deadline.is_some_and(|d| d <= now) {
                let _ = s.events.send(GenerationEvent::Failed(GenerationError::DeadlineExceeded));
                return false;
            }
            true
        });
        self.waiting_count.fetch_sub(before - self.waiting.len(), Ordering::SeqCst);
    }

    /// Moves waiting requests into slots while slots and KV budget allow; most urgent first, then oldest.
    fn admit(&mut self) {
        self.waiting.sort_by_key(|s| (s.job.priority, s.submitted));
        let mut reserved: usize = self.running.iter().map(|s| s.reserved).sum();
        while self.running.len() < self.max_num_seqs && !self.waiting.is_empty() {
            let need = self.waiting[0].job.prompt.len() + self.waiting[0].job.max_tokens;
            if reserved + need > self.budget_tokens && !self.running.is_empty() {
                break;
            }
            let submitted = self.waiting.remove(0);
            self.waiting_count.fetch_sub(1, Ordering::SeqCst);
            let hit = match self.prefix.lookup(&submitted.job.prompt) {
                Ok(hit) => hit,
                Err(e) => {
                    tracing::warn!(model = %self.model_name, error = %e, "prefix cache lookup failed");
                    None
                }
            };
            let (cache, cached) = match hit {
                Some(hit) => (hit.kv, hit.tokens),
                None => (self.model.new_cache(), 0),
            };
            let labels = [("model", self.model_name.clone())];
            metrics::counter!("ferroserve_generation_prompt_tokens_total", &labels)
                .increment(submitted.job.prompt.len() as u64);
            metrics::counter!("ferroserve_generation_cached_prompt_tokens_total", &labels).increment(cached as u64);
            metrics::histogram!("ferroserve_generation_queue_time_seconds", &labels)
                .record(submitted.submitted.elapsed().as_secs_f64());
            reserved += need;
            self.running.push(Sequence::new(submitted, cache, cached, self.info.shape.vocab));
        }
    }

    /// One forward pass over every running sequence's next piece of work.
    fn step(&mut self) {
        let cancelled_before = self.running.len();
        self.running.retain(|s| !s.events.is_closed());
        let cancelled = cancelled_before - self.running.len();
        if cancelled > 0 {
            metrics::counter!("ferroserve_generation_cancelled_total", "model" => self.model_name.clone())
                .increment(cancelled as u64);
        }
        let (plan, step_tokens) = self.plan();
        let started = Instant::now();
        let step_span = tracing::info_span!("step", model = %self.model_name, tokens = step_tokens as i64,
                                            sequences = plan.iter().flatten().count() as i64);
        for (seq, work) in self.running.iter().zip(&plan) {
            if work.is_some() {
                step_span.follows_from(&seq.span);
            }
        }
        let result = {
            let _step = step_span.enter();
            let mut steps: Vec<SeqStep<M::Cache>> = self
                .running
                .iter_mut()
                .zip(&plan)
                .filter_map(|(seq, work)| {
                    let work = (*work)?;
                    let want_logits = !matches!(work, Work::Prefill { end, .. } if end < seq.prompt.len());
                    let tokens = match work {
                        Work::Prefill { start, end } => &seq.prompt[start..end],
                        Work::Decode => &seq.next[..],
                    };
                    Some(SeqStep { tokens, cache: &mut seq.cache, want_logits })
                })
                .collect();
            let (model, pool) = (&self.model, &self.pool);
            let outcome = self.share.compute(|| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.install(|| model.forward(&mut steps))))
            });
            match outcome {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(_) => Err("the model panicked on this step".to_string()),
            }
        };
        let labels = [("model", self.model_name.clone())];
        metrics::histogram!("ferroserve_generation_step_tokens", &labels).record(step_tokens as f64);
        metrics::histogram!("ferroserve_generation_step_seconds", &labels).record(started.elapsed().as_secs_f64());
        let logits = match result {
            Ok(logits) => logits,
            Err(message) => {
                tracing::error!(model = %self.model_name, error = %message, "generation step failed");
                for (seq, work) in self.running.iter().zip(&plan) {
                    if work.is_some() {
                        let _ = seq.events.send(GenerationEvent::Failed(GenerationError::Failed(message.clone())));
                    }
                }
                let mut plan = plan.iter();
                self.running.retain(|_| plan.next().is_some_and(Option::is_none));
                return;
            }
        };
        let mut logits = logits.into_iter();
        let mut outcomes = Vec::with_capacity(self.running.len());
        let mut generated = 0;
        for (seq, work) in self.running.iter_mut().zip(&plan) {
            let Some(work) = *work else {
                outcomes.push(Outcome::Continue);
                continue;
            };
            let step_logits = logits.next().flatten();
            let had_first = seq.first_token.is_some();
            let before = seq.generated;
            let outcome = seq.advance(work, step_logits, &self.info);
            if let Work::Prefill { end, .. } = work
                && end == seq.prompt.len()
                && let Err(e) = self.prefix.insert(&seq.prompt, &seq.cache)
            {
                tracing::warn!(model = %self.model_name, error = %e, "prefix cache insert failed");
            }
            if !had_first && let Some(first) = seq.first_token {
                metrics::histogram!("ferroserve_generation_time_to_first_token_seconds", &labels)
                    .record((first - seq.submitted).as_secs_f64());
            }
            generated += seq.generated - before;
            outcomes.push(outcome);
        }
        metrics::counter!("ferroserve_generation_tokens_total", &labels).increment(generated as u64);
        let mut outcomes = outcomes.into_iter();
        let mut cancelled = 0;
        self.running.retain_mut(|seq| match outcomes.next() {
            Some(Outcome::Finished(reason)) => {
                seq.finish(reason);
                self.pace.record(seq.admitted.elapsed());
                false
            }
            Some(Outcome::Cancelled) => {
                cancelled += 1;
                false
            }
            _ => true,
        });
        if cancelled > 0 {
            metrics::counter!("ferroserve_generation_cancelled_total", "model" => self.model_name.clone())
                .increment(cancelled as u64);
        }
    }

    /// Each running sequence's work for the next step (see [`plan`]).
    fn plan(&self) -> (Vec<Option<Work>>, usize) {
        plan(self.running.iter().map(|s| (s.prefilled, s.prompt.len())), self.max_batch_tokens)
    }

    fn report(&self) {
        let labels = [("model", self.model_name.clone())];
        metrics::gauge!("ferroserve_generation_running", &labels).set(self.running.len() as f64);
        metrics::gauge!("ferroserve_generation_waiting", &labels).set(self.waiting_count.load(Ordering::SeqCst) as f64);
        metrics::gauge!("ferroserve_generation_prefix_cache_bytes", &labels).set(self.prefix.used_bytes() as f64);
        metrics::gauge!("ferroserve_generation_kv_cache_bytes", &labels)
            .set(self.running.iter().map(|s| s.cache.bytes()).sum::<usize>() as f64);
    }
}

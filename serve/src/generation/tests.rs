//! Scheduler tests with a scripted model: admission by slots, priority and KV budget, chunked prefill
//! beside running decodes, cancellation, deadlines, overload and failed steps — no weights needed.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferroserve_models::ModelError;
use ferroserve_models::cpu_share::CpuShare;
use ferroserve_models::llm::{GgufTokenizer, KvState, LanguageInfo, LlamaShape, SamplingParams, SeqStep, StepModel};
use tokio::sync::mpsc::UnboundedReceiver;

use super::*;

/// Token 0 ends generation; the others are letters.
const VOCAB: [&str; 4] = ["<|im_end|>", "a", "b", "c"];

struct FakeCache {
    len: usize,
}

impl KvState for FakeCache {
    fn len(&self) -> usize {
        self.len
    }
    fn bytes(&self) -> usize {
        self.len * 8
    }
    fn prefix(&self, len: usize) -> Result<Self, ModelError> {
        Ok(FakeCache { len: len.min(self.len) })
    }
}

/// Tokens each sequence fed to each step, in order.
type StepLog = Arc<Mutex<Vec<Vec<usize>>>>;

/// Logs every step, then waits for a permit: `true` runs the step, `false` fails it. Once the permit
/// sender is dropped, steps run freely. Always answers token 1 ("a").
struct Scripted {
    log: StepLog,
    permits: Mutex<Receiver<bool>>,
}

impl StepModel for Scripted {
    type Cache = FakeCache;

    fn new_cache(&self) -> FakeCache {
        FakeCache { len: 0 }
    }

    fn forward(&self, batch: &mut [SeqStep<'_, FakeCache>]) -> Result<Vec<Option<Vec<f32>>>, ModelError> {
        self.log.lock().unwrap().push(batch.iter().map(|s| s.tokens.len()).collect());
        if !self.permits.lock().unwrap().recv().unwrap_or(true) {
            return Err(ModelError::Backend("scripted failure".into()));
        }
        Ok(batch
            .iter_mut()
            .map(|s| {
                s.cache.len += s.tokens.len();
                s.want_logits.then(|| vec![0.0, 10.0, 0.0, 0.0])
            })
            .collect())
    }
}

struct Harness {
    generator: Generator,
    log: StepLog,
    permits: Option<Sender<bool>>,
}

fn harness(config: GenerationConfig) -> Harness {
    let tokenizer =
        GgufTokenizer::from_vocab(VOCAB.map(String::from).to_vec(), Vec::new(), vec![VOCAB[0].into()]).unwrap();
    let shape = LlamaShape {
        layers: 1,
        hidden: 8,
        heads: 1,
        kv_heads: 1,
        head_dim: 128, // 1 KiB of KV per token: kv_cache_mb = 1 holds 1,024 tokens
        vocab: VOCAB.len(),
        context_length: 4096,
        rms_eps: 1e-5,
        rope_base: 10_000.0,
    };
    let info = LanguageInfo { tokenizer, template: None, stop_ids: vec![0], context_length: 4096, shape };
    let (permits, rx) = channel();
    let log = StepLog::default();
    let model = Scripted { log: log.clone(), permits: Mutex::new(rx) };
    let generator = Generator::start("fake", model, Arc::new(info), config, 1, CpuShare::new(None)).unwrap();
    Harness { generator, log, permits: Some(permits) }
}

fn config() -> GenerationConfig {
    GenerationConfig { prefix_cache_mb: 0, ..GenerationConfig::default() }
}

fn job(prompt_len: usize, max_tokens: usize, priority: u8) -> GenerationJob {
    GenerationJob {
        prompt: vec![1; prompt_len],
        params: SamplingParams { temperature: 0.0, ..Default::default() },
        max_tokens,
        stop: Vec::new(),
        ignore_eos: false,
        priority,
        deadline: None,
    }
}

impl Harness {
    fn submit(&self, job: GenerationJob) -> UnboundedReceiver<GenerationEvent> {
        self.generator.submit(job).unwrap()
    }
    /// Waits until `n` steps have started.
    fn wait_steps(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.log.lock().unwrap().len() < n {
            assert!(Instant::now() < deadline, "the scheduler did not start {n} steps");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    fn permit(&self, ok: bool) {
        self.permits.as_ref().unwrap().send(ok).unwrap();
    }
    /// Lets every later step run.
    fn run_freely(&mut self) {
        self.permits = None;
    }
    fn steps(&self) -> Vec<Vec<usize>> {
        self.log.lock().unwrap().clone()
    }
}

/// The text and finish of a request, or its error.
fn outcome(mut rx: UnboundedReceiver<GenerationEvent>) -> Result<(String, FinishReason), GenerationError> {
    let mut text = String::new();
    while let Some(event) = rx.blocking_recv() {
        match event {
            GenerationEvent::Token { text: t, .. } => text.push_str(&t),
            GenerationEvent::Done { finish_reason, text: t, .. } => return Ok((text + &t, finish_reason)),
            GenerationEvent::Failed(e) => return Err(e),
        }
    }
    panic!("the stream ended without Done or Failed");
}

#[test]
fn slots_are_given_by_priority_then_age() {
    let mut h = harness(GenerationConfig { max_num_seqs: 1, ..config() });
    let first = h.submit(job(3, 2, 1));
    h.wait_steps(1); // the only slot is busy
    let low = h.submit(job(5, 1, 2));
    let high = h.submit(job(7, 1, 0));
    h.run_freely();
    assert_eq!(outcome(first).unwrap(), ("aa".into(), FinishReason::Length));
    assert_eq!(outcome(high).unwrap().0, "a");
    assert_eq!(outcome(low).unwrap().0, "a");
    // Prefills in admission order: the first, then the urgent one, then the other.
    let prefills: Vec<usize> = h.steps().iter().map(|s| s[0]).filter(|&n| n > 1).collect();
    assert_eq!(prefills, [3, 7, 5]);
    assert!(h.steps().iter().all(|s| s.len() == 1), "one slot: one sequence per step");
}

#[test]
fn kv_budget_holds_a_request_back_until_memory_frees() {
    // 1,024 tokens of KV: 4 + 600 and 6 + 600 do not fit together.
    let mut h = harness(GenerationConfig { kv_cache_mb: 1, ..config() });
    let a = h.submit(job(4, 600, 1));
    h.wait_steps(1);
    let b = h.submit(job(6, 600, 1));
    h.run_freely();
    assert_eq!(outcome(a).unwrap().1, FinishReason::Length);
    assert_eq!(outcome(b).unwrap().1, FinishReason::Length);
    let steps = h.steps();
    assert!(steps.iter().all(|s| s.len() == 1), "never both at once");
    assert_eq!(steps.len(), 2 * 600, "a prefill and 599 decodes each");
    // A request that could never fit is refused at once.
    let e = h.generator.submit(job(30, 1000, 1)).err().unwrap();
    assert!(matches!(&e, GenerationError::InvalidInput(m) if m.contains("kv_cache_mb")), "{e}");
}

#[test]
fn long_prompts_are_prefilled_in_chunks_beside_running_decodes() {
    let mut h = harness(GenerationConfig { max_batch_tokens: 16, ..config() });
    let running = h.submit(job(2, 10, 1));
    h.wait_steps(1); // its prefill step is under way
    let long = h.submit(job(40, 1, 1));
    h.run_freely();
    assert_eq!(outcome(running).unwrap().0, "a".repeat(10));
    assert_eq!(outcome(long).unwrap().0, "a");
    let steps = h.steps();
    assert_eq!(steps[0], [2]);
    // The decode goes first, the prompt takes what is left of the 16 tokens, over three steps.
    assert_eq!(steps[1..4], [vec![1, 15], vec![1, 15], vec![1, 10]]);
}

#[test]
fn a_client_that_leaves_frees_its_slot() {
    let mut h = harness(GenerationConfig { max_num_seqs: 1, ..config() });
    let mut leaving = h.submit(job(3, 1000, 1));
    h.permit(true);
    assert!(matches!(leaving.blocking_recv(), Some(GenerationEvent::Token { .. })));
    let waiting = h.submit(job(4, 2, 1));
    drop(leaving);
    h.run_freely();
    assert_eq!(outcome(waiting).unwrap().0, "aa", "the slot was freed for the waiting request");
    assert!(h.steps().len() < 100, "the abandoned sequence stopped ({} steps)", h.steps().len());
}

#[test]
fn waiting_past_the_deadline_fails_and_overload_is_refused_with_a_measured_hint() {
    let mut h = harness(GenerationConfig { max_num_seqs: 1, max_waiting: 2, ..config() });
    let busy = h.submit(job(3, 3, 1));
    h.wait_steps(1);
    let expiring =
        h.submit(GenerationJob { deadline: Some(Instant::now() + Duration::from_millis(20)), ..job(3, 1, 1) });
    let patient = h.submit(job(3, 1, 1));
    let refused = h.generator.submit(job(3, 1, 1)).err().unwrap();
    assert!(
        matches!(refused, GenerationError::Overloaded { retry_after, .. } if retry_after >= Duration::from_secs(1))
    );
    std::thread::sleep(Duration::from_millis(40));
    h.run_freely();
    outcome(busy).unwrap();
    assert!(matches!(outcome(expiring), Err(GenerationError::DeadlineExceeded)));
    outcome(patient).unwrap();
    assert!(h.generator.pace.retry_after(64, 1) >= Duration::from_secs(1));
}

#[test]
fn a_failed_step_fails_its_sequences_and_the_scheduler_goes_on() {
    let mut h = harness(config());
    let failing = h.submit(job(3, 5, 1));
    h.permit(false);
    assert!(matches!(outcome(failing), Err(GenerationError::Failed(m)) if m.contains("scripted failure")));
    h.run_freely();
    assert_eq!(outcome(h.submit(job(3, 2, 1))).unwrap().0, "aa");
}

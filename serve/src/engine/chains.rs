//! Chains through the engine: the engine does each step's effects (retrieval from its collections with
//! server-side embedding, embeddings, generation with its models), so batching, deadlines and the caches
//! apply to every step; definitions are checked against the models and collections it has.

use std::sync::Arc;
use std::time::Instant;

use ferroserve_models::Task;
use ferroserve_models::llm::{ChatMessage, SamplingParams};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{EmbedRequest, Engine, EngineError, GenerateRequest, QueryInput, VectorInput};
use crate::cache::CacheMode;
use crate::chains::run::{self, Effects, GenerateCall, Generated, Overrides, PromptValue, RetrieveCall, Retrieved};
use crate::chains::{Chain, ChainDef, definition::StepKind};
use crate::generation::Prompt;
use crate::vectors::{Filter, Search};

pub use crate::chains::run::{RunOutput, StepReport};

/// `run` until `deadline`; past it, the run is dropped (stopping its step) and fails.
async fn within<T>(
    deadline: Option<Instant>,
    run: impl std::future::Future<Output = Result<T, EngineError>>,
) -> Result<T, EngineError> {
    match deadline {
        None => run.await,
        Some(at) => tokio::time::timeout_at(at.into(), run).await.unwrap_or(Err(EngineError::DeadlineExceeded)),
    }
}

/// How many chains deep `map` and `parallel` steps may nest.
const MAX_DEPTH: usize = 8;

/// A streaming run: text pieces of the final generation step as they come, then the whole output.
pub struct ChainStream {
    pub tokens: mpsc::UnboundedReceiver<String>,
    pub done: oneshot::Receiver<Result<RunOutput, EngineError>>,
}

impl Effects for Engine {
    type Error = EngineError;

    async fn retrieve(&self, call: RetrieveCall) -> Result<Vec<Retrieved>, EngineError> {
        if let Some(ep) = &call.qdrant {
            let model = call.embedding_model.as_deref().unwrap_or_default();
            let vector = Effects::embed(self, model, call.query).await?;
            let points = self
                .remote
                .qdrant_query(ep, &call.collection, &vector, call.k, call.filter.as_ref(), call.score_threshold)
                .await?;
            return Ok(points.into_iter().map(|(id, score, payload)| Retrieved { id, score, payload }).collect());
        }
        let filter = match &call.filter {
            Some(f) => Filter::parse(f).map_err(EngineError::InvalidInput)?,
            None => None,
        };
        let search = Search {
            vector: Vec::new(),
            limit: call.k,
            offset: 0,
            filter,
            score_threshold: call.score_threshold,
            ef: None,
            exact: false,
            quantization: Default::default(),
            with_payload: true,
            with_vector: false,
        };
        let query = QueryInput::Vector(VectorInput::Text { text: call.query, model: None });
        let hits = self.query_points(&call.collection, query, search).await?;
        Ok(hits
            .into_iter()
            .map(|h| Retrieved {
                id: serde_json::to_value(&h.record.id).unwrap_or(Value::Null),
                score: h.score,
                payload: h.record.payload.unwrap_or_default(),
            })
            .collect())
    }

    async fn embed(&self, model: &str, text: String) -> Result<Vec<f32>, EngineError> {
        let request = EmbedRequest::with_defaults(model.to_string(), vec![text]);
        let mut out = Engine::embed(self, request).await?;
        out.vectors.pop().ok_or_else(|| EngineError::Internal("the embedding is missing".into()))
    }

    fn sub_chain(
        &self,
        name: &str,
        input: Value,
        depth: usize,
    ) -> impl std::future::Future<Output = Result<Value, EngineError>> + Send {
        let name = name.to_string();
        // Boxed: a chain's run may contain another's.
        let run: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send + '_>> = Box::pin(async move {
            if depth > MAX_DEPTH {
                return Err(EngineError::InvalidInput(format!(
                    "chain {name:?} is {depth} chains deep (at most {MAX_DEPTH}): do the chains run each other?"
                )));
            }
            let chain = self.chain(&name)?;
            let out = self.run_checked(&chain, input, &Overrides::default(), None, depth).await?;
            Ok(out.output)
        });
        run
    }

    async fn generate(
        &self,
        call: GenerateCall,
        tokens: Option<&mpsc::UnboundedSender<String>>,
    ) -> Result<Generated, EngineError> {
        if let Some(ep) = &call.endpoint {
            let prompt = match &call.prompt {
                PromptValue::Text(t) => Ok(t.as_str()),
                PromptValue::Messages(m) => Err(m.as_slice()),
            };
            let out =
                self.remote.complete(ep, &call.model, prompt, call.max_tokens, call.temperature, &call.stop).await?;
            // Not streamed by the endpoint: the whole text is one piece.
            if let Some(tx) = tokens
                && tx.send(out.text.clone()).is_err()
            {
                return Err(EngineError::Internal("the client disconnected".into()));
            }
            return Ok(Generated {
                text: out.text,
                prompt_tokens: out.prompt_tokens,
                completion_tokens: out.completion_tokens,
                finish_reason: out.finish_reason,
            });
        }
        let prompt = match call.prompt {
            PromptValue::Text(t) => Prompt::Text(t),
            PromptValue::Messages(m) => {
                Prompt::Chat(m.into_iter().map(|(role, content)| ChatMessage { role, content }).collect())
            }
        };
        let request = GenerateRequest {
            model: call.model,
            prompt,
            params: SamplingParams { temperature: call.temperature, ..Default::default() },
            max_tokens: call.max_tokens,
            stop: call.stop,
            ignore_eos: false,
            priority: None,
            timeout: None,
            cache: CacheMode::Default,
        };
        let out = Engine::generate(self, request)
            .await?
            .collect(|piece| match tokens {
                // The client went away: stop the generation.
                Some(tx) if tx.send(piece.to_string()).is_err() => {
                    Err(EngineError::Internal("the client disconnected".into()))
                }
                _ => Ok(()),
            })
            .await?;
        Ok(Generated {
            text: out.text,
            prompt_tokens: out.usage.prompt_tokens,
            completion_tokens: out.usage.completion_tokens,
            finish_reason: out.finish_reason.as_str().to_string(),
        })
    }
}

impl Engine {
    pub fn chain(&self, name: &str) -> Result<Arc<Chain>, EngineError> {
        Ok(self.chains.get(name)?)
    }

    pub fn chain_names(&self) -> Vec<String> {
        self.chains.names()
    }

    /// Runs a chain to the end. At `deadline` the step running is stopped (a generation ends, a remote call
    /// is dropped) and the run fails with `DeadlineExceeded`.
    pub async fn run_chain(
        &self,
        name: &str,
        input: Value,
        configurable: Option<&Value>,
        deadline: Option<Instant>,
    ) -> Result<RunOutput, EngineError> {
        let chain = self.chain(name)?;
        let overrides = Overrides::parse(&chain, configurable)?;
        within(deadline, self.run_checked(&chain, input, &overrides, None, 0)).await
    }

    /// Runs a chain in a task; its final generation step's text streams out as it comes. The run stops when
    /// the receiver of the text goes away (the client disconnected) or at `deadline`.
    pub fn stream_chain(
        self: &Arc<Self>,
        name: &str,
        input: Value,
        configurable: Option<&Value>,
        deadline: Option<Instant>,
    ) -> Result<ChainStream, EngineError> {
        let chain = self.chain(name)?;
        let overrides = Overrides::parse(&chain, configurable)?;
        let (tokens_tx, tokens) = mpsc::unbounded_channel();
        let (done_tx, done) = oneshot::channel();
        let engine = self.clone();
        tokio::spawn(async move {
            let run = within(deadline, engine.run_checked(&chain, input, &overrides, Some(&tokens_tx), 0));
            // A client that went away stops the steps at once, not only when the next token finds no one.
            let result = tokio::select! {
                result = run => result,
                () = tokens_tx.closed() => Err(EngineError::Internal("the client disconnected".into())),
            };
            let _ = done_tx.send(result);
        });
        Ok(ChainStream { tokens, done })
    }

    async fn run_checked(
        &self,
        chain: &Chain,
        input: Value,
        overrides: &Overrides,
        tokens: Option<&mpsc::UnboundedSender<String>>,
        depth: usize,
    ) -> Result<RunOutput, EngineError> {
        let started = Instant::now();
        let result = run::run(chain, input, overrides, self, tokens, depth).await.map_err(EngineError::from);
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        metrics::counter!("ferroserve_chain_runs_total", "chain" => chain.name.clone(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!("ferroserve_chain_seconds", "chain" => chain.name.clone())
            .record(started.elapsed().as_secs_f64());
        result
    }

    /// Checks and registers a chain (written to the chains folder, so it persists).
    pub fn put_chain(&self, name: &str, def: ChainDef) -> Result<(), EngineError> {
        let chain = Chain::check(name, def)?;
        self.check_chain(&chain).map_err(|e| EngineError::InvalidInput(format!("chain {name:?}: {e}")))?;
        Ok(self.chains.put(chain)?)
    }

    pub fn delete_chain(&self, name: &str) -> Result<bool, EngineError> {
        Ok(self.chains.delete(name)?)
    }

    /// Re-reads the chains folder if it changed; returns the files refused with their reasons.
    pub fn reload_chains(&self) -> Vec<String> {
        self.chains.reload(&|chain| self.check_chain(chain))
    }

    /// What only the engine can check: the models and collections a chain names.
    pub(super) fn check_chain(&self, chain: &Chain) -> Result<(), String> {
        // Chains it runs: loaded already, or in the folder (loaded in the same pass).
        for name in chain.sub_chains() {
            let in_folder = self.chains.folder().is_some_and(|f| f.join(format!("{name}.toml")).exists());
            if name == chain.name {
                return Err(format!("a step runs chain {name:?} itself: a cycle"));
            }
            if self.chains.get(name).is_err() && !in_folder {
                return Err(format!("chain {name:?} (run by a step) does not exist"));
            }
        }
        for step in &chain.def.steps {
            let at = |m: String| format!("step {:?}: {m}", step.name);
            match &step.kind {
                StepKind::Generate { model, endpoint: None, .. } => {
                    self.check_model(model, Task::Generation).map_err(at)?
                }
                StepKind::Retrieve { qdrant: Some(_), embedding_model: Some(model), .. } => {
                    self.check_model(model, Task::Embedding).map_err(at)?
                }
                StepKind::Embed { model, .. } => self.check_model(model, Task::Embedding).map_err(at)?,
                StepKind::Retrieve { collection, qdrant: None, .. } if self.collection(collection).is_err() => {
                    return Err(at(format!("collection {collection:?} does not exist")));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn check_model(&self, model: &str, task: Task) -> Result<(), String> {
        match self.task_of(model) {
            Err(_) => Err(format!("model {model:?} is not in the model repository")),
            Ok(t) if t != task => Err(format!("model {model:?} is not a {task:?} model")),
            Ok(_) => Ok(()),
        }
    }
}

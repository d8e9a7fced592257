//! Fills the response caches from a generation as it streams: the events pass through unchanged, and a
//! finished answer goes into the exact cache (local and shared) and the semantic cache.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::codec;
use super::response::{CachedResponse, CachedToken, ResponseCache};
use super::semantic::{SemanticCache, SemanticKey};
use super::shared::{Kind, SharedCache};
use crate::generation::GenerationEvent;

/// Where a finished generation is kept.
pub struct Recorder {
    pub(super) exact: Option<(Arc<ResponseCache>, u128)>,
    /// The shared cache, the entry's key there and its TTL.
    pub(super) shared: Option<(Arc<SharedCache>, String, Duration)>,
    pub(super) semantic: Option<(Arc<SemanticCache>, SemanticKey)>,
    pub(super) model: Arc<str>,
}

impl Recorder {
    /// Passes `inner`'s events on, keeping a copy; a finished generation goes into the caches. When the
    /// client goes away, `inner` is dropped at once, which stops the generation.
    pub fn record(
        self,
        mut inner: mpsc::UnboundedReceiver<GenerationEvent>,
    ) -> mpsc::UnboundedReceiver<GenerationEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut tokens = Vec::new();
            let mut sink = Some(self);
            loop {
                let event = tokio::select! {
                    _ = tx.closed() => return,
                    event = inner.recv() => match event {
                        Some(e) => e,
                        None => return,
                    },
                };
                match &event {
                    GenerationEvent::Token { id, text, logprobs } => {
                        tokens.push(CachedToken { id: *id, text: text.clone(), logprobs: logprobs.clone() })
                    }
                    GenerationEvent::Done { finish_reason, text, usage } => {
                        if let Some(sink) = sink.take() {
                            let value = Arc::new(CachedResponse {
                                tokens: std::mem::take(&mut tokens),
                                tail: text.clone(),
                                finish_reason: *finish_reason,
                                usage: *usage,
                                model: sink.model.clone(),
                            });
                            if let Some((cache, key)) = sink.exact {
                                cache.insert(key, value.clone());
                            }
                            if let Some((shared, key, ttl)) = sink.shared {
                                shared.put_many(
                                    Kind::Response,
                                    &sink.model,
                                    vec![(key, codec::encode_response(&value))],
                                    ttl,
                                );
                            }
                            if let Some((cache, key)) = sink.semantic {
                                cache.insert(key, value);
                            }
                        }
                    }
                    GenerationEvent::Failed(_) => {}
                }
                if tx.send(event).is_err() {
                    return;
                }
            }
        });
        rx
    }
}

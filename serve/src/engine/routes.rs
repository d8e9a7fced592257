//! Aliases routed to model variants (A/B), and shadow requests: the engine's side of `crate::routing`. A
//! request for an alias is served by the variant the route picks (sticky per caller key); when the request is
//! drawn for the shadow, the candidate computes the same inputs after the answer has gone, at the lowest
//! priority, and its drift from the variant that answered is recorded as metrics:
//! `ferroserve_shadow_cosine` (per input, embeddings), `ferroserve_shadow_token_agreement` (per request,
//! generation: the share of positions where the candidate chose the same token), `ferroserve_shadow_seconds`
//! and `ferroserve_shadow_requests_total` by outcome.

use std::time::{Duration, Instant};

use ferroserve_models::Task;
use tokio::sync::mpsc;

use super::{EmbedRequest, Engine, EngineError, GenerateRequest, GenerationStream};
use crate::cache::CacheMode;
use crate::generation::{GenerationEvent, token_agreement};
use crate::routing::{Picked, RouteSpec};
use crate::vectors::cosine_f64;

/// A shadow request that has not finished by then is dropped (and counted).
const SHADOW_TIMEOUT: Duration = Duration::from_secs(60);

impl Engine {
    /// Adds or replaces a route after checking it: every variant and the candidate are models of this server
    /// with the same task (embedding or generation), and the alias is not a model's name.
    pub fn set_route(&self, spec: RouteSpec) -> Result<(), EngineError> {
        spec.check(|m| self.has_model(m)).map_err(EngineError::InvalidInput)?;
        let models = spec.variants.iter().map(|v| &v.model).chain(spec.shadow.iter().map(|s| &s.model));
        let tasks: Vec<Task> = models.map(|m| self.task_of(m)).collect::<Result<_, _>>()?;
        if !matches!(tasks[0], Task::Embedding | Task::Generation) {
            return Err(EngineError::InvalidInput(format!(
                "route {:?}: only embedding and generation models can be routed",
                spec.alias
            )));
        }
        if tasks.iter().any(|t| *t != tasks[0]) {
            return Err(EngineError::InvalidInput(format!(
                "route {:?}: every variant and the shadow must do the same task",
                spec.alias
            )));
        }
        tracing::info!(alias = %spec.alias, variants = ?spec.variants, shadow = ?spec.shadow, "route set");
        self.routes.set(spec);
        Ok(())
    }

    /// Removes a route; `ModelNotFound` (404) when there was none.
    pub fn delete_route(&self, alias: &str) -> Result<(), EngineError> {
        if self.routes.remove(alias) { Ok(()) } else { Err(EngineError::ModelNotFound(alias.to_string())) }
    }

    pub fn routes(&self) -> Vec<RouteSpec> {
        self.routes.list()
    }

    /// Embeds with the variant an alias routes to (`key`: the caller's, for stickiness); a name that is not
    /// an alias is served as it is. The answer names the variant that computed it.
    pub async fn embed_routed(
        &self,
        mut req: EmbedRequest,
        key: Option<&str>,
    ) -> Result<super::EmbedOutput, EngineError> {
        let Some(picked) = self.routes.pick(&req.model, key) else { return self.embed(req).await };
        req.model = picked.model.clone();
        let shadow = picked.shadow.is_some().then(|| req.clone());
        let out = self.embed(req).await?;
        if let Some(req) = shadow {
            self.shadow_embeddings(picked, req, out.vectors.clone());
        }
        Ok(out)
    }

    /// Generates with the variant an alias routes to; see [`Engine::embed_routed`]. For a shadowed request the
    /// events pass through a relay that keeps the answer's tokens, and the candidate runs once it is done.
    pub async fn generate_routed(
        &self,
        mut req: GenerateRequest,
        key: Option<&str>,
    ) -> Result<GenerationStream, EngineError> {
        let Some(picked) = self.routes.pick(&req.model, key) else { return self.generate(req).await };
        req.model = picked.model.clone();
        let shadow = picked.shadow.is_some().then(|| req.clone());
        let mut stream = self.generate(req).await?;
        let (Some(req), Some(engine)) = (shadow, self.me.upgrade()) else { return Ok(stream) };
        let (tx, rx) = mpsc::unbounded_channel();
        let mut events = std::mem::replace(&mut stream.events, rx);
        tokio::spawn(async move {
            let mut tokens = Vec::new();
            while let Some(event) = events.recv().await {
                let (done, failed) =
                    (matches!(event, GenerationEvent::Done { .. }), matches!(event, GenerationEvent::Failed(_)));
                if let GenerationEvent::Token { id, .. } = &event {
                    tokens.push(*id);
                }
                // The client gets every event, the failure too; then no answer to compare, or no client.
                if tx.send(event).is_err() || failed {
                    return;
                }
                if done {
                    break;
                }
            }
            engine.shadow_generation(picked, req, tokens).await;
        });
        Ok(stream)
    }

    /// Runs the candidate on `req`'s inputs off the request path and records its drift from `primary`.
    fn shadow_embeddings(&self, picked: Picked, mut req: EmbedRequest, primary: Vec<Vec<f32>>) {
        let (Some(candidate), Some(engine)) = (picked.shadow.clone(), self.me.upgrade()) else { return };
        req.priority = self.lowest_priority(&candidate);
        req.model = candidate.clone();
        req.timeout = Some(SHADOW_TIMEOUT);
        req.cache = CacheMode::Skip;
        tokio::spawn(async move {
            let started = Instant::now();
            let result = engine.embed(req).await;
            let labels = shadow_labels(&picked, &candidate);
            let vectors = match result {
                Ok(out) => out.vectors,
                Err(e) => return shadow_failed(&labels, &e),
            };
            metrics::histogram!("ferroserve_shadow_seconds", &labels).record(started.elapsed().as_secs_f64());
            for (a, b) in primary.iter().zip(&vectors) {
                metrics::histogram!("ferroserve_shadow_cosine", &labels).record(cosine_f64(a, b));
            }
            metrics::counter!("ferroserve_shadow_requests_total", &with_outcome(&labels, "ok")).increment(1);
        });
    }

    /// Generates `req` with the candidate, as many tokens as the answer had, and records the share of
    /// positions where both chose the same token.
    async fn shadow_generation(&self, picked: Picked, mut req: GenerateRequest, primary: Vec<u32>) {
        let Some(candidate) = picked.shadow.clone() else { return };
        let labels = shadow_labels(&picked, &candidate);
        if primary.is_empty() {
            return;
        }
        req.priority = self.lowest_priority(&candidate);
        req.model = candidate.clone();
        req.max_tokens = Some(primary.len());
        req.timeout = Some(SHADOW_TIMEOUT);
        req.cache = CacheMode::Skip;
        let started = Instant::now();
        let mut stream = match self.generate(req).await {
            Ok(stream) => stream,
            Err(e) => return shadow_failed(&labels, &e),
        };
        let mut tokens = Vec::with_capacity(primary.len());
        let collected = tokio::time::timeout(SHADOW_TIMEOUT, async {
            while let Some(event) = stream.events.recv().await {
                match event {
                    GenerationEvent::Token { id, .. } => tokens.push(id),
                    GenerationEvent::Done { .. } => return Ok(()),
                    GenerationEvent::Failed(e) => return Err(EngineError::from(e)),
                }
            }
            Ok(())
        })
        .await;
        match collected {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return shadow_failed(&labels, &e),
            Err(_) => return shadow_failed(&labels, &EngineError::DeadlineExceeded),
        }
        metrics::histogram!("ferroserve_shadow_seconds", &labels).record(started.elapsed().as_secs_f64());
        metrics::histogram!("ferroserve_shadow_token_agreement", &labels).record(token_agreement(&primary, &tokens));
        metrics::counter!("ferroserve_shadow_requests_total", &with_outcome(&labels, "ok")).increment(1);
    }
}

impl Engine {
    /// The candidate's last priority level: shadow work waits behind every real request.
    fn lowest_priority(&self, model: &str) -> Option<u8> {
        let model = self.ready_model(model).ok()?;
        Some(model.entry.batching.priority_levels.saturating_sub(1))
    }
}

fn shadow_labels(picked: &Picked, candidate: &str) -> [(&'static str, String); 3] {
    [("alias", picked.alias.clone()), ("primary", picked.model.clone()), ("candidate", candidate.to_string())]
}

fn with_outcome(labels: &[(&'static str, String); 3], outcome: &str) -> [(&'static str, String); 4] {
    let [a, b, c] = labels.clone();
    [a, b, c, ("outcome", outcome.to_string())]
}

fn shadow_failed(labels: &[(&'static str, String); 3], e: &EngineError) {
    tracing::debug!(candidate = %labels[2].1, error = %e, "shadow request failed");
    metrics::counter!("ferroserve_shadow_requests_total", &with_outcome(labels, e.kind())).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_measures() {
        assert!((cosine_f64(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!(cosine_f64(&[1.0, 0.0], &[0.0, 2.0]).abs() < 1e-6);
        assert!((cosine_f64(&[3.0, 4.0], &[4.0, 3.0]) - 0.96).abs() < 1e-6);
        assert_eq!(cosine_f64(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
    }
}

//! The live model repository: load a model at run time (a new file in the repository folder, or a changed
//! one: the old version keeps serving until the new one is ready), unload one (requests already running
//! finish on their own reference; new ones are refused). A model that fails to load never takes the server
//! down.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Engine, EngineError, ModelState, load_model, without_paths};
use crate::repository::ModelEntry;

impl Engine {
    /// Loads (or reloads) `name` from the repository folder: the model, or every version its policy serves.
    pub async fn load_model(&self, name: &str) -> Result<(), EngineError> {
        let folder = self
            .repository
            .clone()
            .ok_or_else(|| EngineError::InvalidInput("this server has no model repository folder".into()))?;
        let entries = tokio::task::spawn_blocking(move || crate::repository::read_repository(&folder))
            .await
            .map_err(|e| EngineError::Internal(format!("reading the repository: {e}")))?
            .map_err(|e| {
                tracing::error!(error = %format!("{e:#}"), "the model repository cannot be read");
                EngineError::InvalidInput(without_paths(&format!("the model repository cannot be read: {e:#}")))
            })?;
        let prefix = format!("{name}@");
        let chosen: Vec<ModelEntry> =
            entries.into_iter().filter(|e| e.name() == name || e.name().starts_with(&prefix)).collect();
        if chosen.is_empty() {
            return Err(EngineError::ModelNotFound(format!("{name} (no such model in the repository folder)")));
        }
        for entry in chosen {
            let key = entry.name().to_string();
            self.load_entry(&key, entry).await?;
        }
        Ok(())
    }

    /// Loads one entry (a model or one version of it) under `name`.
    async fn load_entry(&self, name: &str, entry: ModelEntry) -> Result<(), EngineError> {
        let replacing = {
            let mut models = self.write();
            match models.get_mut(name) {
                Some((_, ModelState::Loading)) => {
                    return Err(EngineError::Conflict(format!("model {name:?} is already loading")));
                }
                // The old version keeps serving while the new one loads.
                Some((_, ModelState::Ready(_))) => true,
                Some(slot) => {
                    slot.1 = ModelState::Loading;
                    false
                }
                None => {
                    models.insert(name.to_string(), (entry.clone(), ModelState::Loading));
                    false
                }
            }
        };
        if let Err(e) = self.make_room(name, &entry) {
            if !replacing {
                self.write().remove(name);
            }
            return Err(e);
        }
        let started = Instant::now();
        let budget = self.budget.clone();
        let loading = entry.clone();
        let loaded = tokio::task::spawn_blocking(move || load_model(loading, &budget)).await;
        let result = match loaded {
            Ok(Ok(model)) => {
                tracing::info!(model = %name, secs = started.elapsed().as_secs_f32(), replacing, "model loaded");
                self.write().insert(name.to_string(), (entry, ModelState::Ready(Arc::new(model))));
                Ok(())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("loader panicked: {e}")),
        };
        metrics::counter!("ferroserve_model_loads_total", "outcome" => if result.is_ok() { "ok" } else { "error" })
            .increment(1);
        result.map_err(|reason| {
            tracing::error!(model = %name, error = %reason, "model failed to load");
            if !replacing {
                // It never served: drop it again, so a failed load leaves the server ready.
                self.write().remove(name);
            }
            EngineError::InvalidInput(without_paths(&format!("model {name:?} failed to load: {reason}")))
        })
    }

    /// Unloads the least recently used models until `entry`'s weights fit `max_loaded_mb` beside the others.
    fn make_room(&self, name: &str, entry: &ModelEntry) -> Result<(), EngineError> {
        let limit = self.limits.max_loaded_mb * 1024 * 1024;
        if limit == 0 {
            return Ok(());
        }
        let need = std::fs::metadata(entry.model.weights_path()).map_or(0, |m| m.len());
        loop {
            let loaded: Vec<(String, u64, u64)> = self
                .read()
                .iter()
                .filter(|(n, _)| n.as_str() != name)
                .filter_map(|(n, (_, state))| match state {
                    ModelState::Ready(m) => Some((n.clone(), m.bytes, m.last_used.load(Ordering::Relaxed))),
                    _ => None,
                })
                .collect();
            let total: u64 = loaded.iter().map(|(_, bytes, _)| bytes).sum();
            if total + need <= limit {
                return Ok(());
            }
            let Some((victim, bytes, _)) = loaded.into_iter().min_by_key(|(_, _, used)| *used) else {
                return Err(EngineError::InvalidInput(format!(
                    "model {name:?} has {} MiB of weights; max_loaded_mb is {}",
                    need >> 20,
                    self.limits.max_loaded_mb
                )));
            };
            tracing::info!(model = %victim, mib = bytes >> 20, for_model = %name, "unloading the least recently used model to make room");
            metrics::counter!("ferroserve_model_evictions_total").increment(1);
            self.unload_model(&victim)?;
        }
    }

    /// Every `every`, reloads the loaded models whose config or weight file changed.
    pub(super) async fn poll_repository(&self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(folder) = self.repository.clone() else { return };
            let Ok(Ok(entries)) =
                tokio::task::spawn_blocking(move || crate::repository::read_repository(&folder)).await
            else {
                continue;
            };
            for entry in entries {
                let changed = match self.read().get(entry.name()) {
                    Some((_, ModelState::Ready(m))) => m.fingerprint != super::fingerprint(&entry),
                    _ => false,
                };
                if changed {
                    tracing::info!(model = %entry.name(), "model files changed: reloading");
                    if let Err(e) = self.load_model(entry.name()).await {
                        tracing::error!(model = %entry.name(), error = %e, "reload failed; the loaded version keeps serving");
                    }
                }
            }
        }
    }

    /// Unloads `name` (every version of it): no new requests; those running finish.
    pub fn unload_model(&self, name: &str) -> Result<(), EngineError> {
        let mut models = self.write();
        let prefix = format!("{name}@");
        let keys: Vec<String> =
            models.keys().filter(|k| k.as_str() == name || k.starts_with(&prefix)).cloned().collect();
        if keys.is_empty() {
            return Err(EngineError::ModelNotFound(name.to_string()));
        }
        for key in keys {
            let Some((_, state)) = models.get_mut(&key) else { continue };
            if matches!(state, ModelState::Loading) {
                return Err(EngineError::Conflict(format!("model {key:?} is loading; unload it once it is ready")));
            }
            *state = ModelState::Unloaded;
            tracing::info!(model = %key, "model unloaded");
        }
        Ok(())
    }
}

/// A model of the repository as the index lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    pub name: String,
    /// `READY`, `LOADING` or `UNAVAILABLE` (Triton's states).
    pub state: &'static str,
    /// Why it is unavailable: `unloaded`, `not loaded`, or the load error.
    pub reason: String,
}

impl Engine {
    /// Every model this server has, and every model file of the repository folder it has not loaded.
    pub fn repository_index(&self) -> Vec<IndexEntry> {
        let mut index: Vec<IndexEntry> = self
            .list_models()
            .into_iter()
            .map(|m| IndexEntry {
                name: m.name,
                state: match m.state {
                    "ready" => "READY",
                    "loading" => "LOADING",
                    _ => "UNAVAILABLE",
                },
                reason: match m.state {
                    "unloaded" => "unloaded".to_string(),
                    _ => m.error.unwrap_or_default(),
                },
            })
            .collect();
        let on_disk = self.repository.as_deref().and_then(|f| crate::repository::read_repository(f).ok());
        for entry in on_disk.unwrap_or_default() {
            if !index.iter().any(|i| i.name == entry.name()) {
                index.push(IndexEntry {
                    name: entry.name().to_string(),
                    state: "UNAVAILABLE",
                    reason: "not loaded".into(),
                });
            }
        }
        index.sort_by(|a, b| a.name.cmp(&b.name));
        index
    }
}

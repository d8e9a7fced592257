//! The live model repository: load a model at run time (a new file in the repository folder, or a changed
//! one: the old version keeps serving until the new one is ready), unload one (requests already running
//! finish on their own reference; new ones are refused). A model that fails to load never takes the server
//! down.

use std::sync::Arc;
use std::time::Instant;

use super::{Engine, EngineError, ModelState, load_model};
use crate::repository::ModelEntry;

impl Engine {
    /// Loads (or reloads) `name` from the repository folder.
    pub async fn load_model(&self, name: &str) -> Result<(), EngineError> {
        let folder = self
            .repository
            .clone()
            .ok_or_else(|| EngineError::InvalidInput("this server has no model repository folder".into()))?;
        let entries = tokio::task::spawn_blocking(move || crate::repository::read_repository(&folder))
            .await
            .map_err(|e| EngineError::Internal(format!("reading the repository: {e}")))?
            .map_err(|e| EngineError::InvalidInput(format!("the model repository cannot be read: {e}")))?;
        let entry: ModelEntry = entries
            .into_iter()
            .find(|e| e.name() == name)
            .ok_or_else(|| EngineError::ModelNotFound(format!("{name} (no such model in the repository folder)")))?;
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
            EngineError::InvalidInput(format!("model {name:?} failed to load: {reason}"))
        })
    }

    /// Unloads `name`: no new requests; those running finish.
    pub fn unload_model(&self, name: &str) -> Result<(), EngineError> {
        let mut models = self.write();
        let (_, state) = models.get_mut(name).ok_or_else(|| EngineError::ModelNotFound(name.to_string()))?;
        if matches!(state, ModelState::Loading) {
            return Err(EngineError::Conflict(format!("model {name:?} is loading; unload it once it is ready")));
        }
        *state = ModelState::Unloaded;
        tracing::info!(model = %name, "model unloaded");
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

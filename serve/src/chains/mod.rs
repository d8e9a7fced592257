//! Chains: named lists of steps (prompt, embed, retrieve, generate, parse, assign, passthrough) that run inside
//! the server and are served with LangServe's contract. Definitions are TOML files in the chains folder
//! (re-read when they change) or registered through the API (written there as files, so they persist).
//! A bad file is refused with its name and reason; the others still serve.
//!
//! This layer knows definitions, templates and step order; the effects (retrieval, embedding, generation)
//! come from the engine through [`run::Effects`].

pub mod definition;
pub mod run;
pub mod schema;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

pub use definition::{Chain, ChainDef};

/// What goes wrong with chains themselves (definitions, inputs, templates, parsing).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChainError {
    /// A definition is wrong.
    #[error("{0}")]
    Invalid(String),
    #[error("chain {0:?} not found; GET /chains lists the chains")]
    NotFound(String),
    /// The input or a value the chain was given is wrong (a 4xx).
    #[error("{0}")]
    BadInput(String),
    /// A step could not use what it got (a model's output that does not parse).
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Storage(String),
}

impl ChainError {
    /// The same error, naming the step it happened in.
    pub fn in_step(self, step: &str) -> Self {
        let name = |m: String| format!("step {step:?}: {m}");
        match self {
            ChainError::BadInput(m) => ChainError::BadInput(name(m)),
            ChainError::Failed(m) => ChainError::Failed(name(m)),
            other => other,
        }
    }
}

/// A failed run: the chain's own error, or an effect's (retrieval, embedding, generation) in a step.
#[derive(Debug)]
pub enum RunError<E> {
    Chain(ChainError),
    Step { step: String, error: E },
}

impl<E> From<ChainError> for RunError<E> {
    fn from(e: ChainError) -> Self {
        RunError::Chain(e)
    }
}

/// The chains folder and the chains loaded from it.
pub struct Chains {
    folder: Option<PathBuf>,
    loaded: RwLock<Loaded>,
}

#[derive(Default)]
struct Loaded {
    chains: BTreeMap<String, Arc<Chain>>,
    /// Modification time of each file as last read, to notice changes.
    seen: BTreeMap<PathBuf, Option<SystemTime>>,
}

impl Chains {
    /// No chains yet; [`Chains::reload`] reads `folder` (`*.toml`, the file stem is the name).
    pub fn new(folder: Option<PathBuf>) -> Self {
        Chains { folder, loaded: RwLock::new(Loaded::default()) }
    }

    pub fn folder(&self) -> Option<&Path> {
        self.folder.as_deref()
    }

    /// Re-reads the folder if any file changed, appeared or went; `check` refuses what the caller cannot
    /// serve (unknown models or collections). Returns the files refused, with their reasons.
    pub fn reload(&self, check: &dyn Fn(&Chain) -> Result<(), String>) -> Vec<String> {
        let Some(folder) = &self.folder else { return Vec::new() };
        let files = toml_files(folder);
        let current: BTreeMap<PathBuf, Option<SystemTime>> =
            files.iter().map(|p| (p.clone(), std::fs::metadata(p).and_then(|m| m.modified()).ok())).collect();
        if current == self.read().seen {
            return Vec::new();
        }
        let mut chains = BTreeMap::new();
        let mut refused = Vec::new();
        for path in &files {
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let loaded = std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|text| Chain::from_toml(&name, &text).map_err(|e| e.to_string()))
                .and_then(|chain| check(&chain).map(|()| chain));
            match loaded {
                Ok(chain) => {
                    chains.insert(name, Arc::new(chain));
                }
                Err(e) => refused.push(format!("{}: {e}", path.display())),
            }
        }
        for r in &refused {
            tracing::error!(refused = %r, "chain not loaded");
        }
        tracing::info!(chains = chains.len(), refused = refused.len(), folder = %folder.display(), "chains loaded");
        *self.write() = Loaded { chains, seen: current };
        refused
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        self.loaded.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Loaded> {
        self.loaded.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, name: &str) -> Result<Arc<Chain>, ChainError> {
        self.read().chains.get(name).cloned().ok_or_else(|| ChainError::NotFound(name.to_string()))
    }

    pub fn names(&self) -> Vec<String> {
        self.read().chains.keys().cloned().collect()
    }

    /// Registers (or replaces) a checked chain and writes it to the folder (atomically), so it persists.
    pub fn put(&self, chain: Chain) -> Result<(), ChainError> {
        if let Some(folder) = &self.folder {
            let text = toml::to_string_pretty(&chain.def).map_err(|e| ChainError::Storage(e.to_string()))?;
            std::fs::create_dir_all(folder).map_err(|e| ChainError::Storage(e.to_string()))?;
            let path = folder.join(format!("{}.toml", chain.name));
            let partial = folder.join(format!(".{}.toml.partial", chain.name));
            std::fs::write(&partial, text)
                .and_then(|()| std::fs::File::open(&partial)?.sync_all())
                .and_then(|()| std::fs::rename(&partial, &path))
                .map_err(|e| ChainError::Storage(format!("{}: {e}", path.display())))?;
            let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            self.write().seen.insert(path, modified);
        }
        self.write().chains.insert(chain.name.clone(), Arc::new(chain));
        Ok(())
    }

    /// Removes a chain (and its file); whether it existed.
    pub fn delete(&self, name: &str) -> Result<bool, ChainError> {
        if let Some(folder) = &self.folder {
            let path = folder.join(format!("{name}.toml"));
            if path.exists() {
                std::fs::remove_file(&path).map_err(|e| ChainError::Storage(format!("{}: {e}", path.display())))?;
            }
            self.write().seen.remove(&path);
        }
        Ok(self.write().chains.remove(name).is_some())
    }
}

fn toml_files(folder: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect())
        .unwrap_or_default();
    files.sort();
    files
}

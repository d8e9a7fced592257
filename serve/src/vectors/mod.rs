//! Vector collections: points (an id, a vector, a JSON payload) searched by similarity with HNSW, filtered
//! by payload, written durably (write-ahead log with group commit, snapshots), and reachable through the
//! Qdrant API. Texts become vectors through the engine (a collection may name an embedding model); this
//! module only sees vectors.
//!
//! `point` (ids, payloads), `filter` (Qdrant's filter language), `distance` (SIMD kernels and scores),
//! `hnsw` (the graph), `index` (the graph of a collection, by slot), `collection` (one collection in memory:
//! writes, search planning, tombstones and rebuilds), `codec` (operations as bytes), `wal` (the log),
//! `storage` (one collection on disk), `qdrant_proto` (Qdrant's protobuf forms of payloads, ids and
//! filters), and
//! [`Collections`] (all of them, by name).

mod codec;
mod collection;
mod distance;
mod filter;
mod hnsw;
mod index;
mod point;
pub mod qdrant_proto;
mod quantize;
mod storage;
mod vector_file;
mod wal;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use serde::Deserialize;

pub use codec::Op;
pub use collection::{Collection, CollectionConfig, Counts, HnswParams, PointInput, Record, Scored, Search};
pub use distance::{Distance, cosine_f64};
pub use filter::{Condition, Filter, Key, MatchRule, Range};
pub use index::{GraphParams, Index};
pub use point::{Payload, PayloadSelector, PointId};
pub use quantize::{QuantizationSearch, ScalarQuantization};
pub use storage::StoredCollection;
pub use wal::Durability;

/// Errors of the vectors layer; the engine turns them into its own with `From`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VectorError {
    #[error("collection {0:?} does not exist")]
    NotFound(String),
    #[error("collection {0:?} already exists")]
    AlreadyExists(String),
    /// The request is wrong (a vector of the wrong size, a bad filter, ...).
    #[error("{0}")]
    Invalid(String),
    /// The disk failed us.
    #[error("storage: {0}")]
    Storage(String),
}

/// Where and how collections are kept (`[vectors]` of the server config).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VectorsConfig {
    /// Folder of the collections (one sub-folder each); relative paths are taken from the working folder.
    pub path: PathBuf,
    /// When an acknowledged write is on disk.
    pub durability: Durability,
    /// Write a snapshot and empty the log once the log passes this many MiB; 0: only when asked.
    pub snapshot_wal_mb: u64,
    /// Most bytes of JSON payload per point.
    pub max_payload_bytes: usize,
    /// Collections to fill from files when they do not exist yet (`[[vectors.seed]]`).
    pub seed: Vec<SeedConfig>,
}

/// A collection filled from a JSON-lines file on first start: each line `{"id", "text", ...}`; the text is
/// embedded by `embedding_model` and kept in the payload with the other fields.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedConfig {
    pub collection: String,
    pub file: PathBuf,
    pub embedding_model: String,
}

impl Default for VectorsConfig {
    fn default() -> Self {
        VectorsConfig {
            path: PathBuf::from("data/collections"),
            durability: Durability::Fsync,
            snapshot_wal_mb: 64,
            max_payload_bytes: 64 * 1024,
            seed: Vec::new(),
        }
    }
}

/// Every collection, by name.
pub struct Collections {
    config: VectorsConfig,
    map: RwLock<BTreeMap<String, Arc<StoredCollection>>>,
    /// Serializes creation and deletion (folder renames).
    admin: tokio::sync::Mutex<()>,
}

impl Collections {
    /// Opens every collection under `config.path` (creating the folder), replaying their logs.
    pub fn open(config: VectorsConfig) -> Result<Self, VectorError> {
        let root = &config.path;
        std::fs::create_dir_all(root).map_err(|e| VectorError::Storage(format!("{}: {e}", root.display())))?;
        let mut map = BTreeMap::new();
        let entries = std::fs::read_dir(root).map_err(|e| VectorError::Storage(format!("{}: {e}", root.display())))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".creating") || name.contains(".deleted") {
                // Left by a crash in the middle of creating or deleting: it never was, or no longer is.
                let _ = std::fs::remove_dir_all(&path);
                continue;
            }
            if !path.join("config.json").exists() {
                continue;
            }
            let started = std::time::Instant::now();
            let stored = StoredCollection::open(&path, config.durability, config.snapshot_wal_mb)?;
            tracing::info!(collection = %name, points = stored.collection.counts().points,
                           secs = started.elapsed().as_secs_f32(), "collection loaded");
            map.insert(name, Arc::new(stored));
        }
        Ok(Collections { config, map: RwLock::new(map), admin: tokio::sync::Mutex::new(()) })
    }

    pub fn config(&self) -> &VectorsConfig {
        &self.config
    }

    pub fn get(&self, name: &str) -> Result<Arc<StoredCollection>, VectorError> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| VectorError::NotFound(name.into()))
    }

    pub fn names(&self) -> Vec<String> {
        self.map.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }

    /// Creates a collection; its name must be new and safe as a folder name.
    pub async fn create(&self, name: &str, config: CollectionConfig) -> Result<Arc<StoredCollection>, VectorError> {
        check_name(name)?;
        if config.size == 0 || config.size > 65_536 {
            return Err(VectorError::Invalid(format!("vector size must be between 1 and 65536, got {}", config.size)));
        }
        if config.hnsw.m < 2 || config.hnsw.ef_construct == 0 {
            return Err(VectorError::Invalid("hnsw m must be at least 2 and ef_construct at least 1".into()));
        }
        let _admin = self.admin.lock().await;
        if self.get(name).is_ok() {
            return Err(VectorError::AlreadyExists(name.into()));
        }
        let (root, durability, snapshot) =
            (self.config.path.clone(), self.config.durability, self.config.snapshot_wal_mb);
        let owned = name.to_string();
        let stored =
            tokio::task::spawn_blocking(move || StoredCollection::create(&root, &owned, config, durability, snapshot))
                .await
                .map_err(|e| VectorError::Storage(e.to_string()))??;
        let stored = Arc::new(stored);
        self.map.write().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), stored.clone());
        Ok(stored)
    }

    /// Deletes a collection and its files; `false` when there was none.
    pub async fn delete(&self, name: &str) -> Result<bool, VectorError> {
        let _admin = self.admin.lock().await;
        let Some(stored) = self.map.write().unwrap_or_else(|p| p.into_inner()).remove(name) else { return Ok(false) };
        let dir = stored.dir().to_path_buf();
        drop(stored);
        let gone = dir.with_file_name(format!("{name}.deleted"));
        std::fs::rename(&dir, &gone).map_err(|e| VectorError::Storage(e.to_string()))?;
        let _ = storage::sync_dir(&self.config.path);
        let _ = std::fs::remove_dir_all(&gone);
        Ok(true)
    }
}

/// Collection names become folder names: letters, digits, `-`, `_` and `.` (not first), at most 255 bytes.
fn check_name(name: &str) -> Result<(), VectorError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.ends_with(".creating")
        && !name.contains(".deleted")
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(VectorError::Invalid(format!(
            "collection name {name:?} is not allowed: use letters, digits, '-', '_' and '.', not first, at most 255 bytes"
        )))
    }
}

#[cfg(test)]
mod tests;

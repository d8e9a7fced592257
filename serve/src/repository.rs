//! The model repository: a folder with one `<name>.toml` per model. The file's top-level keys are the
//! model itself (read by the model layer, [`ModelConfig`]); its tables are how this server serves it:
//! `[batching]` and `[[lanes]]` (embedding models), `[generation]` and `[semantic_cache]` (generation
//! models).

use std::path::Path;

use ferroserve_models::config::{read_toml, split_tables};
use ferroserve_models::{DeviceSpec, ModelConfig, ModelError, Task};
use serde::Deserialize;

use crate::batching::{BatchingConfig, LaneConfig};
use crate::cache::SemanticCacheConfig;
use crate::generation::GenerationConfig;

/// One model of the repository: the model and its serving settings.
#[derive(Debug, Clone)]
pub struct ModelEntry {
    pub model: ModelConfig,
    pub batching: BatchingConfig,
    pub lanes: Vec<LaneConfig>,
    pub generation: GenerationConfig,
    pub semantic_cache: Option<SemanticCacheConfig>,
    /// The version this entry serves, for models with numbered version folders (its name is `name@version`).
    pub version: Option<u64>,
    pub version_policy: Option<VersionPolicy>,
}

/// Which versions of a model are served, when its `path` holds numbered version folders (`1/`, `2/`, ...),
/// as Triton's `version_policy`: the newest `num_versions`, all, or the ones listed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum VersionPolicy {
    Latest { num_versions: usize },
    All {},
    Specific { versions: Vec<u64> },
}

/// The tables of a model file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Serving {
    #[serde(default)]
    batching: BatchingConfig,
    #[serde(default = "default_lanes")]
    lanes: Vec<LaneConfig>,
    #[serde(default)]
    generation: GenerationConfig,
    #[serde(default)]
    semantic_cache: Option<SemanticCacheConfig>,
    #[serde(default)]
    version_policy: Option<VersionPolicy>,
}

fn default_lanes() -> Vec<LaneConfig> {
    vec![LaneConfig::cpu()]
}

impl ModelEntry {
    /// Reads one model file; unknown keys and tables are errors naming the file.
    pub fn from_file(file: &Path) -> Result<Self, ModelError> {
        let (keys, tables) = split_tables(read_toml(file)?);
        let model = ModelConfig::from_keys(keys, file)?;
        let serving: Serving = toml::Value::Table(tables)
            .try_into()
            .map_err(|e: toml::de::Error| ModelError::Config { path: file.into(), message: e.message().into() })?;
        let entry = ModelEntry {
            model,
            batching: serving.batching,
            lanes: serving.lanes,
            generation: serving.generation,
            semantic_cache: serving.semantic_cache,
            version: None,
            version_policy: serving.version_policy,
        };
        entry.validate().map_err(|message| ModelError::Config { path: file.into(), message })?;
        Ok(entry)
    }

    pub fn name(&self) -> &str {
        &self.model.name
    }

    /// One entry per served version (`name@version`, its files in `path/version/`), or itself when the model
    /// has no version policy.
    pub fn versions(self, file: &Path) -> Result<Vec<ModelEntry>, ModelError> {
        let Some(policy) = self.version_policy.clone() else { return Ok(vec![self]) };
        let bad = |message: String| ModelError::Config { path: file.into(), message };
        let mut found: Vec<u64> = std::fs::read_dir(&self.model.path)
            .map_err(|e| bad(format!("{}: {e}", self.model.path.display())))?
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        found.sort_unstable();
        let chosen: Vec<u64> = match &policy {
            VersionPolicy::Latest { num_versions } => {
                found.iter().rev().take((*num_versions).max(1)).copied().collect()
            }
            VersionPolicy::All {} => found.clone(),
            VersionPolicy::Specific { versions } => {
                if let Some(v) = versions.iter().find(|v| !found.contains(v)) {
                    return Err(bad(format!("version {v} has no folder in {}", self.model.path.display())));
                }
                versions.clone()
            }
        };
        if chosen.is_empty() {
            return Err(bad(format!("no numbered version folders in {}", self.model.path.display())));
        }
        Ok(chosen
            .into_iter()
            .map(|v| {
                let mut entry = self.clone();
                entry.model.name = format!("{}@{v}", self.model.name);
                entry.model.path = self.model.path.join(v.to_string());
                entry.version = Some(v);
                entry
            })
            .collect())
    }

    fn validate(&self) -> Result<(), String> {
        let b = &self.batching;
        if b.max_batch_size == 0 || b.max_queue_size == 0 || b.max_batch_tokens == 0 {
            return Err("batching.max_batch_size, max_batch_tokens and max_queue_size must be at least 1".into());
        }
        if b.priority_levels == 0 || b.default_priority >= b.priority_levels {
            return Err(format!(
                "batching.default_priority ({}) must be below batching.priority_levels ({})",
                b.default_priority, b.priority_levels
            ));
        }
        if self.lanes.is_empty() {
            return Err("at least one lane is needed".into());
        }
        if self
            .lanes
            .iter()
            .any(|l| l.threads == Some(0) || l.max_batch_size == Some(0) || l.max_batch_tokens == Some(0))
        {
            return Err("lane threads, max_batch_size and max_batch_tokens must be at least 1".into());
        }
        let g = &self.generation;
        if g.max_num_seqs == 0 || g.max_batch_tokens == 0 || g.max_context_tokens == 0 || g.kv_cache_mb == 0 {
            return Err(
                "generation.max_num_seqs, max_batch_tokens, max_context_tokens and kv_cache_mb must be at least 1"
                    .into(),
            );
        }
        if g.max_batch_tokens < g.max_num_seqs {
            return Err(format!(
                "generation.max_batch_tokens ({}) must be at least max_num_seqs ({}): every running sequence \
                 needs one token per step",
                g.max_batch_tokens, g.max_num_seqs
            ));
        }
        if g.default_max_tokens == 0 {
            return Err("generation.default_max_tokens must be at least 1".into());
        }
        let generation = self.model.task == Task::Generation;
        if generation && self.lanes.iter().any(|l| l.device != DeviceSpec::Cpu) {
            return Err("generation models run on one CPU lane for now".into());
        }
        if let Some(s) = &self.semantic_cache {
            if !generation {
                return Err("semantic_cache is for generation models".into());
            }
            if !(s.threshold > 0.0 && s.threshold <= 1.0) {
                return Err(format!("semantic_cache.threshold must be in (0, 1], got {}", s.threshold));
            }
            if s.max_entries == 0 {
                return Err("semantic_cache.max_entries must be at least 1".into());
            }
        }
        Ok(())
    }
}

/// Reads every `*.toml` in `dir`, sorted by file name. Duplicate model names, and a semantic cache whose
/// embedding model is not in the repository, are errors.
pub fn read_repository(dir: &Path) -> Result<Vec<ModelEntry>, ModelError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ModelError::Io { path: dir.into(), source: e })?;
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut models: Vec<ModelEntry> = Vec::with_capacity(files.len());
    for file in files {
        for entry in ModelEntry::from_file(&file)?.versions(&file)? {
            if models.iter().any(|m| m.name() == entry.name()) {
                return Err(ModelError::Config {
                    path: file,
                    message: format!("model name {:?} is used twice", entry.name()),
                });
            }
            models.push(entry);
        }
    }
    for entry in &models {
        if let Some(semantic) = &entry.semantic_cache
            && !models.iter().any(|m| m.name() == semantic.embedding_model && m.model.task == Task::Embedding)
        {
            return Err(ModelError::Config {
                path: dir.into(),
                message: format!(
                    "model {:?}: semantic_cache.embedding_model {:?} is not an embedding model of this repository",
                    entry.name(),
                    semantic.embedding_model
                ),
            });
        }
    }
    Ok(models)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_configs_and_resolves_paths() {
        let dir = std::env::temp_dir().join(format!("ferroserve-repo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("a.toml"),
            "name = \"a\"\ntask = \"embedding\"\nbackend = \"candle\"\npath = \"ckpt\"\n[batching]\nmax_batch_size = 4\n",
        )
        .unwrap();
        std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
        let models = read_repository(&dir).unwrap();
        assert_eq!(models.len(), 1);
        assert_eq!(models[0].model.path, dir.join("ckpt"));
        assert_eq!(models[0].batching.max_batch_size, 4);
        assert_eq!(models[0].batching.max_queue_size, 1024);
        assert_eq!(models[0].lanes.len(), 1);
        // The model layer reads the same file without the serving tables.
        assert_eq!(ModelConfig::from_file(&dir.join("a.toml")).unwrap().name, "a");

        std::fs::write(dir.join("b.toml"), "name = \"a\"\ntask = \"embedding\"\nbackend = \"candle\"\npath = \"x\"\n")
            .unwrap();
        let err = read_repository(&dir).unwrap_err().to_string();
        assert!(err.contains("used twice"), "{err}");

        for (bad, says) in [
            ("bogus = 1\n", "bogus"),
            ("[bogus]\nx = 1\n", "bogus"),
            ("[batching]\nmax_batch_sise = 4\n", "max_batch_sise"),
            ("[semantic_cache]\nembedding_model = \"a\"\n", "for generation models"),
            ("[batching]\ndefault_priority = 3\n", "default_priority"),
        ] {
            std::fs::write(
                dir.join("b.toml"),
                format!("name = \"b\"\ntask = \"embedding\"\nbackend = \"candle\"\npath = \"x\"\n{bad}"),
            )
            .unwrap();
            let err = read_repository(&dir).unwrap_err().to_string();
            assert!(err.contains(says) && err.contains("b.toml"), "{bad}: {err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parses_devices() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("cuda:1".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(1));
        assert!("gpu".parse::<DeviceSpec>().is_err());
    }
}

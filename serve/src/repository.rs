//! The model repository: a folder with one `<name>.toml` per model. The file's top-level keys are the
//! model itself (read by the model layer, [`ModelConfig`]); its tables are how this server serves it:
//! `[batching]` and `[[lanes]]` (embedding models), `[generation]` and `[semantic_cache]` (generation
//! models).

use std::path::Path;

use ferroserve_models::config::{read_toml, split_tables};
use ferroserve_models::{Backend, DeviceSpec, ModelConfig, ModelError, Task};
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
        let mut serving: Serving = toml::Value::Table(tables)
            .try_into()
            .map_err(|e: toml::de::Error| ModelError::Config { path: file.into(), message: e.message().into() })?;
        // A lane's own files are relative to the model file, as the model's are.
        let base = file.parent().unwrap_or(Path::new("."));
        for lane in &mut serving.lanes {
            lane.path = lane.path.as_ref().map(|p| base.join(p));
        }
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

    /// The backends the lanes run, each once, in lane order, joined by `+`.
    pub fn backends(&self) -> String {
        let mut names: Vec<&'static str> = Vec::new();
        for lane in &self.lanes {
            let name = lane.backend.unwrap_or(self.model.backend).as_str();
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names.join("+")
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
        if self.model.task != Task::Embedding && self.lanes.iter().any(LaneConfig::overrides_model) {
            return Err("only embedding models take a backend, path or weights per lane".into());
        }
        if self.lanes.iter().any(|l| {
            l.backend.unwrap_or(self.model.backend) == Backend::Onnx
                && l.overrides_model()
                && l.device != DeviceSpec::Cpu
        }) {
            return Err("an ONNX lane runs on the CPU (device = \"cpu\")".into());
        }
        if self.lanes.iter().any(|l| l.weight.is_some_and(|w| !(w.is_finite() && w > 0.0))) {
            return Err("a lane's weight must be a positive number".into());
        }
        if self.lanes.iter().any(|l| l.min_cosine.is_some_and(|c| !(-1.0..=1.0).contains(&c))) {
            return Err("a lane's min_cosine must be between -1 and 1".into());
        }
        let generation = self.model.task == Task::Generation;
        if generation && self.lanes.len() > 1 {
            return Err("a generation model runs on one lane (device = \"cpu\" or \"cuda:N\"): its scheduler \
                        batches every running sequence into one step"
                .into());
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
    fn lanes_may_run_other_files_of_an_embedding_model() {
        let dir = std::env::temp_dir().join(format!("ferroserve-repo-lanes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let model = "name = \"m\"\ntask = \"embedding\"\nbackend = \"candle\"\npath = \"ckpt\"\n";
        let file = dir.join("m.toml");
        std::fs::write(
            &file,
            format!("{model}[[lanes]]\ndevice = \"cpu\"\nbackend = \"onnx\"\npath = \"onnx\"\nmin_cosine = 0.99\n[[lanes]]\ndevice = \"cpu\"\n"),
        )
        .unwrap();
        let entry = ModelEntry::from_file(&file).unwrap();
        assert_eq!(entry.lanes[0].path, Some(dir.join("onnx")), "relative to the model file");
        let onnx = entry.lanes[0].model_config(&entry.model);
        assert_eq!(
            (onnx.backend, onnx.path.clone(), onnx.weights_path()),
            (Backend::Onnx, dir.join("onnx"), dir.join("onnx/model.onnx"))
        );
        assert_eq!(
            entry.lanes[1].model_config(&entry.model).path,
            dir.join("ckpt"),
            "a plain lane runs the model's files"
        );
        assert_eq!(entry.backends(), "onnx+candle");
        for (bad, says) in [
            (format!("{model}[[lanes]]\ndevice = \"cuda:0\"\nbackend = \"onnx\"\npath = \"onnx\"\n"), "runs on the CPU"),
            (format!("{model}[[lanes]]\ndevice = \"cpu\"\npath = \"x\"\nmin_cosine = 2.0\n"), "min_cosine"),
            (format!("{model}[[lanes]]\ndevice = \"cpu\"\nweight = 0\n"), "weight must be a positive number"),
            (
                "name = \"g\"\ntask = \"generation\"\nbackend = \"candle\"\npath = \"x\"\n[[lanes]]\ndevice = \"cpu\"\nweights = \"y.gguf\"\n".into(),
                "only embedding models",
            ),
            (
                "name = \"g\"\ntask = \"generation\"\nbackend = \"candle\"\npath = \"x\"\n[[lanes]]\ndevice = \"cpu\"\n[[lanes]]\ndevice = \"cuda:0\"\n".into(),
                "runs on one lane",
            ),
        ] {
            std::fs::write(&file, bad).unwrap();
            let err = ModelEntry::from_file(&file).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

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

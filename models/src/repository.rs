//! The model repository: a folder with one `<name>.toml` config per model.

use std::path::Path;

use crate::config::{ModelConfig, Task};
use crate::error::ModelError;

/// Reads every `*.toml` in `dir`, sorted by file name. Duplicate model names, and a semantic cache whose
/// embedding model is not in the repository, are errors.
pub fn read_repository(dir: &Path) -> Result<Vec<ModelConfig>, ModelError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ModelError::io(dir, e))?;
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut configs: Vec<ModelConfig> = Vec::with_capacity(files.len());
    for file in files {
        let config = ModelConfig::from_file(&file)?;
        if configs.iter().any(|c| c.name == config.name) {
            return Err(ModelError::config(&file, format!("model name {:?} is used twice", config.name)));
        }
        configs.push(config);
    }
    for config in &configs {
        if let Some(semantic) = &config.semantic_cache
            && !configs.iter().any(|c| c.name == semantic.embedding_model && c.task == Task::Embedding)
        {
            return Err(ModelError::config(
                dir,
                format!(
                    "model {:?}: semantic_cache.embedding_model {:?} is not an embedding model of this repository",
                    config.name, semantic.embedding_model
                ),
            ));
        }
    }
    Ok(configs)
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
        let configs = read_repository(&dir).unwrap();
        assert_eq!(configs.len(), 1);
        assert_eq!(configs[0].path, dir.join("ckpt"));
        assert_eq!(configs[0].batching.max_batch_size, 4);
        assert_eq!(configs[0].batching.max_queue_size, 1024);

        std::fs::write(dir.join("b.toml"), "name = \"a\"\ntask = \"embedding\"\nbackend = \"candle\"\npath = \"x\"\n")
            .unwrap();
        let err = read_repository(&dir).unwrap_err().to_string();
        assert!(err.contains("used twice"), "{err}");

        std::fs::write(
            dir.join("b.toml"),
            "name = \"b\"\ntask = \"embedding\"\nbackend = \"candle\"\npath = \"x\"\nbogus = 1\n",
        )
        .unwrap();
        let err = read_repository(&dir).unwrap_err().to_string();
        assert!(err.contains("bogus"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parses_devices() {
        assert_eq!("cpu".parse::<crate::DeviceSpec>().unwrap(), crate::DeviceSpec::Cpu);
        assert_eq!("cuda:1".parse::<crate::DeviceSpec>().unwrap(), crate::DeviceSpec::Cuda(1));
        assert!("gpu".parse::<crate::DeviceSpec>().is_err());
    }
}

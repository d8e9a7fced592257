//! Reading a checkpoint folder: the Hugging Face `config.json` and the sentence-transformers files beside
//! it (`sentence_bert_config.json`, `modules.json`, `1_Pooling/config.json`). Every file a backend or the
//! loader reads from a checkpoint is read here.

use std::path::Path;

use serde::Deserialize;

use crate::error::ModelError;
use crate::pooling::Pooling;

/// Reads and parses a JSON file, naming the file in errors.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::config(path, e.to_string()))
}

/// What an encoder checkpoint says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Width of the hidden states (the embedding size).
    pub hidden_size: usize,
    /// Most positions the model has.
    pub max_position_embeddings: usize,
    /// Id padding fills batches with.
    pub pad_token_id: u32,
    /// `max_seq_length` of `sentence_bert_config.json`, when present.
    pub max_seq_length: Option<usize>,
    /// Pooling of `1_Pooling/config.json`, when present.
    pub pooling: Option<Pooling>,
    /// True when the sentence-transformers pipeline (`modules.json`) ends in a Normalize module.
    pub normalizes: bool,
}

#[derive(Deserialize)]
struct HfConfig {
    hidden_size: usize,
    max_position_embeddings: usize,
    #[serde(default)]
    pad_token_id: u32,
}

impl Checkpoint {
    /// Reads the checkpoint folder `dir`; absent sentence-transformers files leave their fields unset.
    pub fn read(dir: &Path) -> Result<Self, ModelError> {
        let hf: HfConfig = read_json(&dir.join("config.json"))?;
        Ok(Checkpoint {
            hidden_size: hf.hidden_size,
            max_position_embeddings: hf.max_position_embeddings,
            pad_token_id: hf.pad_token_id,
            max_seq_length: max_seq_length(dir)?,
            pooling: pooling(dir)?,
            normalizes: normalizes(dir)?,
        })
    }
}

fn max_seq_length(dir: &Path) -> Result<Option<usize>, ModelError> {
    #[derive(Deserialize)]
    struct SentenceBert {
        max_seq_length: Option<usize>,
    }
    let path = dir.join("sentence_bert_config.json");
    if !path.exists() {
        return Ok(None);
    }
    Ok(read_json::<SentenceBert>(&path)?.max_seq_length)
}

fn normalizes(dir: &Path) -> Result<bool, ModelError> {
    #[derive(Deserialize)]
    struct Module {
        #[serde(rename = "type")]
        kind: String,
    }
    let path = dir.join("modules.json");
    if !path.exists() {
        return Ok(false);
    }
    let modules: Vec<Module> = read_json(&path)?;
    Ok(modules.iter().any(|m| m.kind.ends_with(".Normalize")))
}

fn pooling(dir: &Path) -> Result<Option<Pooling>, ModelError> {
    #[derive(Deserialize)]
    struct St {
        #[serde(default)]
        pooling_mode_cls_token: bool,
        #[serde(default)]
        pooling_mode_mean_tokens: bool,
    }
    let path = dir.join("1_Pooling").join("config.json");
    if !path.exists() {
        return Ok(None);
    }
    let st: St = read_json(&path)?;
    match (st.pooling_mode_mean_tokens, st.pooling_mode_cls_token) {
        (true, false) => Ok(Some(Pooling::Mean)),
        (false, true) => Ok(Some(Pooling::Cls)),
        _ => Err(ModelError::config(&path, "only mean or CLS pooling is supported")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hf_and_sentence_transformers_files() {
        let dir = std::env::temp_dir().join(format!("ferroserve-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
        std::fs::write(dir.join("config.json"), r#"{"hidden_size": 8, "max_position_embeddings": 64}"#).unwrap();
        let bare = Checkpoint::read(&dir).unwrap();
        assert_eq!((bare.hidden_size, bare.max_position_embeddings, bare.pad_token_id), (8, 64, 0));
        assert_eq!((bare.max_seq_length, bare.pooling, bare.normalizes), (None, None, false));
        std::fs::write(dir.join("sentence_bert_config.json"), r#"{"max_seq_length": 32}"#).unwrap();
        std::fs::write(dir.join("modules.json"), r#"[{"type": "sentence_transformers.models.Normalize"}]"#).unwrap();
        std::fs::write(dir.join("1_Pooling/config.json"), r#"{"pooling_mode_cls_token": true}"#).unwrap();
        let full = Checkpoint::read(&dir).unwrap();
        assert_eq!((full.max_seq_length, full.pooling, full.normalizes), (Some(32), Some(Pooling::Cls), true));
        std::fs::write(dir.join("1_Pooling/config.json"), "{}").unwrap();
        assert!(Checkpoint::read(&dir).unwrap_err().to_string().contains("mean or CLS"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

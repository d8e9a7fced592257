//! The byte-level BPE tokenizer of a GGUF model, built from its metadata (`tokenizer.ggml.*`).
//!
//! Candle's `Tokenizer::from_gguf` gets SmolLM2 wrong (it adds a leading space, does not split digits and
//! does not round-trip), so the tokenizer is assembled here the way the model's own `tokenizer.json` does it:
//! BPE over the GGUF vocabulary and merges, digits split one by one, then GPT-2 byte-level pre-tokenization,
//! and the byte-level decoder. Control tokens (`<|im_start|>`, ...) are special tokens: parsed in rendered
//! prompts, skipped when decoding.

use candle_core::quantized::gguf_file;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::ModelError;

/// GGUF token type of control tokens.
const CONTROL: i32 = 3;

/// Text to ids and back for a GGUF language model.
#[derive(Clone)]
pub struct GgufTokenizer {
    /// Parses control tokens written in the text (`<|im_start|>`): for rendered chat prompts.
    with_special: Tokenizer,
    /// Treats everything as plain text: for raw completions prompts and user text.
    plain: Tokenizer,
    tokens: Vec<String>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub add_bos: bool,
}

fn strings(ct: &gguf_file::Content, key: &str) -> Result<Vec<String>, ModelError> {
    let value = ct.metadata.get(key).ok_or_else(|| ModelError::Tokenizer(format!("GGUF metadata has no {key}")))?;
    value.to_vec()?.iter().map(|v| Ok(v.to_string()?.clone())).collect()
}

fn optional_u32(ct: &gguf_file::Content, key: &str) -> Option<u32> {
    ct.metadata.get(key).and_then(|v| v.to_u32().ok())
}

impl GgufTokenizer {
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Self, ModelError> {
        let model = ct.metadata.get("tokenizer.ggml.model").and_then(|v| v.to_string().ok());
        if model.map(String::as_str) != Some("gpt2") {
            return Err(ModelError::Tokenizer(format!(
                "tokenizer.ggml.model {model:?} is not supported (only byte-level BPE, \"gpt2\")"
            )));
        }
        let tokens = strings(ct, "tokenizer.ggml.tokens")?;
        let merges = strings(ct, "tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| match m.split_once(' ') {
                Some((a, b)) => Ok((a.to_string(), b.to_string())),
                None => Err(ModelError::Tokenizer(format!("malformed BPE merge {m:?}"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let types: Vec<i32> = match ct.metadata.get("tokenizer.ggml.token_type") {
            Some(v) => v.to_vec()?.iter().map(|t| t.to_i32()).collect::<Result<_, _>>()?,
            None => vec![1; tokens.len()],
        };
        let controls = tokens.iter().zip(&types).filter(|(_, t)| **t == CONTROL).map(|(s, _)| s.clone()).collect();
        let mut tokenizer = GgufTokenizer::from_vocab(tokens, merges, controls)?;
        tokenizer.bos_id = optional_u32(ct, "tokenizer.ggml.bos_token_id");
        tokenizer.eos_id = optional_u32(ct, "tokenizer.ggml.eos_token_id");
        tokenizer.add_bos =
            ct.metadata.get("tokenizer.ggml.add_bos_token").and_then(|v| v.to_bool().ok()).unwrap_or(false);
        Ok(tokenizer)
    }

    /// A byte-level BPE tokenizer over `tokens` (byte-level forms, id = position) and `merges`, with
    /// `controls` as special tokens; no BOS or EOS until set.
    pub fn from_vocab(
        tokens: Vec<String>,
        merges: Vec<(String, String)>,
        controls: Vec<String>,
    ) -> Result<Self, ModelError> {
        let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| ModelError::Tokenizer(format!("cannot build BPE: {e}")))?;
        let mut tokenizer = Tokenizer::new(bpe);
        tokenizer.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
        ]))));
        tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
        let specials: Vec<AddedToken> = controls.into_iter().map(|s| AddedToken::from(s, true)).collect();
        tokenizer.add_special_tokens(specials).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        let mut plain = tokenizer.clone();
        plain.set_encode_special_tokens(true);
        Ok(GgufTokenizer { with_special: tokenizer, plain, tokens, bos_id: None, eos_id: None, add_bos: false })
    }

    /// Token ids of `text`; `parse_special` reads control tokens written in it (for rendered prompts).
    /// Adds BOS when the model asks for it.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>, ModelError> {
        self.encode_parts(&[(text, parse_special)])
    }

    /// Token ids of a text made of parts, each read with or without control tokens: a rendered chat
    /// prompt has the template's markers parsed and the message contents plain, so a control token
    /// written in a message stays text. Adds BOS when the model asks for it.
    pub fn encode_parts<S: AsRef<str>>(&self, parts: &[(S, bool)]) -> Result<Vec<u32>, ModelError> {
        let mut ids = Vec::new();
        if self.add_bos
            && let Some(bos) = self.bos_id
        {
            ids.push(bos);
        }
        for (text, parse_special) in parts {
            let tokenizer = if *parse_special { &self.with_special } else { &self.plain };
            let encoding = tokenizer.encode(text.as_ref(), false).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
            ids.extend_from_slice(encoding.get_ids());
        }
        Ok(ids)
    }

    /// Text of `ids`, control tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        self.with_special.decode(ids, true).map_err(|e| ModelError::Tokenizer(e.to_string()))
    }

    /// The vocabulary entry of `id` (byte-level form), for logprobs.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// Id of a vocabulary entry (e.g. `<|im_end|>`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.with_special.token_to_id(token)
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }
}

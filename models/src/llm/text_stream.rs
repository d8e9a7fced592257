//! Generated token ids to text, incrementally: whole characters only (a byte-level token can end inside a
//! UTF-8 character), and stop strings honoured — text that may be the start of a stop string is held back
//! until it is known not to be one, and text from a stop string on is never sent.

use crate::error::ModelError;
use crate::llm::tokenizer::GgufTokenizer;

/// The text of one sequence's output as it grows.
pub struct TextStream {
    ids: Vec<u32>,
    /// Tokens already turned into `text`, minus a few kept for context (as TGI and vLLM do).
    prefix_offset: usize,
    read_offset: usize,
    text: String,
    /// Bytes of `text` already handed out.
    sent: usize,
    stop: Vec<String>,
}

/// What a new token adds.
#[derive(Debug, PartialEq, Eq)]
pub struct TextDelta {
    pub text: String,
    /// A stop string was reached: the output ends before it.
    pub stopped: bool,
}

impl TextStream {
    pub fn new(stop: Vec<String>) -> Self {
        TextStream {
            ids: Vec::new(),
            prefix_offset: 0,
            read_offset: 0,
            text: String::new(),
            sent: 0,
            stop: stop.into_iter().filter(|s| !s.is_empty()).collect(),
        }
    }

    /// Adds a token; returns the text that can be sent now.
    pub fn push(&mut self, tokenizer: &GgufTokenizer, id: u32) -> Result<TextDelta, ModelError> {
        self.ids.push(id);
        let before = tokenizer.decode(&self.ids[self.prefix_offset..self.read_offset])?;
        let now = tokenizer.decode(&self.ids[self.prefix_offset..])?;
        if now.len() > before.len() && !now.ends_with('\u{FFFD}') && now.is_char_boundary(before.len()) {
            self.text.push_str(&now[before.len()..]);
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
        }
        Ok(self.release())
    }

    /// Everything not yet sent (at the end of generation, when nothing more can complete a stop string).
    pub fn finish(&mut self) -> String {
        let rest = self.text[self.sent..].to_string();
        self.sent = self.text.len();
        rest
    }

    fn release(&mut self) -> TextDelta {
        // A stop string may start in text already held back, never in text already sent.
        let search_from = self.sent;
        let found =
            self.stop.iter().filter_map(|s| self.text[search_from..].find(s.as_str()).map(|i| search_from + i)).min();
        if let Some(at) = found {
            let text = self.text[self.sent..at].to_string();
            self.text.truncate(at);
            self.sent = at;
            return TextDelta { text, stopped: true };
        }
        // Hold back the longest tail that is a proper prefix of some stop string.
        let tail = &self.text[self.sent..];
        let held = self
            .stop
            .iter()
            .flat_map(|s| (1..s.len()).filter(|&n| s.is_char_boundary(n)).map(move |n| &s[..n]))
            .filter(|p| tail.ends_with(p))
            .map(str::len)
            .max()
            .unwrap_or(0);
        let upto = self.text.len() - held;
        let text = self.text[self.sent..upto].to_string();
        self.sent = upto;
        TextDelta { text, stopped: false }
    }

    /// All output text so far (sent or held).
    pub fn text(&self) -> &str {
        &self.text
    }
}

//! Compact binary forms of cached values for the shared (Redis) cache: little-endian numbers, length-prefixed
//! strings, a leading format version. A value that does not decode (another version, corruption) is a miss.

use std::sync::Arc;

use ferroserve_models::llm::TokenLogprobs;

use super::embedding::CachedVector;
use super::response::{CachedResponse, CachedToken};
use crate::generation::{FinishReason, GenerationUsage};

const VECTOR_V1: u8 = 1;
const RESPONSE_V1: u8 = 1;

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: usize) {
        self.0.extend_from_slice(&u32::try_from(v).unwrap_or(u32::MAX).to_le_bytes());
    }
    fn f32(&mut self, v: f32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<usize> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize)
    }
    fn f32(&mut self) -> Option<f32> {
        Some(f32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<String> {
        let n = self.u32()?;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    /// A count of items at least `item_bytes` long each, checked against what is left (no huge allocations
    /// from a corrupt length).
    fn count(&mut self, item_bytes: usize) -> Option<usize> {
        let n = self.u32()?;
        (n.saturating_mul(item_bytes) <= self.0.len()).then_some(n)
    }
}

/// `[version][tokens][n][n × f32]`.
pub fn encode_vector(v: &CachedVector) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(9 + v.vector.len() * 4));
    w.u8(VECTOR_V1);
    w.u32(v.tokens);
    w.u32(v.vector.len());
    for x in &v.vector {
        w.f32(*x);
    }
    w.0
}

pub fn decode_vector(bytes: &[u8], model: Arc<str>) -> Option<CachedVector> {
    let mut r = Reader(bytes);
    (r.u8()? == VECTOR_V1).then_some(())?;
    let tokens = r.u32()?;
    let n = r.count(4)?;
    let vector = (0..n).map(|_| r.f32()).collect::<Option<Vec<_>>>()?;
    r.0.is_empty().then_some(CachedVector { vector, tokens, model })
}

/// `[version][finish][usage × 3][tail][n tokens]{id, text, logprobs?}`.
pub fn encode_response(v: &CachedResponse) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(RESPONSE_V1);
    w.u8(match v.finish_reason {
        FinishReason::Stop => 0,
        FinishReason::Length => 1,
    });
    w.u32(v.usage.prompt_tokens);
    w.u32(v.usage.completion_tokens);
    w.u32(v.usage.cached_tokens);
    w.str(&v.tail);
    w.u32(v.tokens.len());
    for t in &v.tokens {
        w.u32(t.id as usize);
        w.str(&t.text);
        match &t.logprobs {
            None => w.u8(0),
            Some(l) => {
                w.u8(1);
                w.f32(l.logprob);
                w.u32(l.top.len());
                for (id, lp) in &l.top {
                    w.u32(*id as usize);
                    w.f32(*lp);
                }
            }
        }
    }
    w.0
}

pub fn decode_response(bytes: &[u8], model: Arc<str>) -> Option<CachedResponse> {
    let mut r = Reader(bytes);
    (r.u8()? == RESPONSE_V1).then_some(())?;
    let finish_reason = match r.u8()? {
        0 => FinishReason::Stop,
        1 => FinishReason::Length,
        _ => return None,
    };
    let usage = GenerationUsage { prompt_tokens: r.u32()?, completion_tokens: r.u32()?, cached_tokens: r.u32()? };
    let tail = r.str()?;
    let n = r.count(9)?;
    let mut tokens = Vec::with_capacity(n);
    for _ in 0..n {
        let id = r.u32()? as u32;
        let text = r.str()?;
        let logprobs = match r.u8()? {
            0 => None,
            1 => {
                let logprob = r.f32()?;
                let top_n = r.count(8)?;
                let top = (0..top_n).map(|_| Some((r.u32()? as u32, r.f32()?))).collect::<Option<Vec<_>>>()?;
                Some(TokenLogprobs { logprob, top })
            }
            _ => return None,
        };
        tokens.push(CachedToken { id, text, logprobs });
    }
    r.0.is_empty().then_some(CachedResponse { tokens, tail, finish_reason, usage, model })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_bit_for_bit() {
        let v = CachedVector { vector: vec![0.1, -2.5e-8, f32::MIN_POSITIVE, 3.0], tokens: 7, model: "m".into() };
        let bytes = encode_vector(&v);
        assert_eq!(bytes.len(), 1 + 4 + 4 + 16);
        assert_eq!(decode_vector(&bytes, "m".into()), Some(v));
        assert_eq!(decode_vector(&bytes[..bytes.len() - 1], "m".into()), None, "truncated");
        assert_eq!(decode_vector(&[2, 0, 0, 0, 0, 0, 0, 0, 0], "m".into()), None, "other version");
        assert_eq!(decode_vector(&[1, 0, 0, 0, 0, 255, 255, 255, 255], "m".into()), None, "corrupt length");
    }

    #[test]
    fn responses_round_trip() {
        let v = CachedResponse {
            tokens: vec![
                CachedToken { id: 5, text: "Paris".into(), logprobs: None },
                CachedToken {
                    id: 9,
                    text: "é".into(),
                    logprobs: Some(TokenLogprobs { logprob: -0.5, top: vec![(9, -0.5), (3, -1.25)] }),
                },
            ],
            tail: ".".into(),
            finish_reason: FinishReason::Length,
            usage: GenerationUsage { prompt_tokens: 12, completion_tokens: 2, cached_tokens: 4 },
            model: "m".into(),
        };
        let back = decode_response(&encode_response(&v), "m".into()).unwrap();
        assert_eq!(back.tail, v.tail);
        assert_eq!(back.finish_reason, v.finish_reason);
        assert_eq!(back.usage, v.usage);
        assert_eq!(back.tokens.len(), 2);
        assert_eq!(back.tokens[1].text, "é");
        assert_eq!(back.tokens[1].logprobs.as_ref().unwrap().top, vec![(9, -0.5), (3, -1.25)]);
        assert!(decode_response(&encode_response(&v)[..10], "m".into()).is_none());
    }

    /// Property: damaged entries (a Redis shared with other software, a value cut short) decode to `None`
    /// or to some entry, never a panic, and never allocate more than the bytes could hold.
    #[test]
    fn damaged_entries_never_panic() {
        let vector = encode_vector(&CachedVector { vector: vec![0.5; 16], tokens: 3, model: "m".into() });
        for bytes in crate::damage::damaged(&vector, 4000, 1) {
            if let Some(v) = decode_vector(&bytes, "m".into()) {
                assert!(v.vector.len() * 4 <= bytes.len());
            }
        }
        let token = |id, logprobs| CachedToken { id, text: "tok".into(), logprobs };
        let response = encode_response(&CachedResponse {
            tokens: vec![token(1, None), token(2, Some(TokenLogprobs { logprob: -1.0, top: vec![(2, -1.0)] }))],
            tail: "t".into(),
            finish_reason: FinishReason::Stop,
            usage: GenerationUsage { prompt_tokens: 1, completion_tokens: 2, cached_tokens: 0 },
            model: "m".into(),
        });
        for bytes in crate::damage::damaged(&response, 4000, 2) {
            if let Some(r) = decode_response(&bytes, "m".into()) {
                assert!(r.tokens.len() * 9 <= bytes.len());
            }
        }
    }
}

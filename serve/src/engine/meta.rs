//! What a response says about how it was served, besides its body: the model that served it, where its
//! time went, and what the caches did. HTTP sends it as headers and gRPC as metadata, under the same names.

use std::time::Duration;

/// How one request was served.
#[derive(Debug, Clone, Default)]
pub struct ResponseMeta {
    /// The model (variant) that answered.
    pub model: String,
    /// Waiting for a lane, and in forward passes (embeddings).
    pub queue_time: Option<Duration>,
    pub compute_time: Option<Duration>,
    /// `HIT`, `SEMANTIC` or `MISS`.
    pub cache: &'static str,
    /// Inputs answered from the cache (embeddings).
    pub cache_hits: Option<usize>,
    /// Cosine similarity of a semantic hit.
    pub similarity: Option<f32>,
}

impl ResponseMeta {
    /// Header (metadata) names and values, lower case.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let millis = |d: Duration| format!("{:.3}", d.as_secs_f64() * 1000.0);
        let mut pairs = vec![("x-ferroserve-model", self.model.clone())];
        pairs.extend(self.queue_time.map(|d| ("x-queue-time", millis(d))));
        pairs.extend(self.compute_time.map(|d| ("x-inference-time", millis(d))));
        if !self.cache.is_empty() {
            pairs.push(("x-cache", self.cache.to_string()));
        }
        pairs.extend(self.cache_hits.map(|n| ("x-cache-hits", n.to_string())));
        pairs.extend(self.similarity.map(|s| ("x-cache-similarity", format!("{s:.4}"))));
        pairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_formats() {
        let meta = ResponseMeta {
            model: "m".into(),
            queue_time: Some(Duration::from_micros(1500)),
            compute_time: None,
            cache: "SEMANTIC",
            cache_hits: None,
            similarity: Some(0.96),
        };
        let pairs = meta.pairs();
        assert_eq!(
            pairs,
            [
                ("x-ferroserve-model", "m".to_string()),
                ("x-queue-time", "1.500".to_string()),
                ("x-cache", "SEMANTIC".to_string()),
                ("x-cache-similarity", "0.9600".to_string())
            ]
        );
    }
}

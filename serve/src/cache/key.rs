//! Cache keys: 128-bit hashes (XXH3-128) over every field that changes a result, each length-prefixed so no two
//! field lists can collide by concatenation ("ab"+"c" vs "a"+"bc"). 128 bits make accidental collisions
//! negligible (Triton's 64-bit keys are a known weak spot).

use xxhash_rust::xxh3::Xxh3;

/// Builds one key from fields in order.
#[derive(Default)]
pub struct KeyBuilder(Xxh3);

impl KeyBuilder {
    pub fn new(kind: &str) -> Self {
        let mut b = KeyBuilder(Xxh3::new());
        b = b.text(kind);
        b
    }

    pub fn text(mut self, s: &str) -> Self {
        self.0.update(&(s.len() as u64).to_le_bytes());
        self.0.update(s.as_bytes());
        self
    }

    pub fn number(mut self, n: u64) -> Self {
        self.0.update(&n.to_le_bytes());
        self
    }

    pub fn finish(self) -> u128 {
        self.0.digest128()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_delimited_and_order_matters() {
        let k = |a: &str, b: &str| KeyBuilder::new("t").text(a).text(b).finish();
        assert_ne!(k("ab", "c"), k("a", "bc"));
        assert_ne!(k("a", "b"), k("b", "a"));
        assert_eq!(k("a", "b"), k("a", "b"));
        assert_ne!(KeyBuilder::new("x").text("a").finish(), KeyBuilder::new("y").text("a").finish());
    }
}

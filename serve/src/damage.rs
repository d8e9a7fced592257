//! Damaged inputs for property tests of the decoders that read untrusted bytes (the cache's codec, raw
//! tensors): a sound encoding with random bytes changed, cut short, with a large number written over four
//! bytes (where lengths live), and pure noise. A decoder must answer each with a value or an error, never a
//! panic.

use rand::{Rng, SeedableRng};

/// `rounds` damaged variants of `sound`, the same for the same seed.
pub fn damaged(sound: &[u8], rounds: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..rounds)
        .map(|round| {
            let mut bytes = sound.to_vec();
            match round % 4 {
                0 if !bytes.is_empty() => {
                    for _ in 0..rng.random_range(1..6) {
                        let at = rng.random_range(0..bytes.len());
                        bytes[at] = rng.random();
                    }
                }
                1 if !bytes.is_empty() => bytes.truncate(rng.random_range(0..bytes.len())),
                2 if bytes.len() >= 4 => {
                    let at = rng.random_range(0..=bytes.len() - 4);
                    let big: u32 = rng.random_range(1 << 20..=u32::MAX);
                    bytes[at..at + 4].copy_from_slice(&big.to_le_bytes());
                }
                _ => bytes = (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
            }
            bytes
        })
        .collect()
}

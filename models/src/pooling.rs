//! Pooling of per-token hidden states into one vector per sequence, and L2 normalization.

use candle_core::{DType, Tensor};
use serde::Deserialize;

use crate::error::ModelError;

/// How token states become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Mean over the tokens the attention mask keeps.
    Mean,
    /// The first token's state.
    Cls,
}

impl Pooling {
    /// Pools `hidden` (batch × seq × dim) under `mask` (batch × seq, 1 for real tokens) to batch × dim,
    /// in F32 whatever the compute dtype was.
    pub fn apply(self, hidden: &Tensor, mask: &Tensor) -> Result<Tensor, ModelError> {
        let hidden = hidden.to_dtype(DType::F32)?;
        Ok(match self {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => {
                let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
                let counts = mask.sum(1)?.clamp(1e-9, f64::INFINITY)?;
                summed.broadcast_div(&counts)?
            }
        })
    }
}

/// Divides `v` by its L2 norm (a zero vector stays zero).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn mean_pooling_ignores_padding() {
        let hidden = Tensor::new(&[[[1f32, 2.], [3., 4.], [100., 100.]]], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[1u32, 1, 0]], &Device::Cpu).unwrap();
        let pooled = Pooling::Mean.apply(&hidden, &mask).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(pooled, vec![vec![2., 3.]]);
        let cls = Pooling::Cls.apply(&hidden, &mask).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(cls, vec![vec![1., 2.]]);
    }

    #[test]
    fn normalizes() {
        let mut v = vec![3.0, 4.0];
        l2_normalize(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut z = vec![0.0, 0.0];
        l2_normalize(&mut z);
        assert_eq!(z, vec![0.0, 0.0]);
    }
}

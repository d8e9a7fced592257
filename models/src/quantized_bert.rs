//! A BERT encoder whose linear layers run on Q8_0-quantized weights (Candle's `QMatMul`), quantized from
//! the float checkpoint at load. Embeddings, LayerNorms, biases and attention scores stay in F32.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Module, Result, Tensor};
use candle_nn::{LayerNorm, VarBuilder, layer_norm};
use candle_transformers::models::bert::Config;

struct QLinear {
    weight: QMatMul,
    bias: Tensor,
}

impl QLinear {
    fn load(vb: VarBuilder, inputs: usize, outputs: usize) -> Result<Self> {
        let weight = vb.get((outputs, inputs), "weight")?;
        let weight = QMatMul::from_qtensor(QTensor::quantize(&weight, GgmlDType::Q8_0)?)?;
        Ok(QLinear { weight, bias: vb.get(outputs, "bias")? })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.weight.forward(&x.contiguous()?)?.broadcast_add(&self.bias)
    }
}

struct Layer {
    query: QLinear,
    key: QLinear,
    value: QLinear,
    attention_out: QLinear,
    attention_norm: LayerNorm,
    intermediate: QLinear,
    output: QLinear,
    output_norm: LayerNorm,
}

/// The encoder stack; `forward` takes the additive attention mask (batch × 1 × 1 × sequence).
pub(crate) struct QuantizedEncoder {
    layers: Vec<Layer>,
    heads: usize,
}

impl QuantizedEncoder {
    pub fn load(vb: VarBuilder, c: &Config) -> Result<Self> {
        let (h, i) = (c.hidden_size, c.intermediate_size);
        let layers = (0..c.num_hidden_layers)
            .map(|n| {
                let l = vb.pp(format!("layer.{n}"));
                let a = l.pp("attention");
                Ok(Layer {
                    query: QLinear::load(a.pp("self.query"), h, h)?,
                    key: QLinear::load(a.pp("self.key"), h, h)?,
                    value: QLinear::load(a.pp("self.value"), h, h)?,
                    attention_out: QLinear::load(a.pp("output.dense"), h, h)?,
                    attention_norm: layer_norm(h, c.layer_norm_eps, a.pp("output.LayerNorm"))?,
                    intermediate: QLinear::load(l.pp("intermediate.dense"), h, i)?,
                    output: QLinear::load(l.pp("output.dense"), i, h)?,
                    output_norm: layer_norm(h, c.layer_norm_eps, l.pp("output.LayerNorm"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(QuantizedEncoder { layers, heads: c.num_attention_heads })
    }

    pub fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, s, h) = x.dims3()?;
        let d = h / self.heads;
        let split = |t: Tensor| t.reshape((b, s, self.heads, d))?.transpose(1, 2)?.contiguous();
        let mut x = x.clone();
        for l in &self.layers {
            let q = split(l.query.forward(&x)?)?;
            let k = split(l.key.forward(&x)?)?;
            let v = split(l.value.forward(&x)?)?;
            let scores = (q.matmul(&k.t()?)? / (d as f64).sqrt())?.broadcast_add(mask)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let context = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, s, h))?;
            let x1 = l.attention_norm.forward(&(l.attention_out.forward(&context)? + &x)?)?;
            let y = l.output.forward(&l.intermediate.forward(&x1)?.gelu_erf()?)?;
            x = l.output_norm.forward(&(y + x1)?)?;
        }
        Ok(x)
    }
}

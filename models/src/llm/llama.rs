//! A Llama-family decoder over Candle tensors that runs many sequences of different lengths in one
//! forward pass ("ragged" batching), each with its own KV cache.
//!
//! The tokens of every sequence in a step are stacked into one `[tokens, hidden]` matrix, so the linear
//! layers (nearly all of the compute) run once for the whole batch; only attention is done per sequence,
//! against that sequence's own cache and positions. A decode step of 8 streams is therefore one matrix
//! product of 8 rows per weight instead of 8 separate passes. Upstream `quantized_llama` keeps one
//! lock-step cache for the whole batch (same length, no padding mask), which cannot do this.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor, gguf_file};
use candle_core::{D, DType, Device, Tensor};
use ferroserve_kernels::{AttentionInput, AttentionShape, Isa, attention};
use rayon::prelude::*;

use crate::error::ModelError;
use crate::llm::linear::{Linear, SharedInput, cpu_kernels, with_cpu_f32, with_cpu_f32_mut, with_cpu_f32_rows};
use crate::llm::step::{KvState, SeqStep, StepModel};

/// Fewest query rows a Candle attention product runs with (see `attend`).
const MIN_ATTENTION_ROWS: usize = 16;

/// How the linear layers' weights are held after loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// Re-quantized to this GGML type (kept as stored when the file already has it).
    Quantized(GgmlDType),
    /// Dequantized to half precision.
    F16,
    /// Dequantized to single precision (the accuracy reference).
    F32,
    /// As the file stores each weight.
    Stored,
}

/// Shape facts read from the GGUF metadata.
#[derive(Debug, Clone)]
pub struct LlamaShape {
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab: usize,
    pub context_length: usize,
    pub rms_eps: f64,
    pub rope_base: f32,
}

impl LlamaShape {
    /// Bytes of KV cache one token takes (F32 keys and values, every layer).
    pub fn kv_bytes_per_token(&self) -> usize {
        self.layers * 2 * self.kv_heads * self.head_dim * 4
    }
}

struct Layer {
    attn_norm: Tensor,
    /// The query, key and value projections.
    qkv: SharedInput,
    wo: Linear,
    ffn_norm: Tensor,
    /// The gate and up projections.
    gate_up: SharedInput,
    w_down: Linear,
}

/// The model's weights; shared read-only by every sequence.
pub struct Llama {
    shape: LlamaShape,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    output: Linear,
    cos: Tensor,
    sin: Tensor,
    device: Device,
    /// ferroserve's CPU kernels for the attention (and, for Q8_0, Q4_0, Q4_1 and Q4_K weights, the linear
    /// layers); `None` on GPU devices or when `FERROSERVE_CPU_KERNELS=candle`.
    kernels: Option<Isa>,
}

/// Where a layer's rotary position embedding, attention and residual additions run: ferroserve's CPU kernels,
/// or Candle's operations with the step's rows of the cosine and sine tables.
enum LayerOps {
    Kernels(Isa),
    Candle { cos: Tensor, sin: Tensor },
}

impl LayerOps {
    /// `x + y`, a residual connection. On the kernels' path `x` is changed in place (it owns its storage: the
    /// embedding rows, then sums made here), in the calling pool: Candle's addition runs on Candle's own pool
    /// of threads, which spin after each operation and then hold the cores the kernels' pool computes on.
    fn residual(&self, x: Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
        /// Elements below which one thread adds alone.
        const PARALLEL_MIN: usize = 1 << 15;
        if let LayerOps::Candle { .. } = self {
            return x + y;
        }
        if x.shape() != y.shape() {
            candle_core::bail!("residual of shape {:?} added to {:?}", y.shape(), x.shape());
        }
        with_cpu_f32(y, |y| {
            with_cpu_f32_mut(&x, |x| {
                let add = |(x, y): (&mut [f32], &[f32])| x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
                if x.len() < PARALLEL_MIN {
                    add((x, y));
                } else {
                    x.par_chunks_mut(PARALLEL_MIN / 4).zip(y.par_chunks(PARALLEL_MIN / 4)).for_each(add);
                }
            })
        })??;
        Ok(x)
    }
}

/// One sequence's keys and values for every layer, `[kv_heads, capacity, head_dim]` each, filled up to `len`.
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
    len: usize,
}

impl KvState for KvCache {
    fn len(&self) -> usize {
        self.len
    }

    /// Bytes allocated (capacity, not just `len`).
    fn bytes(&self) -> usize {
        self.layers.iter().map(|(k, v)| (k.elem_count() + v.elem_count()) * 4).sum()
    }

    /// A copy of the first `len` tokens, with room for `len` tokens only.
    fn prefix(&self, len: usize) -> Result<KvCache, ModelError> {
        let len = len.min(self.len);
        let layers = self
            .layers
            .iter()
            // `copy`, not `contiguous`: a full-length narrow would share storage with this cache.
            .map(|(k, v)| Ok((k.narrow(1, 0, len)?.copy()?, v.narrow(1, 0, len)?.copy()?)))
            .collect::<Result<Vec<_>, candle_core::Error>>()?;
        Ok(KvCache { layers, len })
    }
}

impl KvCache {
    fn capacity(&self) -> usize {
        self.layers.first().map(|(k, _)| k.dim(1).unwrap_or(0)).unwrap_or(0)
    }

    /// Grows every layer's buffers to hold at least `needed` tokens (in steps of 256 tokens).
    fn reserve(&mut self, needed: usize) -> candle_core::Result<()> {
        let cap = self.capacity();
        if needed <= cap {
            return Ok(());
        }
        let new_cap = needed.div_ceil(256) * 256;
        for (k, v) in &mut self.layers {
            for t in [k, v] {
                let (heads, _, dim) = t.dims3()?;
                let grown = Tensor::zeros((heads, new_cap, dim), DType::F32, t.device())?;
                if self.len > 0 {
                    grown.slice_set(&t.narrow(1, 0, self.len)?.contiguous()?, 1, 0)?;
                }
                *t = grown;
            }
        }
        Ok(())
    }
}

impl StepModel for Llama {
    type Cache = KvCache;

    fn new_cache(&self) -> KvCache {
        Llama::new_cache(self)
    }

    fn forward(&self, batch: &mut [SeqStep<'_, KvCache>]) -> Result<Vec<Option<Vec<f32>>>, ModelError> {
        Llama::forward(self, batch)
    }
}

fn md<'a>(ct: &'a gguf_file::Content, key: &str) -> Result<&'a gguf_file::Value, ModelError> {
    ct.metadata.get(key).ok_or_else(|| ModelError::Unsupported(format!("GGUF metadata has no {key}")))
}

fn md_usize(ct: &gguf_file::Content, key: &str) -> Result<usize, ModelError> {
    Ok(md(ct, key)?.to_u32()? as usize)
}

impl Llama {
    /// Loads the weights of a `llama` GGUF file in the asked format, on the CPU kernels
    /// `FERROSERVE_CPU_KERNELS` chooses (see `linear.rs`) when `device` is the CPU.
    pub fn load<R: std::io::Seek + std::io::Read>(
        ct: &gguf_file::Content,
        reader: &mut R,
        format: WeightFormat,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let kernels = if device.is_cpu() { cpu_kernels()? } else { None };
        Self::load_with_kernels(ct, reader, format, device, kernels)
    }

    /// [`Llama::load`] on the given CPU kernel family (`None`, or any device but the CPU: Candle's).
    pub fn load_with_kernels<R: std::io::Seek + std::io::Read>(
        ct: &gguf_file::Content,
        reader: &mut R,
        format: WeightFormat,
        device: &Device,
        kernels: Option<Isa>,
    ) -> Result<Self, ModelError> {
        let kernels = kernels.filter(|_| device.is_cpu());
        let arch = md(ct, "general.architecture")?.to_string()?;
        if arch != "llama" {
            return Err(ModelError::Unsupported(format!("GGUF architecture {arch:?} is not supported (only llama)")));
        }
        let heads = md_usize(ct, "llama.attention.head_count")?;
        let hidden = md_usize(ct, "llama.embedding_length")?;
        let shape = LlamaShape {
            layers: md_usize(ct, "llama.block_count")?,
            hidden,
            heads,
            kv_heads: md_usize(ct, "llama.attention.head_count_kv")?,
            head_dim: md_usize(ct, "llama.rope.dimension_count").unwrap_or(hidden / heads),
            vocab: 0,
            context_length: md_usize(ct, "llama.context_length")?,
            rms_eps: md(ct, "llama.attention.layer_norm_rms_epsilon")?.to_f32()? as f64,
            rope_base: md(ct, "llama.rope.freq_base").and_then(|v| Ok(v.to_f32()?)).unwrap_or(10_000.0),
        };
        if !shape.heads.is_multiple_of(shape.kv_heads) || shape.head_dim * shape.heads != shape.hidden {
            return Err(ModelError::Unsupported("inconsistent attention head counts in GGUF metadata".into()));
        }
        let linear = |t: QTensor| linear(t, format, kernels);
        let mut tensor = |name: &str| -> Result<QTensor, ModelError> { Ok(ct.tensor(reader, name, device)?) };
        let embed_q = tensor("token_embd.weight")?;
        let embed = embed_q.dequantize(device)?;
        let norm = tensor("output_norm.weight")?.dequantize(device)?;
        let output = match tensor("output.weight") {
            Ok(t) => linear(t)?,
            Err(_) => linear(embed_q)?, // tied embeddings
        };
        let mut layers = Vec::with_capacity(shape.layers);
        for i in 0..shape.layers {
            let mut w = |suffix: &str| tensor(&format!("blk.{i}.{suffix}.weight"));
            layers.push(Layer {
                attn_norm: w("attn_norm")?.dequantize(device)?,
                qkv: SharedInput::new(vec![linear(w("attn_q")?)?, linear(w("attn_k")?)?, linear(w("attn_v")?)?]),
                wo: linear(w("attn_output")?)?,
                ffn_norm: w("ffn_norm")?.dequantize(device)?,
                gate_up: SharedInput::new(vec![linear(w("ffn_gate")?)?, linear(w("ffn_up")?)?]),
                w_down: linear(w("ffn_down")?)?,
            });
        }
        let vocab = embed.dim(0)?;
        let (cos, sin) = rope_tables(shape.head_dim, shape.rope_base, shape.context_length, device)?;
        Ok(Llama {
            shape: LlamaShape { vocab, ..shape },
            embed,
            layers,
            norm,
            output,
            cos,
            sin,
            device: device.clone(),
            kernels,
        })
    }

    /// Attention of every sequence's new tokens (queries `q`, `[heads, tokens, head_dim]`; keys and values
    /// already in the caches) with Candle's tensor operations: `[tokens, hidden]`. The path for GPU devices and
    /// for `FERROSERVE_CPU_KERNELS=candle`.
    fn attend(
        &self,
        q: &Tensor,
        batch: &[SeqStep<'_, KvCache>],
        li: usize,
        offsets: &[usize],
    ) -> candle_core::Result<Tensor> {
        let s = &self.shape;
        let total: usize = batch.iter().map(|step| step.tokens.len()).sum();
        let n_rep = s.heads / s.kv_heads;
        let scale = 1.0 / (s.head_dim as f64).sqrt();
        let mut outputs = Vec::with_capacity(batch.len());
        for (step, &offset) in batch.iter().zip(offsets) {
            let t = step.tokens.len();
            let past = step.cache.len;
            let (k_cache, v_cache) = &step.cache.layers[li];
            let k_all = k_cache.narrow(1, 0, past + t)?;
            let v_all = v_cache.narrow(1, 0, past + t)?;
            // Heads that share a KV head are stacked as rows: [kv_heads, n_rep * t, head_dim].
            let q_s = q.narrow(1, offset, t)?.contiguous()?.reshape((s.kv_heads, n_rep * t, s.head_dim))?;
            // The matrix library sums in a different order for very few rows; padding both attention
            // products to MIN_ATTENTION_ROWS rows keeps a token's numbers the same however its prompt was
            // chunked (one token per step vs. the whole prompt at once), so prefix reuse and chunked
            // prefill never change greedy output.
            let rows = n_rep * t;
            let padded = |x: Tensor| -> candle_core::Result<Tensor> {
                if rows >= MIN_ATTENTION_ROWS {
                    return Ok(x);
                }
                let width = x.dim(2)?;
                let pad = Tensor::zeros((s.kv_heads, MIN_ATTENTION_ROWS - rows, width), DType::F32, &self.device)?;
                Tensor::cat(&[&x, &pad], 1)
            };
            let real = |x: Tensor| if rows >= MIN_ATTENTION_ROWS { Ok(x) } else { x.narrow(1, 0, rows)?.contiguous() };
            let mut att = real((padded(q_s)?.matmul(&k_all.t()?)? * scale)?)?;
            if t > 1 {
                let mask = causal_mask(t, past, &self.device)?;
                att = att.reshape((s.kv_heads, n_rep, t, past + t))?.broadcast_add(&mask)?.reshape((
                    s.kv_heads,
                    rows,
                    past + t,
                ))?;
            }
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let y = real(padded(att)?.matmul(&v_all)?)?;
            outputs.push(y.reshape((s.heads, t, s.head_dim))?);
        }
        Tensor::cat(&outputs, 1)?.transpose(0, 1)?.reshape((total, s.hidden))
    }

    /// The same attention on ferroserve's fused CPU kernel (queries `[tokens, heads × head_dim]`, from
    /// `rope_into_caches`): each query row computed alone, so a token's output never depends on how its
    /// prompt was chunked or batched.
    fn attend_fused(
        &self,
        isa: Isa,
        q: &[f32],
        batch: &[SeqStep<'_, KvCache>],
        li: usize,
        offsets: &[usize],
    ) -> candle_core::Result<Tensor> {
        let s = &self.shape;
        let total: usize = batch.iter().map(|step| step.tokens.len()).sum();
        let shape = AttentionShape {
            heads: s.heads,
            kv_heads: s.kv_heads,
            head_dim: s.head_dim,
            scale: 1.0 / (s.head_dim as f32).sqrt(),
        };
        let mut out = vec![0.0f32; total * s.hidden];
        for (step, &offset) in batch.iter().zip(offsets) {
            let (k_cache, v_cache) = &step.cache.layers[li];
            let t = step.tokens.len();
            with_cpu_f32(k_cache, |k| {
                with_cpu_f32(v_cache, |v| {
                    let input = AttentionInput {
                        q,
                        q_rows: total,
                        q_row0: offset,
                        t,
                        past: step.cache.len,
                        k,
                        v,
                        capacity: step.cache.capacity(),
                    };
                    let rows = &mut out[offset * s.hidden..(offset + t) * s.hidden];
                    attention(isa, shape, &input, rows).map_err(candle_core::Error::Msg)
                })?
            })??;
        }
        Tensor::from_vec(out, (total, s.hidden), &self.device)
    }

    /// Llama's rotary position embedding (adjacent pairs rotated) on this step's queries and keys, on the CPU:
    /// returns the rotated queries, `[tokens, heads × head_dim]` as the attention kernel reads them, and writes
    /// each sequence's rotated keys and its values into its cache after the tokens already there. One pass
    /// over the projections where Candle's path transposes, copies, rotates and copies again.
    fn rope_into_caches(
        &self,
        [q, k, v]: [&Tensor; 3],
        batch: &[SeqStep<'_, KvCache>],
        li: usize,
        positions: &[u32],
    ) -> candle_core::Result<Vec<f32>> {
        let s = &self.shape;
        let (hd, width, kv_width) = (s.head_dim, s.heads * s.head_dim, s.kv_heads * s.head_dim);
        for (t, columns) in [(q, width), (k, kv_width), (v, kv_width)] {
            if t.dims2()? != (positions.len(), columns) {
                candle_core::bail!(
                    "projection of shape {:?} where [{}, {columns}] was expected",
                    t.shape(),
                    positions.len()
                );
            }
        }
        with_cpu_f32(&self.cos, |cos| {
            with_cpu_f32(&self.sin, |sin| {
                // The rotation of each pair of a row at position `p`, as `rope_i` computes it.
                let rotate = |x: &[f32], p: u32, out: &mut [f32]| {
                    let at = p as usize * hd / 2;
                    let (cos, sin) = (&cos[at..at + hd / 2], &sin[at..at + hd / 2]);
                    for (head, out) in x.chunks_exact(hd).zip(out.chunks_exact_mut(hd)) {
                        for (i, (pair, out)) in head.chunks_exact(2).zip(out.chunks_exact_mut(2)).enumerate() {
                            out[0] = pair[0] * cos[i] - pair[1] * sin[i];
                            out[1] = pair[0] * sin[i] + pair[1] * cos[i];
                        }
                    }
                };
                let mut queries = vec![0.0f32; positions.len() * width];
                with_cpu_f32_rows(q, |q, stride| {
                    queries
                        .par_chunks_mut(width)
                        .zip(positions)
                        .enumerate()
                        .for_each(|(r, (out, &p))| rotate(&q[r * stride..][..width], p, out))
                })?;
                with_cpu_f32_rows(k, |k, k_stride| {
                    with_cpu_f32_rows(v, |v, v_stride| {
                        let mut row = 0;
                        for step in batch {
                            let (capacity, past) = (step.cache.capacity(), step.cache.len);
                            let (k_cache, v_cache) = &step.cache.layers[li];
                            let rows = row..row + step.tokens.len();
                            row = rows.end;
                            // Token `i` of every key/value head goes to `[head][past + i]`.
                            let at = |r: usize, h: usize| (h * capacity + past + r - rows.start) * hd;
                            with_cpu_f32_mut(k_cache, |cache| {
                                for r in rows.clone() {
                                    for (h, head) in k[r * k_stride..][..kv_width].chunks_exact(hd).enumerate() {
                                        rotate(head, positions[r], &mut cache[at(r, h)..][..hd]);
                                    }
                                }
                            })?;
                            with_cpu_f32_mut(v_cache, |cache| {
                                for r in rows.clone() {
                                    for (h, head) in v[r * v_stride..][..kv_width].chunks_exact(hd).enumerate() {
                                        cache[at(r, h)..][..hd].copy_from_slice(head);
                                    }
                                }
                            })?;
                        }
                        Ok::<_, candle_core::Error>(())
                    })?
                })??;
                Ok(queries)
            })?
        })?
    }

    pub fn shape(&self) -> &LlamaShape {
        &self.shape
    }

    /// An empty cache for one new sequence.
    pub fn new_cache(&self) -> KvCache {
        let empty = || Tensor::zeros((self.shape.kv_heads, 0, self.shape.head_dim), DType::F32, &self.device);
        let layers = (0..self.shape.layers).map(|_| Ok((empty()?, empty()?))).collect::<candle_core::Result<_>>();
        KvCache { layers: layers.unwrap_or_default(), len: 0 }
    }

    /// Runs one step for every sequence in `batch`: appends their tokens to their caches and returns, for
    /// each sequence that wants them, the logits after its last token (`vocab` floats), in order.
    pub fn forward(&self, batch: &mut [SeqStep<'_, KvCache>]) -> Result<Vec<Option<Vec<f32>>>, ModelError> {
        Ok(self.forward_inner(batch)?)
    }

    fn forward_inner(&self, batch: &mut [SeqStep<'_, KvCache>]) -> candle_core::Result<Vec<Option<Vec<f32>>>> {
        let s = &self.shape;
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        for step in batch.iter_mut() {
            if step.tokens.is_empty() {
                candle_core::bail!("a sequence step needs at least one token");
            }
            let start = step.cache.len;
            if start + step.tokens.len() > s.context_length {
                candle_core::bail!("sequence longer than the model's context of {} tokens", s.context_length);
            }
            step.cache.reserve(start + step.tokens.len())?;
            ids.extend_from_slice(step.tokens);
            positions.extend((start..start + step.tokens.len()).map(|p| p as u32));
        }
        let total = ids.len();
        let ids = Tensor::from_vec(ids, total, &self.device)?;
        let ops = match self.kernels {
            Some(isa) => LayerOps::Kernels(isa),
            None => {
                let at = Tensor::new(positions.as_slice(), &self.device)?;
                LayerOps::Candle { cos: self.cos.index_select(&at, 0)?, sin: self.sin.index_select(&at, 0)? }
            }
        };
        let mut x = self.embed.index_select(&ids, 0)?;
        let offsets: Vec<usize> = batch
            .iter()
            .scan(0, |at, step| {
                let start = *at;
                *at += step.tokens.len();
                Some(start)
            })
            .collect();
        for (li, layer) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, s.rms_eps as f32)?;
            let [q, k, v] = layer.qkv.forward(&h)?;
            let y = match &ops {
                LayerOps::Kernels(isa) => {
                    let q = self.rope_into_caches([&q, &k, &v], batch, li, &positions)?;
                    self.attend_fused(*isa, &q, batch, li, &offsets)?
                }
                LayerOps::Candle { cos, sin } => {
                    let rope = |t: Tensor, heads: usize| -> candle_core::Result<Tensor> {
                        let t = t.reshape((total, heads, s.head_dim))?.transpose(0, 1)?.contiguous()?.unsqueeze(0)?;
                        candle_nn::rotary_emb::rope_i(&t, cos, sin)?.squeeze(0)
                    };
                    let (q, k) = (rope(q, s.heads)?, rope(k, s.kv_heads)?);
                    let v = v.reshape((total, s.kv_heads, s.head_dim))?.transpose(0, 1)?;
                    for (step, offset) in batch.iter_mut().zip(&offsets) {
                        let t = step.tokens.len();
                        let past = step.cache.len;
                        let (k_cache, v_cache) = &step.cache.layers[li];
                        k_cache.slice_set(&k.narrow(1, *offset, t)?.contiguous()?, 1, past)?;
                        v_cache.slice_set(&v.narrow(1, *offset, t)?.contiguous()?, 1, past)?;
                    }
                    self.attend(&q, batch, li, &offsets)?
                }
            };
            x = ops.residual(x, &layer.wo.forward(&y)?)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, s.rms_eps as f32)?;
            x = ops.residual(x, &layer.w_down.forward(&layer.gate_up.swiglu(&h)?)?)?;
        }
        let mut last_rows = Vec::new();
        let mut offset = 0;
        for step in batch.iter_mut() {
            offset += step.tokens.len();
            step.cache.len += step.tokens.len();
            if step.want_logits {
                last_rows.push((offset - 1) as u32);
            }
        }
        let mut wanted = if last_rows.is_empty() {
            Vec::new().into_iter()
        } else {
            let rows = Tensor::new(last_rows.as_slice(), &self.device)?;
            let h = candle_nn::ops::rms_norm(&x.index_select(&rows, 0)?, &self.norm, s.rms_eps as f32)?;
            self.output.forward(&h)?.to_dtype(DType::F32)?.to_vec2::<f32>()?.into_iter()
        };
        Ok(batch.iter().map(|step| if step.want_logits { wanted.next() } else { None }).collect())
    }
}

/// `[t, past + t]`: 0 where token `i` of the chunk may attend (positions up to `past + i`), −inf elsewhere.
fn causal_mask(t: usize, past: usize, device: &Device) -> candle_core::Result<Tensor> {
    let width = past + t;
    let mask: Vec<f32> =
        (0..t).flat_map(|i| (0..width).map(move |j| if j <= past + i { 0.0 } else { f32::NEG_INFINITY })).collect();
    Tensor::from_vec(mask, (t, width), device)
}

/// Cosine and sine tables for rotary embeddings, `[positions, head_dim / 2]`.
fn rope_tables(head_dim: usize, base: f32, positions: usize, device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
    let inv_freq: Vec<f32> = (0..head_dim).step_by(2).map(|i| 1.0 / base.powf(i as f32 / head_dim as f32)).collect();
    let inv_freq = Tensor::from_vec(inv_freq, (1, head_dim / 2), device)?;
    let pos = Tensor::arange(0u32, positions as u32, device)?.to_dtype(DType::F32)?.reshape((positions, 1))?;
    let freqs = pos.broadcast_mul(&inv_freq)?;
    Ok((freqs.cos()?, freqs.sin()?))
}

/// A linear layer's weight in the asked format, on `kernels` where they cover it.
fn linear(t: QTensor, format: WeightFormat, kernels: Option<Isa>) -> Result<Linear, ModelError> {
    let device = t.device();
    let weights = match format {
        WeightFormat::Quantized(dtype) if t.dtype() == dtype => QMatMul::QTensor(std::sync::Arc::new(t)),
        WeightFormat::Quantized(dtype) => {
            let w = t.dequantize(&device)?;
            if w.dim(D::Minus1)? % dtype.block_size() != 0 {
                return Err(ModelError::Unsupported(format!("cannot quantize a weight of shape {:?}", w.shape())));
            }
            QMatMul::QTensor(std::sync::Arc::new(QTensor::quantize(&w, dtype)?))
        }
        WeightFormat::F16 => QMatMul::TensorF16(t.dequantize_f16(&device)?),
        WeightFormat::F32 => QMatMul::Tensor(t.dequantize(&device)?),
        WeightFormat::Stored => QMatMul::from_qtensor(t)?,
    };
    Linear::new(weights, kernels)
}

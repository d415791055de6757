//! SmolLM2, the frozen LLM, as our own llama forward pass over the GGUF's weights.
//!
//! Token embedding, then per layer: RMSNorm, grouped-query attention with rotary position
//! embedding (GGUF's adjacent-pair layout), RMSNorm, SwiGLU MLP, each with a residual; a
//! final RMSNorm and the output head (the embedding table itself when tied).
//!
//! Everything runs on plain `f32` buffers ([`super::kernels`]). Each weight matrix is held
//! twice: as stored (Q4_1 / Q8_0) for steps of a few tokens, where reading memory is the
//! cost and the quantized rows are five times fewer bytes, and dequantized for long chunks,
//! which are matrix products. The two agree up to float rounding.
//!
//! The key/value cache is an explicit [`KvCache`]: clone it after a shared prompt prefix
//! and every continuation starts from the copy; [`SmolLm::logits_all`] scores every
//! position of a chunk at once.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use candle_core::quantized::GgmlDType;
use rayon::prelude::*;

use super::gguf::LlmFile;
use super::kernels::{self, Quant, Strided};

/// Hyperparameters read from the GGUF's `llama.*` metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct LlmConfig {
    pub layers: usize,
    pub dim: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab: usize,
    pub context: usize,
    pub rope_base: f32,
    pub rms_eps: f32,
}

impl LlmConfig {
    fn from_gguf(file: &LlmFile) -> Result<Self> {
        let arch = file.metadata_string("general.architecture").unwrap_or_default();
        ensure!(arch == "llama", "unsupported LLM architecture {arch:?} (only llama is implemented)");
        let get = |key: &str| -> Result<usize> { Ok(file.metadata_u32(&format!("llama.{key}"))? as usize) };
        let (dim, heads) = (get("embedding_length")?, get("attention.head_count")?);
        let config = Self {
            layers: get("block_count")?,
            dim,
            hidden: get("feed_forward_length")?,
            heads,
            kv_heads: get("attention.head_count_kv")?,
            head_dim: dim / heads,
            vocab: file.tokens()?.len(),
            context: get("context_length")?,
            rope_base: file.metadata_f32("llama.rope.freq_base").unwrap_or(10_000.0),
            rms_eps: file.metadata_f32("llama.attention.layer_norm_rms_epsilon")?,
        };
        ensure!(
            dim % heads == 0 && heads % config.kv_heads == 0 && config.head_dim.is_multiple_of(64),
            "inconsistent attention shape: {config:?}"
        );
        if let Ok(rope_dims) = get("rope.dimension_count") {
            ensure!(
                rope_dims == config.head_dim,
                "partial rotary embedding ({rope_dims} of {}) is not implemented",
                config.head_dim
            );
        }
        Ok(config)
    }

    fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }
}

/// Up to this many queries, attention is computed query by query rather than as matrix
/// products, whose setup costs more than the arithmetic at this size.
const FEW_QUERIES: usize = 8;

/// Up to this many tokens, products with the weights read the quantized rows (in groups of
/// four tokens); beyond, the dequantized matrix in one matrix product, which is faster from
/// about this size on (measured on two AVX-512 cores).
const QUANTIZED_TOKENS: usize = 32;

/// A weight matrix (`rows x cols`, applied as `x . W^T`), quantized and dequantized.
struct Linear {
    quant: Quant,
    rows: usize,
    cols: usize,
    packed: Vec<u8>,
    dense: Vec<f32>,
}

impl Linear {
    /// Loads GGUF tensors of one quantization and width, stacking their rows in order
    /// (for fused projections such as q, k and v).
    fn load(file: &LlmFile, names: &[String]) -> Result<Self> {
        let mut stacked: Option<(Quant, usize)> = None;
        let (mut rows, mut packed) = (0, Vec::new());
        for name in names {
            let tensor = file.qtensor(name)?;
            let quant = match tensor.dtype() {
                GgmlDType::Q4_1 => Quant::Q4_1,
                GgmlDType::Q8_0 => Quant::Q8_0,
                other => bail!("{name} is {other:?}; only Q4_1 and Q8_0 weights are implemented"),
            };
            let (r, c) = tensor.shape().dims2().with_context(|| format!("{name} is not a matrix"))?;
            ensure!(c % kernels::BLOCK == 0, "{name} rows are not whole blocks");
            match stacked {
                None => stacked = Some((quant, c)),
                Some(layout) => ensure!(layout == (quant, c), "{name} differs from {} in type or width", names[0]),
            }
            rows += r;
            packed.extend_from_slice(&tensor.data()?);
        }
        let (quant, cols) = stacked.context("no tensors named")?;
        let mut dense = vec![0f32; rows * cols];
        kernels::dequantize(quant, &packed, &mut dense);
        Ok(Self { quant, rows, cols, packed, dense })
    }

    /// `out (t x rows) = x (t x cols) . W^T`.
    fn forward(&self, x: &[f32], t: usize, out: &mut [f32]) {
        if t <= QUANTIZED_TOKENS {
            kernels::quantized_matmul(self.quant, &self.packed, &x[..t * self.cols], t, out);
        } else {
            crate::compute::matmul::matmul_transposed(x, &self.dense, t, self.cols, self.rows, out, self.rows);
        }
    }
}

struct Layer {
    attn_norm: Vec<f32>,
    /// q, k and v stacked: `dim + 2 kv_dim` rows.
    qkv: Linear,
    attn_output: Linear,
    ffn_norm: Vec<f32>,
    /// Gate and up stacked: `2 hidden` rows.
    gate_up: Linear,
    down: Linear,
}

/// Keys and values of the positions processed so far, per layer, `[position][kv_dim]`.
///
/// Cloning is the snapshot: clone after a shared prefix, continue each copy separately, or
/// roll one back with [`KvCache::truncate`] / [`KvCache::restore`].
#[derive(Clone, Debug)]
pub struct KvCache {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    kv_dim: usize,
    len: usize,
}

impl KvCache {
    /// Positions cached.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every position from `len` on.
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            for store in self.keys.iter_mut().chain(self.values.iter_mut()) {
                store.truncate(len * self.kv_dim);
            }
            self.len = len;
        }
    }

    /// Becomes a copy of `snapshot`, reusing this cache's memory.
    pub fn restore(&mut self, snapshot: &KvCache) {
        self.clone_from(snapshot);
    }
}

/// SmolLM2 (any llama-architecture GGUF with Q4_1 / Q8_0 weights) on the CPU.
pub struct SmolLm {
    config: LlmConfig,
    embedding: Linear,
    /// The output head; `None` when tied to the embedding table.
    output: Option<Linear>,
    output_norm: Vec<f32>,
    layers: Vec<Layer>,
}

impl SmolLm {
    /// Loads from a GGUF file path.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::load(&LlmFile::open(path)?)
    }

    /// Loads every weight (about 0.65 GB in memory for SmolLM2-135M).
    pub fn load(file: &LlmFile) -> Result<Self> {
        let config = LlmConfig::from_gguf(file)?;
        let vector = |name: &str| -> Result<Vec<f32>> { Ok(file.dequantized(name)?.flatten_all()?.to_vec1()?) };
        let names = |layer: usize, parts: &[&str]| -> Vec<String> {
            parts.iter().map(|p| format!("blk.{layer}.{p}.weight")).collect()
        };
        let layers = (0..config.layers)
            .map(|i| -> Result<Layer> {
                Ok(Layer {
                    attn_norm: vector(&format!("blk.{i}.attn_norm.weight"))?,
                    qkv: Linear::load(file, &names(i, &["attn_q", "attn_k", "attn_v"]))?,
                    attn_output: Linear::load(file, &names(i, &["attn_output"]))?,
                    ffn_norm: vector(&format!("blk.{i}.ffn_norm.weight"))?,
                    gate_up: Linear::load(file, &names(i, &["ffn_gate", "ffn_up"]))?,
                    down: Linear::load(file, &names(i, &["ffn_down"]))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let embedding = Linear::load(file, &["token_embd.weight".to_string()])?;
        let output = match file.qtensor("output.weight") {
            Ok(_) => Some(Linear::load(file, &["output.weight".to_string()])?),
            Err(_) => None,
        };
        let model = Self { output_norm: vector("output_norm.weight")?, config, embedding, output, layers };
        let c = &model.config;
        ensure!(model.embedding.rows == c.vocab && model.embedding.cols == c.dim, "token_embd is not vocab x dim");
        for layer in &model.layers {
            ensure!(
                layer.qkv.rows == c.dim + 2 * c.kv_dim()
                    && layer.gate_up.rows == 2 * c.hidden
                    && layer.down.cols == c.hidden
                    && layer.attn_output.rows == c.dim,
                "a layer's weights do not match the configuration {c:?}"
            );
        }
        Ok(model)
    }

    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    /// An empty cache for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache {
            keys: vec![Vec::new(); self.config.layers],
            values: vec![Vec::new(); self.config.layers],
            kv_dim: self.config.kv_dim(),
            len: 0,
        }
    }

    /// Runs `tokens` at positions `start..`, after the first `start` cached positions (any
    /// later ones are dropped), and returns the logits of every position, `tokens.len() x
    /// vocab` row-major: the logits at row `i` predict the token after `tokens[i]`.
    pub fn logits_all(&self, tokens: &[u32], start: usize, cache: &mut KvCache) -> Result<Vec<f32>> {
        self.logits(tokens, start, cache, tokens.len())
    }

    /// As [`SmolLm::logits_all`] but only the last position's logits (`vocab` values),
    /// which skips most of the output head's cost.
    pub fn logits_last(&self, tokens: &[u32], start: usize, cache: &mut KvCache) -> Result<Vec<f32>> {
        self.logits(tokens, start, cache, 1)
    }

    /// The logits of the last `rows` positions of `tokens` (run as in [`SmolLm::logits_all`]).
    fn logits(&self, tokens: &[u32], start: usize, cache: &mut KvCache, rows: usize) -> Result<Vec<f32>> {
        let x = on_pool(|| self.hidden_states(tokens, start, cache))?;
        let last = &x[x.len() - rows * self.config.dim..];
        let mut normed = vec![0f32; last.len()];
        kernels::rms_norm(last, &self.output_norm, self.config.rms_eps, &mut normed);
        let mut logits = vec![0f32; rows * self.config.vocab];
        self.head().forward(&normed, rows, &mut logits);
        Ok(logits)
    }

    /// Greedy decoding: the prompt, then up to `max_new` tokens, each the most likely one,
    /// stopping after any token in `stop`; the first `min_new` tokens are never stop tokens
    /// (the most likely of the others). Returns the new tokens only.
    pub fn greedy(&self, prompt: &[u32], max_new: usize, min_new: usize, stop: &[u32]) -> Result<Vec<u32>> {
        let mut cache = self.new_cache();
        let mut generated = Vec::new();
        if max_new == 0 {
            return Ok(generated);
        }
        let mut logits = self.logits_last(prompt, 0, &mut cache)?;
        loop {
            if generated.len() < min_new {
                for &id in stop {
                    if let Some(logit) = logits.get_mut(id as usize) {
                        *logit = f32::NEG_INFINITY;
                    }
                }
            }
            let next = argmax(&logits);
            generated.push(next);
            if generated.len() == max_new || stop.contains(&next) {
                return Ok(generated);
            }
            logits = self.logits_last(&[next], cache.len(), &mut cache)?;
        }
    }

    fn head(&self) -> &Linear {
        self.output.as_ref().unwrap_or(&self.embedding)
    }

    /// The residual stream after the last layer, `tokens.len() x dim`; appends to `cache`.
    fn hidden_states(&self, tokens: &[u32], start: usize, cache: &mut KvCache) -> Result<Vec<f32>> {
        let c = &self.config;
        let t = tokens.len();
        ensure!(t > 0, "no tokens to run");
        ensure!(start <= cache.len(), "start position {start} is past the {} cached positions", cache.len());
        ensure!(start + t <= c.context, "{} positions exceed the context of {}", start + t, c.context);
        ensure!(cache.kv_dim == c.kv_dim() && cache.keys.len() == c.layers, "the cache belongs to another model");
        if let Some(&bad) = tokens.iter().find(|&&id| id as usize >= c.vocab) {
            bail!("token id {bad} is outside the vocabulary of {}", c.vocab);
        }
        cache.truncate(start);

        let (dim, kv_dim, hd) = (c.dim, c.kv_dim(), c.head_dim);
        let qkv_width = dim + 2 * kv_dim;
        let mut x = Vec::with_capacity(t * dim);
        for &id in tokens {
            x.extend_from_slice(&self.embedding.dense[id as usize * dim..(id as usize + 1) * dim]);
        }
        let angles: Vec<Vec<(f32, f32)>> =
            (start..start + t).map(|p| kernels::rope_angles(p, hd, c.rope_base)).collect();
        let mut normed = vec![0f32; t * dim];
        let mut qkv = vec![0f32; t * qkv_width];
        let mut attended = vec![0f32; t * dim];
        let mut projected = vec![0f32; t * dim];
        let mut gate_up = vec![0f32; t * 2 * c.hidden];
        let mut hidden = vec![0f32; t * c.hidden];

        for (l, layer) in self.layers.iter().enumerate() {
            kernels::rms_norm(&x, &layer.attn_norm, c.rms_eps, &mut normed);
            layer.qkv.forward(&normed, t, &mut qkv);
            for (row, angles) in qkv.chunks_exact_mut(qkv_width).zip(&angles) {
                for head in row[..dim + kv_dim].chunks_exact_mut(hd) {
                    kernels::rope(head, angles);
                }
                cache.keys[l].extend_from_slice(&row[dim..dim + kv_dim]);
                cache.values[l].extend_from_slice(&row[dim + kv_dim..]);
            }
            self.attention(&qkv, t, start, &cache.keys[l], &cache.values[l], &mut attended);
            layer.attn_output.forward(&attended, t, &mut projected);
            add(&mut x, &projected);

            kernels::rms_norm(&x, &layer.ffn_norm, c.rms_eps, &mut normed);
            layer.gate_up.forward(&normed, t, &mut gate_up);
            kernels::swiglu(&gate_up, &mut hidden, c.hidden);
            layer.down.forward(&hidden, t, &mut projected);
            add(&mut x, &projected);
        }
        cache.len = start + t;
        Ok(x)
    }

    /// Causal attention of the chunk's queries over all cached keys, one head per task;
    /// writes each head's output into its columns of `out` (`t x dim`). A few queries are
    /// scored one by one; more as two matrix products per head.
    fn attention(&self, qkv: &[f32], t: usize, start: usize, keys: &[f32], values: &[f32], out: &mut [f32]) {
        let c = &self.config;
        let (dim, kv_dim, hd) = (c.dim, c.kv_dim(), c.head_dim);
        let positions = start + t;
        debug_assert!(keys.len() == positions * kv_dim && values.len() == positions * kv_dim);
        let group = c.heads / c.kv_heads;
        let scale = 1.0 / (hd as f32).sqrt();
        // Raw addresses so that the tasks can share them; each writes only its own columns.
        let (q_at, k_at, v_at, out_at) =
            (qkv.as_ptr() as usize, keys.as_ptr() as usize, values.as_ptr() as usize, out.as_mut_ptr() as usize);
        if t <= FEW_QUERIES {
            (0..c.heads).into_par_iter().for_each(|h| {
                let g = h / group;
                let mut scores = vec![0f32; positions];
                for i in 0..t {
                    let visible = start + i + 1;
                    let q = &qkv[i * (dim + 2 * kv_dim) + h * hd..][..hd];
                    // SAFETY: columns h hd..(h+1) hd of the t x dim output belong to this task.
                    let head_out =
                        unsafe { std::slice::from_raw_parts_mut((out_at as *mut f32).add(i * dim + h * hd), hd) };
                    kernels::attend(
                        q,
                        &keys[g * hd..],
                        &values[g * hd..],
                        kv_dim,
                        scale,
                        &mut scores[..visible],
                        head_out,
                    );
                }
            });
            return;
        }
        (0..c.heads).into_par_iter().for_each(|h| {
            let g = h / group;
            let mut scores = vec![0f32; t * positions];
            // SAFETY: query rows are t x (dim + 2 kv_dim) with this head at column h hd; the
            // key and value stores are positions x kv_dim with this group at column g hd;
            // `scores` is t x positions; the output columns h hd..(h+1) hd of the t x dim
            // output belong to this task alone.
            unsafe {
                let queries = Strided { ptr: (q_at as *const f32).add(h * hd), rs: (dim + 2 * kv_dim) as isize, cs: 1 };
                let keys_t = Strided { ptr: (k_at as *const f32).add(g * hd), rs: 1, cs: kv_dim as isize };
                kernels::strided_matmul(
                    (t, positions, hd),
                    queries,
                    keys_t,
                    scale,
                    scores.as_mut_ptr(),
                    positions as isize,
                );
            }
            for (i, row) in scores.chunks_exact_mut(positions).enumerate() {
                let visible = start + i + 1;
                kernels::softmax(&mut row[..visible]);
                row[visible..].fill(0.0);
            }
            // SAFETY: as above.
            unsafe {
                let weights = Strided { ptr: scores.as_ptr(), rs: positions as isize, cs: 1 };
                let values = Strided { ptr: (v_at as *const f32).add(g * hd), rs: kv_dim as isize, cs: 1 };
                let dst = (out_at as *mut f32).add(h * hd);
                kernels::strided_matmul((t, hd, positions), weights, values, 1.0, dst, dim as isize);
            }
        });
    }
}

/// Runs `work` on a thread of rayon's pool. Its many small parallel steps then start from
/// inside the pool instead of each waking it from outside and waiting on it.
fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| work())
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Index of the largest value (the first on ties).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}

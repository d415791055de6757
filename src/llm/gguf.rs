//! Reading the frozen LLM's GGUF file: its metadata (hyperparameters and tokenizer) and
//! its tensors, either dequantized or as stored.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::quantized::{gguf_file, QTensor};
use candle_core::{Device, Tensor};

/// An open GGUF file with its parsed header (metadata and tensor directory).
pub struct LlmFile {
    path: PathBuf,
    content: gguf_file::Content,
}

impl LlmFile {
    /// Opens the file and parses its header; tensors are read on demand.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut reader = open_reader(&path)?;
        let content = gguf_file::Content::read(&mut reader)
            .map_err(|e| anyhow::anyhow!("{} is not a readable GGUF file: {e}", path.display()))?;
        Ok(Self { path, content })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The vocabulary's token strings in id order (byte-level BPE, `Ġ` marks a leading space).
    pub fn tokens(&self) -> Result<Vec<String>> {
        self.metadata_strings("tokenizer.ggml.tokens")
    }

    /// A metadata value, failing with the key's name when it is absent.
    pub fn metadata(&self, key: &str) -> Result<&gguf_file::Value> {
        self.content.metadata.get(key).with_context(|| format!("{} has no {key}", self.path.display()))
    }

    /// A metadata array of strings, such as `tokenizer.ggml.merges`.
    pub fn metadata_strings(&self, key: &str) -> Result<Vec<String>> {
        self.metadata(key)?.to_vec()?.iter().map(|v| Ok(v.to_string()?.clone())).collect()
    }

    /// A metadata unsigned integer, such as `llama.block_count`.
    pub fn metadata_u32(&self, key: &str) -> Result<u32> {
        Ok(self.metadata(key)?.to_u32()?)
    }

    /// A metadata float, such as `llama.rope.freq_base`.
    pub fn metadata_f32(&self, key: &str) -> Result<f32> {
        Ok(self.metadata(key)?.to_f32()?)
    }

    /// A metadata string such as `general.name`, if present.
    pub fn metadata_string(&self, key: &str) -> Option<String> {
        self.content.metadata.get(key).and_then(|v| v.to_string().ok().cloned())
    }

    /// Reads and dequantizes one tensor to f32 on the CPU.
    pub fn dequantized(&self, name: &str) -> Result<Tensor> {
        Ok(self.qtensor(name)?.dequantize(&Device::Cpu)?)
    }

    /// Reads one tensor as stored (quantized or not) on the CPU.
    pub fn qtensor(&self, name: &str) -> Result<QTensor> {
        if !self.content.tensor_infos.contains_key(name) {
            bail!("{} has no tensor named {name}", self.path.display());
        }
        let mut reader = open_reader(&self.path)?;
        self.content
            .tensor(&mut reader, name, &Device::Cpu)
            .with_context(|| format!("reading {name} from {}", self.path.display()))
    }
}

fn open_reader(path: &Path) -> Result<BufReader<File>> {
    let file = File::open(path).with_context(|| {
        format!("cannot open the LLM file {} (run scripts/fetch-llm.sh to fetch it)", path.display())
    })?;
    Ok(BufReader::new(file))
}

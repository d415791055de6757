//! Reading the frozen LLM's GGUF file: its token strings and its input embedding table.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file;
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
        let value = self
            .content
            .metadata
            .get("tokenizer.ggml.tokens")
            .with_context(|| format!("{} has no tokenizer.ggml.tokens", self.path.display()))?;
        value
            .to_vec()?
            .iter()
            .map(|v| Ok(v.to_string()?.clone()))
            .collect()
    }

    /// A metadata string such as `general.name`, if present.
    pub fn metadata_string(&self, key: &str) -> Option<String> {
        self.content.metadata.get(key).and_then(|v| v.to_string().ok().cloned())
    }

    /// Reads and dequantizes one tensor to f32 on the CPU.
    pub fn dequantized(&self, name: &str) -> Result<Tensor> {
        if !self.content.tensor_infos.contains_key(name) {
            bail!("{} has no tensor named {name}", self.path.display());
        }
        let mut reader = open_reader(&self.path)?;
        let qtensor = self
            .content
            .tensor(&mut reader, name, &Device::Cpu)
            .with_context(|| format!("reading {name} from {}", self.path.display()))?;
        Ok(qtensor.dequantize(&Device::Cpu)?)
    }
}

fn open_reader(path: &Path) -> Result<BufReader<File>> {
    let file = File::open(path).with_context(|| {
        format!("cannot open the LLM file {} (run scripts/fetch-llm.sh to fetch it)", path.display())
    })?;
    Ok(BufReader::new(file))
}

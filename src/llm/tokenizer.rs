//! The frozen LLM's tokenizer: byte-level BPE rebuilt from the GGUF's own metadata.
//!
//! SmolLM2 uses the GPT-2 scheme (`tokenizer.ggml.model = gpt2`, pre-tokenizer `smollm`):
//! every digit is split off on its own, the rest is cut into pieces by the GPT-2
//! pre-tokenizer pattern (done here by hand, see [`pre_tokenize`]), each piece's UTF-8
//! bytes are spelled with GPT-2's printable byte alphabet (`Ġ` for a space, `Ċ` for a
//! newline) and merged by the ranked BPE merges. Control tokens such as `<|im_start|>`
//! are matched in the text only when asked ([`Tokenizer::encode_with_special`]).

use std::collections::HashMap;

use anyhow::{bail, Context, Result};

use super::gguf::LlmFile;

/// `tokenizer.ggml.token_type` of a control token (`<|im_start|>`, `<|endoftext|>`, ...).
const CONTROL_TOKEN: i32 = 3;

/// The SmolLM2-Instruct system prompt its chat template adds when none is given.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// Who speaks a chat message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

pub struct Tokenizer {
    /// Token strings in id order, in the byte alphabet (control tokens verbatim).
    tokens: Vec<String>,
    id_of_token: HashMap<String, u32>,
    /// `(left, right) -> (rank, merged)`: lower ranks merge first.
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// The one-character token of each byte; a few bytes (six control characters and
    /// some never or rarely seen in UTF-8) have none and are dropped, as Hugging Face's
    /// BPE without an unknown token does.
    byte_token: [Option<u32>; 256],
    /// The byte spelled by each character of the byte alphabet.
    byte_of_char: HashMap<char, u8>,
    /// Control tokens, longest first, so the longest match wins.
    control: Vec<(String, u32)>,
    is_control: Vec<bool>,
    bos: u32,
    eos: u32,
}

impl Tokenizer {
    /// Rebuilds the tokenizer from `tokenizer.ggml.*` metadata.
    pub fn from_gguf(file: &LlmFile) -> Result<Self> {
        let model = file.metadata_string("tokenizer.ggml.model").unwrap_or_default();
        if model != "gpt2" {
            bail!("unsupported tokenizer model {model:?} (only byte-level BPE, gpt2, is implemented)");
        }
        let pre = file.metadata_string("tokenizer.ggml.pre").unwrap_or_default();
        if pre != "smollm" {
            bail!("unsupported pre-tokenizer {pre:?} (only SmolLM's is implemented)");
        }
        let tokens = file.tokens()?;
        let types: Vec<i32> = file
            .metadata("tokenizer.ggml.token_type")?
            .to_vec()?
            .iter()
            .map(|v| v.to_i32())
            .collect::<candle_core::Result<_>>()?;
        if types.len() != tokens.len() {
            bail!("{} token types for {} tokens", types.len(), tokens.len());
        }
        let id_of_token: HashMap<String, u32> =
            tokens.iter().enumerate().map(|(id, t)| (t.clone(), id as u32)).collect();

        let alphabet = byte_alphabet();
        let byte_token = alphabet.map(|c| id_of_token.get(c.to_string().as_str()).copied());
        let byte_of_char = alphabet.iter().enumerate().map(|(b, &c)| (c, b as u8)).collect();

        let mut merges = HashMap::new();
        for (rank, merge) in file.metadata_strings("tokenizer.ggml.merges")?.iter().enumerate() {
            let (left, right) = merge.split_once(' ').with_context(|| format!("malformed merge {merge:?}"))?;
            let id =
                |t: &str| id_of_token.get(t).copied().with_context(|| format!("merge {merge:?} uses unknown {t:?}"));
            let merged = id(&format!("{left}{right}"))?;
            merges.entry((id(left)?, id(right)?)).or_insert((rank as u32, merged));
        }

        let is_control: Vec<bool> = types.iter().map(|&t| t == CONTROL_TOKEN).collect();
        let mut control: Vec<(String, u32)> =
            (0..tokens.len()).filter(|&id| is_control[id]).map(|id| (tokens[id].clone(), id as u32)).collect();
        control.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));

        Ok(Self {
            bos: file.metadata_u32("tokenizer.ggml.bos_token_id")?,
            eos: file.metadata_u32("tokenizer.ggml.eos_token_id")?,
            tokens,
            id_of_token,
            merges,
            byte_token,
            byte_of_char,
            control,
            is_control,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The beginning-of-sequence token (`<|im_start|>` for SmolLM2-Instruct).
    pub fn bos(&self) -> u32 {
        self.bos
    }

    /// The end-of-sequence token (`<|im_end|>` for SmolLM2-Instruct).
    pub fn eos(&self) -> u32 {
        self.eos
    }

    /// The id of a token given in the vocabulary's spelling (`Ġcat`, `<|im_end|>`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.id_of_token.get(token).copied()
    }

    /// A token's string in the vocabulary's spelling.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// Whether a token is a control token (never produced from plain text).
    pub fn is_control(&self, id: u32) -> bool {
        self.is_control.get(id as usize).copied().unwrap_or(false)
    }

    /// Encodes text as plain text: control-token spellings in it are ordinary characters.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        for piece in pre_tokenize(text) {
            self.encode_piece(piece, &mut ids);
        }
        ids
    }

    /// Encodes text in which control-token spellings (`<|im_start|>`) stand for those tokens.
    pub fn encode_with_special(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        let mut plain_start = 0;
        let mut at = 0;
        while at < text.len() {
            let rest = &text[at..];
            match self.control.iter().find(|(spelling, _)| rest.starts_with(spelling.as_str())) {
                Some((spelling, id)) => {
                    ids.extend(self.encode(&text[plain_start..at]));
                    ids.push(*id);
                    at += spelling.len();
                    plain_start = at;
                }
                None => at += rest.chars().next().map_or(1, char::len_utf8),
            }
        }
        ids.extend(self.encode(&text[plain_start..]));
        ids
    }

    /// Decodes ids to text; control tokens appear as their spellings. Byte sequences that
    /// are not valid UTF-8 (a character cut between tokens) become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids, true)).into_owned()
    }

    /// Decodes ids to text, leaving control tokens out.
    pub fn decode_skipping_control(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids, false)).into_owned()
    }

    /// The raw bytes of ids; a streaming decoder can hold back an incomplete character.
    pub fn decode_bytes(&self, ids: &[u32], keep_control: bool) -> Vec<u8> {
        let mut bytes = Vec::new();
        for &id in ids {
            let Some(token) = self.tokens.get(id as usize) else {
                continue;
            };
            if self.is_control[id as usize] {
                if keep_control {
                    bytes.extend_from_slice(token.as_bytes());
                }
                continue;
            }
            for c in token.chars() {
                match self.byte_of_char.get(&c) {
                    Some(&b) => bytes.push(b),
                    None => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                }
            }
        }
        bytes
    }

    /// The SmolLM2-Instruct chat template (ChatML): the default system prompt when the first
    /// message is not a system one, each message as `<|im_start|>role\ncontent<|im_end|>\n`,
    /// then `<|im_start|>assistant\n` when a reply is to be generated.
    pub fn chat_prompt(messages: &[(Role, &str)], add_generation_prompt: bool) -> String {
        let mut prompt = String::new();
        if messages.first().is_none_or(|(role, _)| *role != Role::System) {
            prompt.push_str(&format!("<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n"));
        }
        for (role, content) in messages {
            prompt.push_str(&format!("<|im_start|>{}\n{content}<|im_end|>\n", role.name()));
        }
        if add_generation_prompt {
            prompt.push_str("<|im_start|>assistant\n");
        }
        prompt
    }

    /// The token ids of a chat prompt ([`Tokenizer::chat_prompt`]).
    pub fn encode_chat(&self, messages: &[(Role, &str)], add_generation_prompt: bool) -> Vec<u32> {
        self.encode_with_special(&Self::chat_prompt(messages, add_generation_prompt))
    }

    /// BPE over one pre-token: start from its bytes, repeatedly apply the lowest-ranked
    /// merge among adjacent pairs (leftmost on ties).
    fn encode_piece(&self, piece: &str, out: &mut Vec<u32>) {
        let mut symbols: Vec<u32> = piece.bytes().filter_map(|b| self.byte_token[b as usize]).collect();
        loop {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(i, pair)| self.merges.get(&(pair[0], pair[1])).map(|&(rank, merged)| (rank, i, merged)))
                .min();
            let Some((_, i, merged)) = best else { break };
            symbols[i] = merged;
            symbols.remove(i + 1);
        }
        out.extend(symbols);
    }
}

/// GPT-2's printable spelling of the 256 bytes: printable Latin-1 bytes stand for
/// themselves, the others are shifted to U+0100 upwards in byte order.
fn byte_alphabet() -> [char; 256] {
    let printable = |b: u32| (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
    let mut alphabet = ['\0'; 256];
    let mut shifted = 0;
    for b in 0..256u32 {
        alphabet[b as usize] = if printable(b) {
            char::from_u32(b).unwrap()
        } else {
            shifted += 1;
            char::from_u32(255 + shifted).unwrap()
        };
    }
    alphabet
}

/// Unicode letter (`\p{L}`). Std has no general-category query: alphabetic characters
/// that are not numeric are the letters plus the few combining marks that are
/// `Other_Alphabetic`, which is close enough for this vocabulary.
fn is_letter(c: char) -> bool {
    c.is_alphabetic() && !c.is_numeric()
}

/// Splits text into the pieces BPE runs on, as SmolLM2's pre-tokenizer does: each numeric
/// character alone, then within the runs between them the GPT-2 pattern
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
pub fn pre_tokenize(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut run_start = 0;
    for (i, c) in text.char_indices() {
        if c.is_numeric() {
            split_run(&text[run_start..i], &mut pieces);
            pieces.push(&text[i..i + c.len_utf8()]);
            run_start = i + c.len_utf8();
        }
    }
    split_run(&text[run_start..], &mut pieces);
    pieces
}

/// The GPT-2 pattern over a run without numeric characters.
fn split_run<'a>(run: &'a str, pieces: &mut Vec<&'a str>) {
    const CONTRACTIONS: [&str; 7] = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"];
    let chars: Vec<(usize, char)> = run.char_indices().collect();
    let offset = |i: usize| chars.get(i).map_or(run.len(), |&(at, _)| at);
    let n = chars.len();
    let mut i = 0;
    while i < n {
        let start = offset(i);
        if let Some(c) = CONTRACTIONS.iter().find(|c| run[start..].starts_with(**c)) {
            pieces.push(&run[start..start + c.len()]);
            i += c.chars().count();
            continue;
        }
        let c = chars[i].1;
        // A single plain space joins the letters or symbols after it.
        let body = if c == ' ' && i + 1 < n && !chars[i + 1].1.is_whitespace() { i + 1 } else { i };
        let first = chars[body].1;
        let mut end = body + 1;
        if is_letter(first) {
            while end < n && is_letter(chars[end].1) {
                end += 1;
            }
        } else if !first.is_whitespace() {
            while end < n && !chars[end].1.is_whitespace() && !is_letter(chars[end].1) {
                end += 1;
            }
        } else {
            while end < n && chars[end].1.is_whitespace() {
                end += 1;
            }
            // Before a non-space, the run's last character is left for the next piece
            // (`\s+(?!\S)`), unless the run is that one character (`\s+`).
            if end < n && end - body > 1 {
                end -= 1;
            }
        }
        pieces.push(&run[start..offset(end)]);
        i = end;
    }
}

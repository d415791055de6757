//! The LLM tokenizer rebuilt from the GGUF: round trips, the lexical vocabulary, and
//! encodings against Hugging Face `tokenizers` (scripts/tokenizer_reference.py).

use std::path::PathBuf;
use std::sync::OnceLock;

use spae::codebook::vocabulary;
use spae::codebook::Codebook;
use spae::llm::gguf::LlmFile;
use spae::llm::tokenizer::{pre_tokenize, Role, Tokenizer};
use spae::paths;

fn llm_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(paths::LLM_GGUF)
}

fn tokenizer() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| Tokenizer::from_gguf(&LlmFile::open(llm_path()).unwrap()).unwrap())
}

#[test]
fn decode_inverts_encode() {
    let texts = [
        "Hello, world!",
        "  leading and trailing whitespace runs   \t\n",
        "\n\n\n",
        " ",
        "tabs\tnew\nlines\r\nand\u{a0}no-break\u{2003}spaces",
        "Digits 0123456789 and 3.14159, -42, 1e-9, ½ ² Ⅻ ٣",
        "Café naïve résumé coöperate façade Ångström",
        "Ελληνικά русский 中文字符 日本語のテキスト 한국어 עברית العربية हिन्दी",
        "Emoji 😀🎉👍🏽 🇫🇷 👨‍👩‍👧 and a lone combining mark e\u{301}",
        "Punctuation!!! ??? ... --- ((nested)) [x] {y} <z> @#$%^&*~`|\\/",
        "I'm sure they're fine; we'll see. DON'T 'quote' ''double''",
        "<|im_start|> spelled in plain text stays plain",
        "fn main() {\n    println!(\"hi\");\n}\n",
        "",
    ];
    let t = tokenizer();
    for text in texts {
        let ids = t.encode(text);
        assert_eq!(t.decode(&ids), text, "round trip of {text:?} via {ids:?}");
        assert!(ids.iter().all(|&id| !t.is_control(id)), "plain text must not yield control tokens");
    }
}

#[test]
fn every_lexical_word_is_one_token_after_a_space() {
    let codebook = Codebook::load(llm_path(), vocabulary::DEFAULT_RULE, vocabulary::DEFAULT_SIZE).unwrap();
    let vocabulary = codebook.vocabulary();
    let t = tokenizer();
    for index in 0..vocabulary.len() as u32 {
        let word = vocabulary.word(index);
        assert_eq!(t.encode(&format!(" {word}")), [vocabulary.token_id(index)], "word {word:?}");
    }
}

#[test]
fn encodings_match_hugging_face_tokenizers() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer_reference.json");
    let reference: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = |key: &str| -> Vec<(String, Vec<u32>)> {
        reference[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|case| {
                let ids = case["ids"].as_array().unwrap().iter().map(|id| id.as_u64().unwrap() as u32).collect();
                (case["text"].as_str().unwrap().to_string(), ids)
            })
            .collect()
    };
    let t = tokenizer();
    let plain = cases("plain");
    assert!(plain.len() >= 20);
    for (text, ids) in &plain {
        assert_eq!(&t.encode(text), ids, "{text:?} split as {:?}", pre_tokenize(text));
        assert_eq!(&t.decode(ids), text);
    }
    for (text, ids) in &cases("special") {
        assert_eq!(&t.encode_with_special(text), ids, "{text:?}");
        assert_eq!(&t.decode(ids), text);
    }
}

#[test]
fn special_tokens_and_the_chat_template() {
    let t = tokenizer();
    assert_eq!(t.vocab_size(), 49_152);
    assert_eq!(t.token_id("<|im_start|>"), Some(1));
    assert_eq!(t.token_id("<|im_end|>"), Some(2));
    assert_eq!((t.bos(), t.eos()), (1, 2));
    assert!(t.is_control(0) && !t.is_control(t.token_id("Ġthe").unwrap()));
    assert_eq!(t.token(t.token_id("Ġthe").unwrap()), Some("Ġthe"));

    let prompt = Tokenizer::chat_prompt(&[(Role::User, "Hi")], true);
    assert_eq!(
        prompt,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    let own_system = Tokenizer::chat_prompt(&[(Role::System, "Be brief."), (Role::User, "Hi")], false);
    assert_eq!(own_system, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");

    let ids = t.encode_chat(&[(Role::User, "Hi")], true);
    assert_eq!(ids.iter().filter(|&&id| id == 1).count(), 3);
    assert_eq!(ids.iter().filter(|&&id| id == 2).count(), 2);
    assert_eq!(t.decode(&ids), prompt);
    assert_eq!(t.decode_skipping_control(&ids), prompt.replace("<|im_start|>", "").replace("<|im_end|>", ""));
}

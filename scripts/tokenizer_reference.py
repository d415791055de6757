#!/usr/bin/env python3
"""Reference token ids for tests/llm_tokenizer.rs, computed independently of the crate.

Rebuilds SmolLM2's tokenizer with Hugging Face `tokenizers` from the GGUF's own vocabulary
and merges (read with the `gguf` package): BPE model, pre-tokenizer Digits (individual
digits) then ByteLevel (GPT-2 pattern, no prefix space), control tokens as special added
tokens. Writes tests/fixtures/tokenizer_reference.json.

    pip install gguf tokenizers
    python scripts/tokenizer_reference.py
"""

import json
from pathlib import Path

from gguf import GGUFReader
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

ROOT = Path(__file__).resolve().parent.parent
GGUF = ROOT / "weights/SmolLM2-135M-Instruct.Q4_1.gguf"
FIXTURE = ROOT / "tests/fixtures/tokenizer_reference.json"
CONTROL = 3

PLAIN = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France?",
    "  leading spaces and trailing spaces   ",
    "tabs\tand\nnewlines\n\n\nmany",
    "I'm sure they're fine; we'll see, you've been, he'd go, it's done. DON'T SHOUT",
    "Numbers: 3.14159, 1,000,000 and 2024-06-30 at 12:45pm",
    "Superscripts ² ³ and fractions ½ ¾ and Roman Ⅻ",
    "Café naïve résumé coöperate façade",
    "Ελληνικά, русский текст, 中文字符, 日本語のテキスト, 한국어",
    "Emoji: 😀🎉👍🏽 and flags 🇫🇷 family 👨‍👩‍👧",
    "Punctuation!!! ??? ... --- ((nested)) [brackets] {braces} <angle> @#$%^&*",
    "fn main() {\n    println!(\"hi\");\n}\n",
    "a  b   c    d \n e",
    "mixed\u00a0no-break\u2003em space",
    "snake_case camelCase kebab-case SCREAMING_CASE",
    "https://example.com/path?query=1&x=y#frag",
    "'s 's's ''quoted'' 're've",
    "end with space ",
    "",
]

SPECIAL = [
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more<repo_name>x",
]


def build() -> Tokenizer:
    reader = GGUFReader(str(GGUF))
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    merges = [tuple(m.split(" ")) for m in reader.fields["tokenizer.ggml.merges"].contents()]
    vocab = {t: i for i, t in enumerate(tokens)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types) if k == CONTROL]
    )
    return tokenizer


def main() -> None:
    tokenizer = build()
    plain = [{"text": t, "ids": tokenizer.encode(t, add_special_tokens=False).ids} for t in PLAIN]
    special = [{"text": t, "ids": tokenizer.encode(t, add_special_tokens=False).ids} for t in SPECIAL]
    def lines(entries):
        return ",\n".join("  " + json.dumps(e, ensure_ascii=False) for e in entries)

    FIXTURE.write_text(f'{{\n "plain": [\n{lines(plain)}\n ],\n "special": [\n{lines(special)}\n ]\n}}\n')
    print(f"wrote {len(plain) + len(special)} encodings to {FIXTURE}")


if __name__ == "__main__":
    main()

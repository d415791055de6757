#!/usr/bin/env python3
"""llama.cpp's speed on the shipped SmolLM2 GGUF, to set beside `cargo bench --bench llm`.

Runs the same file with the same prompt length (256 tokens) and generation length (64
tokens, end-of-sequence ignored, greedy) through llama.cpp's server core, as packaged in
the `xllamacpp` wheel, on 2 threads, and prints prompt and generation tokens/s. Install
the wheel yourself first (this script installs nothing):

    pip install xllamacpp
    python scripts/bench_llamacpp.py [--threads 2] [--runs 5]

The prompt is a fixed sequence of ordinary token ids: speed does not depend on which
tokens they are, and ids skip llama.cpp's tokenizer so the length is exact.
"""

import argparse
import json
import statistics
from pathlib import Path

import xllamacpp

ROOT = Path(__file__).resolve().parent.parent
GGUF = ROOT / "weights/SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT_TOKENS = 256
GENERATED_TOKENS = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    params = xllamacpp.CommonParams()
    params.model.path = str(GGUF)
    params.n_ctx = 1024
    params.n_batch = 512
    params.n_ubatch = 512
    params.n_parallel = 1
    params.cache_prompt = False
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    server = xllamacpp.Server(params)

    # Ordinary (non-control) token ids, spread over the vocabulary.
    prompt = [100 + (i * 7919) % 48_000 for i in range(PROMPT_TOKENS)]
    request = {
        "prompt": prompt,
        "n_predict": GENERATED_TOKENS,
        "ignore_eos": True,
        "temperature": 0.0,
        "cache_prompt": False,
        "stream": False,
    }
    prompt_rates, generation_rates = [], []
    for run in range(args.runs + 1):
        result = server.handle_completions(request)
        if isinstance(result, str):
            result = json.loads(result)
        if "timings" not in result:
            raise RuntimeError(f"llama.cpp refused the request: {result}")
        timings = result["timings"]
        assert timings["prompt_n"] == PROMPT_TOKENS, timings
        assert timings["predicted_n"] == GENERATED_TOKENS, timings
        if run == 0:
            continue  # warm-up
        prompt_rates.append(timings["prompt_per_second"])
        generation_rates.append(timings["predicted_per_second"])

    print(f"llama.cpp ({xllamacpp.__version__}), {args.threads} threads, {args.runs} runs, median [min, max]:")
    for name, rates in [(f"prompt {PROMPT_TOKENS} tokens", prompt_rates), (f"generate {GENERATED_TOKENS} tokens", generation_rates)]:
        print(f"  {name:20} {statistics.median(rates):7.1f} tokens/s  [{min(rates):.1f}, {max(rates):.1f}]")


if __name__ == "__main__":
    main()

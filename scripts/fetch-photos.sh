#!/usr/bin/env bash
# Fetches ten labelled natural photos that no one here prepared, a small public check of
# what the upper layers' words name: the sample images inside the PyPI wheel of
# scikit-image 0.24.0 (each image's source and licence are in the docstrings of the
# wheel's skimage/data/__init__.py). They go to cache/photos/ (git-ignored) and are never used for training.
# Refuses the wheel unless its SHA-256 is the one recorded below. Rerunnable; needs pip
# and python3.
#
#   scripts/fetch-photos.sh && for f in cache/photos/*; do spae encode "$f" -o -; done
set -euo pipefail
cd "$(dirname "$0")/.."
wheel_sha=fa27b3a0dbad807b966b8db2d78da734cb812ca4787f7fbb143764800ce2fa9c
photos=(astronaut.png camera.png chelsea.png clock_motion.png coffee.png coins.png horse.png moon.png
  motorcycle_left.png rocket.jpg)
out=cache/photos

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
  --platform manylinux_2_17_x86_64 --dest "$tmp" scikit-image==0.24.0
wheel=$(ls "$tmp"/scikit_image-0.24.0-*.whl)
got=$(sha256sum "$wheel" | cut -d' ' -f1)
if [ "$got" != "$wheel_sha" ]; then
  echo "SHA-256 mismatch for $(basename "$wheel"): got $got, expected $wheel_sha" >&2; exit 1
fi
mkdir -p "$out"
python3 - "$wheel" "$out" "${photos[@]}" <<'PY'
import sys, zipfile
wheel, dest, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    for name in names:
        with open(f"{dest}/{name}", "wb") as f:
            f.write(z.read(f"skimage/data/{name}"))
PY
echo "wrote ${#photos[@]} photos to $out"

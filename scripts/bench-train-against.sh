#!/usr/bin/env bash
# The training step of an earlier revision and of this checkout, side by side:
# builds REVISION's `spae` in a git worktree, then runs `bench-train --steps STEPS` with each
# binary in turn, twice, on the same prepared data and the same model folder.
#
#   [MODEL=DIR] [STEPS=N] scripts/bench-train-against.sh REVISION [extra bench-train options]
#
# MODEL is the model folder both binaries train (default weights/spae-default); STEPS the
# timed steps of each run (default 4).
# The extra options go to both binaries, so use only options both revisions know
# (38d0cec's bench-train has no --json or --search). Since stop 17 this checkout's
# bench-train searches in 8 bits where the CPU has AVX-512 VNNI (`--search auto`);
# against a revision before it, that is the comparison of the two steps as they train;
# `--search exact` (for revisions that know it) compares them with the same search.
#
# Run it with nothing else busy: the figures are wall-clock times.
set -euo pipefail
cd "$(dirname "$0")/.."
revision="${1:?usage: scripts/bench-train-against.sh REVISION [bench-train options]}"
shift
root="$(pwd)"
model="$(realpath "${MODEL:-weights/spae-default}")"
steps="${STEPS:-4}"
old="${TMPDIR:-/tmp}/spae-bench-$(git rev-parse --short "$revision")"
if [ ! -d "$old" ]; then
  git worktree add --detach "$old" "$revision" >/dev/null
fi
echo "building $revision in $old" >&2
(cd "$old" && cargo build --release --bin spae --no-default-features >&2)
cargo build --release --bin spae >&2
for round in 1 2; do
  echo "== round $round: $revision"
  "$old/target/release/spae" --model "$model" bench-train --cache "$root/cache" --steps "$steps" "$@"
  echo "== round $round: this checkout"
  "$root/target/release/spae" --model "$model" bench-train --steps "$steps" "$@"
done

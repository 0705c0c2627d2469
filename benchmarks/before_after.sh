#!/usr/bin/env bash
# Speed of this checkout against an earlier revision, measured back to back on one machine:
# benchmarks/sweep_speed.py (22-member tiny and mlp sweeps, 3 timed epochs each) alternately on REV (a
# temporary git worktree) and on this checkout, ROUNDS times each; the per-run JSON files land in
# benchmarks/results/before-after/. Usage: benchmarks/before_after.sh REV [ROUNDS]
set -euo pipefail
rev=${1:?usage: benchmarks/before_after.sh REV [ROUNDS]}
rounds=${2:-2}
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$here/.venv/bin/python}
before=$(mktemp -d)/before
git -C "$here" worktree add --detach "$before" "$rev" >/dev/null
trap 'git -C "$here" worktree remove --force "$before"' EXIT
mkdir -p "$here/benchmarks/results/before-after"
for i in $(seq "$rounds"); do
  for side in before after; do
    dir=$here; [ "$side" = before ] && dir=$before
    echo "=== $side run $i ==="
    (cd "$dir" && PYTHONPATH="$dir" "$python" benchmarks/sweep_speed.py --skip-loop --scaling-max 1 --epochs 3 \
       --machine "$side-$i" 2>&1 | grep -v "it/s\|epoch/s" | tail -8)
    mv "$dir/benchmarks/results/$side-$i.json" "$here/benchmarks/results/before-after/"
    rm -f "$dir/benchmarks/results/scaling_$side-$i.png"
  done
done

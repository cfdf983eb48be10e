#!/usr/bin/env bash
# Session 6's long runs (issue #13): CDF 9/7 + B as a condition, the recipe of docs/recipe.md, one CPU thread each.
#   bash training/session6.sh ROOT        # starts face-x8, face-x16, face-x16-noB under ROOT (default runs/)
# Re-running the same command continues every run (--resume); ITERS8/ITERS16/MINUTES override the budget.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-runs}
minutes=${MINUTES:-140}
recipe=(--wavelet cdf97 --b-mode condition --z-scale fixed --tau-train 0 --lambda-latent 0
        --lambda-lpips 0.1 --lpips-from 0.5 --warmup 100 --decay-from 0.6 --lr 2e-4
        --batch-size 8 --val-every 250 --val-images 4 --val-tau 0 --checkpoint-minutes 10
        --workers 0 --stop-after-minutes "$minutes" --resume)
run() {  # NAME SCALE CROP ITERS [flags]
  local name=$1 scale=$2 crop=$3 iters=$4; shift 4
  OMP_NUM_THREADS=1 nice -n 19 nohup python -m bdflow.train --out "$root/$name" --scale "$scale" --crop "$crop" \
    --iters "$iters" "${recipe[@]}" "$@" > "$root/$name.out" 2>&1 &
}
mkdir -p "$root"
run face-x8 8 96 "${ITERS8:-3000}"
run face-x16 16 128 "${ITERS16:-1500}"
run face-x16-noB 16 128 "${ITERS16:-1500}" --no-boundary
wait

#!/usr/bin/env bash
# Session 7's runs (issues #13, #14): the recipe of docs/recipe.md, one CPU thread each, in the background.
#   bash training/session7.sh ROOT x16       # face-x16 from scratch with B bilinearly upsampled (the twin gap, #13)
#   bash training/session7.sh ROOT twin64    # face-x64-noB grown from checkpoints/face-x16-noB (#14)
#   bash training/session7.sh ROOT grown     # face-x64, face-x32 grown from ROOT/face-x16/last (#14)
#   bash training/session7.sh ROOT seeds N   # Table 3's seed N (1, 2) of the x64 pair: the same runs with --seed N
#   bash training/session7.sh ROOT nolpips   # the x16 pair without LPIPS (lambda_3 = 0), 750 iterations each (#13)
#   bash training/session7.sh ROOT arm16 NAME [FLAG...]  # one x16 arm from scratch, the recipe + FLAGs (session 8:
#                                            # face-x16-nobaw --baw-alpha 1, face-x16-bits1 --bits 1; #13's twin gap)
#   bash training/session7.sh ROOT arm64 NAME PARENT [FLAG...]  # one x64 arm grown from the x16 PARENT, the recipe +
#                                            # FLAGs (session 9: x64 grown from the x16 with B's weights at zero, #14)
#   bash training/session7.sh ROOT arm32 NAME PARENT [FLAG...]  # the same at x32 (600 it x batch 8 of 128²)
# Re-running a stage continues its runs (--resume); ITERS16/ITERS32/ITERS64/MINUTES override the budget.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-runs}
stage=${2:?stage: x16 | twin64 | grown | seeds N | nolpips | arm16 NAME [FLAG...] | arm32|arm64 NAME PARENT [FLAG...]}
minutes=${MINUTES:-150}
recipe=(--config training/recipe.json   # docs/recipe.md's recipe (flags override it)
        --val-images 4 --checkpoint-minutes 10 --workers 0 --stop-after-minutes "$minutes" --resume)
run() {  # NAME SCALE CROP BATCH ITERS [flags]
  local name=$1 scale=$2 crop=$3 batch=$4 iters=$5; shift 5
  OMP_NUM_THREADS=1 nice -n 19 nohup python -m bdflow.train --out "$root/$name" --scale "$scale" --crop "$crop" \
    --batch-size "$batch" --iters "$iters" --val-every $((iters / 6)) "${recipe[@]}" "$@" > "$root/$name.out" 2>&1 &
}
mkdir -p "$root"
case $stage in
  x16) run face-x16 16 128 8 "${ITERS16:-1500}" ;;
  twin64) run face-x64-noB 64 256 4 "${ITERS64:-400}" --no-boundary --init-from checkpoints/face-x16-noB ;;
  grown)
    run face-x64 64 256 4 "${ITERS64:-400}" --init-from "$root/face-x16/last"
    run face-x32 32 128 8 "${ITERS32:-600}" --init-from "$root/face-x16/last" ;;
  seeds)
    seed=${3:?seed}
    run "face-x64-seed$seed" 64 256 4 "${ITERS64:-400}" --seed "$seed" --init-from "$root/face-x16/last"
    run "face-x64-noB-seed$seed" 64 256 4 "${ITERS64:-400}" --seed "$seed" --no-boundary --init-from checkpoints/face-x16-noB ;;
  nolpips)
    run face-x16-l0 16 128 8 "${ITERS16:-750}" --lambda-lpips 0
    run face-x16-noB-l0 16 128 8 "${ITERS16:-750}" --lambda-lpips 0 --no-boundary ;;
  arm16) run "${3:?name}" 16 128 8 "${ITERS16:-1500}" "${@:4}" ;;
  arm32) run "${3:?name}" 32 128 8 "${ITERS32:-600}" --init-from "${4:?parent}" "${@:5}" ;;
  arm64) run "${3:?name}" 64 256 4 "${ITERS64:-400}" --init-from "${4:?parent}" "${@:5}" ;;
  *) echo "unknown stage $stage" >&2; exit 2 ;;
esac
wait

#!/usr/bin/env bash
# The x64 ablations of docs/reproduction.md (Table 3, Table 4, design §3's B targets) at one shared budget.
#
#   bash training/ablation-x64.sh ARM [ARM ...]      # arms run one after another; start two shells on 2 cores
#   ARMS: both neither bam-only baw-only T20 T100 norm1 target-max target-lr; both-seedN and neither-seedN, N = 1, 2 (seed noise)
#
# Every arm grows from an x16 parent of its own architecture (face-x16 with B, face-x16-noB without) and trains
# exactly like the others (ITERS iterations of BATCH 256-px crops, seed 0); only the flags below differ. Each
# arm is then scored on the first VAL_LIMIT faces/val images (bits 1, tau 0.8, seed 0) with the evaluate CLI.
# Resumable: re-running an arm continues its training state and re-scores it. ITERS, BATCH, VAL_LIMIT and ROOT
# (the arms' folder) can be set in the environment, e.g. for a longer study on a GPU.
source "$(dirname "$0")/study-lib.sh"  # strict mode, the repository root, VAL_LIMIT, DATA, one thread, score
ITERS=${ITERS:-300}
BATCH=${BATCH:-4}
ROOT=${ROOT:-training/ablation-x64}

flags() {  # the arm's difference from BDFlow's recipe, and its parent
  case "$1" in
    both)       echo "--init-from checkpoints/face-x16" ;;
    both-seed[12]) echo "--init-from checkpoints/face-x16 --seed ${1#both-seed}" ;;  # another draw of init, batches, Z
    neither)    echo "--init-from checkpoints/face-x16-noB --no-boundary" ;;
    neither-seed[12]) echo "--init-from checkpoints/face-x16-noB --no-boundary --seed ${1#neither-seed}" ;;
    bam-only)   echo "--init-from checkpoints/face-x16 --baw-alpha 1" ;;
    baw-only)   echo "--init-from checkpoints/face-x16-noB --no-boundary --baw-twin" ;;
    T20)        echo "--init-from checkpoints/face-x16 --bam-threshold 20" ;;
    T100)       echo "--init-from checkpoints/face-x16 --bam-threshold 100" ;;
    norm1)      echo "--init-from checkpoints/face-x16 --bam-norm 1" ;;
    target-max) echo "--init-from checkpoints/face-x16 --b-target max" ;;
    target-lr)  echo "--init-from checkpoints/face-x16 --b-target lr" ;;
    *) echo "unknown arm '$1' (see the header of $0)" >&2; return 2 ;;
  esac
}

for arm in "$@"; do
  arm_flags=$(flags "$arm")
  out="$ROOT/$arm"
  # shellcheck disable=SC2086  # arm_flags is a list of flags
  python -m bdflow.train --scale 64 --crop 256 --batch-size "$BATCH" --iters "$ITERS" --seed 0 --workers 1 \
    --data "$DATA/train" --val-data "$DATA/val" --val-images 4 --val-every "$ITERS" --checkpoint-minutes 10 \
    --resume $arm_flags --out "$out"
  score "$out" 0.8
done

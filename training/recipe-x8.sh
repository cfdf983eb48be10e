#!/usr/bin/env bash
# The x8 recipe study of docs/recipe.md: every arm trains from scratch at one shared budget and is scored paired.
#
#   bash training/recipe-x8.sh ARM [ARM ...]     # arms run one after another
#   ARMS: paper recipe haar channel latent4 tau1 lr5e-4 lpips-on untrained, recipe-seed1 paper-seed1
#
# Every arm is the session-6 recipe (CDF 9/7, B as a condition, fixed Z scale, tau_train 0, no latent term, warm-up
# 20 (100 in the long runs), constant lr then cosine from 60 %, LPIPS off: the study compares PSNR first) with ONE difference, except
# "paper" (the paper's loss and flow: Haar, B as a channel, learned Z scale, tau_train 1, lambda = 2, 2, 1, 16, 4,
# cosine from the start, no warm-up) and "untrained" (0 iterations: the starting point). ITERS iterations of
# BATCH 96-px crops, seed 0 (SEED for the -seedN arms); scored on the first VAL_LIMIT faces/val images at bits 1,
# tau 0 with the evaluate CLI. ITERS, BATCH, VAL_LIMIT, ROOT can be set in the environment (e.g. on a GPU).
source "$(dirname "$0")/study-lib.sh"  # strict mode, the repository root, VAL_LIMIT, DATA, one thread, score
ITERS=${ITERS:-200}
BATCH=${BATCH:-8}
ROOT=${ROOT:-training/recipe-x8}
RECIPE="--wavelet cdf97 --b-mode condition --z-scale fixed --tau-train 0 --lambda-latent 0 --lambda-lpips 0.1 --lpips-from 1 --warmup 20 --decay-from 0.6"
PAPER="--wavelet haar --b-mode channel --z-scale learned --tau-train 1 --lambda-latent 4 --lambda-lpips 1 --lpips-from 0 --warmup 0 --decay-from 0"

flags() {  # the arm's flags: the recipe with one difference
  case "$1" in
    recipe|untrained) echo "$RECIPE" ;;
    recipe-seed[0-9]) echo "$RECIPE --seed ${1#recipe-seed}" ;;
    paper)     echo "$PAPER" ;;
    paper-seed[0-9]) echo "$PAPER --seed ${1#paper-seed}" ;;
    haar)      echo "$RECIPE --wavelet haar" ;;
    cdf53)     echo "$RECIPE --wavelet cdf53" ;;
    channel)   echo "$RECIPE --b-mode channel" ;;
    latent4)   echo "$RECIPE --lambda-latent 4" ;;
    tau1)      echo "$RECIPE --tau-train 1" ;;
    lr5e-4)    echo "$RECIPE --lr 5e-4" ;;
    lpips-on)  echo "$RECIPE --lpips-from 0" ;;
    *) echo "unknown arm '$1' (see the header of $0)" >&2; return 2 ;;
  esac
}

for arm in "$@"; do
  arm_flags=$(flags "$arm")
  out="$ROOT/$arm"
  iters=$ITERS
  if [ "$arm" = untrained ]; then  # the fresh flow itself, saved without a training step
    python -c "import sys; from bdflow import BDFlow; from bdflow.train import parse_args
m, loss, _ = parse_args(sys.argv[1:]); BDFlow(m, loss).save_pretrained('$out/final', meta={'iterations': 0, 'seconds': 0})" --scale 8 $arm_flags
  else
    # shellcheck disable=SC2086  # arm_flags is a list of flags
    python -m bdflow.train --scale 8 --crop 96 --batch-size "$BATCH" --iters "$iters" --workers 0 \
      --data "$DATA/train" --val-data "$DATA/val" --val-images 4 --val-every 50 --val-tau 0 --checkpoint-minutes 10 \
      --resume $arm_flags --out "$out"
  fi
  score "$out" 0
done

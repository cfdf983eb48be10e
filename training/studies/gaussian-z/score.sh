#!/usr/bin/env bash
# Score one arm of the Gaussian-Z study (docs/studies/gaussian-z.md) on held-out faces:
#   bash training/studies/gaussian-z/score.sh x8 shipped checkpoints/face-x8
#   bash training/studies/gaussian-z/score.sh x8 w2b runs/gz/x8-w2b/final
# writes docs/results/gaussian-z-SCALE/ARM/{decoupling.json,val50.csv,val50.json}: the decoupling measures on the
# first 20 faces of faces/val (Z against N(0,1), z² in B cells, tau 0 and the default tau, the diversity map) and
# PSNR-Y / LPIPS of the first 50 at tau 0 and 0.5 (python -m bdflow.evaluate).
set -euo pipefail
scale=$1 arm=$2 checkpoint=$3
out=docs/results/gaussian-z-$scale/$arm
mkdir -p "$out"
python -m bdflow.decoupling --checkpoint "$checkpoint" --data ../shared/data/faces/val --limit 20 --taus 0 0.5 \
    --json "$out/decoupling.json"
python -m bdflow.evaluate --checkpoint "$checkpoint" --data ../shared/data/faces/val --limit 50 --bits 1 \
    --tau 0 0.5 --json "$out/val50.json" --csv "$out/val50.csv"

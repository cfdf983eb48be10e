#!/usr/bin/env bash
# Equal quality of the fast training step (docs/speed.md): the same recipe - the shipped x8 fine-tuned 500
# iterations (x8-finetune.json) - trained with the old step (float32, eager, JPEGs decoded every step) and with the
# fast one (torch.compile'd passes, the decoded-image cache), each from the same weights and the same batches, then
# both scored on the first 50 faces of faces/val at tau 0 and compared image by image:
#   bash training/studies/train-speed/equal-quality.sh            # trains both (one thread each, side by side)
# writes runs/train-speed/{old,fast}/ and docs/results/train-speed/{old,fast}/val50.csv, ablation.{md,json}
set -euo pipefail
recipe=training/studies/train-speed/x8-finetune.json
declare -A flags=([old]="--compile off --no-cache-images" [fast]="--compile on --cache-images")
for arm in old fast; do
  python -m bdflow.train --config $recipe --out runs/train-speed/$arm --resume ${flags[$arm]} &
done
wait
for arm in old fast; do
  mkdir -p docs/results/train-speed/$arm
  python -m bdflow.evaluate --checkpoint runs/train-speed/$arm/final --data ../shared/data/faces/val --limit 50 \
      --bits 1 --tau 0 --json docs/results/train-speed/$arm/val50.json --csv docs/results/train-speed/$arm/val50.csv
done
python -m bdflow.figures ablation --runs docs/results/train-speed --scores val50.csv --reference old \
    --out docs/results/train-speed/ablation

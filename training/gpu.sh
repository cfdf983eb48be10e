#!/usr/bin/env bash
# Continue face-x8, face-x16 and face-x16-noB on one GPU inside one 10-minute device command (issue #13).
#
# The device tool sends the session's checkout (at most 64 MiB, shared/ data beside it does not travel), so:
#   here:    bash training/gpu.sh lean          # a local branch `gpu-lean`: HEAD without the training states and the
#                                               #   checkpoints it does not train, plus FACES (400) training faces and 8 val
#                                               #   faces in gpu-data/ (committed on that branch only); prints its size
#            git switch gpu-lean                # then the device call:
#   device:  bash training/gpu.sh train         # each model in turn, MINUTES (default 2.5) each; weights -> $OUT/NAME
#   here:    git switch -                       # back; copy $OUT's NAME/ folders over checkpoints/NAME and run
#                                               #   training/session7-ship.sh's x8 and x16 evaluate lines to re-score them
# Test it here first with a tiny budget on the CPU: MINUTES=0.3 OUT=/tmp/gpu-out bash training/gpu.sh train
#
# Each run starts from the committed checkpoint of the same scale (--init-from copies every level; the Adam state
# starts fresh), uses docs/recipe.md's recipe with a GPU batch, and sets --iters from a short probe of its own step
# time so its constant-then-cosine schedule ends inside the time box. What comes back: per model config.json +
# model.safetensors (< 16 MiB each) and one logs.tar.gz: 7 files, the device tool's limit is 8.
set -euo pipefail
cd "$(dirname "$0")/.."
case ${1:?usage: gpu.sh lean | train} in
  lean)
    faces=${FACES:-400}
    start=$(git rev-parse --abbrev-ref HEAD)
    [ "$start" != gpu-lean ] || { echo "already on gpu-lean: git switch back first" >&2; exit 2; }
    git switch -q -C gpu-lean
    git ls-files 'training/*.safetensors' | xargs -r git rm -q  # training states and parent records; back on "$start", git switch restores them
    git rm -rq checkpoints/face-x32 checkpoints/face-x64 checkpoints/face-x64-noB
    mkdir -p gpu-data/faces/train gpu-data/faces/val
    pick() { python -c "import sys; from bdflow.data import list_images; print('\n'.join(map(str, list_images(sys.argv[1])[:int(sys.argv[2])])))" "$@"; }
    pick ../shared/data/faces/train "$faces" | xargs cp -t gpu-data/faces/train
    pick ../shared/data/faces/val 8 | xargs cp -t gpu-data/faces/val
    git add -f gpu-data
    git commit -qm "gpu-lean: the tree a device call needs (not for main)"
    git ls-files -z -co --exclude-standard | xargs -0 du -cb | tail -1 | awk '{printf "gpu-lean tree: %.1f MiB (the device limit is 64)\n", $1 / 2^20}'
    git switch -q "$start" ;;
  train)
    out=${OUT:?OUT: where the weights go (the device tool sets it)}
    minutes=${MINUTES:-2.5}
    data=${DATA:-gpu-data/faces}
    [ -d "$data/train" ] || data=../shared/data/faces
    # docs/recipe.md's recipe from training/recipe.json; the checkpoint's own architecture flags ($arch) override it
    recipe=(--config training/recipe.json --data "$data/train" --val-data "$data/val" --val-images 4
            --batch-size "${BATCH:-16}" --workers "${WORKERS:-4}" --checkpoint-minutes 100)
    mkdir -p "$out" /tmp/gpu-runs
    for spec in "face-x8 96" "face-x16 128" "face-x16-noB 128"; do
      set -- $spec
      name=$1 crop=$2
      arch=$(python - "checkpoints/$name/config.json" <<'PY'
import json, sys
from bdflow.config import BDFlowConfig
c = BDFlowConfig.from_dict({k: v for k, v in json.load(open(sys.argv[1])).items() if k != "meta"})
print("--scale", c.scale, "--wavelet", c.wavelet, "--y-phase", c.y_phase, "--b-mode", c.b_mode, "--b-upsample", c.b_upsample,
      "--b-init", c.b_init, "--res-from-level", c.res_from_level,
      "--level1-blocks", c.level1_blocks, "--boundary" if c.boundary else "--no-boundary")
PY
)
      flags=("${recipe[@]}" $arch --crop "$crop" --init-from "checkpoints/$name")
      probe=/tmp/gpu-runs/$name-probe
      rm -rf "$probe"
      t0=$(date +%s.%N)
      python -m bdflow.train "${flags[@]}" --iters 40 --val-every 1000 --out "$probe" > /dev/null
      step=$(python -c "print(max(($(date +%s.%N) - $t0) / 40, 1e-3))")
      iters=$(python -c "print(max(int($minutes * 60 * 0.85 / $step) - 40, 20))")
      echo "$name: probe $step s/step (start-up included) -> --iters $iters"
      python -m bdflow.train "${flags[@]}" --iters "$iters" --val-every $((iters / 4 > 0 ? iters / 4 : 1)) \
        --stop-after-minutes "$minutes" --out "/tmp/gpu-runs/$name"
      mkdir -p "$out/$name"
      cp "/tmp/gpu-runs/$name/last/config.json" "/tmp/gpu-runs/$name/last/"model*.safetensors "$out/$name/"
    done
    tar -czf "$out/logs.tar.gz" -C /tmp/gpu-runs face-x8/log.csv face-x16/log.csv face-x16-noB/log.csv
    ls -l "$out"/* ;;
  *) echo "usage: gpu.sh lean | train" >&2; exit 2 ;;
esac

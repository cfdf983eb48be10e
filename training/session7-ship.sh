#!/usr/bin/env bash
# Ship session 7's runs (training/session7.sh) and re-create their numbers (issues #13, #14).
#   bash training/session7-ship.sh ROOT x16       # ROOT/face-x16 (-noB) -> checkpoints/; x16 tables beside the twin
#   bash training/session7-ship.sh ROOT extreme   # ROOT/face-x32, face-x64, face-x64-noB -> checkpoints; x32/x64 tables
#   bash training/session7-ship.sh ROOT x8        # ROOT/face-x8 -> checkpoints/; its x8 tables (session 12)
#   bash training/session7-ship.sh ROOT table3    # Table 3: the x64 pair and its seeds 1, 2, paired on faces/val
# Each run's OUT/last becomes checkpoints/NAME (weights + config + meta; no optimizer state; the x32/x64 weights as
# float16, every number below measured on those); then the evaluate CLI
# scores it beside the bicubic round trip (and the twin) at tau 0 (what the models were trained for), writes
# docs/results/*.json|csv and records the numbers in the config.json and model card.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-runs}
stage=${2:?stage: x8 | x16 | extreme | table3}
D=../shared/data/faces
R=docs/results
NOTES="Faces only (aligned CelebA-HQ); other content is out of domain. A CPU budget (see Training): far below the paper's. Trained at tau_train = 0: decodes best at tau = 0 (the default); larger tau adds noise the decoder never saw."
ship() {  # DTYPE NAME...: ROOT/NAME/last -> checkpoints/NAME, the weights stored as DTYPE (float32 | float16)
  python - "$root" "$@" <<'PY'
import subprocess
import sys
from pathlib import Path
import torch
from bdflow import BDFlow
root, dtype = Path(sys.argv[1]), getattr(torch, sys.argv[2])
head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
for name in sys.argv[3:]:
    model = BDFlow.from_pretrained(root / name / "last")
    meta = {k: v for k, v in model.meta.items() if k != "metrics"}
    parent = Path(meta.get("parent", {}).get("checkpoint", ""))
    if parent.parts[-1:] == ("last",) and parent.parent.parent.resolve() == root.resolve():  # a run of ROOT, shipped too
        meta["parent"]["checkpoint"] = f"checkpoints/{parent.parent.name}"
    elif parent == Path("checkpoints") / name:  # fine-tuned from the model it replaces: that one lives on in history
        meta["parent"].setdefault("revision", head)
    model.to(dtype).save_pretrained(Path("checkpoints") / name, meta=meta)  # loading casts back to float32
PY
}
held() { for name; do [ ! -d "$root/$name/last" ] || echo "$name"; done; }  # NAME...: those ROOT holds a run of
ev() { python -m bdflow.evaluate --bits 1 --seed 0 --tau 0 "$@"; }
case $stage in
  x8)
    ship float32 face-x8
    ev --checkpoint checkpoints/face-x8 --data "$D/val" --limit 50 --tau 0 0.8 \
       --json $R/x8-val.json --csv $R/x8-val.csv --record val-512 --notes "$NOTES"
    ev --checkpoint checkpoints/face-x8 --data "$D/test1024" --limit 10 \
       --json $R/x8-test1024.json --csv $R/x8-test1024.csv --record test-1024
    ev --checkpoint checkpoints/face-x8 --data assets --json $R/x8-assets.json --csv $R/x8-assets.csv ;;
  x16)  # face-x16 (and face-x16-noB where ROOT holds it: session 9 retrained both)
    ship float32 $(held face-x16 face-x16-noB)
    ev --checkpoint checkpoints/face-x16 --twin checkpoints/face-x16-noB --data "$D/val" --limit 50 --tau 0 0.8 \
       --json $R/x16-val.json --csv $R/x16-val.csv --record val-512 --notes "$NOTES"
    ev --checkpoint checkpoints/face-x16 --twin checkpoints/face-x16-noB --data "$D/test1024" --limit 10 \
       --json $R/x16-test1024.json --csv $R/x16-test1024.csv --record test-1024
    ev --checkpoint checkpoints/face-x16 --twin checkpoints/face-x16-noB --data assets \
       --json $R/x16-assets.json --csv $R/x16-assets.csv ;;
  extreme)
    # half the bytes; the flow runs (and is exact) in float32. Ships those of the three that ROOT holds (session 9
    # re-grew face-x32 and face-x64 only: the twin stays session 7's)
    ship float16 $(held face-x32 face-x64 face-x64-noB)
    ev --checkpoint checkpoints/face-x64 --twin checkpoints/face-x64-noB --data "$D/test1024" --limit 20 \
       --json $R/x64-test1024.json --csv $R/x64-test1024.csv --record test-1024 --notes "$NOTES"
    ev --checkpoint checkpoints/face-x32 --data "$D/test1024" --limit 20 \
       --json $R/x32-test1024.json --csv $R/x32-test1024.csv --record test-1024 --notes "$NOTES"
    ev --checkpoint checkpoints/face-x64 --twin checkpoints/face-x64-noB --data "$D/val" --limit 50 \
       --json $R/x64-val.json --csv $R/x64-val.csv --record val-512
    ev --checkpoint checkpoints/face-x32 --data "$D/val" --limit 50 \
       --json $R/x32-val.json --csv $R/x32-val.csv --record val-512
    ev --checkpoint checkpoints/face-x64 --twin checkpoints/face-x64-noB --data assets \
       --json $R/x64-assets.json --csv $R/x64-assets.csv
    ev --checkpoint checkpoints/face-x32 --data assets --json $R/x32-assets.json --csv $R/x32-assets.csv ;;
  table3)  # arms as folders of one study: seed 0 is the shipped pair, seeds 1, 2 from `session7.sh ROOT seeds N`
    study=training/session7/table3
    for arm in both neither both-seed1 neither-seed1 both-seed2 neither-seed2; do
      case $arm in
        both) ckpt=checkpoints/face-x64 ;;
        neither) ckpt=checkpoints/face-x64-noB ;;
        both-seed*) ckpt=$root/face-x64-seed${arm#both-seed}/last ;;
        neither-seed*) ckpt=$root/face-x64-noB-seed${arm#neither-seed}/last ;;
      esac
      mkdir -p "$study/$arm"
      [ -f "$study/$arm/val50.csv" ] || ev --checkpoint "$ckpt" --data "$D/val" --limit 50 \
        --json "$study/$arm/val50.json" --csv "$study/$arm/val50.csv"
    done
    python -m bdflow.figures ablation --runs "$study" --scores val50.csv --reference both --out $R/table3-x64-s7 ;;
  *) echo "unknown stage $stage" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Ship session 6's runs as checkpoints/face-x8, face-x16, face-x16-noB and re-create their numbers.
#   bash training/session6-ship.sh [ROOT]    # ROOT: where training/session6.sh wrote the runs (default runs/)
# Each run's OUT/last (the newest checkpoint) becomes checkpoints/NAME (weights + config + meta; no optimizer state);
# then the evaluate CLI scores it beside the bicubic round trip (and the twin) and records the numbers in the
# config.json and model card: the first 50 faces of faces/val (docs/results/x*-val.*), the first 10 of test1024,
# and the app's examples in assets/ (docs/results/x*-assets.*). The x32/x64 checkpoints were grown from the Haar
# face-x16 that this replaces: their meta.parent gets the commit that still holds it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-runs}
D=../shared/data/faces
NOTES="Faces only (aligned CelebA-HQ); other content is out of domain. A CPU budget (see Training): far below the paper's. Trained at tau_train = 0: decodes best at tau = 0 (the default); larger tau adds noise the decoder never saw."
python - "$root" <<'PY'
import json, sys
from pathlib import Path
from bdflow import BDFlow
root = Path(sys.argv[1])
for name in ("face-x8", "face-x16", "face-x16-noB"):
    model = BDFlow.from_pretrained(root / name / "last")
    meta = {k: v for k, v in model.meta.items() if k != "metrics"}
    model.save_pretrained(Path("checkpoints") / name, meta=meta)
for name in ("face-x32", "face-x64", "face-x64-noB"):
    path = Path("checkpoints") / name / "config.json"
    config = json.loads(path.read_text())
    config["meta"]["parent"].setdefault("revision", "a51b8dd (Haar, session 2)")
    path.write_text(json.dumps(config, indent=2) + "\n")
PY
ev() { python -m bdflow.evaluate --bits 1 --seed 0 "$@"; }
ev --checkpoint checkpoints/face-x8 --data "$D/val" --limit 50 --tau 0 0.8 \
   --json docs/results/x8-val.json --csv docs/results/x8-val.csv --record val-512 --notes "$NOTES"
ev --checkpoint checkpoints/face-x8 --data "$D/test1024" --limit 10 --tau 0 \
   --json docs/results/x8-test1024.json --csv docs/results/x8-test1024.csv --record test-1024
ev --checkpoint checkpoints/face-x16 --twin checkpoints/face-x16-noB --data "$D/val" --limit 50 --tau 0 0.8 \
   --json docs/results/x16-val.json --csv docs/results/x16-val.csv --record val-512 --notes "$NOTES"
ev --checkpoint checkpoints/face-x16 --twin checkpoints/face-x16-noB --data "$D/test1024" --limit 10 --tau 0 \
   --json docs/results/x16-test1024.json --csv docs/results/x16-test1024.csv --record test-1024
ev --checkpoint checkpoints/face-x8 --data assets --tau 0 --json docs/results/x8-assets.json --csv docs/results/x8-assets.csv
ev --checkpoint checkpoints/face-x16 --twin checkpoints/face-x16-noB --data assets --tau 0 \
   --json docs/results/x16-assets.json --csv docs/results/x16-assets.csv
python - <<'PY'
# the x32/x64 cards re-rendered with their parent's revision
import json
from pathlib import Path
from bdflow.hub import model_card
for name in ("face-x32", "face-x64", "face-x64-noB"):
    folder = Path("checkpoints") / name
    payload = json.loads((folder / "config.json").read_text())
    meta = payload.pop("meta")
    (folder / "README.md").write_text(model_card(name, payload, meta))
PY

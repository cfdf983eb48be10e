"""The shipped checkpoints (``checkpoints/*``): they load offline, say how they were made, and re-create their numbers.

``docs/results/`` holds the per-image scores that ``docs/results.md`` averages; re-scoring the first validation image
with the evaluation code must give the same PSNR/SSIM/LPIPS, so the table cannot drift from the weights.
"""

import csv
import json
import subprocess

import pytest

from bdflow import Rescaler
from bdflow.evaluate import evaluate
from tests.helpers import REPO

MiB = 1 << 20
SHIPPED = ["face-x8", "face-x16", "face-x16-noB", "face-x32", "face-x64", "face-x64-noB"]
SPLITS = ["val-512", "test-1024"]
# results/<file>.csv: (checkpoint, twin, taus) evaluated on faces/val with bits = 1 (docs/results.md, docs/reproduction.md;
# x8: training/session6-ship.sh; x16, x32, x64: training/session7-ship.sh)
RESULTS = {
    "x8-val": ("face-x8", None, (0.0, 0.8)),
    "x16-val": ("face-x16", "face-x16-noB", (0.0, 0.8)),
    "x32-val": ("face-x32", None, (0.0,)),
    "x64-val": ("face-x64", "face-x64-noB", (0.0,)),
}


def git_history_available() -> bool:
    """Whether this checkout has the git history a parent's revision points into (not so in an export or a shallow clone)."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--is-shallow-repository"], capture_output=True, text=True)
    except OSError:
        return False
    return out.returncode == 0 and out.stdout.strip() == "false"


@pytest.mark.parametrize("name", SHIPPED)
def test_checkpoint_loads_offline_and_records_its_budget(name):
    folder = REPO / "checkpoints" / name
    assert all(f.stat().st_size < 16 * MiB for f in folder.iterdir())
    r = Rescaler.from_pretrained(folder, device="cpu")  # HF_HUB_OFFLINE=1 (conftest): no network
    meta = r.model.meta
    assert meta["iterations"] > 0 and meta["training"]["data"].endswith("faces/train")
    assert all({"hardware", "from_iteration", "to_iteration", "seconds"} <= set(s) for s in meta["sessions"])
    assert set(SPLITS) <= set(meta["metrics"])
    card = (folder / "README.md").read_text()
    assert "non-commercial" in card and all(f"| {split} |" in card for split in SPLITS)
    if "parent" in meta:  # grown with --init-from: the parent ships too (in the tree, or in history at its
        # recorded revision when a later session replaced it), and the card counts its budget
        parent = meta["parent"]
        assert ("fine-tuned from" if parent["scale"] == r.model.config.scale else "grown from") in card
        if "revision" not in parent:
            assert (REPO / parent["checkpoint"]).is_dir()
        elif git_history_available():
            show = ["git", "-C", str(REPO), "cat-file", "-e", f"{parent['revision']}:{parent['checkpoint']}/model.safetensors"]
            assert subprocess.run(show, capture_output=True).returncode == 0, parent


@pytest.mark.parametrize("results", sorted(RESULTS))
def test_results_are_recreated_by_evaluate(results, data_dir):
    with (REPO / "docs" / "results" / f"{results}.csv").open() as f:
        rows = list(csv.DictReader(f))
    first = rows[0]["image"]
    expected = {r["method"]: r for r in rows if r["image"] == first}
    *names, taus = RESULTS[results]
    checkpoint, twin = (str(REPO / "checkpoints" / n) if n else None for n in names)
    _, methods = evaluate(checkpoint, str(data_dir / "faces" / "val"), twin, bits=1, taus=taus, limit=1, device="cpu")
    assert [m.name for m in methods] == list(expected)
    for m in methods:
        for key in ("psnr", "ssim", "lpips"):
            assert m.rows[0][key] == pytest.approx(float(expected[m.name][key]), abs=2e-3), (m.name, key)


def test_results_json_matches_the_model_cards():
    for results, (checkpoint, _, _) in RESULTS.items():
        summary = json.loads((REPO / "docs" / "results" / f"{results}.json").read_text())["results"]
        recorded = Rescaler.from_pretrained(REPO / "checkpoints" / checkpoint, device="cpu").model.meta["metrics"]["val-512"]
        assert [s["psnr"] for s in summary] == [s["psnr"] for s in recorded]

"""The shipped checkpoints (``checkpoints/*``): they load offline, say how they were made, and re-create their numbers.

``docs/results/`` holds the per-image scores behind every results table (``tools/results.py`` lists the runs that
wrote them); re-scoring the first image of each run with the evaluation code must give the same PSNR/SSIM/LPIPS,
so the tables cannot drift from the weights.
"""

import csv
import json

import pytest

from bdflow import Rescaler
from bdflow.evaluate import evaluate
from tests.helpers import REPO, results_tool

MiB = 1 << 20
SHIPPED = ["face-x8", "face-x16", "face-x16-noB", "face-x32", "face-x64", "face-x64-noB"]
SPLITS = ["val-512", "test-1024"]
RUNS = {run.name: run for run in results_tool().RESULTS}


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
    if "parent" in meta:  # grown or fine-tuned with --init-from: the card names the parent and counts its budget
        parent = meta["parent"]
        assert ("fine-tuned from" if parent["scale"] == r.model.config.scale else "grown from") in card
        assert parent["iterations"] > 0 and parent["checkpoint"].startswith("checkpoints/")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RUNS))
def test_results_are_recreated_by_evaluate(name, data_dir):
    run = RUNS[name]
    with (REPO / "docs" / "results" / f"{name}.csv").open() as f:
        rows = list(csv.DictReader(f))
    first = rows[0]["image"]
    expected = [r for r in rows if r["image"] == first]
    checkpoint, twin = (str(REPO / "checkpoints" / n) if n else None for n in (run.checkpoint, run.twin))
    _, methods = evaluate(checkpoint, str(data_dir / "faces" / run.split), twin, bits=1, taus=run.taus, limit=1, device="cpu")
    assert len(methods) == len(expected)
    for m, e in zip(methods, expected):
        assert m.name.split(" ")[0] == e["method"].split(" ")[0] and m.rows[0]["image"] == first
        for key in ("psnr", "ssim", "lpips"):
            assert m.rows[0][key] == pytest.approx(float(e[key]), abs=2e-3), (name, m.name, key)


def test_results_json_matches_the_model_cards():
    for run in RUNS.values():
        if run.record != "val-512":  # the cards' test-1024 rows are re-recorded by tools/results.py --evaluate
            continue
        summary = json.loads((REPO / "docs" / "results" / f"{run.name}.json").read_text())["results"]
        for name in filter(None, (run.checkpoint, run.twin)):
            recorded = Rescaler.from_pretrained(REPO / "checkpoints" / name, device="cpu").model.meta["metrics"]["val-512"]
            assert [s["psnr"] for s in summary] == [s["psnr"] for s in recorded], (run.name, name)

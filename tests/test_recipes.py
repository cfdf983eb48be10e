"""``training/recipes/NAME.json``: one file per shipped checkpoint, loaded by ``python -m bdflow.train --config``,
re-creates that checkpoint's model, loss and schedule (its config.json and the run recorded in meta["training"])."""

import dataclasses
import json
import shutil

import pytest
import torch

from bdflow.config import BDFlowConfig, LossConfig
from bdflow.hub import read_tensors
from bdflow.train import SCHEDULE, TrainConfig, parse_args, parse_stages, recorded_schedule
from tests.helpers import REPO

RECIPES = REPO / "training" / "recipes"
SHIPPED = ["face-x8", "face-x16", "face-x16-noB", "face-x32", "face-x64", "face-x64-noB"]
# what the checkpoints' runs recorded before --precision replaced accelerate's mixed_precision ("auto": fp32 on a CPU)
RECORDED_PRECISION = {"auto": "fp32", "no": "fp32", "bf16": "bf16"}


def names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_one_recipe_per_shipped_checkpoint():
    assert sorted(p.stem for p in RECIPES.glob("*.json")) == sorted(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_recipe_recreates_the_checkpoints_config_and_schedule(name):
    stored = json.loads((REPO / "checkpoints" / name / "config.json").read_text())
    recipe = json.loads((RECIPES / f"{name}.json").read_text())
    assert set(recipe) - {"stages"} <= names(BDFlowConfig) | names(LossConfig) | names(TrainConfig), "unknown fields"
    assert SCHEDULE <= set(recipe), "the recipe leaves part of the schedule to the CLI's defaults"
    runs = parse_stages(["--config", str(RECIPES / f"{name}.json"), "--out", "runs/x"])
    meta = stored["meta"]
    fields = {k: v for k, v in stored.items() if k != "meta"}
    stages = meta.get("stages", [])  # a staged recipe: its earlier runs, each from the previous one's final
    assert len(runs) == len(stages) + 1
    assert all(model == BDFlowConfig.from_dict(fields) for model, _, _ in runs)
    recorded_runs = [(LossConfig.from_dict(st["loss"]), st["training"]) for st in stages] + [(LossConfig.from_dict(fields), meta["training"])]
    for (_, loss, run), (recorded_loss, training) in zip(runs, recorded_runs):
        assert loss == recorded_loss
        recorded = {**training, **recorded_schedule(training)}
        if recorded["precision"] is None:
            recorded["precision"] = RECORDED_PRECISION[recorded.pop("mixed_precision")]
        for key in SCHEDULE - {"init_from"}:  # init_from: the recipe's start, then each stage's final
            assert getattr(run, key) == recorded[key], key
    if "parent" in meta:  # a fine-tune or a grown model starts from its parent
        assert runs[0][2].init_from == meta["parent"]["checkpoint"]
    else:
        assert runs[0][2].init_from == ""


def test_flags_override_the_recipe():
    model, _, run = parse_args(["--config", str(RECIPES / "face-x16.json"), "--iters", "7", "--no-boundary"])
    assert run.iters == 7 and model.boundary is False and model.scale == 16


def test_ship_writes_the_checkpoint_and_a_recipe_that_recreates_its_stages(data_dir, tmp_path):
    """tools/ship.py on a two-stage run started from a shipped checkpoint: the recipe it writes parses back into the
    same runs (the first from checkpoints/NAME, the second from the first's final) and the card names the start."""
    from bdflow.train import main
    from tools.ship import ship

    tiny = ["--scale", "4", "--hidden", "8", "--crop", "32", "--batch-size", "2", "--workers", "0", "--val-images", "0",
            "--data", str(data_dir / "faces" / "train")]
    root = tmp_path / "repo"
    assert main([*tiny, "--out", str(root / "checkpoints" / "tiny"), "--iters", "1"]) == 0
    (root / "checkpoints" / "tiny" / "final").rename(tmp_path / "parent")
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"init_from": str(tmp_path / "parent"), "iters": 2, "tau_train": 1.0, "stages": [{"iters": 1, "tau_draw": "uniform"}]}))
    assert main(["--config", str(recipe), *tiny, "--out", str(tmp_path / "run")]) == 0
    final = tmp_path / "run" / "final"
    shutil.rmtree(root / "checkpoints")
    shutil.copytree(tmp_path / "parent", root / "checkpoints" / "tiny")  # the start, as shipped
    config = json.loads((final / "config.json").read_text())  # as if started from checkpoints/tiny
    config["meta"]["parent"]["checkpoint"] = "checkpoints/tiny"
    (final / "config.json").write_text(json.dumps(config))
    ship("tiny", final, [], "abc1234", root=root)
    written = json.loads((root / "training" / "recipes" / "tiny.json").read_text())
    assert written["init_from"] == "checkpoints/tiny" and written["stages"] == [{"iters": 1, "tau_draw": "uniform"}]
    runs = parse_stages(["--config", str(root / "training" / "recipes" / "tiny.json"), "--out", "runs/x"])
    assert [r.iters for _, _, r in runs] == [1, 2] and [l.tau_draw for _, l, _ in runs] == ["uniform", "fixed"]
    card = (root / "checkpoints" / "tiny" / "README.md").read_text()
    assert "fine-tuned from `checkpoints/tiny` as of commit abc1234" in card and "- stage 1: 1 iterations" in card
    ship("tiny", final, [], "abc1234", root=root, dtype="float16")  # the x64 pair's storage: same weights, rounded
    half, full = (read_tensors(p) for p in (root / "checkpoints" / "tiny", final))
    assert half.keys() == full.keys() and all(half[k].dtype == torch.float16 for k in half if full[k].is_floating_point())
    assert all(torch.equal(half[k], full[k].half()) for k in half if full[k].is_floating_point())
    ship("tiny", final, [], "abc1234", root=root)  # replacing it keeps its type unless told
    assert all(t.dtype == torch.float16 for t in read_tensors(root / "checkpoints" / "tiny").values() if t.is_floating_point())


def test_ship_continues_a_shipped_checkpoint_and_keeps_its_lineage(data_dir, tmp_path):
    """tools/ship.py --continues: one more run from the shipped checkpoint itself; its recorded runs become the new
    recipe's earlier stages, its parent (and the revision it recorded) stays the start, and the card keeps its notes."""
    from bdflow.train import main
    from tools.ship import ship

    tiny = ["--scale", "4", "--hidden", "8", "--crop", "32", "--batch-size", "2", "--workers", "0", "--val-images", "0",
            "--data", str(data_dir / "faces" / "train")]
    root = tmp_path / "repo"
    assert main([*tiny, "--out", str(tmp_path / "parent-run"), "--iters", "1"]) == 0
    shutil.copytree(tmp_path / "parent-run" / "final", root / "checkpoints" / "tiny")
    assert main([*tiny, "--init-from", str(root / "checkpoints" / "tiny"), "--iters", "2", "--out", str(tmp_path / "a")]) == 0
    first = tmp_path / "a" / "final"

    def as_shipped(final):  # as if started from checkpoints/tiny in the repository
        config = json.loads((final / "config.json").read_text())
        config["meta"]["parent"]["checkpoint"] = "checkpoints/tiny"
        (final / "config.json").write_text(json.dumps(config))

    as_shipped(first)
    ship("tiny", first, [], "abc1234", notes="a tiny model", root=root)
    assert main([*tiny, "--init-from", str(root / "checkpoints" / "tiny"), "--iters", "3", "--tau-train", "1",
                 "--out", str(tmp_path / "b")]) == 0
    more = tmp_path / "b" / "final"
    as_shipped(more)
    with pytest.raises(SystemExit, match="drop --stages and --parent-revision"):
        ship("tiny", more, [], "def5678", root=root, continues=True)
    ship("tiny", more, [], None, root=root, continues=True)
    runs = parse_stages(["--config", str(root / "training" / "recipes" / "tiny.json"), "--out", "runs/x"])
    assert [r.iters for _, _, r in runs] == [2, 3] and [l.tau_train for _, l, _ in runs] == [0.0, 1.0]
    assert runs[0][2].init_from == "checkpoints/tiny"
    meta = json.loads((root / "checkpoints" / "tiny" / "config.json").read_text())["meta"]
    assert meta["parent"]["revision"] == "abc1234" and meta["notes"] == "a tiny model" and len(meta["stages"]) == 1
    # a continuation that is itself staged keeps its own earlier stages after the shipped runs
    recipe = tmp_path / "more.json"
    recipe.write_text(json.dumps({"init_from": str(root / "checkpoints" / "tiny"), "iters": 2, "stages": [{"iters": 1}]}))
    assert main(["--config", str(recipe), *tiny, "--out", str(tmp_path / "c")]) == 0
    staged = tmp_path / "c" / "final"
    as_shipped(staged)
    ship("tiny", staged, [], None, root=root, continues=True)
    runs = parse_stages(["--config", str(root / "training" / "recipes" / "tiny.json"), "--out", "runs/x"])
    assert [r.iters for _, _, r in runs] == [2, 3, 1, 2]

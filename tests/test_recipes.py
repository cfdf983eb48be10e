"""``training/recipes/NAME.json``: one file per shipped checkpoint, loaded by ``python -m bdflow.train --config``,
re-creates that checkpoint's model, loss and schedule (its config.json and the run recorded in meta["training"])."""

import dataclasses
import json

import pytest

from bdflow.config import BDFlowConfig, LossConfig
from bdflow.train import TrainConfig, parse_args
from tests.helpers import REPO

RECIPES = REPO / "training" / "recipes"
SHIPPED = ["face-x8", "face-x16", "face-x16-noB", "face-x32", "face-x64", "face-x64-noB"]
# TrainConfig fields that decide the schedule and the data (the rest is bookkeeping: where to write, when to stop)
SCHEDULE = {"data", "val_data", "iters", "batch_size", "crop", "lr", "lr_min", "warmup", "decay_from", "bits",
            "grad_clip", "seed", "workers", "val_every", "val_images", "val_tau", "precision", "init_from"}
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
    assert set(recipe) <= names(BDFlowConfig) | names(LossConfig) | names(TrainConfig), "unknown fields"
    assert SCHEDULE <= set(recipe), "the recipe leaves part of the schedule to the CLI's defaults"
    model, loss, run = parse_args(["--config", str(RECIPES / f"{name}.json"), "--out", "runs/x"])
    fields = {k: v for k, v in stored.items() if k != "meta"}
    assert model == BDFlowConfig.from_dict(fields)
    assert loss == LossConfig.from_dict(fields)
    recorded = dict(stored["meta"]["training"])
    if "precision" not in recorded:
        recorded["precision"] = RECORDED_PRECISION[recorded.pop("mixed_precision")]
    for key in SCHEDULE:
        assert getattr(run, key) == recorded[key], key
    if "parent" in stored["meta"]:  # a fine-tune or a grown model starts from its parent
        assert run.init_from == stored["meta"]["parent"]["checkpoint"]
    else:
        assert run.init_from == ""


def test_flags_override_the_recipe():
    model, _, run = parse_args(["--config", str(RECIPES / "face-x16.json"), "--iters", "7", "--no-boundary"])
    assert run.iters == 7 and model.boundary is False and model.scale == 16

"""Ship a trained run as ``checkpoints/NAME``: weights, config.json with its whole lineage, the model card and
``training/recipes/NAME.json`` (the one command that re-creates it).

    python tools/ship.py face-x16 runs/face-x16/final --stages runs/face-x16/stage-1/final \\
        --parent-revision 3638bdd --notes "..."

``--stages`` are the earlier runs of a staged recipe, oldest first (what ``python -m bdflow.train`` records itself
when one recipe runs them all: ``train.record_stages``). The first run's ``init_from`` must be ``checkpoints/NAME``
or another shipped checkpoint; ``--parent-revision`` is the commit whose weights that was, since the file is
replaced. A run that continues the shipped ``checkpoints/NAME`` itself (one more stage of its recipe) takes
``--continues`` instead: that checkpoint's recorded runs become its earlier stages, and its parent (with the
revision it recorded) the start, so the recipe still re-creates the whole lineage (the card keeps its notes
unless ``--notes`` replaces them):

    python tools/ship.py face-x8 runs/x8-more/final --continues

The metrics of the replaced weights are dropped: ``python tools/results.py --evaluate --only ...`` records the
new ones.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bdflow.config import BDFlowConfig, LossConfig  # noqa: E402
from bdflow.hub import card_of, read_tensors, write_tensors  # noqa: E402
from bdflow.train import fold_stages, recorded_schedule  # noqa: E402


def recipe_of(config: dict) -> dict:
    """The recipe JSON of a shipped config.json: model and loss fields, the last run's schedule from the recipe's
    start (meta.parent), and each earlier stage as the loss and run fields it changed."""
    meta = config["meta"]
    fields = {k: v for k, v in config.items() if k != "meta"}
    recipe = {**fields, **recorded_schedule(meta["training"])}
    recipe["init_from"] = meta["parent"]["checkpoint"] if "parent" in meta else ""
    stages = []
    for stage in meta.get("stages", []):
        changed = {k: v for k, v in recorded_schedule(stage["training"]).items() if k != "init_from" and v != recipe[k]}
        changed |= {k: v for k, v in stage["loss"].items() if v != fields[k]}
        stages.append(changed)
    return {**recipe, "stages": stages} if stages else recipe


DTYPES = {"float32": torch.float32, "float16": torch.float16}


def stored_dtype(folder: Path) -> str:
    """The type of the floating-point weights ``folder`` holds; float32 where there are none yet (a new checkpoint)."""
    if not (folder / "config.json").is_file():
        return "float32"
    kinds = {t.dtype for t in read_tensors(folder).values() if t.is_floating_point()}
    return next(k for k, v in DTYPES.items() if v in kinds)


def recorded_runs(shipped: dict) -> list[dict]:
    """A shipped config.json's runs as final config.json dicts (``train.fold_stages``' input), oldest first: its
    recorded stages, then its own last run; the first carries the checkpoint's parent."""
    meta = shipped["meta"]
    fields = {k: v for k, v in shipped.items() if k != "meta"}
    budget = ("iterations", "seconds", "sessions")
    runs = [{**fields, **stage["loss"], "meta": {"training": stage["training"], **{k: stage.get(k) for k in budget}}}
            for stage in meta.get("stages", [])]
    runs.append({**fields, "meta": {"training": meta["training"], **{k: meta.get(k) for k in budget}}})
    if "parent" in meta:
        runs[0]["meta"]["parent"] = meta["parent"]
    return runs


def ship(name: str, final: Path, stages: list[Path], revision: str | None, notes: str | None = None, root: Path = REPO,
         dtype: str | None = None, continues: bool = False) -> Path:
    """``dtype`` None: the type of the weights it replaces (the x32 and x64 checkpoints are float16), else as told.
    ``continues``: the run continues ``checkpoints/NAME`` itself (its runs become the earlier stages)."""
    folder = root / "checkpoints" / name
    dtype = dtype or stored_dtype(folder)
    config = json.loads((final / "config.json").read_text())
    if continues:
        if stages or revision:
            raise SystemExit("error: --continues takes the stages and the start from the shipped checkpoint; drop --stages and --parent-revision")
        if config["meta"].get("parent", {}).get("checkpoint") != f"checkpoints/{name}":
            raise SystemExit(f"error: --continues needs a run started from checkpoints/{name}")
        shipped = json.loads((folder / "config.json").read_text())  # its runs, then the continuation's own earlier stages
        config = fold_stages(config, recorded_runs(shipped) + recorded_runs(config)[:-1])
        notes = notes or shipped["meta"].get("notes")  # the card's limits still hold unless told otherwise
    elif stages:
        config = fold_stages(config, [json.loads((s / "config.json").read_text()) for s in stages])
    meta = config["meta"]
    parent = meta.get("parent")
    if parent and not continues:
        if revision is None:
            raise SystemExit("error: --parent-revision names the commit of the checkpoint the first run started from")
        if not str(parent["checkpoint"]).startswith("checkpoints/"):
            raise SystemExit(f"error: the first run starts from {parent['checkpoint']}, not a shipped checkpoint; "
                             "name its earlier runs with --stages")
        parent["revision"] = revision
    meta.pop("metrics", None)
    if notes:
        meta["notes"] = notes
    raw = {k: v for k, v in config.items() if k != "meta"}  # every field spelled out (a run older than a field lacks it)
    fields = {**BDFlowConfig.from_dict(raw).to_dict(), **LossConfig.from_dict(raw).to_dict()}
    config = {**fields, "meta": meta}
    folder.mkdir(parents=True, exist_ok=True)
    # float16 halves a x64 file (22 MB in two shards -> 11 MB in one); the loader computes in float32 either way
    write_tensors(folder, {k: v.to(DTYPES[dtype]) if v.is_floating_point() else v for k, v in read_tensors(final).items()})
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "README.md").write_text(card_of(folder))
    recipe = root / "training" / "recipes" / f"{name}.json"
    recipe.parent.mkdir(parents=True, exist_ok=True)
    recipe.write_text(json.dumps(recipe_of(config), indent=2) + "\n")
    return folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/ship.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="checkpoints/NAME to write (replaced if it exists)")
    parser.add_argument("final", type=Path, help="the run's final folder (config.json + model.safetensors)")
    parser.add_argument("--stages", nargs="*", type=Path, default=[], help="the earlier runs' final folders, oldest first")
    parser.add_argument("--parent-revision", help="commit of the checkpoint the first run started from (not with --continues)")
    parser.add_argument("--continues", action="store_true", help="the run continues checkpoints/NAME itself: its recorded runs become the earlier stages")
    parser.add_argument("--notes", help="the card's Limits text (meta.notes)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), help="the stored weights' type (default: that of the checkpoint it replaces, float32 for a new one)")
    args = parser.parse_args(argv)
    folder = ship(args.name, args.final, args.stages, args.parent_revision, args.notes, dtype=args.dtype, continues=args.continues)
    print(f"shipped {folder.relative_to(REPO)} and training/recipes/{args.name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

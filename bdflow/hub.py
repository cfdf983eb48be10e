"""Checkpoint files: config.json + safetensors, from a local folder or the Hugging Face Hub (design §6).

Layout (diffusers/transformers style)::

    NAME/config.json                      BDFlowConfig fields, plus "meta" (training recipe, metrics, ...)
    NAME/model.safetensors                or model-0000k-of-0000n.safetensors + model.safetensors.index.json
    NAME/README.md                        the model card

Every file stays under 16 MiB (sharded by huggingface_hub). Never pickle. Loading is offline-friendly: a local
folder is read directly; a repo id goes through ``snapshot_download``, which honours ``HF_HUB_OFFLINE=1`` and
answers from the local cache.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from huggingface_hub import constants, save_torch_state_dict, snapshot_download
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
from safetensors.torch import load_file

from .card import model_card

CONFIG_NAME = "config.json"
MAX_SHARD_SIZE = "15MB"  # < 16 MiB per file, the repository's limit
REPO_CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"  # the shipped ones, found from any folder


def save_checkpoint(directory: str | Path, config: dict, state_dict: dict[str, torch.Tensor], meta: dict | None = None) -> Path:
    """Write config.json (+ meta) and the safetensors weights, sharded below 16 MiB per file."""
    directory = Path(directory)
    write_tensors(directory, state_dict)
    payload = {**config, "meta": meta or {}}
    (directory / CONFIG_NAME).write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return directory


def write_tensors(directory: str | Path, tensors: dict[str, torch.Tensor], stem: str = "model") -> None:
    """STEM.safetensors, or STEM-0000k-of-0000n.safetensors + STEM.safetensors.index.json, each < 16 MiB."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob(f"{stem}*.safetensors*"):  # never leave shards of an older save behind
        old.unlink()
    save_torch_state_dict(tensors, directory, filename_pattern=stem + "{suffix}.safetensors", max_shard_size=MAX_SHARD_SIZE)


def read_tensors(folder: Path, stem: str = "model") -> dict[str, torch.Tensor]:
    """The tensors :func:`write_tensors` wrote, sharded or not."""
    index, single = folder / f"{stem}.safetensors.index.json", folder / f"{stem}.safetensors"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif single.is_file():
        files = [single.name]
    else:
        raise FileNotFoundError(f"no {stem} safetensors in {folder}")
    state: dict[str, torch.Tensor] = {}
    for name in files:
        state.update(load_file(folder / name))
    return state


def find_checkpoints(root: str | Path = "checkpoints") -> list[Path]:
    """Every folder under ``root`` with a config.json, sorted by name."""
    root = Path(root)
    return sorted(p.parent for p in root.glob(f"*/{CONFIG_NAME}")) if root.is_dir() else []


def find_checkpoint(name: str) -> str:
    """A short name as the CLI takes it: a folder path, else checkpoints/NAME (here or in the repository), else the
    name as given (a Hub repo id, for :func:`resolve_checkpoint`)."""
    for candidate in (Path(name), Path("checkpoints") / name, REPO_CHECKPOINTS / name):
        if (candidate / CONFIG_NAME).is_file():
            return str(candidate)
    return name


def checkpoint_name(name: str) -> str:
    """What a .bdf file stores as the model's name: NAME when checkpoints/NAME finds the same folder, else as given."""
    path = Path(name)
    if path.is_dir():
        short = path.resolve().name
        if Path(find_checkpoint(short)).resolve() == path.resolve():
            return short
    return name


def resolve_checkpoint(name_or_path: str | Path, revision: str | None = None, cache_dir: str | Path | None = None) -> Path:
    """A local folder as it is, else a Hub repo id downloaded (or found in the cache when offline)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    try:
        folder = snapshot_download(
            str(name_or_path),
            revision=revision,
            cache_dir=cache_dir,
            allow_patterns=[CONFIG_NAME, "*.safetensors", "*.safetensors.index.json", "README.md"],
        )
    except HFValidationError as err:
        raise FileNotFoundError(f"{name_or_path!r} is neither a checkpoint folder nor a Hub repo id") from err
    except LocalEntryNotFoundError as err:
        raise FileNotFoundError(
            f"checkpoint {name_or_path!r} is not a local folder and is not in the Hugging Face cache"
            f" ({constants.HF_HUB_CACHE}); with HF_HUB_OFFLINE=1 nothing is downloaded"
        ) from err
    return Path(folder)


def read_checkpoint(folder: Path) -> tuple[dict, dict, dict[str, torch.Tensor]]:
    """(config fields, meta, state_dict) of a checkpoint folder."""
    config_file = folder / CONFIG_NAME
    if not config_file.is_file():
        raise FileNotFoundError(f"no {CONFIG_NAME} in checkpoint folder {folder}")
    config = json.loads(config_file.read_text())
    meta = config.pop("meta", {})
    return config, meta, read_tensors(folder)


def check_state_dict(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], where: str) -> None:
    """Refuse weights that do not fit the model built from config.json, naming the mismatch."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [
        f"{k}: weights {tuple(found[k].shape)} vs config {tuple(v.shape)}"
        for k, v in expected.items()
        if k in found and found[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensors missing (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches (e.g. {shapes[0]})")
    if problems:
        raise ValueError(f"weights in {where} do not match its config.json: " + "; ".join(problems))


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors in name order: identifies the exact weights a file was encoded with."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tensor.dtype).encode())
        h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def record_metrics(folder: str | Path, split: str, summaries: list[dict], notes: str | None = None) -> None:
    """Store evaluation summaries under meta["metrics"][split] in config.json and rewrite the model card.

    ``notes`` (kept in meta["notes"] until replaced) become the card's "Limits" section.
    """
    folder = Path(folder)
    payload = json.loads((folder / CONFIG_NAME).read_text())
    meta = payload.setdefault("meta", {})
    meta.setdefault("metrics", {})[split] = summaries
    if notes is not None:
        meta["notes"] = notes
    (folder / CONFIG_NAME).write_text(json.dumps(payload, indent=2) + "\n")
    (folder / "README.md").write_text(card_of(folder))


def card_of(folder: str | Path) -> str:
    """The model card of a checkpoint folder as its config.json says it should read (README.md is written from it)."""
    folder = Path(folder)
    payload = json.loads((folder / CONFIG_NAME).read_text())
    meta = payload.pop("meta", {})
    return model_card(folder.name, payload, meta)

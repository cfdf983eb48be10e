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

from .config import BDFlowConfig

CONFIG_NAME = "config.json"
MAX_SHARD_SIZE = "15MB"  # < 16 MiB per file, the repository's limit


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


def _schedule(training: dict) -> str:
    warmup, decay_from = training.get("warmup", 0), training.get("decay_from", 0.0)
    return (f", {warmup} warm-up iterations" if warmup else "") + (
        f", constant until {100 * decay_from:.0f} % of the run, then cosine" if decay_from else " cosine")


def _lpips_from(c: BDFlowConfig) -> str:
    return f" (LPIPS from {100 * c.lpips_from:.0f} % of the run)" if c.lambda_lpips and c.lpips_from else ""


def _flow(c: BDFlowConfig) -> str:
    wavelet = {"haar": "Haar (the paper's)", "cdf53": "LeGall 5/3 lifting", "cdf97": "CDF 9/7 lifting"}[c.wavelet]
    b = ("B as the flow's 4th output channel (the paper's)" if c.b_channel else
         "B as a condition: the BAM target, read by every coupling" if c.conditioned else "no B")
    return f"{wavelet} wavelets, {b}, Z scale {c.z_scale}"


def model_card(name: str, config: dict, meta: dict) -> str:
    """README.md of a checkpoint folder: what it is, data and licence, training budget, metrics, limits."""
    scale, boundary = config["scale"], config.get("boundary", True)
    kind = "BDFlow" if boundary else "the B-less twin (IRN-style: no boundary map; its B channel joins Z)"
    training = meta.get("training", {})
    c = BDFlowConfig.from_dict(config)
    baw = f"BAW after {100 * c.baw_alpha:.0f} % of the iterations" if c.baw else "no BAW (L1 alike on every pixel)"
    sessions = meta.get("sessions", [])
    budget = "\n".join(
        f"- iterations {s['from_iteration']}–{s['to_iteration']} on {s['hardware']}, {s['seconds'] / 3600:.2f} h" for s in sessions
    ) or "- (not recorded)"
    parent = meta.get("parent")
    if parent:  # progressive init (train --init-from): the parent's budget is part of this model's
        where = f"`{parent['checkpoint']}`" + (f" as of commit {parent['revision']}" if parent.get("revision") else "")
        budget += (f"\n- before that, grown from {where} (×{parent['scale']}, {parent.get('iterations')} iterations, "
                   f"{(parent.get('seconds') or 0) / 3600:.2f} h): its levels initialised this model's first ones")
    metrics = meta.get("metrics", {})
    lambdas = ", ".join(f"{config.get('lambda_' + k, '?'):g}" for k in ("forw", "back", "lpips", "bam", "latent"))
    metric_rows = "\n".join(
        f"| {split} | {m['method']} | {m['psnr']:.2f} | {m['ssim']:.4f} | {m['lpips']:.4f} | {m['bytes']:.0f} |"
        for split, rows in metrics.items()
        for m in rows
    )
    metric_table = (
        "| data | method | PSNR-Y (dB) | SSIM-Y | LPIPS | bytes / image |\n|---|---|---|---|---|---|\n" + metric_rows
        if metric_rows
        else "Not evaluated yet."
    )
    return f"""---
license: other
license_name: celeba-hq-non-commercial
library_name: bdflow
tags: [image-rescaling, invertible-network, bdflow]
---
# {name}: ×{scale} face rescaler ({kind})

A checkpoint of bdflow — Boundary-aware Decoupled Flow Networks (Li et al., IJCAI 2024).
It maps an RGB face image to an 8-bit LR image Y at 1/{scale} of its size{", a k-bit boundary map B on the LR grid" if boundary else ""}
and a latent Z; the inverse rebuilds the face from the stored Y{" and B" if boundary else ""} and Z sampled at temperature τ.

```python
import bdflow
r = bdflow.Rescaler.from_pretrained("checkpoints/{name}")
out = r.decode(r.encode("face.png", bits=1), tau=0.8, seed=0)
```

## Data and licence
Trained on `faces/train` of the project's data (3,600 CelebA-HQ faces at 512², JPEG q≈75), from
CelebAMask-HQ: **non-commercial research use only**. The weights inherit that restriction.

## Training
Adam (0.9, 0.999), lr {training.get('lr', '?')}{_schedule(training)} to {training.get('lr_min', '?')}, λ = {lambdas}{_lpips_from(c)},
{baw}, decoded in training from a Z at τ = {c.tau_train:g}, {training.get('iters', '?')} scheduled iterations of batch {training.get('batch_size', '?')} on
{training.get('crop', '?')}² crops, bits drawn from {training.get('bits', '?')} per batch. Trained so far:
{meta.get('iterations', '?')} iterations, {meta.get('seconds', 0) / 3600:.2f} h in all:
{budget}

Flow: {_flow(c)}.
Model: `hidden={config['hidden']}`, `res_blocks={config['res_blocks']}`, `blocks_per_level={config['blocks_per_level']}`,
B target `{config.get('b_target')}`, BAM T = {config.get('bam_threshold')}, {config.get('bam_norm')}-norm (full config in `config.json`).

## Metrics
{metric_table}

## Limits
{meta.get("notes") or "Faces only (aligned CelebA-HQ); other content is out of domain."}
"""


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
    config = {k: v for k, v in payload.items() if k != "meta"}
    (folder / "README.md").write_text(model_card(folder.name, config, meta))

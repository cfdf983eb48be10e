"""Model cards: the README.md of a checkpoint folder (what it is, its data and licence, training budget, metrics,
limits), rendered from its config and ``meta``. ``hub.record_metrics`` rewrites a card after an evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import BDFlowConfig, LossConfig, crop_sizes


@dataclass(frozen=True)
class TrainingData:
    """What a card says about the data a model was trained on."""

    domain: str  # the card's title: "×16 <domain> rescaler"
    licence: str  # the card's license_name
    text: str  # the "Data and licence" section
    limits: str  # the "Limits" section unless meta["notes"] replaces it


# training folders of ../shared/data (by their last two parts) -> what the card says; see that data's README
KNOWN_DATA = {
    "faces/train": TrainingData(
        "face", "celeba-hq-non-commercial",
        "Trained on `faces/train` of the project's data (3,600 CelebA-HQ faces at 512², JPEG q≈75), from\n"
        "CelebAMask-HQ: **non-commercial research use only**. The weights inherit that restriction.",
        "Faces only (aligned CelebA-HQ); other content is out of domain."),
}
DEFAULT_DATA = "faces/train"  # checkpoints whose meta names no training folder were all trained on faces


def training_data(meta: dict) -> TrainingData:
    """The card's data text from ``meta["training"]["data"]`` (the training folder train.py records): a folder of
    :data:`KNOWN_DATA`, else a generic text that names the folder; without it, the faces' text."""
    folder = str((meta.get("training") or {}).get("data") or DEFAULT_DATA)
    key = "/".join(Path(folder).parts[-2:])
    if key in KNOWN_DATA:
        return KNOWN_DATA[key]
    return TrainingData(
        "image", "other",
        f"Trained on `{folder}`: see that data's README for its source and licence, which the weights inherit.",
        f"Trained on `{key}` only; other content is out of domain.")


def _schedule(training: dict) -> str:
    warmup, decay_from = training.get("warmup", 0), training.get("decay_from", 0.0)
    return (f", {warmup} warm-up iterations" if warmup else "") + (
        f", constant until {100 * decay_from:.0f} % of the run, then cosine" if decay_from else " cosine")


def _zoomed(training: dict) -> str | None:
    """The crops' zoom where a run used one (``TrainConfig.zoom`` > 1), for a stage line: "2" (factors from 1 to 2),
    "1.5 to 2" (from ``zoom_min``) or "2 fixed"; None for runs without (or recorded before) a zoom."""
    zoom, low = training.get("zoom", 1.0), training.get("zoom_min", 1.0)
    if zoom <= 1:
        return None
    return f"{zoom:g}" if low == 1 else f"{zoom:g} fixed" if low == zoom else f"{low:g} to {zoom:g}"


def _crops(training: dict) -> str:
    """ "batch 4 on 256² crops" ("... and batch 1 on 1024² crops in turn" with crop turns), for the headline and a
    stage line (a staged recipe's stages may differ in both); "" for records without a crop."""
    if "crop" not in training:
        return ""
    sizes = crop_sizes(training["crop"], training.get("batch_size", "?"), training.get("crop_turns", ""))
    return " and ".join(f"batch {b} on {c}² crops" for c, b in sizes) + (" in turn" if len(sizes) > 1 else "")


def _zoom(training: dict) -> str:
    """The same zoom for the card's headline: " cut from faces enlarged by ..." (empty without one)."""
    if not _zoomed(training):
        return ""
    zoom, low = training["zoom"], training.get("zoom_min", 1.0)
    return f" cut from faces enlarged by {zoom:g}" if low == zoom else f" cut from faces enlarged by a random factor from {low:g} to {zoom:g}"


def _lpips_from(loss: LossConfig) -> str:
    """What the λ list leaves out of LPIPS: when it joins, shifted crops, a weight that grows with the decode's τ; and
    the terms on warm decodes beyond it (texture statistics, the critic)."""
    shift = ", on randomly shifted crops" if loss.lpips_shift else ""
    late = f" (LPIPS from {100 * loss.lpips_from:.0f} % of the run{shift})" if loss.lambda_lpips and loss.lpips_from else ""
    warm = f", LPIPS weighted λ₃ + {loss.lambda_lpips_tau:g} τ / τ_train in a decode at τ" if loss.lambda_lpips_tau else ""
    texture = (f", AlexNet feature statistics held to the truth's at {loss.lambda_texture:g} τ / τ_train in a decode at τ"
               if loss.lambda_texture else "")
    critic = (f", a patch critic's judgement at {loss.lambda_critic:g} τ / τ_train in a decode at τ (from {100 * loss.critic_from:.0f} % of the run)"
              if loss.lambda_critic else "")
    return late + warm + texture + critic


def _back(loss: LossConfig) -> str:
    """L_back when it is not Eq. 9's L1: the energy score of two decodes, and where their spread weighs less."""
    if loss.back != "energy":
        return ""
    agree = (f"; in patches holding a boundary (BAM's, of the training image) the spread term weighs {loss.energy_edge_spread:g}, so samples agree on the edges"
             if loss.energy_edge_spread != 1 else "")
    flat = (f"; in the flatter half of each batch's patches (luma std below its median) it weighs {loss.energy_flat_spread:g}, so samples agree on flat surfaces"
            if loss.energy_flat_spread != 1 else "")
    colour = (f"; the samples' difference in colour counts {loss.energy_colour_spread:g} of itself in the spread term, so samples differ in luminance"
              if loss.energy_colour_spread != 1 else "")
    return f", L_back the energy score of two decodes over {loss.energy_patch}×{loss.energy_patch} patches{agree}{flat}{colour}"


def _tau(loss: LossConfig) -> str:
    """The temperature of the training decodes: one for all, or each image's own; and its share in B's cells."""
    tau = f"drawn per image from U(0, {loss.tau_train:g})" if loss.tau_draw == "uniform" and loss.tau_train else f"= {loss.tau_train:g}"
    return tau + (f" ({loss.tau_b:g} of it in B's boundary cells)" if loss.tau_b != 1 and loss.tau_train else "")


def _readers(c: BDFlowConfig) -> str:
    readers = "every coupling" if c.b_from_level == 1 else f"the couplings of levels {c.b_from_level}..{c.levels}"
    return readers + (" (its input weights started at zero)" if c.b_init == "zero" else "")


def _res_levels(c: BDFlowConfig) -> str:
    return f" (levels {c.res_from_level}..{c.levels}; the finer ones conv-ReLU-conv)" if c.res_from_level > 1 else ""


def _level1(c: BDFlowConfig) -> str:
    return f" ({c.level1_blocks} at level 1)" if c.level1_blocks else ""


def _flow(c: BDFlowConfig) -> str:
    wavelet = {"haar": "Haar (the paper's)", "cdf53": "LeGall 5/3 lifting", "cdf97": "CDF 9/7 lifting"}[c.wavelet]
    b = ("B as the flow's 4th output channel (the paper's)" if c.b_channel else
         f"B as a condition: the BAM target, read by {_readers(c)}" if c.conditioned else "no B")
    phase = ", Y centred on its LR cell" if c.y_phase == "centred" and c.wavelet != "haar" else ""
    return f"{wavelet} wavelets{phase}, {b}, Z scale {c.z_scale}"


def own_runs(meta: dict) -> list[dict]:
    """A checkpoint's own runs, oldest first: a staged recipe's earlier stages (``meta["stages"]``) and its last run
    (``meta`` itself); a parent's runs are not among them."""
    return [*meta.get("stages", []), meta]


def total_budget(meta: dict) -> tuple[int, float]:
    """(iterations, seconds) of a checkpoint's :func:`own_runs`."""
    runs = own_runs(meta)
    return sum(r.get("iterations") or 0 for r in runs), sum(r.get("seconds") or 0 for r in runs)


def model_card(name: str, config: dict, meta: dict) -> str:
    """README.md of a checkpoint folder: what it is, data and licence, training budget, metrics, limits. The data
    section comes from ``meta`` (:func:`training_data`)."""
    scale, boundary = config["scale"], config.get("boundary", True)
    kind = "BDFlow" if boundary else "the B-less twin (IRN-style: no boundary map; its B channel joins Z)"
    training = meta.get("training", {})
    c, loss = BDFlowConfig.from_dict(config), LossConfig.from_dict(config)
    baw = f"BAW after {100 * loss.baw_alpha:.0f} % of the iterations" if loss.uses_baw(c) else "no BAW (L1 alike on every pixel)"
    if loss.grid_gamma:
        baw += f", each offset of the LR cell weighed by its error (γ = {loss.grid_gamma:g})"
    if loss.lambda_grid:
        baw += f", plus λ_grid = {loss.lambda_grid:g} on the detail's energy per offset of the LR cell"
    if loss.lambda_channels:
        held = "to N(0, 1) (W2 per channel)" if loss.channels == "w2" else "at mean 0 and std 1"
        baw += f", plus λ_channels = {loss.lambda_channels:g} holding each Z channel {held}"
    sessions = meta.get("sessions", [])
    budget = "\n".join(
        f"- iterations {s['from_iteration']}–{s['to_iteration']} on {s['hardware']}, {s['seconds'] / 3600:.2f} h" for s in sessions
    ) or "- (not recorded)"
    stages = meta.get("stages", [])  # a staged recipe's earlier runs (train.record_stages), newest last
    budget = "".join(
        f"- stage {i + 1}: {st.get('iterations')} iterations{' of ' + _crops(st['training']) if _crops(st['training']) else ''} (lr {st['training'].get('lr')}, λ₅ {st['loss'].get('lambda_latent'):g},"
        f"{' λ_channels ' + format(st['loss']['lambda_channels'], 'g') + ',' if st['loss'].get('lambda_channels') else ''}"
        f" τ_train {st['loss'].get('tau_train'):g} {st['loss'].get('tau_draw', 'fixed')}"
        f"{', L_back ' + st['loss']['back'] if st['loss'].get('back', 'l1') != 'l1' else ''}"
        f"{', zoom ' + _zoomed(st['training']) if _zoomed(st['training']) else ''}), {(st.get('seconds') or 0) / 3600:.2f} h\n"
        for i, st in enumerate(stages)
    ) + (f"- stage {len(stages) + 1}, this run:\n" if stages else "") + budget
    iterations, seconds = total_budget(meta)
    parent = meta.get("parent")
    if parent:  # progressive init (train --init-from): the parent's budget is part of this model's
        where = f"`{parent['checkpoint']}`" + (f" as of commit {parent['revision']}" if parent.get("revision") else "")
        verb, role = ("fine-tuned from", "it was this model's start") if parent["scale"] == c.scale else (
            "grown from", "its levels initialised this model's first ones")
        budget += (f"\n- before that, {verb} {where} (×{parent['scale']}, {parent.get('iterations')} iterations, "
                   f"{(parent.get('seconds') or 0) / 3600:.2f} h): {role}")
    metrics = meta.get("metrics", {})
    lambdas = ", ".join(f"{getattr(loss, 'lambda_' + k):g}" for k in ("forw", "back", "lpips", "bam", "latent"))
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
    data = training_data(meta)
    return f"""---
license: other
license_name: {data.licence}
library_name: bdflow
tags: [image-rescaling, invertible-network, bdflow]
---
# {name}: ×{scale} {data.domain} rescaler ({kind})

A checkpoint of bdflow — Boundary-aware Decoupled Flow Networks (Li et al., IJCAI 2024).
It maps an RGB face image to an 8-bit LR image Y at 1/{scale} of its size{", a k-bit boundary map B on the LR grid" if boundary else ""}
and a latent Z; the inverse rebuilds the face from the stored Y{" and B" if boundary else ""} and Z sampled at temperature τ{" (by default at its mean in B's boundary cells: `tau_b=1` samples there too, as the paper does)" if boundary else ""}.

```python
import bdflow
r = bdflow.Rescaler.from_pretrained("checkpoints/{name}")
out = r.decode(r.encode("face.png", bits=1), seed=0)  # tau: r.default_tau unless given; tau=0 is deterministic
```

## Data and licence
{data.text}

## Training
Adam (0.9, 0.999), lr {training.get('lr', '?')}{_schedule(training)} to {training.get('lr_min', '?')}, λ = {lambdas}{_lpips_from(loss)}{_back(loss)},
{baw}, decoded in training from a Z at τ {_tau(loss)}, {training.get('iters', '?')} scheduled iterations of {_crops(training) or 'crops'}{_zoom(training)},
bits drawn from {training.get('bits', '?')} per batch. Trained so far:
{iterations} iterations, {seconds / 3600:.2f} h in all:
{budget}

Flow: {_flow(c)}.
Model: `hidden={config['hidden']}`, `res_blocks={config['res_blocks']}`{_res_levels(c)}, `blocks_per_level={config['blocks_per_level']}`{_level1(c)},
B target `{config.get('b_target')}`, BAM T = {config.get('bam_threshold')}, {config.get('bam_norm')}-norm (full config in `config.json`).

## Metrics
{metric_table}

## Limits
{meta.get("notes") or data.limits}
"""

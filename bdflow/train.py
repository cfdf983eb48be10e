"""Train BDFlow (paper §4.2): ``python -m bdflow.train --data ../shared/data/faces/train --out runs/face-x8``.

Built on Hugging Face Accelerate: the same command runs on CPU or one GPU, and ``accelerate launch
--multi_gpu -m bdflow.train ...`` runs DDP over several GPUs or machines. Each shipped model's recipe is a file,
``--config training/recipes/NAME.json`` (docs/training.md); without one the defaults are Adam (0.9, 0.999), lr 2e-4
cosine-annealed to 1e-6, lambda = 2, 2, 0.1, 16, 0 (``LossConfig``), BAW after 30 % of the iterations, random crops
and flips, ``bits`` drawn from 1..4 per batch (one checkpoint serves every bits). The step is the fast one where it
pays (``--compile``, ``--precision``; docs/speed.md).

Every ``--checkpoint-minutes`` the run writes ``OUT/last`` (config.json + safetensors weights, and the
optimizer/scheduler/step/RNG state as safetensors + JSON, no pickle); ``--resume`` continues it exactly (the
batches are a pure function of the step, see ``bdflow.data``). ``OUT/log.csv`` and ``OUT/curves.png`` log it.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .accel import train_precision
from .codec import write_atomic
from .config import BDFlowConfig, LossConfig, crop_sizes, option
from .critic import BETAS, LR_FACTOR, PatchCritic, critic_loss
from .data import CropBatches, list_images
from .flow import BDFlow
from .hub import read_tensors, write_tensors
from .image_io import load_image
from .limits import MAX_BITS, PRECISIONS, check_bits
from .losses import TERMS, LossTerms, Passes, bdflow_loss
from .metrics import psnr_y
from .pipeline import Rescaler
from .quantize import to_8bit

LOG_FIELDS = ("step", "seconds", "lr", "bits", *TERMS, "critic_own", "val_psnr")  # critic_own: the critic's loss (bdflow.critic)
STATE_STEM, STATE_JSON = "training_state", "training_state.json"


@dataclass
class TrainConfig:
    """The run: data, length, optimiser and bookkeeping (the model lives in BDFlowConfig, the loss in LossConfig)."""

    data: str = option("../shared/data/faces/train", "folder of training images")
    val_data: str = option("../shared/data/faces/val", "folder of validation images ('' to skip validation)")
    out: str = option("runs/bdflow", "output folder: OUT/last (resumable), OUT/final, log.csv, curves.png")
    iters: int = option(20000, "training iterations (the cosine schedule and BAW's 30 %% are relative to it)")
    batch_size: int = option(16, "images per batch (per process)")
    crop: int = option(128, "random square crop size (a multiple of the scale)")
    crop_turns: str = option("", "further CROP:BATCH pairs that take turns with --crop and --batch-size step by step, e.g. '1024:1' (steps 0, 2, ...: --crop; 1, 3, ...: one 1024² crop), so one run sees the grids of several crop sizes ('': every step --crop)")
    zoom: float = option(1.0, "each crop is cut from its image enlarged by a factor from U(zoom_min, zoom), so faces fill more pixels, as on larger photos (bdflow.data.CropBatches; 1: off)")
    zoom_min: float = option(1.0, "the smallest zoom factor (1: some crops at the image's own size; = zoom: every crop enlarged by zoom, e.g. a crop larger than the training images)")
    lr: float = option(2e-4, "initial learning rate (Adam, betas 0.9/0.999)")
    lr_min: float = option(1e-6, "learning rate at the end of the cosine schedule")
    warmup: int = option(0, "iterations of linear learning-rate warm-up from 0")
    decay_from: float = option(0.0, "constant learning rate until this fraction of --iters, cosine to lr_min after (0: the paper's cosine over the whole run)")
    bits: str = option("1,2,3,4", "comma-separated k drawn per batch for B's quantisation")
    grad_clip: float = option(10.0, "gradient norm clip (IRN's recipe)")
    seed: int = option(0, "seed of weights, batches and Z samples")
    workers: int = option(1, "data-loader worker processes (0: load in the main process)")
    checkpoint_minutes: float = option(10.0, "write OUT/last at least this often (minutes)")
    val_every: int = option(500, "validate every N iterations")
    val_images: int = option(8, "validation images (full size)")
    val_tau: float = option(0.0, "Z temperature of the validation decodes; the checkpoint records it as its default tau (meta 'default_tau': what the app, the CLI and Rescaler.decode start from)")
    max_bad_steps: int = option(20, "stop after this many consecutive non-finite losses")
    precision: str = option("auto", "fp32 | bf16 (the couplings' subnets under bf16 autocast; the flow's state, wavelets and losses float32) | auto (bf16 on CUDA, fp32 on a CPU: there bf16 autocast was slower, docs/speed.md)")
    compile: str = option("auto", "on | off | auto: torch.compile the flow's passes and LPIPS (Inductor; compiling takes 1-5 min; auto: on for runs of 500+ iterations where a C++ compiler or CUDA is found)")
    cache_images: bool = option(True, "keep the decoded training images in memory (uint8; the same batches, bit for bit)")
    threads: int = option(0, "torch threads of this run (0: torch's default, one per core); two runs of 1 thread each beat one of 2 on a loaded 2-core machine")
    resume: bool = option(False, "continue OUT/last if it exists")
    init_from: str = option("", "start a new run from this checkpoint of smaller or equal scale: its levels, any extra ones identity (docs/design.md)")
    stop_at: int = option(0, "checkpoint and exit after this iteration (0: run to --iters); --resume continues")
    stop_after_minutes: float = option(0.0, "checkpoint and exit after this many minutes (0: no limit)")
    z_calibration: int = option(0, "after the last iteration, re-set Z's fixed per-channel scale on this many batches drawn as in training (BDFlow.init_z_scale; docs/design.md \"Z's scale after training\"; 0: keep it)")


# TrainConfig fields that decide the schedule and the data: what a recipe fixes (the rest is bookkeeping: where to
# write, when to stop, threads)
SCHEDULE = frozenset({"data", "val_data", "iters", "batch_size", "crop", "crop_turns", "zoom", "zoom_min", "lr", "lr_min", "warmup", "decay_from", "bits",
                      "grad_clip", "seed", "workers", "val_every", "val_images", "val_tau", "precision", "init_from", "z_calibration"})
SCHEDULE_LEGACY = {"crop_turns": "", "zoom": 1.0, "zoom_min": 1.0, "z_calibration": 0}  # schedule fields a run recorded before they existed: the value every run had then


def recorded_schedule(training: dict) -> dict:
    """The SCHEDULE fields of a config.json's meta 'training' (older records filled from SCHEDULE_LEGACY)."""
    return {k: training.get(k, SCHEDULE_LEGACY.get(k)) for k in sorted(SCHEDULE)}


# ----------------------------------------------------------------------------------------------------
# Command line: flags are generated from the three dataclasses, so --help documents every option
# ----------------------------------------------------------------------------------------------------


def _add_fields(parser: argparse.ArgumentParser, cls, title: str) -> None:
    group = parser.add_argument_group(title)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        help_ = f"{f.metadata['help']} (default: {f.default})"
        if f.type == "bool":  # --boundary/--no-boundary, --resume/--no-resume
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            group.add_argument(flag, type={"int": int, "float": float}.get(f.type, str), default=None, help=help_)


def _pick(cls, args: argparse.Namespace, base: dict) -> dict:
    picked = dict(base)
    picked.update({f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name) is not None})
    return picked


def parse_args(argv=None) -> tuple[BDFlowConfig, LossConfig, TrainConfig]:
    """The run the command line asks for: of a staged recipe, its last stage (:func:`parse_stages`)."""
    return parse_stages(argv)[-1]


def parse_stages(argv=None) -> list[tuple[BDFlowConfig, LossConfig, TrainConfig]]:
    """Every run of the command line, in order. A recipe's ``"stages"`` (a list of dicts of loss and run fields) are
    runs before its own fields' run, each the recipe with that dict's fields replaced: the first starts from the
    recipe's ``init_from`` and writes OUT/stage-1, each next one starts from the previous one's final, the last
    (the recipe's own fields) writes OUT. A fine-tune grown over several schedules is one recipe and one command."""
    parser = argparse.ArgumentParser(prog="python -m bdflow.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="JSON file with BDFlowConfig, LossConfig and/or TrainConfig fields and optional \"stages\"; flags override it")
    _add_fields(parser, TrainConfig, "run (TrainConfig)")
    _add_fields(parser, BDFlowConfig, "model (BDFlowConfig); --no-boundary trains the IRN-style twin")
    _add_fields(parser, LossConfig, "loss (LossConfig)")
    args = parser.parse_args(argv)
    base = json.loads(Path(args.config).read_text()) if args.config else {}
    stages = base.pop("stages", [])
    by_class = {cls: {f.name for f in dataclasses.fields(cls)} for cls in (BDFlowConfig, LossConfig)}
    runs = []
    try:
        for i, fields in enumerate([*stages, {}]):
            if set(fields) & by_class[BDFlowConfig]:
                raise ValueError(f"stage {i + 1} changes the model ({sorted(set(fields) & by_class[BDFlowConfig])}); stages change the loss and the run only")
            recipe = {**base, **fields}
            model, loss = (cls(**_pick(cls, args, {k: v for k, v in recipe.items() if k in names})) for cls, names in by_class.items())
            others = {k: v for k, v in recipe.items() if not any(k in names for names in by_class.values())}
            run = TrainConfig(**_pick(TrainConfig, args, others))
            if i < len(stages):
                run = dataclasses.replace(run, out=str(Path(run.out) / f"stage-{i + 1}"))
            if i:
                run = dataclasses.replace(run, init_from=str(Path(runs[-1][2].out) / "final"))
            _check_run(model, loss, run)
            runs.append((model, loss, run))
    except (TypeError, ValueError) as err:
        parser.error(str(err))
    return runs


def fold_stages(config: dict, metas: list[dict]) -> dict:
    """A final config.json (dict) with a staged run's earlier runs folded into its meta: ``stages`` lists each one's
    run, loss, iterations, seconds and sessions (``metas``: their final config.json dicts, oldest first), and
    ``parent`` becomes the first one's (the recipe's ``init_from``), so the card and the recipe test see the whole
    budget and the true start."""
    config = {**config, "meta": dict(config["meta"])}
    config["meta"]["stages"] = [
        {"training": m["meta"]["training"], "loss": LossConfig.from_dict({k: v for k, v in m.items() if k != "meta"}).to_dict(),
         **{k: m["meta"].get(k) for k in ("iterations", "seconds", "sessions")}} for m in metas]
    if "parent" in metas[0]["meta"]:
        config["meta"]["parent"] = metas[0]["meta"]["parent"]
    else:
        config["meta"].pop("parent", None)
    return config


def record_stages(final: Path, stages: list[Path]) -> None:
    """:func:`fold_stages` on OUT/final/config.json, in place."""
    path = Path(final) / "config.json"
    config = fold_stages(json.loads(path.read_text()), [json.loads((Path(st) / "config.json").read_text()) for st in stages])
    write_atomic(path, (json.dumps(config, indent=2) + "\n").encode(), force=True)


def _check_run(model: BDFlowConfig, loss: LossConfig, run: TrainConfig) -> None:
    loss.check(model)
    for crop, batch_size in crop_sizes(run.crop, run.batch_size, run.crop_turns):
        if crop % model.scale or crop < 2 * model.scale:
            raise ValueError(f"crop {crop} (--crop, --crop-turns) must be a multiple of the scale {model.scale} and at least 2 LR pixels wide")
        if loss.back == "energy" and crop % loss.energy_patch:
            raise ValueError(f"crop {crop} (--crop, --crop-turns) must be a multiple of --energy-patch {loss.energy_patch}")
        if batch_size <= 0:
            raise ValueError(f"batch sizes (--batch-size, --crop-turns) must be positive, got {batch_size}")
    if run.iters < 0 or run.z_calibration < 0:
        raise ValueError("--iters and --z-calibration must be at least 0")
    if run.iters == 0 and not (run.init_from and run.z_calibration):
        raise ValueError("--iters 0 is a calibration of a trained model: it needs --init-from and --z-calibration")
    if run.z_calibration and model.z_scale == "none":
        raise ValueError("--z-calibration sets Z's scale, which --z-scale none does not have")
    bits_choices(run)
    if run.precision not in ("auto", *PRECISIONS) or run.compile not in ("auto", "on", "off"):
        raise ValueError(f"--precision must be auto or one of {PRECISIONS} and --compile auto, on or off; got "
                         f"{run.precision!r}, {run.compile!r}")


def fast_step(run: TrainConfig, device: torch.device) -> tuple[str, bool]:
    """The training step a run uses: (precision, compiled). ``auto`` picks bf16 subnets on CUDA only (on a CPU bf16
    autocast was slower than float32, docs/speed.md) and ``torch.compile`` where it pays: a run of 500+ iterations
    on CUDA or with a C++ compiler for Inductor's CPU kernels."""
    precision = run.precision if run.precision != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    can_compile = device.type == "cuda" or any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "c++", "clang++"))
    compiled = run.compile == "on" or (run.compile == "auto" and run.iters >= 500 and can_compile)
    return precision, compiled


def crop_batches(run: TrainConfig, seed: int, rank: int = 0, cache: bool = False) -> CropBatches:
    """The training batches of a run (crops, turns, zoom, bits) drawn from ``seed``: training's, its Z scale's."""
    (crop, batch_size), *turns = crop_sizes(run.crop, run.batch_size, run.crop_turns)
    return CropBatches(run.data, crop, batch_size, bits_choices(run), seed, rank, cache=cache, zoom=run.zoom,
                       zoom_min=run.zoom_min, turns=tuple(turns))


def bits_choices(run: TrainConfig) -> tuple[int, ...]:
    """The k values of ``--bits`` ("1,2,3,4"), each checked by ``limits.check_bits``."""
    try:
        return tuple(check_bits(int(k)) for k in run.bits.split(","))
    except ValueError as err:
        raise ValueError(f"--bits must be comma-separated integers from 1 to {MAX_BITS}, got {run.bits!r}") from err


# ----------------------------------------------------------------------------------------------------
# Optimiser, schedule and the resumable state
# ----------------------------------------------------------------------------------------------------


def lr_lambda(run: TrainConfig):
    """The learning-rate factor of a step, for LambdaLR: linear warm-up over ``warmup`` steps, constant until
    ``decay_from`` of the run, then cosine annealing to lr_min (``decay_from = 0``: the paper's cosine, §4.2)."""
    start = run.decay_from * run.iters

    def factor(step: int) -> float:
        t = max(0.0, min(step, run.iters) - start) / max(run.iters - start, 1)
        cosine = (run.lr_min + 0.5 * (run.lr - run.lr_min) * (1 + math.cos(math.pi * t))) / run.lr
        return cosine * min(1.0, (step + 1) / run.warmup if run.warmup else 1.0)
    return factor


def _optimizer_tensors(prefix: str, optimizer) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{i}.{k}": v.detach().cpu().contiguous() for i, s in optimizer.state_dict()["state"].items() for k, v in s.items()}


def _optimizer_state(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[int, dict]:
    per_param: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            _, index, name = key.split(".", 2)
            per_param.setdefault(int(index), {})[name] = value
    return per_param


def save_state(folder: Path, model: BDFlow, optimizer, scheduler, step: int, meta: dict, critic=None, critic_optimizer=None) -> None:
    """OUT/last: the model as a checkpoint, plus everything --resume needs, crash-safe (a kill -9 at any moment leaves
    a complete state that ``recover_state`` finds). Written in full to OUT/last.tmp, each file flushed to disk, the
    JSON marker (step + every file's size) last; then OUT/last -> OUT/last.old, OUT/last.tmp -> OUT/last, the
    folder synced, OUT/last.old removed."""
    tmp, old = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)  # the leftovers of a write that was interrupted
    model.save_pretrained(tmp, meta=meta)
    tensors = _optimizer_tensors("optimizer", optimizer)
    if critic is not None:  # the critic (its weights and Adam) lives in the training state only: no decoder reads it
        tensors |= {f"critic.{k}": v.detach().cpu().contiguous() for k, v in critic.state_dict().items()}
        tensors |= _optimizer_tensors("critic_optimizer", critic_optimizer)
    tensors["rng.torch"] = torch.get_rng_state()
    write_tensors(tmp, tensors, stem=STATE_STEM)
    files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
    for name in files:
        _fsync(tmp / name)
    state = {"step": step, "param_groups": optimizer.state_dict()["param_groups"], "scheduler": scheduler.state_dict(), "meta": meta,
             "files": files}
    with open(tmp / STATE_JSON, "w") as f:
        f.write(json.dumps(state, indent=1))
        f.flush()
        os.fsync(f.fileno())
    _fsync(tmp)
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
    tmp.rename(folder)
    _fsync(folder.parent)
    shutil.rmtree(old, ignore_errors=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def state_step(folder: Path) -> int | None:
    """The step of a complete state folder (marker present and readable, every file it lists of the listed size),
    else None."""
    try:
        state = json.loads((folder / STATE_JSON).read_text())
        files = state.get("files", {})  # states written before the sizes were recorded: the marker alone
        complete = all((folder / name).stat().st_size == size for name, size in files.items())
        return int(state["step"]) if complete else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def recover_state(folder: Path) -> int | None:
    """After a crash: the newest complete state among OUT/last, OUT/last.tmp and OUT/last.old becomes OUT/last (the
    others are removed). Its step, or None when there is none."""
    candidates = [folder, folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")]
    steps = {p: state_step(p) for p in candidates}
    complete = [p for p in candidates if steps[p] is not None]
    if not complete:
        return None
    best = max(complete, key=lambda p: steps[p])  # ties: OUT/last first
    if best != folder:
        shutil.rmtree(folder, ignore_errors=True)
        best.rename(folder)
        _fsync(folder.parent)
    for p in candidates[1:]:
        shutil.rmtree(p, ignore_errors=True)
    return steps[best]


def load_state(folder: Path, optimizer, scheduler, critic=None, critic_optimizer=None) -> tuple[int, dict]:
    state = json.loads((folder / STATE_JSON).read_text())
    tensors = read_tensors(folder, stem=STATE_STEM)
    optimizer.load_state_dict({"state": _optimizer_state("optimizer", tensors), "param_groups": state["param_groups"]})
    if critic is not None:
        weights = {k.removeprefix("critic."): v for k, v in tensors.items() if k.startswith("critic.")}
        if not weights:
            raise ValueError(f"{folder} holds no critic: it was written by a run without --lambda-critic")
        critic.load_state_dict(weights)
        critic_optimizer.load_state_dict({"state": _optimizer_state("critic_optimizer", tensors),
                                          "param_groups": critic_optimizer.state_dict()["param_groups"]})
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    return state["step"], state["meta"]


# ----------------------------------------------------------------------------------------------------
# Logging and validation
# ----------------------------------------------------------------------------------------------------


class RunLog:
    """log.csv (one row per step, truncated to the resumed step) and curves.png."""

    def __init__(self, out: Path, start: int):
        self.path = out / "log.csv"
        rows = []
        if start and self.path.exists():
            with self.path.open() as f:
                rows = [r for r in csv.DictReader(f) if None not in r.values() and int(r["step"]) <= start]  # no torn row
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, LOG_FIELDS)
            writer.writeheader()
            writer.writerows(rows)

    def append(self, row: dict) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, LOG_FIELDS).writerow({k: row.get(k, "") for k in LOG_FIELDS})

    def plot(self) -> Path:
        from .viz import plot_training_log

        return plot_training_log(self.path, self.path.with_name("curves.png"))


@torch.no_grad()
def validate(model: BDFlow, files: list[Path], tau: float, device) -> float:
    """Mean PSNR-Y (border = scale) of full-size decodes at bits = 1 on the first validation images."""
    rescaler = Rescaler(model, device=device)
    scores = []
    for path in files:
        x, _ = load_image(path)
        x_back = rescaler.decode(rescaler.encode(x, bits=1), tau=tau, seed=0, output_type="pt").cpu()
        scores.append(float(psnr_y(to_8bit(x_back), x, border=model.scale)))
    model.train()
    return sum(scores) / len(scores)


def hardware(accelerator: Accelerator) -> str:
    if accelerator.device.type == "cuda":
        name = torch.cuda.get_device_name(accelerator.device)
    else:
        name = f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    return f"{accelerator.num_processes} x {name}"


# ----------------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------------


class LossModule(nn.Module):
    """Wraps the flow so one forward call computes Eq. 7; DDP then syncs every parameter's gradient. ``passes``: the
    networks as the loss runs them (``Passes.compiled`` for the compiled step; default the model's own)."""

    def __init__(self, model: BDFlow, passes: Passes | None = None):
        super().__init__()
        self.model = model
        self.passes = passes

    def forward(self, x, bits: int, progress: float, generator, critic=None) -> LossTerms:
        return bdflow_loss(self.model, x, bits, progress, generator, self.passes, critic)


def _build(model_config: BDFlowConfig, loss_config: LossConfig, run: TrainConfig, accelerator: Accelerator):
    """Model, Adam and the cosine schedule, and the critic and its Adam where the loss has one (else None, None):
    fresh, or restored from OUT/last with --resume."""
    last = Path(run.out) / "last"
    torch.manual_seed(run.seed)
    resuming = run.resume and recover_state(last) is not None  # a run killed inside a checkpoint write resumes too
    if run.resume and not resuming:
        accelerator.print(f"note: nothing to resume in {last}; starting a new run")
    model = BDFlow.from_pretrained(last).train() if resuming else BDFlow(model_config, loss_config)
    meta = {}
    if not resuming:
        if run.init_from:  # progressive init: the parent's levels, its budget recorded in meta
            parent = BDFlow.from_pretrained(run.init_from)
            z_scale_kept = model.grow_from(parent)  # a fine-tune keeps the parent's Z scale
            meta = {"parent": {"checkpoint": run.init_from, "scale": parent.scale, **{k: parent.meta.get(k) for k in ("iterations", "seconds")}}}
        else:
            z_scale_kept = False
        if model.config.z_scale != "none" and not z_scale_kept:  # ActNorm's data-dependent init on batch 0 (a pure function of the seed)
            model.init_z_scale(crop_batches(run, run.seed)[0][0])
    if resuming and (model.config, model.loss_config) != (model_config, loss_config):
        accelerator.print("note: --resume continues with the model and loss config saved in OUT/last")
    optimizer = torch.optim.Adam(model.parameters(), lr=run.lr, betas=(0.9, 0.999))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(run))
    critic = PatchCritic() if model.loss_config.lambda_critic > 0 else None
    critic_optimizer = torch.optim.Adam(critic.parameters(), lr=run.lr * LR_FACTOR, betas=BETAS) if critic is not None else None
    start, meta = load_state(last, optimizer, scheduler, critic, critic_optimizer) if resuming else (0, meta)
    if resuming:
        accelerator.print(f"resumed {last} at step {start}")
    return model, optimizer, scheduler, start, meta, critic, critic_optimizer


def _step(loss_module, optimizer, scheduler, accelerator, x, bits, step: int, run: TrainConfig, critic=None,
          critic_optimizer=None) -> tuple[LossTerms, float | None] | None:
    """One optimisation step of Eq. 7, then (with a critic) one of the critic on X against this step's decodes; the
    terms and the critic's loss, or None (and no update) when the loss is not finite."""
    generator = torch.Generator(device=accelerator.device).manual_seed(run.seed * 1_000_003 + step)
    x = x.to(accelerator.device)
    if critic is not None:
        critic.requires_grad_(False)  # the flow's step moves the flow's weights only (the critic's spectral-norm estimates still advance)
    terms = loss_module(x, bits, step / run.iters, generator, None if critic is None else accelerator.unwrap_model(critic))
    if not torch.isfinite(terms.total):
        optimizer.zero_grad(set_to_none=True)
        return None
    accelerator.backward(terms.total)
    accelerator.clip_grad_norm_(loss_module.parameters(), run.grad_clip)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    if critic is None:
        return terms, None
    critic.requires_grad_(True)
    for group in critic_optimizer.param_groups:  # the flow's schedule (its rate for the next step), LR_FACTOR higher
        group["lr"] = scheduler.get_last_lr()[0] * LR_FACTOR
    own = critic_loss(critic(x), critic(terms.decodes.detach()))
    if not torch.isfinite(own):  # a non-finite critic loss would poison the critic, and through it every later flow term
        critic_optimizer.zero_grad(set_to_none=True)
        raise RuntimeError(f"the critic's loss is not finite at step {step}: lower --lr or --lambda-critic")
    accelerator.backward(own)
    critic_optimizer.step()
    critic_optimizer.zero_grad(set_to_none=True)
    return terms, float(own.detach())


def train(model_config: BDFlowConfig, loss_config: LossConfig, run: TrainConfig) -> Path:
    if run.threads:
        torch.set_num_threads(run.threads)
    accelerator = Accelerator()  # precision is the subnets' own (train_precision), never a global autocast
    out, main_process = Path(run.out), accelerator.is_main_process
    out.mkdir(parents=True, exist_ok=True)
    model, optimizer, scheduler, start, meta, critic, critic_optimizer = _build(model_config, loss_config, run, accelerator)
    precision, compiled = fast_step(run, accelerator.device)
    train_precision(model, precision)
    passes = Passes.compiled(model, accelerator.device) if compiled else None
    accelerator.print(f"training step: {precision} subnets, {'compiled' if compiled else 'eager'}")
    loss_module, optimizer, scheduler = accelerator.prepare(LossModule(model, passes), optimizer, scheduler)
    if critic is not None:
        critic, critic_optimizer = accelerator.prepare(critic, critic_optimizer)
    flow = lambda: accelerator.unwrap_model(loss_module).model  # noqa: E731
    batches = crop_batches(run, run.seed, accelerator.process_index, cache=run.cache_images)
    loader = DataLoader(batches, batch_size=None, sampler=range(start, run.iters), num_workers=run.workers)
    val_files = list_images(run.val_data)[: run.val_images] if run.val_data and run.val_images else []
    log = RunLog(out, start) if main_process else None
    t0 = last_save = time.time()
    seconds_before, sessions = float(meta.get("seconds", 0.0)), meta.get("sessions", [])

    def snapshot(done: int) -> dict:  # config.json "meta": the recipe and every session's budget
        now = time.time() - t0
        session = {"hardware": hardware(accelerator), "from_iteration": start, "to_iteration": done, "seconds": round(now)}
        return {"training": dataclasses.asdict(run), "default_tau": run.val_tau, "iterations": done, "seconds": seconds_before + now,
                "sessions": [*sessions, session], "torch": torch.__version__,
                **({"parent": meta["parent"]} if "parent" in meta else {})}

    if val_files and main_process and start == 0:  # the untrained start: training must improve on it
        log.append({"step": 0, "seconds": 0.0, "lr": 0.0, "val_psnr": validate(flow(), val_files, run.val_tau, accelerator.device)})
    bad = 0
    bar = tqdm(range(start, run.iters), initial=start, total=run.iters, disable=not accelerator.is_local_main_process, dynamic_ncols=True)
    for step, (x, bits) in zip(bar, loader):
        stepped = _step(loss_module, optimizer, scheduler, accelerator, x, bits, step, run, critic, critic_optimizer)
        if stepped is None:
            bad += 1
            if bad >= run.max_bad_steps:
                raise RuntimeError(f"{bad} consecutive non-finite losses at step {step}: lower --lr or check the data")
            accelerator.print(f"step {step}: non-finite loss, skipped ({bad} in a row)")
            continue
        bad, done = 0, step + 1
        terms, own = stepped
        row = {"step": done, "seconds": round(seconds_before + time.time() - t0, 2), "lr": scheduler.get_last_lr()[0], "bits": bits, **terms.items(),
               **({"critic_own": own} if own is not None else {})}
        if val_files and main_process and (done % run.val_every == 0 or done == run.iters):
            row["val_psnr"] = validate(flow(), val_files, run.val_tau, accelerator.device)
        if log:
            log.append(row)
        bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k not in ("step", "seconds", "lr")})
        stop = done == run.stop_at or (run.stop_after_minutes > 0 and time.time() - t0 >= run.stop_after_minutes * 60)
        due = stop or time.time() - last_save >= run.checkpoint_minutes * 60 or done == run.iters
        if accelerator.num_processes > 1:  # all ranks follow rank 0's clock
            stop, due = broadcast(torch.tensor([stop, due], device=accelerator.device)).tolist()
        if due and main_process:
            save_state(out / "last", flow(), optimizer, scheduler, done, snapshot(done),
                       None if critic is None else accelerator.unwrap_model(critic), critic_optimizer)
            log.plot()
            last_save = time.time()
        if due:
            accelerator.wait_for_everyone()
        if stop and done < run.iters:
            accelerator.print(f"stopped at step {done}; continue with --resume")
            return out / "last"
    if run.z_calibration:  # batches of their own seed, drawn as training's (zoom included)
        calibration = crop_batches(run, run.seed + 1)
        flow().init_z_scale(calibration[i][0].to(accelerator.device) for i in range(run.z_calibration))
    if main_process:
        flow().save_pretrained(out / "final", meta=snapshot(run.iters))
    return out / "final"


def main(argv=None) -> int:
    runs = parse_stages(argv)
    try:
        for i, (model_config, loss_config, run) in enumerate(runs):
            if i < len(runs) - 1 and (Path(run.out) / "final" / "config.json").exists():
                print(f"stage {i + 1} of {len(runs)}: {run.out}/final exists, kept")
                continue
            final = train(model_config, loss_config, run)
            if final.name != "final":  # stopped early (--stop-at, --stop-after-minutes): --resume goes on
                print(f"stopped; continue with --resume (written to {final})")
                return 0
        if len(runs) > 1:
            record_stages(final, [Path(run.out) / "final" for _, _, run in runs[:-1]])
    except (FileNotFoundError, RuntimeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"trained model written to {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

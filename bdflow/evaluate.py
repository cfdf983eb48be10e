"""Evaluate a checkpoint on a folder of images, beside the bicubic round trip (and the B-less twin), in one run.

    python -m bdflow.evaluate --checkpoint checkpoints/face-x16 --data ../shared/data/faces/val \
        --twin checkpoints/face-x16-noB --bits 1 --tau 0.8 0 --json out/x16.json --csv out/x16.csv

PSNR/SSIM on Y (BT.601, border = scale) and LPIPS on RGB of 8-bit outputs; the grid ratio (max / mean of the
squared Y error folded by position modulo the scale, the maps pooled over the images; per image in the CSV, noisier:
``metrics.grid_ratio``); bytes per image (8-bit Y + k-bit B,
raw); B's entropy in bits per LR pixel; Z's statistics under the forward pass (mean, variance, D'Agostino-Pearson
normality test). Images of any size are padded and cropped as the pipeline does.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from tqdm.auto import tqdm

from .accel import keep_freed_memory
from .data import list_images
from .hub import record_metrics
from .image_io import load_image
from .limits import DEFAULT_TAU_B, MAX_BITS, argument, check_bits, check_tau, check_tau_b
from .metrics import grid_map, lpips_rgb, peak_ratio, psnr_y, sample_values, ssim_y
from .pipeline import DEFAULT_TAU, Rescaler
from .quantize import to_8bit
from .resize import bicubic_lr_codes, bicubic_round_trip

Z_SAMPLE = 20000  # Z values per image kept for the normality test
# --probe: decode from altered stored data, to measure what the flow's Y and B carry
PROBES = {"bicubic-y": "Y := bicubic LR", "no-b": "B := 0"}


def scores(x_hat: torch.Tensor, x: torch.Tensor, scale: int) -> tuple[dict[str, float], torch.Tensor]:
    """The per-image scores of an output, and its grid map (s, s) for the pooled grid ratio."""
    x_hat = to_8bit(x_hat)
    folded = grid_map(x_hat, x, scale)[0]
    return {
        "psnr": float(psnr_y(x_hat, x, border=scale)),
        "ssim": float(ssim_y(x_hat, x, border=scale)),
        "lpips": float(lpips_rgb(x_hat, x)),
        "grid": float(peak_ratio(folded)),
    }, folded


def entropy_bits(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0


class Method:
    """One row of the table: a checkpoint (or the bicubic baseline) and what it measured."""

    def __init__(self, name: str, rescaler: Rescaler | None, tau: float = DEFAULT_TAU, probe: str | None = None,
                 tau_b: float = DEFAULT_TAU_B):
        self.name, self.rescaler, self.tau, self.probe, self.tau_b = name, rescaler, tau, probe, tau_b
        self.rows: list[dict] = []
        self.b_counts = np.zeros(16, dtype=np.int64)
        self.z_values: list[np.ndarray] = []
        self.grid_sum: torch.Tensor | float = 0.0  # the images' grid maps, summed

    @torch.inference_mode()
    def run(self, path: Path, x: torch.Tensor, scale: int, bits: int, seed: int, forwards: dict) -> None:
        """Score one image x (1,3,H,W), read from ``path``; ``forwards`` caches each model's forward pass across the
        rows of several taus."""
        if self.rescaler is None:
            x_hat, nbytes = bicubic_round_trip(x, scale), 3 * math.prod(_lr_size(x, scale))
        else:
            if id(self.rescaler) not in forwards:
                forwards[id(self.rescaler)] = self.rescaler.forward_image(x)
            f = forwards[id(self.rescaler)]
            enc = self.rescaler.quantize(f.y, f.b, bits, f.meta)
            if self.probe == "bicubic-y":
                enc.y = bicubic_lr_codes(x, scale)
            elif self.probe == "no-b":
                enc.b = np.zeros_like(enc.b)
            x_hat = self.rescaler.decode(enc, tau=self.tau, seed=seed, output_type="pt", tau_b=self.tau_b).cpu()
            nbytes = enc.nbytes
            if enc.b is not None and self.probe is None:
                self.b_counts += np.bincount(enc.b.ravel(), minlength=16)
            self.z_values.append(sample_values(f.z, Z_SAMPLE, seed=seed))
        row, folded = scores(x_hat, x, scale)
        self.rows.append({"image": path.name, "bytes": nbytes, **row})
        self.grid_sum = self.grid_sum + folded

    def summary(self, hr_pixels: float) -> dict:
        mean = {k: float(np.mean([r[k] for r in self.rows])) for k in ("psnr", "ssim", "lpips", "bytes")}
        out = {"method": self.name, **mean, "grid": float(peak_ratio(self.grid_sum)),
               "bits_per_hr_pixel": 8 * mean["bytes"] / hr_pixels, "images": len(self.rows)}
        if self.b_counts.any():
            out["b_entropy_bits_per_lr_pixel"] = entropy_bits(self.b_counts)
        if self.z_values:
            z = np.concatenate(self.z_values)
            k2, p = stats.normaltest(z)
            out["z"] = {"mean": float(z.mean()), "var": float(z.var()), "skew": float(stats.skew(z)),
                        "excess_kurtosis": float(stats.kurtosis(z)), "normaltest_k2": float(k2), "normaltest_p": float(p)}
        return out


def _lr_size(x: torch.Tensor, scale: int) -> tuple[int, int]:
    return tuple(-(-n // scale) for n in x.shape[-2:])


def markdown(summaries: list[dict]) -> str:
    lines = ["| method | PSNR-Y (dB) | SSIM-Y | LPIPS | grid (max/mean) | bytes / image | bits / HR pixel | B entropy (bits / LR px) |",
             "|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        entropy = f"{s['b_entropy_bits_per_lr_pixel']:.3f}" if "b_entropy_bits_per_lr_pixel" in s else "–"
        grid = f"{s['grid']:.2f}" if "grid" in s else "–"
        lines.append(f"| {s['method']} | {s['psnr']:.2f} | {s['ssim']:.4f} | {s['lpips']:.4f} | {grid} | {s['bytes']:.0f} | "
                     f"{s['bits_per_hr_pixel']:.4f} | {entropy} |")
    return "\n".join(lines)


def row_label(checkpoint: str, rescaler: Rescaler) -> str:
    """'BDFlow face-x64' or 'twin face-x64-noB'; a training run's OUT/final or OUT/last is named by its OUT."""
    path = Path(checkpoint)
    name = f"{path.parent.name}/{path.name}" if path.name in ("final", "last") else path.name
    return f"{'BDFlow' if rescaler.has_boundary else 'twin'} {name}"


def _flow_methods(label: str, rescaler: Rescaler, taus: tuple[float, ...], tau_b: float) -> list[Method]:
    """One row per tau, named "LABEL tau=t" (just LABEL for a run at tau 0 alone: the tables' fidelity rows)."""
    return [Method(label if taus == (0.0,) else f"{label} tau={tau:g}", rescaler, tau, tau_b=tau_b) for tau in taus]


def _probe_methods(label: str, rescaler: Rescaler, tau: float, probes: tuple[str, ...], tau_b: float) -> list[Method]:
    usable = [p for p in probes if p != "no-b" or rescaler.has_boundary]
    return [Method(f"{label} ({PROBES[p]})", rescaler, tau, p, tau_b) for p in usable]


def evaluate(checkpoint: str, data: str, twin: str | None = None, bits: int = 1, taus: tuple[float, ...] = (DEFAULT_TAU,),
             seed: int = 0, limit: int = 0, device: str | None = None, probes: tuple[str, ...] = (),
             tau_b: float = DEFAULT_TAU_B) -> tuple[list[dict], list[Method]]:
    """Score BDFlow (one row per tau), its twin and the bicubic round trip on every image of ``data``.

    ``probes`` (see PROBES) add rows decoded at the first tau from an altered Y or B. ``tau_b``: the share of tau Z
    keeps in B's boundary cells (``Rescaler.decode``).
    """
    taus, tau_b = tuple(check_tau(tau) for tau in taus), check_tau_b(tau_b)
    if not taus:
        raise ValueError("give at least one tau")
    bits = check_bits(bits)
    model = Rescaler.from_pretrained(checkpoint, device=device)
    flows = [(checkpoint, model)]
    if twin:
        twin_model = Rescaler.from_pretrained(twin, device=device)
        if twin_model.scale != model.scale:
            raise ValueError(f"the twin is x{twin_model.scale} but the checkpoint is x{model.scale}")
        flows.insert(0, (twin, twin_model))
    methods = [Method("bicubic round trip", None)]
    for path, rescaler in flows:
        label = row_label(path, rescaler)
        methods += _flow_methods(label, rescaler, taus, tau_b) + _probe_methods(label, rescaler, taus[0], probes, tau_b)
    files = list_images(data)[: limit or None]
    hr_pixels = 0
    for path in tqdm(files, desc=f"evaluating x{model.scale}", unit="image"):
        x, _ = load_image(path, model.max_pixels)
        hr_pixels += x.shape[-2] * x.shape[-1]
        forwards: dict = {}
        for method in methods:
            method.run(path, x, model.scale, bits, seed, forwards)
    return [m.summary(hr_pixels / len(files)) for m in methods], methods


def write_csv(path: Path, methods: list[Method]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, ["method", "image", "psnr", "ssim", "lpips", "grid", "bytes"])
        writer.writeheader()
        for m in methods:
            writer.writerows({"method": m.name, **r} for r in m.rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bdflow.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="BDFlow checkpoint folder or Hub repo id")
    parser.add_argument("--data", required=True, help="folder of test images")
    parser.add_argument("--twin", help="the B-less twin checkpoint, evaluated on the same images")
    parser.add_argument("--bits", type=int, default=1, help=f"k of the stored B (1..{MAX_BITS}, default 1)")
    parser.add_argument("--tau", type=argument(check_tau, float), nargs="+", default=[DEFAULT_TAU],
                        help=f"Z temperature(s); several give one row each from one forward pass (default {DEFAULT_TAU})")
    parser.add_argument("--tau-b", type=argument(check_tau_b, float), default=DEFAULT_TAU_B,
                        help="the share of tau Z keeps in B's boundary cells, 0..1 (default %(default)g; 1: the paper's)")
    parser.add_argument("--probe", nargs="+", choices=sorted(PROBES), default=[],
                        help="extra rows decoded from altered stored data: bicubic-y (the bicubic LR instead of the "
                        "flow's Y: what Y hides), no-b (B all zeros: what B carries)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the Z samples (default 0)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N images (default: all)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--json", type=Path, help="write the summary here")
    parser.add_argument("--csv", type=Path, help="write per-image scores here")
    parser.add_argument("--record", metavar="SPLIT", help="store the results as meta.metrics[SPLIT] in the checkpoint's "
                        "config.json (and its twin's) and rewrite their model cards (README.md)")
    parser.add_argument("--notes", help="with --record: the model cards' 'Limits' text (kept until replaced)")
    args = parser.parse_args(argv)
    keep_freed_memory()  # process-wide (bdflow.accel)
    try:
        summaries, methods = evaluate(args.checkpoint, args.data, args.twin, args.bits, tuple(args.tau), args.seed, args.limit, args.device,
                                       tuple(args.probe), args.tau_b)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"\n{len(methods[0].rows)} images from {args.data}, bits = {args.bits}, tau = {', '.join(f'{t:g}' for t in args.tau)} "
          f"({args.tau_b:g} of it in B's boundary cells), seed = {args.seed}\n")
    print(markdown(summaries))
    for s in summaries:
        if "z" in s:
            z = s["z"]
            print(f"\n{s['method']}: Z mean {z['mean']:.4f}, var {z['var']:.4f}, skew {z['skew']:.3f}, "
                  f"excess kurtosis {z['excess_kurtosis']:.3f}, normality test p = {z['normaltest_p']:.3g}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": summaries}, indent=2))
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        write_csv(args.csv, methods)
    if args.record:
        for folder in filter(None, (args.checkpoint, args.twin)):
            record_metrics(folder, args.record, summaries, args.notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())

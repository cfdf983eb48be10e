"""Where a sample's LPIPS cost comes from: the same prior draw of Z (at tau, with the default rule in B's boundary
cells) kept only in some LR cells, the rest at Z = 0 (the prior's mean, what tau 0 decodes); each decode's PSNR-Y
and LPIPS against the truth, minus those of the tau-0 decode of the same encoding (docs/studies/where-z-is-sampled.md, "Where the cost of a sample comes from").

    python tools/z_cost_by_region.py --checkpoint checkpoints/face-x16 --data ../shared/data/faces/val --limit 20 \\
        --json docs/results/where-z-is-sampled-x16/cost-by-region.json

The regions are cut by the stored LR image alone: the local standard deviation of Y's luma over 3 x 3 LR cells,
above or below the image's median ("textured half" / "flat half"), or in its top quarter. In each half, also the
default sample's spread (RMS of its luma against the tau-0 decode's, within each LR cell) beside what the tau-0
decode leaves to find there (the truth's luma against it, alike): where a sample spreads more, for what the truth
holds, LPIPS charges it more.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bdflow.bam import luma255, luma_std  # noqa: E402
from bdflow.data import list_images  # noqa: E402
from bdflow.figures import paired  # noqa: E402
from bdflow.flow import sample_z  # noqa: E402
from bdflow.image_io import load_image  # noqa: E402
from bdflow.limits import DEFAULT_TAU_B, argument, check_tau  # noqa: E402
from bdflow.metrics import on_pixels  # noqa: E402
from bdflow.pipeline import Rescaler  # noqa: E402
from tools.z_offsets import decoded, scores, write_json  # noqa: E402


def regions(y: torch.Tensor) -> dict[str, torch.Tensor]:
    """The LR cells in which each arm keeps the draw, (N, 1, h, w) in {0, 1}: cut by the standard deviation of Y's
    luma over each cell's 3 x 3 neighbourhood (edges replicated), against the image's own median and quartile."""
    s = luma_std(F.pad(y, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    median, top = s.median(), s.flatten().quantile(0.75)
    return {"everywhere": torch.ones_like(s), "textured half": (s > median).float(), "flat half": (s <= median).float(),
            "textured quarter": (s > top).float()}


def spread_and_miss(x: torch.Tensor, x0: torch.Tensor, sample: torch.Tensor, keep: torch.Tensor, scale: int) -> tuple[float, float]:
    """Over the pixels of the kept LR cells (keep (1, 1, h, w), each cell scale x scale pixels, cut to x's size), the
    detail within each cell (each cell's mean taken out: what Z decides, Y holding the cell's mean) of the sample
    against the tau-0 decode x0 (its spread) and of the truth x against x0 (what the mean leaves to find): RMS in
    grey levels of luma (0-255). x, x0, sample: (1, 3, H, W) in [0, 1]."""
    size = x.shape[-2:]
    mask, mean = on_pixels(keep.cpu(), scale, size), luma255(x0, eight_bit=False)

    def rms(t: torch.Tensor) -> float:
        d = luma255(t, eight_bit=False) - mean
        d = d - on_pixels(F.avg_pool2d(d, scale, ceil_mode=True), scale, size)
        return float((d.pow(2) * mask).sum() / mask.sum()) ** 0.5

    return rms(sample), rms(x)


def ratios(pairs: list[tuple[float, float]]) -> np.ndarray:
    """(images, 3): each image's spread, miss and spread / miss."""
    a = np.array(pairs)
    return np.column_stack([a, a[:, 0] / a[:, 1]])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/z_cost_by_region.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="checkpoint folder or shipped name")
    parser.add_argument("--data", default="../shared/data/faces/val", help="folder of images (default faces/val)")
    parser.add_argument("--limit", type=int, default=20, help="first N images (default 20)")
    parser.add_argument("--tau", type=argument(check_tau, float), default=0.5, help="Z temperature (default 0.5)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    rescaler = Rescaler.from_pretrained(args.checkpoint)
    metrics = ("psnr_y", "lpips")
    base: list[tuple[float, float]] = []  # the tau-0 decode of each image
    drawn: dict[str, list[tuple[float, float]]] = {}  # each arm's sample of each image
    spread: dict[str, list[tuple[float, float]]] = {}  # the default sample's spread and the truth's miss, by half
    files = list_images(args.data)[: args.limit]
    for i, path in enumerate(tqdm(files, desc="images", leave=False)):
        x, _ = load_image(path)
        y, b = rescaler.stored_tensors(rescaler.encode(x, bits=1))
        z = sample_z(y, rescaler.model.config.z_channels, args.tau, torch.Generator(device=y.device).manual_seed(i), b, DEFAULT_TAU_B)
        x0, sample = (decoded(rescaler, y, b, t, x) for t in (torch.zeros_like(z), z))
        base.append(scores(rescaler, x0, x))
        for name, keep in regions(y).items():
            drawn.setdefault(name, []).append(scores(rescaler, sample if name == "everywhere" else decoded(rescaler, y, b, z * keep, x), x))
            if name.endswith("half"):
                spread.setdefault(name, []).append(spread_and_miss(x, x0, sample, keep, rescaler.scale))
    mean_decode = np.array(base)
    result = {"checkpoint": args.checkpoint, "data": args.data, "images": len(files), "tau": args.tau, "tau_b": DEFAULT_TAU_B,
              "minus_tau_0": {name: {m: paired(np.array(s)[:, j], mean_decode[:, j]) for j, m in enumerate(metrics)}
                              for name, s in drawn.items()},
              "spread_and_miss": {name: dict(zip(("spread", "miss", "ratio"), np.mean(ratios(s), axis=0).tolist()))
                                  for name, s in spread.items()},
              "ratio_flat_minus_textured": paired(ratios(spread["flat half"])[:, 2], ratios(spread["textured half"])[:, 2])}
    print(f"{args.checkpoint}, {len(files)} images, tau {args.tau:g}: the sample minus the tau-0 decode, by where Z is drawn")
    for name, s in result["minus_tau_0"].items():
        print(f"  {name:17s} PSNR-Y {s['psnr_y']['mean']:+.3f} ± {s['psnr_y']['ci95']:.3f} dB, "
              f"LPIPS {s['lpips']['mean']:+.4f} ± {s['lpips']['ci95']:.4f}")
    print("  the default sample's spread against what the tau-0 decode misses (RMS luma within LR cells, grey levels; mean per image):")
    for name, s in result["spread_and_miss"].items():
        print(f"  {name:17s} spread {s['spread']:.2f}, miss {s['miss']:.2f}, spread / miss {s['ratio']:.3f}")
    d = result["ratio_flat_minus_textured"]
    print(f"  spread / miss, flat half - textured half: {d['mean']:+.3f} ± {d['ci95']:.3f}")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

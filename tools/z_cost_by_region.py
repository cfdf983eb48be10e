"""Where a sample's LPIPS cost comes from: the same prior draw of Z (at tau, with the default rule in B's boundary
cells) kept only in some LR cells, the rest at Z = 0 (the prior's mean, what tau 0 decodes); each decode's PSNR-Y
and LPIPS against the truth, minus those of the tau-0 decode of the same encoding (docs/studies/where-z-is-sampled.md, "Where the cost of a sample comes from").

    python tools/z_cost_by_region.py --checkpoint checkpoints/face-x16 --data ../shared/data/faces/val --limit 20 \\
        --json docs/results/where-z-is-sampled-x16/cost-by-region.json

The regions are cut by the stored LR image alone: the local standard deviation of Y's luma over 3 x 3 LR cells,
above or below the image's median ("textured half" / "flat half"), or in its top quarter.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bdflow.data import list_images  # noqa: E402
from bdflow.flow import sample_z  # noqa: E402
from bdflow.image_io import load_image  # noqa: E402
from bdflow.limits import DEFAULT_TAU_B, argument, check_tau  # noqa: E402
from bdflow.lpips import lpips  # noqa: E402
from bdflow.metrics import psnr_y  # noqa: E402
from bdflow.pipeline import Rescaler  # noqa: E402
from bdflow.quantize import to_8bit  # noqa: E402


def local_std(y: torch.Tensor) -> torch.Tensor:
    """(N, 3, h, w) LR image -> (N, 1, h, w): the standard deviation of its luma over each cell's 3 x 3 neighbourhood."""
    luma = (0.299 * y[:, :1] + 0.587 * y[:, 1:2] + 0.114 * y[:, 2:])
    mean = F.avg_pool2d(F.pad(luma, (1, 1, 1, 1), mode="replicate"), 3, 1)
    square = F.avg_pool2d(F.pad(luma**2, (1, 1, 1, 1), mode="replicate"), 3, 1)
    return (square - mean**2).clamp_min(0).sqrt()


def regions(y: torch.Tensor) -> dict[str, torch.Tensor]:
    """The LR cells in which each arm keeps the draw, (N, 1, h, w) in {0, 1}."""
    s = local_std(y)
    median, top = s.median(), s.flatten().quantile(0.75)
    return {"everywhere": torch.ones_like(s), "textured half": (s > median).float(), "flat half": (s <= median).float(),
            "textured quarter": (s > top).float()}


def mean_and_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % interval."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, 1.96 * sd / math.sqrt(n)


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
    net, channels = rescaler.net, rescaler.model.config.z_channels
    cost: dict[str, dict[str, list[float]]] = {}
    files = list_images(args.data)[: args.limit]
    for i, path in enumerate(tqdm(files, desc="images", leave=False)):
        x, _ = load_image(path)
        h, w = x.shape[-2:]
        y, b = rescaler.stored_tensors(rescaler.encode(path, bits=1))
        z = sample_z(y, channels, args.tau, torch.Generator(device=y.device).manual_seed(i), b, DEFAULT_TAU_B)
        with torch.inference_mode():
            decode = lambda zz: to_8bit(net.inverse(y, b, zz).clamp(0, 1)[..., :h, :w].cpu())  # noqa: E731
            mean = decode(torch.zeros_like(z))
            base = (float(psnr_y(mean, x, border=rescaler.scale)), float(lpips(mean, x)))
            for name, keep in regions(y).items():
                sample = decode(z * keep)
                scores = cost.setdefault(name, {"psnr_y": [], "lpips": []})
                scores["psnr_y"].append(float(psnr_y(sample, x, border=rescaler.scale)) - base[0])
                scores["lpips"].append(float(lpips(sample, x)) - base[1])
    result = {"checkpoint": args.checkpoint, "data": args.data, "images": len(files), "tau": args.tau, "tau_b": DEFAULT_TAU_B,
              "minus_tau_0": {name: {k: dict(zip(("mean", "ci95"), mean_and_ci(v))) for k, v in s.items()} for name, s in cost.items()}}
    print(f"{args.checkpoint}, {len(files)} images, tau {args.tau:g}: the sample minus the tau-0 decode, by where Z is drawn")
    for name, s in result["minus_tau_0"].items():
        print(f"  {name:17s} PSNR-Y {s['psnr_y']['mean']:+.3f} ± {s['psnr_y']['ci95']:.3f} dB, "
              f"LPIPS {s['lpips']['mean']:+.4f} ± {s['lpips']['ci95']:.4f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

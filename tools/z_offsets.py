"""Where a real face's Z lies, against where a decode reads it: the forward Z's per-channel means over a data set
(one constant for all images, or each image's own?) and what a decode gives at Z = 0, at those means and at the
true Z (docs/studies/where-z-is-sampled.md, "Why a prior draw is not a texture").

    python tools/z_offsets.py --checkpoint checkpoints/face-x8 --json docs/results/where-z-is-sampled-x8/z-offsets.json

The means are measured on ``--fit`` training faces and tried on the first ``--limit`` val faces (bits 1).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bdflow.data import list_images  # noqa: E402
from bdflow.image_io import load_image  # noqa: E402
from bdflow.lpips import lpips  # noqa: E402
from bdflow.metrics import psnr_y  # noqa: E402
from bdflow.pipeline import Rescaler  # noqa: E402
from bdflow.quantize import to_8bit  # noqa: E402


def channel_means(rescaler: Rescaler, files: list[Path]) -> tuple[torch.Tensor, float]:
    """Each image's per-channel means of its forward Z (images, z_channels) and the pooled E[z^2]."""
    means, squares = [], []
    for path in tqdm(files, desc="forward Z", leave=False):
        z = rescaler.forward_image(path).z.cpu()
        means.append(z.mean(dim=(0, 2, 3)))
        squares.append(float(z.pow(2).mean()))
    return torch.stack(means), sum(squares) / len(squares)


@torch.inference_mode()
def decoded(rescaler: Rescaler, y: torch.Tensor, b: torch.Tensor | None, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The 8-bit decode of (y, b) at the given Z, cut to the size of the image x (1, 3, H, W), on the CPU."""
    h, w = x.shape[-2:]
    return to_8bit(rescaler.net.inverse(y, b, z.to(y.device)).clamp(0, 1)[..., :h, :w].cpu())


def scores(rescaler: Rescaler, x_back: torch.Tensor, x: torch.Tensor) -> tuple[float, float]:
    """PSNR-Y (the scale's border cut) and LPIPS of a decode against the image x (1, 3, H, W)."""
    return float(psnr_y(x_back, x, border=rescaler.scale)), float(lpips(x_back, x))


def scored_decode(rescaler: Rescaler, y: torch.Tensor, b: torch.Tensor | None, z: torch.Tensor, x: torch.Tensor) -> tuple[float, float]:
    """PSNR-Y and LPIPS against x of the decode at the given Z."""
    return scores(rescaler, decoded(rescaler, y, b, z, x), x)


def write_json(path: Path | None, result: dict) -> None:
    """The figures as JSON at ``path`` (nothing without one)."""
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")


def decodes(rescaler: Rescaler, files: list[Path], offsets: torch.Tensor) -> dict[str, dict[str, float]]:
    """Mean PSNR-Y and LPIPS of the decodes at Z = 0, at the data set's channel means and at each image's true Z."""
    scores: dict[str, list[tuple[float, float]]] = {"z = 0": [], "z = channel means": [], "z = true": []}
    for path in tqdm(files, desc="decodes", leave=False):
        x, _ = load_image(path)
        forward = rescaler.forward_image(x)
        y, b = rescaler.stored_tensors(rescaler.quantize(forward.y, forward.b, 1, forward.meta))
        for name, z in (("z = 0", torch.zeros_like(forward.z)), ("z = channel means", offsets.view(1, -1, 1, 1).expand_as(forward.z)),
                        ("z = true", forward.z)):
            scores[name].append(scored_decode(rescaler, y, b, z, x))
    return {k: {"psnr_y": sum(p for p, _ in v) / len(v), "lpips": sum(q for _, q in v) / len(v)} for k, v in scores.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/z_offsets.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="checkpoint folder or shipped name")
    parser.add_argument("--train", default="../shared/data/faces/train", help="faces the channel means are measured on")
    parser.add_argument("--val", default="../shared/data/faces/val", help="faces the decodes are scored on")
    parser.add_argument("--fit", type=int, default=100, help="training faces (default 100)")
    parser.add_argument("--limit", type=int, default=10, help="val faces (default 10)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    rescaler = Rescaler.from_pretrained(args.checkpoint)
    train_means, e_z2 = channel_means(rescaler, list_images(args.train)[: args.fit])
    val_files = list_images(args.val)[: args.limit]
    val_means, _ = channel_means(rescaler, val_files)
    offsets = train_means.mean(0)
    result = {
        "checkpoint": args.checkpoint, "train_faces": len(train_means), "val_faces": len(val_files),
        "e_z2": e_z2,
        "share_of_image_channel_means": float(train_means.pow(2).mean()) / e_z2,
        "share_of_data_set_channel_means": float(offsets.pow(2).mean()) / e_z2,
        "share_across_images": float(train_means.var(0).mean()) / e_z2,
        "train_val_correlation": float(torch.corrcoef(torch.stack([offsets, val_means.mean(0)]))[0, 1]),
        "decodes": decodes(rescaler, val_files, offsets),
    }
    print(f"{args.checkpoint}: E[z^2] {e_z2:.3f}; per-channel means of each image hold {result['share_of_image_channel_means']:.3f} of it, "
          f"the data set's one set of means {result['share_of_data_set_channel_means']:.3f}, their variation across images "
          f"{result['share_across_images']:.4f}; train/val means correlate {result['train_val_correlation']:.5f}")
    for name, s in result["decodes"].items():
        print(f"decode at {name:18s} PSNR-Y {s['psnr_y']:.2f} dB, LPIPS {s['lpips']:.4f}")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

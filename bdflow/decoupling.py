"""How well a model decouples an image into Y, B and a Gaussian Z (the paper's Fig. 2 and its central claim), measured
on held-out images in one pass:

- the forward Z against N(0, 1): mean, std, excess kurtosis (exact moments over every value), the share of values
  beyond 3 (N(0, 1): 0.27 %) and the total variation distance between Z's histogram and N(0, 1) over bins of
  ``metrics.TV_BIN`` (:class:`ZStats`);
- whether each channel of Z is N(0, 1) and not only their pool: the share of E[z^2] that the channels' own means
  hold, mean_c m_c^2 / E[z^2] over all images (N(0, 1): about 1 / the values per channel; a pooled N(0, 1) made of
  channels at their own offsets shows here, not in the histogram), and the excess kurtosis within the channels
  (``metrics.channel_measures``: Z with each channel standardised by its own mean and std; N(0, 1): 0);
- whether Z still carries the boundaries: mean z^2 in the LR cells where the stored 1-bit B is 1 against the cells
  where it is 0 (1.0: Z is as loud at the boundaries as elsewhere);
- what the temperature does: PSNR-Y and LPIPS of the decode at each tau (seed 0);
- the diversity map at the model's default tau (the highest tau scored where that is 0) and ``tau_b`` (the share of
  tau Z keeps in B's boundary cells, :func:`bdflow.flow.sample_z`; the decodes of every tau use it too; records
  without it were taken at 1, the paper's one tau everywhere): the per-pixel std over
  ``seeds`` decodes (0-255 scale), its mean in the HR pixels of B's boundary cells and in the rest, and on the
  boundaries themselves (BAM's 1-bit edges at full resolution, :func:`hr_edges`) and off them (Z should decide
  texture, not boundaries); beside it the tau-0 decode's mean absolute error (0-255) in the same regions: where the
  decoder is unsure of the truth, which is where a decoder that samples X given Y and B spreads its samples;
- with ``--z-tiles N``: the same Z measures on each image cut into N x N tiles (:func:`z_of_tiles`). A flow
  trained on crops meets the zero padding of its convolutions on every crop's border; at x64 a 256² crop is a
  4 x 4 grid at the coarsest level, all border, and a 1024² photo 16 x 16. Tiles of the training crop's size
  against the whole photo tell the crop size from the content.

    python -m bdflow.decoupling --checkpoint checkpoints/face-x16 --data ../shared/data/faces/val --limit 20 \\
        --json docs/results/decoupling/face-x16.json
    python -m bdflow.decoupling --table docs/results/gaussian-z-x8     # ARM/decoupling.json -> one table (.md)

The mean and the std are the values' own; "std" is sigma (not sigma^2).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .accel import keep_freed_memory
from .bam import bam
from .data import list_images
from .image_io import load_image
from .limits import DEFAULT_TAU_B, argument, check_tau, check_tau_b
from .metrics import Moments, channel_measures, lpips_rgb, normal_bin_counts, on_pixels, psnr_y, tv_to_normal
from .pipeline import Rescaler
from .quantize import boundary_cells, to_8bit

TAIL = 3.0


class ZStats:
    """Running moments, histogram, tail count and z^2 in and out of B's boundary cells of the Z values added."""

    def __init__(self):
        self.moments = Moments(channel_dim=1)  # pooled and per channel
        self.counts = 0.0  # histogram over metrics.normal_bin_counts' bins
        self.tail = 0
        self.z2 = {True: [0.0, 0], False: [0.0, 0]}  # in B cells / elsewhere: sum of z^2, count

    def add(self, z: torch.Tensor, cells: torch.Tensor | None = None) -> None:
        """z (N,C,h,w); cells (N,1,h,w) bool, the LR cells where the 1-bit B is 1 (None: a model without B)."""
        z = z.detach().double()
        self.moments.add(z)
        v = z.flatten().cpu().numpy()
        self.counts = self.counts + normal_bin_counts(v)
        self.tail += int((np.abs(v) > TAIL).sum())
        if cells is not None:
            per_cell = z.pow(2).sum(dim=1, keepdim=True)  # (N,1,h,w)
            for inside in (True, False):
                mask = cells if inside else ~cells
                self.z2[inside][0] += float(per_cell[mask].sum())
                self.z2[inside][1] += int(mask.sum()) * z.shape[1]

    def summary(self) -> dict:
        m = self.moments.summary()
        out = {"count": m["count"], "mean": m["mean"], "std": math.sqrt(m["var"]),
               "excess_kurtosis": m["excess_kurtosis"], "tail_share": self.tail / m["count"],
               "total_variation": tv_to_normal(self.counts),
               **channel_measures(self.moments)}
        (s_in, n_in), (s_out, n_out) = self.z2[True], self.z2[False]
        out["z2_in_b"] = s_in / n_in if n_in else float("nan")
        out["z2_out_b"] = s_out / n_out if n_out else float("nan")
        out["z2_ratio_b"] = out["z2_in_b"] / out["z2_out_b"] if n_in and n_out else float("nan")
        return out


@torch.inference_mode()
def measure(rescaler: Rescaler, files: list[Path], taus: tuple[float, ...], seeds: int = 4,
            tau_b: float = DEFAULT_TAU_B) -> dict:
    """Every measure of the module docstring over ``files``, as one dict (``summary`` per tau, ``z``, ``diversity``)."""
    taus, tau_b = tuple(check_tau(t) for t in taus), check_tau_b(tau_b)
    default = rescaler.default_tau
    sampled = default if default > 0 else max(taus)  # the tau of the diversity map
    stats, scores = ZStats(), {t: {"psnr": [], "lpips": []} for t in taus}
    diversity = {}  # key -> [sum of the per-pixel std, pixels]
    s = rescaler.scale
    for path in tqdm(files, desc=f"decoupling x{s}", leave=False):
        x, _ = load_image(path)
        f = rescaler.forward_image(x)
        cells = None if f.b is None else boundary_cells(f.b)
        stats.add(f.z, cells)
        y, b = rescaler.stored_tensors(rescaler.quantize(f.y, f.b, 1, f.meta))
        h, w = x.shape[-2:]
        error = None  # the tau-0 decode's per-pixel error (H, W), 0-255: where the decoder is unsure
        for tau in taus:
            x_hat = to_8bit(rescaler.reconstruct(y, b, tau=tau, seed=0, tau_b=tau_b)[..., :h, :w].cpu())
            scores[tau]["psnr"].append(float(psnr_y(x_hat, x, border=s)))
            scores[tau]["lpips"].append(float(lpips_rgb(x_hat, x)))
            if tau == 0:
                error = 255 * (x_hat - x).abs().mean(dim=1)[0]
        if sampled > 0:
            maps = {"": rescaler.spread(y, b, sampled, samples=seeds, tau_b=tau_b)[:h, :w]} | ({"error_": error} if error is not None else {})
            edges = hr_edges(x, rescaler.model.config)
            masks = {"on_edges": edges, "off_edges": ~edges}
            if cells is not None:
                hr_cells = on_pixels(cells[0, 0].cpu(), s, (h, w))
                masks |= {"in_b": hr_cells, "out_b": ~hr_cells}
            for prefix, values in maps.items():
                for key, mask in masks.items():
                    diversity.setdefault(prefix + key, [0.0, 0])
                    diversity[prefix + key][0] += float(values[mask].sum())
                    diversity[prefix + key][1] += int(mask.sum())
    out = {"checkpoint": rescaler.model.name, "scale": s, "images": len(files), "default_tau": default,
           **({"tau_b": tau_b} if rescaler.has_boundary else {}),
           "z": stats.summary(),
           "taus": {str(t): {k: float(np.mean(v)) for k, v in scores[t].items()} for t in taus}}
    if diversity:
        out["diversity"] = {"tau": sampled, "seeds": seeds,
                            **{k: total / count if count else float("nan") for k, (total, count) in diversity.items()}}
    return out


@torch.inference_mode()
def z_of_tiles(rescaler: Rescaler, files: list[Path], tile: int) -> dict:
    """:class:`ZStats` summary of the forward Z of every image in ``files`` cut into non-overlapping ``tile`` x
    ``tile`` pieces, each through the flow on its own (pieces at the right and bottom edges that do not fill a
    tile are left out). ``tile``: a multiple of the scale."""
    if tile <= 0 or tile % rescaler.scale:
        raise ValueError(f"a tile must be a positive multiple of the scale {rescaler.scale}, got {tile}")
    stats, pieces = ZStats(), 0
    for path in tqdm(files, desc=f"Z of {tile}² tiles", leave=False):
        x, _ = load_image(path)
        h, w = x.shape[-2:]
        for top in range(0, h - tile + 1, tile):
            for left in range(0, w - tile + 1, tile):
                f = rescaler.forward_image(x[..., top : top + tile, left : left + tile])
                stats.add(f.z, None if f.b is None else boundary_cells(f.b))
                pieces += 1
    if not pieces:
        raise ValueError(f"no image of the folder holds a {tile}² tile")
    return stats.summary()


def hr_edges(x: torch.Tensor, config) -> torch.Tensor:
    """The boundaries at full resolution: BAM's 1-bit map of x (1,3,H,W) (Canny edges, the model's sigma, norm and
    T), widened by one pixel each side, as a (H, W) bool mask. B's cells at x16 are 16 px wide and hold the hair's
    texture too; these are the boundaries themselves."""
    edges = bam(x, sigma=config.bam_sigma, norm=config.bam_norm, threshold=config.bam_threshold, bits=1) > 0
    return F.max_pool2d(edges.float(), 3, stride=1, padding=1)[0, 0].bool()


def markdown_row(result: dict) -> str:
    """One row of the decoupling table (the header is :data:`MARKDOWN_HEAD`)."""
    z, taus, d = result["z"], result["taus"], result.get("diversity")
    t0 = taus.get("0.0")
    tau = max(float(t) for t in taus)  # the sampled column: the highest tau scored
    ts = taus[str(tau)] if tau > 0 else None
    tau_b = f" ({result.get('tau_b', 1.0):g} in B)" if "z2_ratio_b" in z and math.isfinite(z["z2_ratio_b"]) else ""
    cells = [result["checkpoint"], f"{result['default_tau']:g}{tau_b}", f"{z['std']:.2f}", f"{z['excess_kurtosis']:.1f}",
             f"{100 * z['tail_share']:.1f}", f"{z['total_variation']:.3f}",
             f"{z['channel_mean_share']:.3f}" if "channel_mean_share" in z else "–",
             f"{z['channel_kurtosis']:.1f}" if "channel_kurtosis" in z else "–",
             f"{z['z2_ratio_b']:.2f}" if math.isfinite(z["z2_ratio_b"]) else "–",
             f"{t0['psnr']:.2f} / {t0['lpips']:.3f}" if t0 else "",
             f"{tau:g}: {ts['psnr']:.2f} / {ts['lpips']:.3f}" if ts else "",
             f"{d['out_b']:.2f} / {d['in_b']:.2f}" if d and "in_b" in d else "",
             f"{d['off_edges']:.2f} / {d['on_edges']:.2f} (τ {d['tau']:g})" if d and "on_edges" in d else "",
             f"{d['error_off_edges']:.2f} / {d['error_on_edges']:.2f}" if d and "error_on_edges" in d else ""]
    return "| " + " | ".join(cells) + " |"


MARKDOWN_HEAD = ("| model | default τ (share in B's cells) | Z std | excess kurtosis | abs(z) > 3 % | TV to N(0,1) | channel means' share of E[z²] "
                 "| excess kurtosis within channels | z² in B cells / elsewhere "
                 "| τ 0: PSNR-Y / LPIPS | sampled τ: PSNR-Y / LPIPS | diversity outside / inside B cells "
                 "| diversity off / on the edges | τ 0 error off / on the edges |\n"
                 "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def study_table(folder: Path) -> str:
    """The table of a study's arms: FOLDER/ARM/decoupling.json, one row each (the arm's folder names the row)."""
    rows = []
    for path in sorted(folder.glob("*/decoupling.json")):
        result = json.loads(path.read_text())
        rows.append(markdown_row({**result, "checkpoint": path.parent.name}))
    if not rows:
        raise FileNotFoundError(f"no ARM/decoupling.json under {folder}")
    return "\n".join([MARKDOWN_HEAD, *rows]) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bdflow.decoupling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", nargs="+", help="checkpoint folder(s) or Hub repo id(s)")
    parser.add_argument("--table", type=Path, help="instead: write FOLDER/decoupling.md from FOLDER/ARM/decoupling.json")
    parser.add_argument("--data", default="../shared/data/faces/val", help="folder of held-out images")
    parser.add_argument("--limit", type=int, default=20, help="the first N images (default 20)")
    parser.add_argument("--taus", type=argument(check_tau, float), nargs="+", default=None,
                        help="temperatures to decode at (default: 0 and each model's default tau)")
    parser.add_argument("--seeds", type=int, default=4, help="decodes per image for the diversity map")
    parser.add_argument("--tau-b", type=argument(check_tau_b, float), default=DEFAULT_TAU_B,
                        help="the share of tau Z keeps in B's boundary cells, 0..1 (default %(default)g; 1: the paper's)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--z-tiles", type=int, nargs="+", default=(), metavar="N",
                        help="also measure Z on each image cut into N x N tiles (e.g. the training crop: 256)")
    parser.add_argument("--json", type=Path, help="write the results (one object per checkpoint) here")
    args = parser.parse_args(argv)
    if args.table:
        try:
            table = study_table(args.table)
        except FileNotFoundError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        (args.table / "decoupling.md").write_text(table)
        print(table + f"wrote {args.table / 'decoupling.md'}")
        return 0
    if not args.checkpoint:
        parser.error("name --checkpoint (or --table)")
    keep_freed_memory()
    try:
        files = list_images(args.data)[: args.limit]
        results = []
        for checkpoint in args.checkpoint:
            r = Rescaler.from_pretrained(checkpoint, precision=args.precision)
            taus = tuple(args.taus) if args.taus else tuple(sorted({0.0, r.default_tau}))
            results.append(measure(r, files, taus, args.seeds, args.tau_b))
            if args.z_tiles:
                results[-1]["z_tiles"] = {str(n): z_of_tiles(r, files, n) for n in args.z_tiles}
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{len(files)} images of {args.data}\n\n{MARKDOWN_HEAD}")
    for result in results:
        print(markdown_row(result))
    for result in (r for r in results if "z_tiles" in r):  # Z of the whole images beside Z of their tiles
        pieces = {"whole images": result["z"]} | {f"{n}² tiles": z for n, z in result["z_tiles"].items()}
        for name, z in pieces.items():
            print(f"{result['checkpoint']}, Z of {name}: std {z['std']:.3f}, excess kurtosis "
                  f"{z['excess_kurtosis']:.2f}, TV {z['total_variation']:.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results if len(results) > 1 else results[0], indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

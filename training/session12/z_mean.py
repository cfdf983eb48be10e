"""Issue #14's dot lattice against Z's mean (session 12): decode at tau = 0 from Z = alpha * mu instead of Z = 0,
where mu (z_channels,) is the per-channel mean of the forward Z over training faces; and re-centre a checkpoint.

    python training/session12/z_mean.py checkpoints/face-x64 --faces 20 --alpha 1 0.5 --groups
    python training/session12/z_mean.py checkpoints/face-x64 --data ../shared/data/faces/val --faces 50 --groups
    python training/session12/z_mean.py checkpoints/face-x64 --levels 2 3 --save runs/recentre/face-x64/last

The recipe trains without a latent term (lambda_latent = 0), so nothing pulls the forward Z's channel means to the
prior's 0, and the decoder at tau = 0 reads a Z that sits off the data's. Prints, on the first ``--faces`` faces of
``--data`` (8-bit Y, 1-bit B, as the evaluate CLI): mean PSNR-Y at Z = 0 and at each alpha * mu (on ``--levels``
only, when given), the paired difference with its 95 % interval, LPIPS, and the pooled grid ratio (``metrics.peak_ratio`` of the folded squared Y
error) beside the bicubic round trip's. ``--groups`` adds one row per origin level l of Z's channels (mu kept on the
channels that were a wavelet detail first at level l, 0 elsewhere; ``flow.z_origin_levels``). ``--save`` writes
the checkpoint with mu on ``--levels`` moved into its last coupling (``BDFlow.recentre_z``: Z = 0 then decodes as
Z = mu on those levels did) and skips the scoring. mu is cached in runs/z-mean/.
"""

import argparse
from pathlib import Path

import torch

from bdflow import BDFlow, Rescaler
from bdflow.data import list_images
from bdflow.flow import z_origin_levels
from bdflow.image_io import read_rgb
from bdflow.metrics import grid_map, lpips_rgb, peak_ratio, psnr_y
from bdflow.quantize import to_8bit
from bdflow.resize import bicubic_round_trip

TRAIN, TEST = "../shared/data/faces/train", "../shared/data/faces/test1024"


@torch.inference_mode()
def z_mean(model: BDFlow, n: int) -> torch.Tensor:
    """(z_channels,) the mean forward Z of the first n training faces, over images and LR positions."""
    total, count = 0.0, 0
    for f in list_images(TRAIN)[:n]:
        z = model(read_rgb(f)[None])[2].double()
        total, count = total + z.sum(dim=(0, 2, 3)), count + z.shape[-2] * z.shape[-1]
    return (total / count).float()


def score(r: Rescaler, zs: dict[str, torch.Tensor], data: str, faces: int) -> None:
    s = r.scale
    psnr, lpips = {k: [] for k in zs}, {k: [] for k in zs}
    grids = {k: 0.0 for k in [*zs, "bicubic"]}
    with torch.inference_mode():
        for f in list_images(data)[:faces]:
            x = read_rgb(f)[None]
            y, b = r.stored_tensors(r.encode(x, bits=1))
            for k, z in zs.items():
                x_hat = to_8bit(r.net.inverse(y, b, z.view(1, -1, 1, 1).expand(1, -1, *y.shape[-2:])).clamp(0, 1))
                psnr[k].append(float(psnr_y(x_hat, x, border=s)))
                lpips[k].append(float(lpips_rgb(x_hat, x)))
                grids[k] = grids[k] + grid_map(x_hat, x, s)[0]
            grids["bicubic"] = grids["bicubic"] + grid_map(to_8bit(bicubic_round_trip(x, s)), x, s)[0]
    base = torch.tensor(psnr["Z = 0"])
    print(f"{faces} faces of {data}, tau 0, 1-bit B; bicubic grid {peak_ratio(grids['bicubic']):.3f}")
    for k, p in psnr.items():
        d = torch.tensor(p) - base
        paired = f", {d.mean():+.3f} +- {1.96 * d.std() / len(d) ** 0.5:.3f} dB paired" if k != "Z = 0" else ""
        print(f"{k}: PSNR-Y {torch.tensor(p).mean():.3f}{paired}; LPIPS {torch.tensor(lpips[k]).mean():.4f}; grid {peak_ratio(grids[k]):.3f}")


parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("checkpoint")
parser.add_argument("--train", type=int, default=400, help="training faces for mu")
parser.add_argument("--faces", type=int, default=20, help="faces to score, the first of --data")
parser.add_argument("--data", default=TEST, help="folder of the faces to score (default: faces/test1024)")
parser.add_argument("--alpha", type=float, nargs="+", default=[1.0])
parser.add_argument("--groups", action="store_true", help="also mu on one origin level of the channels at a time")
parser.add_argument("--levels", type=int, nargs="+", default=[], help="origin levels whose mu --save moves (and --alpha scales; default all)")
parser.add_argument("--save", type=Path, default=None, help="write the re-centred checkpoint here instead of scoring")
args = parser.parse_args()
r = Rescaler.from_pretrained(args.checkpoint, device="cpu")
cache = Path("runs/z-mean") / f"{Path(args.checkpoint).name}-{args.train}.pt"
if cache.exists():
    mu = torch.load(cache)
else:
    mu = z_mean(r.model, args.train)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(mu, cache)
print(f"{args.checkpoint}: mu over {args.train} training faces: mean |mu| {mu.abs().mean():.3f}, max {mu.abs().max():.1f}")
origin = z_origin_levels(r.model.config.levels)
if args.save:
    if not args.levels:
        parser.error("--save needs --levels")
    model = r.model
    model.recentre_z(mu * torch.isin(origin, torch.tensor(args.levels)))
    meta = {k: v for k, v in model.meta.items() if k != "metrics"}
    meta["recentred_z"] = {"origin_levels": args.levels, "train_faces": args.train}
    model.save_pretrained(args.save, meta=meta)
    print(f"wrote {args.save}")
else:
    on = torch.isin(origin, torch.tensor(args.levels)) if args.levels else torch.ones_like(origin, dtype=torch.bool)
    where = f" on origin levels {args.levels}" if args.levels else ""
    zs = {"Z = 0": torch.zeros_like(mu), **{f"Z = {a:g} mu{where}": a * mu * on for a in args.alpha}}
    if args.groups:
        zs.update({f"mu on origin level {l} ({int((origin == l).sum())} ch)": mu * (origin == l)
                   for l in range(1, r.model.config.levels + 1)})
    score(r, zs, args.data, args.faces)

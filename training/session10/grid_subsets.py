"""How the grid check of issue #14 depends on the number of faces it pools (session 10, docs/reproduction.md).

    python training/session10/grid_subsets.py checkpoints/face-x64

Decodes every face of faces/test1024 at tau = 0 with the stored 1-bit B, keeps each image's squared-Y-error map
folded modulo the scale (``metrics.grid_map``), and prints the pooled peak ratio (max/mean) of BDFlow and of the
bicubic round trip over all faces, over consecutive groups of 20 and 8 faces, and the share of 200 random
8-face draws in which BDFlow's ratio is within the issue's bicubic + 10 %; then, over all faces, the ratio of
the map folded further modulo 16 and 32 and after a 4 x 4 box blur (what is left of a periodic structure once the
per-position noise is smoothed).
"""

import sys

import torch

from bdflow import Rescaler
from bdflow.data import list_images
from bdflow.image_io import read_rgb
from bdflow.metrics import grid_map, peak_ratio
from bdflow.resize import bicubic_round_trip

rescaler = Rescaler.from_pretrained(sys.argv[1], device="cpu")
s = rescaler.scale
maps = {"BDFlow": [], "bicubic": []}
with torch.inference_mode():
    for f in list_images("../shared/data/faces/test1024"):
        x = read_rgb(f)[None]
        x_back = rescaler.decode(rescaler.encode(x, bits=1), tau=0, output_type="pt")  # 8-bit Y, 1-bit B, tau 0
        maps["BDFlow"].append(grid_map(x_back, x, s)[0])
        maps["bicubic"].append(grid_map(bicubic_round_trip(x, s), x, s)[0])
m, b = (torch.stack(maps[k]) for k in ("BDFlow", "bicubic"))
n = len(m)


def ratios(idx: list[int]) -> tuple[float, float]:
    return peak_ratio(m[idx].sum(0)).item(), peak_ratio(b[idx].sum(0)).item()


for k in (n, 20, 8):
    groups = [list(range(i, i + k)) for i in range(0, n - k + 1, k)]
    rows = [ratios(g) for g in groups]
    shown = ", ".join(f"{rm:.3f} vs {rb:.3f}" for rm, rb in rows)
    print(f"{k} faces: BDFlow vs bicubic {shown}; within +10 %: {sum(rm <= 1.1 * rb for rm, rb in rows)} of {len(rows)}")
g = torch.Generator().manual_seed(0)
draws = [ratios(torch.randperm(n, generator=g)[:8].tolist()) for _ in range(200)]
print(f"random 8-face draws within +10 %: {sum(rm <= 1.1 * rb for rm, rb in draws)} of 200; "
      f"median BDFlow/bicubic {torch.tensor([rm / rb for rm, rb in draws]).median().item():.3f}")
for name, x in (("BDFlow", m), ("bicubic", b)):
    g = x.sum(0)
    folds = [peak_ratio(g.reshape(s // p, p, s // p, p).mean(dim=(0, 2))).item() for p in (16, 32)]
    blurred = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(g[None, None], (2, 1, 2, 1), mode="circular"), 4, stride=1)
    print(f"{name}, all faces: modulo 16 {folds[0]:.3f}, modulo 32 {folds[1]:.3f}, 4x4 box blur {peak_ratio(blurred[0, 0]).item():.3f}")

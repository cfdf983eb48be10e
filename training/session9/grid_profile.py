"""Where inside an LR cell a x64 model's error sits (session 9, docs/reproduction.md "Session 9").

    python training/session9/grid_profile.py checkpoints/face-x64 8

Decodes the first N faces of faces/test1024 at tau = 0 with the stored 1-bit B, pools the squared Y error folded
modulo 64 (``metrics.grid_map``) over the images, and prints its peak ratio (the grid check), the ratio after
folding further modulo 16, and the row and column profiles of the 64 x 64 map (mean 1), beside the bicubic round
trip's: a ramp across the rows is the signature of an offset inside the cell, a peak at the borders that of a
checkerboard.
"""

import sys

import torch

from bdflow import BDFlow
from bdflow.data import list_images
from bdflow.image_io import read_rgb
from bdflow.metrics import grid_map, peak_ratio
from bdflow.quantize import quantize_b, quantize_y
from bdflow.resize import bicubic_round_trip

model = BDFlow.from_pretrained(sys.argv[1]).eval()
s = model.scale
files = list_images("../shared/data/faces/test1024")[: int(sys.argv[2])]
maps = {"model": 0.0, "bicubic": 0.0}
with torch.inference_mode():
    for f in files:
        x = read_rgb(f)[None]
        y, b, z = model(x)
        x_back = model.inverse(quantize_y(y), None if b is None else quantize_b(b, 1), torch.zeros_like(z)).clamp(0, 1)
        maps["model"] = maps["model"] + grid_map(x_back, x, s)[0]
        maps["bicubic"] = maps["bicubic"] + grid_map(bicubic_round_trip(x, s), x, s)[0]
for name, g in maps.items():
    g = g / g.mean()
    g16 = g.reshape(s // 16, 16, s // 16, 16).mean(dim=(0, 2))
    print(f"{name}: peak ratio mod {s} {peak_ratio(g).item():.3f}, mod 16 {peak_ratio(g16).item():.3f}")
    print("  rows:", " ".join(f"{v:.2f}" for v in g.mean(1).tolist()))
    print("  cols:", " ".join(f"{v:.2f}" for v in g.mean(0).tolist()))

"""The untrained starting point of a x64 model grown from a x16 parent, at each Y phase (session 10, issue #14).

    python training/session10/start_x64.py PARENT N     # e.g. training/session9/bzero 8

Grows a x64 flow from PARENT (its levels 1-4; levels 5-6 identity) with y_phase corner and centred (a corner
parent keeps its phases in a centred child: only level 6 lifts on the odd samples), decodes the first N faces of
faces/test1024 at tau = 0 with the stored 1-bit B, and prints PSNR-Y, the pooled grid ratio (``metrics.grid_map``,
max/mean of the squared Y error folded modulo 64) and the row profile of that map in 8 bands, beside the bicubic
round trip's. What a run must start from before any compute is spent (the lesson of issue #13).
"""

import dataclasses
import sys

import torch

from bdflow import BDFlow, Rescaler
from bdflow.data import list_images
from bdflow.image_io import read_rgb
from bdflow.metrics import grid_map, peak_ratio, psnr_y
from bdflow.resize import bicubic_round_trip

parent = BDFlow.from_pretrained(sys.argv[1]).eval()
files = list_images("../shared/data/faces/test1024")[: int(sys.argv[2])]
arms = {}
for phase in ("corner", "centred"):
    child = BDFlow(dataclasses.replace(parent.config, scale=64, y_phase=phase)).eval()
    child.grow_from(parent)
    arms[f"grown, {phase}"] = Rescaler(child, device="cpu")
with torch.inference_mode():
    scores = {name: [0.0, 0.0] for name in [*arms, "bicubic"]}
    for f in files:
        x = read_rgb(f)[None]
        outs = {"bicubic": bicubic_round_trip(x, 64)}
        for name, r in arms.items():  # the pipeline's round trip: 8-bit Y, 1-bit B, tau 0
            outs[name] = r.decode(r.encode(x, bits=1), tau=0, output_type="pt")
        for name, out in outs.items():
            scores[name][0] += psnr_y(out, x).item() / len(files)
            scores[name][1] = scores[name][1] + grid_map(out, x, 64)[0]
for name, (psnr, g) in scores.items():
    g = g / g.mean()
    bands = g.mean(1).reshape(8, 8).mean(1)
    print(f"{name:16s} PSNR-Y {psnr:.2f} dB  grid {peak_ratio(g).item():.3f}  rows in 8 bands:",
          " ".join(f"{v:.2f}" for v in bands.tolist()))

"""What an encoder that reads the stored B could buy (session 9, docs/design.md "B as a condition").

    python training/session9/b_probe.py checkpoints/face-x16 20

Decodes the first N faces of faces/val at tau = 0 from the 8-bit Y with B given four ways: the stored 1-bit B,
a 4-bit B, the unquantised target (the flow is then exact), and with the encoder also reading the 1-bit B.
Prints the mean PSNR-Y (border = scale) of each.
"""

import sys

import torch

from bdflow import BDFlow
from bdflow.data import list_images
from bdflow.image_io import read_rgb
from bdflow.metrics import psnr_y
from bdflow.quantize import quantize_b, quantize_y

model = BDFlow.from_pretrained(sys.argv[1]).eval()
files = list_images("../shared/data/faces/val")[: int(sys.argv[2])]
scores = {"stored B_1": [], "B_4": [], "unquantised B (exact flow)": [], "encoder and decoder on B_1": []}
with torch.inference_mode():
    for f in files:
        x = read_rgb(f)[None]
        target = model.boundary_map(x)
        y, _, z = model(x, target)
        zero = torch.zeros_like(z)
        for name, b in zip(scores, (quantize_b(target, 1), quantize_b(target, 4), target)):
            scores[name].append(psnr_y(model.inverse(quantize_y(y), b, zero).clamp(0, 1), x, border=model.scale).item())
        b1 = quantize_b(target, 1)
        y1, _, _ = model(x, b1)
        x1 = model.inverse(quantize_y(y1), b1, zero).clamp(0, 1)
        scores["encoder and decoder on B_1"].append(psnr_y(x1, x, border=model.scale).item())
for name, values in scores.items():
    print(f"{name}: {sum(values) / len(values):.2f} dB")

"""How much of the x64 grid check's excess is a *bias* (the same signed Y error at one offset of every cell) and
how much is variance (session 13, issue #14).

    python training/session13/bias_map.py checkpoints/face-x64 [--limit 20]

For each face of faces/test1024 (tau = 0, 1-bit B) the signed Y error e = Y(x_hat) - Y(x) of the grid check
(``metrics.cell_error``) is folded by offset modulo the scale (``metrics.fold_cells``). Pooled over faces, the squared-error map S(o) = E[e^2 | o] splits into
bias^2 B(o) = (E[e | o])^2 and variance S - B. Printed: the pooled peak ratio of S (the grid check), of S - B
(what is left once the per-offset bias is removed), the bias's share of S at the peak, and the same for bicubic.
A loss on the per-offset mean error (not built: this measurement priced it) could only remove the B part.
"""

import argparse

import torch

from bdflow import Rescaler
from bdflow.data import list_images
from bdflow.image_io import read_rgb
from bdflow.metrics import cell_error, fold_cells, peak_ratio
from bdflow.resize import bicubic_round_trip

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("checkpoint")
p.add_argument("--data", default="../shared/data/faces/test1024")
p.add_argument("--limit", type=int, default=0)
args = p.parse_args()
r = Rescaler.from_pretrained(args.checkpoint, device="cpu")
s = r.model.config.scale
files = list_images(args.data)[: args.limit or None]


def folds(decode):
    """(N, s, s) mean signed error and (N, s, s) mean squared error per offset."""
    m1, m2 = [], []
    with torch.inference_mode():
        for f in files:
            x = read_rgb(f)[None]
            e = cell_error(decode(x), x, s)
            m1.append(fold_cells(e, s)[0])
            m2.append(fold_cells(e * e, s)[0])
    return torch.stack(m1), torch.stack(m2)


def report(name, m1, m2):
    sq = m2.mean(0)
    bias2 = m1.mean(0) ** 2
    peak = torch.argmax(sq)
    print(f"{name:28s} grid {float(peak_ratio(sq)):.3f}  without bias {float(peak_ratio(sq - bias2)):.3f}  "
          f"bias^2 share: mean {float(bias2.mean() / sq.mean()):.3f}, at peak {float(bias2.flatten()[peak] / sq.flatten()[peak]):.3f} "
          f"(peak offset {divmod(int(peak), s)})")


report("bicubic", *folds(lambda x: bicubic_round_trip(x, s)))
report(args.checkpoint, *folds(lambda x: r.decode(r.encode(x, bits=1), tau=0, output_type="pt")))

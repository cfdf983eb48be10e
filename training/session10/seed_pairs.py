"""BDFlow against its twin over several seeds, paired per image (session 10, issues #13 and #14).

    python training/session10/seed_pairs.py --a A_SEED0.csv A_SEED1.csv --b B_SEED0.csv B_SEED1.csv [--metric psnr]

Each CSV is an ``evaluate --csv`` file of the same images; a file holding BDFlow and its twin (``evaluate --twin``)
serves both sides with ``--a-method BDFlow --b-method twin`` (the methods' first word). Prints
every cross-seed pairing (A seed i - B seed j, mean and 95 % interval over images) and the seed-averaged one: per
image, the mean over A's seeds minus the mean over B's seeds, with its 95 % interval over images, the images where A scores higher
and the spread between seeds of each side.
"""

import argparse
import csv
import itertools

import numpy as np


def scores(path: str, metric: str, method: str) -> dict[str, float]:
    rows = [r for r in csv.DictReader(open(path)) if r["method"] != "bicubic round trip"]
    rows = [r for r in rows if not method or r["method"].split()[0] == method]
    methods = {r["method"] for r in rows}
    if len(methods) != 1:
        raise SystemExit(f"{path}: expected one model (method {method or 'any'}) beside bicubic, found {sorted(methods)}")
    return {r["image"]: float(r[metric]) for r in rows}


def interval(d: np.ndarray) -> str:
    return f"{d.mean():+.3f} ± {1.96 * d.std(ddof=1) / np.sqrt(len(d)):.3f}"


parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--a", nargs="+", required=True, help="the first model's CSVs, one per seed")
parser.add_argument("--b", nargs="+", required=True, help="the second model's CSVs, one per seed")
parser.add_argument("--a-method", default="", help="the first word of A's method in the CSVs (default: the only model)")
parser.add_argument("--b-method", default="", help="the same for B")
parser.add_argument("--metric", default="psnr", help="a column of the CSVs (psnr, ssim, lpips, grid)")
args = parser.parse_args()
a = [scores(p, args.metric, args.a_method) for p in args.a]
b = [scores(p, args.metric, args.b_method) for p in args.b]
images = sorted(set.intersection(*(set(s) for s in a + b)))
A = np.array([[s[i] for i in images] for s in a])  # (seeds, images)
B = np.array([[s[i] for i in images] for s in b])
print(f"{len(images)} images, metric {args.metric}")
for (i, ai), (j, bj) in itertools.product(enumerate(A), enumerate(B)):
    print(f"  A seed {i} ({ai.mean():.3f}) - B seed {j} ({bj.mean():.3f}): {interval(ai - bj)}")
d = A.mean(0) - B.mean(0)
print(f"seed-averaged A - B: {interval(d)}, A higher on {(d > 0).sum()} of {len(d)}; "
      f"seed spread of the means: A {np.ptp(A.mean(1)):.3f}, B {np.ptp(B.mean(1)):.3f}")

"""How the grid check of issue #14 depends on the number of faces it pools (session 10, docs/reproduction.md), and
how much of the folded map is a grid at all (session 11).

    python training/session10/grid_subsets.py checkpoints/face-x64 [MORE_CHECKPOINTS ...] [--cache runs/grid-maps]

Decodes every face of faces/test1024 at tau = 0 with the stored 1-bit B, keeps each image's squared-Y-error map
folded modulo the scale (``metrics.grid_map``), and prints, for each checkpoint beside the bicubic round trip:

- the pooled peak ratio (max/mean) over all faces, over consecutive groups of 20 and 8 faces, and the share of 200
  random 8-face draws in which the model's ratio is within the issue's bicubic + 10 %;
- over all faces, the ratio of the map folded further modulo 16 and 32 and after a 4 x 4 box blur (what is left
  of a periodic structure once the per-position noise is smoothed);
- the map's reproducible part (session 11): the faces split into halves 100 times, the covariance of the two
  halves' maps over the s x s offsets estimates the variance of the per-offset pattern without the noise of
  either half (the noise of disjoint faces is independent); its square root is given in % of the mean
  ("structure rms"), beside the rms of the whole map, which adds the noise, and the share of that structure at
  2 or more cycles per cell (spots, against one smooth bowl per cell);
- where the pooled map peaks, and on how many faces that offset is above the face's own mean error (a dot in
  every cell, not one face's outlier, when nearly all are).

``--cache DIR`` keeps each model's maps (and bicubic's) in DIR, so a second call prints at once.
"""

import argparse
from pathlib import Path

import torch

from bdflow import Rescaler
from bdflow.data import list_images
from bdflow.image_io import read_rgb
from bdflow.metrics import grid_map, peak_ratio
from bdflow.resize import bicubic_round_trip

FACES = "../shared/data/faces/test1024"


def folded_maps(name: str, decode, cache: Path | None) -> torch.Tensor:
    """(N, s, s): every face's folded squared Y error of ``decode(x)``, from ``cache/name.pt`` when it is there."""
    path = cache / (name.strip("/").replace("/", "_") + ".pt") if cache else None
    if path and path.exists():
        return torch.load(path)
    with torch.inference_mode():
        faces = (read_rgb(f)[None] for f in list_images(FACES))
        maps = torch.stack([grid_map(decode(x), x, scale)[0] for x in faces])
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(maps, path)
    return maps


def structure_rms(maps: torch.Tensor, splits: int = 100) -> tuple[float, float, float]:
    """(rms of the reproducible per-offset pattern, rms of the pooled map), both in % of the pooled map's mean, and
    the share of the reproducible variance at 2 or more cycles per cell (periods of s/2 px and below: spots rather
    than one smooth bowl), from the halves' cross-spectrum."""
    g = torch.Generator().manual_seed(0)
    n, s = len(maps), maps.shape[-1]
    cross = torch.zeros(s, s, dtype=torch.float64)
    for _ in range(splits):
        idx = torch.randperm(n, generator=g)
        a, b = (maps[half].double().mean(0) for half in (idx[: n // 2], idx[n // 2 :]))
        a, b = a / a.mean() - 1, b / b.mean() - 1
        cross += (torch.fft.fft2(a) * torch.fft.fft2(b).conj()).real / splits  # sums to s^4 * cov(a, b)
    f = torch.fft.fftfreq(s, d=1 / s).abs()
    fine = torch.maximum(f[:, None], f[None, :]) >= 2
    whole = maps.mean(0)
    return (100 * (cross.sum() / s**4).clamp_min(0).sqrt().item(), 100 * (whole / whole.mean() - 1).pow(2).mean().sqrt().item(),
            100 * (cross[fine].sum() / cross.sum()).item())


def report(name: str, m: torch.Tensor, b: torch.Tensor) -> None:
    n = len(m)

    def ratios(idx: list[int]) -> tuple[float, float]:
        return peak_ratio(m[idx].sum(0)).item(), peak_ratio(b[idx].sum(0)).item()

    print(f"== {name} (vs bicubic)")
    for k in (n, 20, 8):
        rows = [ratios(list(range(i, i + k))) for i in range(0, n - k + 1, k)]
        shown = ", ".join(f"{rm:.3f} vs {rb:.3f}" for rm, rb in rows)
        print(f"{k} faces: {shown}; within +10 %: {sum(rm <= 1.1 * rb for rm, rb in rows)} of {len(rows)}")
    g = torch.Generator().manual_seed(0)
    draws = [ratios(torch.randperm(n, generator=g)[:8].tolist()) for _ in range(200)]
    print(f"random 8-face draws within +10 %: {sum(rm <= 1.1 * rb for rm, rb in draws)} of 200; "
          f"median ratio to bicubic's {torch.tensor([rm / rb for rm, rb in draws]).median().item():.3f}")
    for label, x in ((name, m), ("bicubic", b)):
        pooled = x.sum(0)
        folds = [peak_ratio(pooled.reshape(scale // p, p, scale // p, p).mean(dim=(0, 2))).item() for p in (16, 32)]
        blurred = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(pooled[None, None], (2, 1, 2, 1), mode="circular"), 4, stride=1)
        structure, whole, fine = structure_rms(x)
        peak = divmod(int(pooled.argmax()), scale)
        own = x[:, peak[0], peak[1]] / x.mean(dim=(1, 2))  # each face's error at the peak offset over its own mean
        print(f"{label}, all faces: modulo 16 {folds[0]:.3f}, modulo 32 {folds[1]:.3f}, 4x4 box blur "
              f"{peak_ratio(blurred[0, 0]).item():.3f}; structure rms {structure:.1f} % of the mean (whole map {whole:.1f} %, "
              f"{fine:.0f} % of the structure at periods <= {scale // 2} px); "
              f"peak at offset {peak}: above the face's mean on {int((own > 1).sum())} of {n} faces, median {own.median().item():.2f}")


parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("checkpoints", nargs="+", help="checkpoint folders or names of one scale")
parser.add_argument("--cache", type=Path, default=None, help="folder that keeps the decoded maps between calls")
args = parser.parse_args()
rescalers = {c: Rescaler.from_pretrained(c, device="cpu") for c in args.checkpoints}
scales = {r.scale for r in rescalers.values()}
if len(scales) != 1:
    parser.error(f"the checkpoints have different scales: {sorted(scales)}")
(scale,) = scales
bicubic = folded_maps(f"bicubic-x{scale}", lambda x: bicubic_round_trip(x, scale), args.cache)
for c, r in rescalers.items():  # 8-bit Y, 1-bit B, tau 0: the evaluate CLI's round trip
    report(c, folded_maps(c, lambda x, r=r: r.decode(r.encode(x, bits=1), tau=0, output_type="pt"), args.cache), bicubic)

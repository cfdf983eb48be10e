"""The paper's Fig. 2 and its ablation tables re-created from our data and models: ``python -m bdflow.figures {fig2,ablation} --help``.

Fig. 2 (paper §1): the high-frequency part of an image, Z_GT = HR − (its LR upscaled), "is a mixture of
semantic boundary information and Gaussian distribution with μ = 0, σ² = 0.2". IRN models all of it with a
standard Gaussian Z; BDFlow moves the boundary part into B. ``fig2`` measures, over a folder of images:

- Z_GT = HR − bicubic round trip (8-bit LR, as every table's baseline), RGB, in 8-bit units (×255), on all
  pixels and split into pixels within one pixel of a BAM boundary (k = 1, T = 50, 2-norm: Canny) and the rest;
- the forward Z of the B-less twin (IRN-style) and of BDFlow at the same scale, against N(0, 1).

Exact moments over every value (mean, variance, excess kurtosis), histograms from a seeded sample.

    python -m bdflow.figures fig2 --bdflow checkpoints/face-x64 --twin checkpoints/face-x64-noB \
        --data ../shared/data/faces/val --out docs/results/fig2

Tables 3 and 4 (ablations): ``ablation`` gathers the per-image scores that ``bdflow.evaluate --csv`` wrote for
each arm of a study (``RUNS/ARM/val50.csv``; docs/studies/x64-ablations.md) into one table: each arm's means and its paired difference
to a reference arm on the same images, with a 95 % interval (1.96 standard errors of the per-image difference),
so a row can say whether an arm differs at all at the budget it had.

    python -m bdflow.figures ablation --runs docs/results/ablation-x64 --scores val50.csv --reference both \
        --out docs/results/ablation-x64-table3

``diversity`` (docs/studies/where-z-is-sampled.md): where Z decides pixels in one image: HR, B's boundary cells and
the diversity map at each share τ_b of τ in those cells, on one colour scale:

    python -m bdflow.figures diversity --image assets/face-female-015248.jpg --checkpoint checkpoints/face-x16 \
        --out docs/results/where-z-is-sampled-x16/diversity

``crops`` (the grid check made visible, docs/studies/x64-grid.md): one crop of an image, HR beside its bicubic round trip and the
reconstruction of each checkpoint (same scale), each titled with its whole-image PSNR-Y and grid ratio
(``metrics.grid_ratio``; the bicubic round trip's is the reference):

    git worktree add /tmp/old 9e49f14     # the parent of the shipped x64, before its grid-term fine-tune
    python -m bdflow.figures crops --image ../shared/data/faces/test1024/ref_female_030321.jpg --box 384 384 256 \
        --checkpoints /tmp/old/checkpoints/face-x64 checkpoints/face-x64 checkpoints/face-x64-noB \
        --labels "face-x64 (parent, before L_grid)" "face-x64 (L_grid)" "twin (L_grid)" --out docs/results/crops-x64
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from .bam import boundary_strength
from .data import list_images
from .decoupling import hr_edges
from .evaluate import Z_SAMPLE, row_label
from .image_io import load_image, to_output
from .limits import DEFAULT_TAU_B, argument, check_tau, check_tau_b
from .metrics import Moments, grid_ratio, psnr_y, sample_values
from .pipeline import Rescaler
from .resize import bicubic_round_trip
from .viz import codes_image, heat_image, hist_panel, plt, tile_grid

PIXEL_UNITS = 255.0  # Z_GT is reported in 8-bit grey levels


def near_boundary(x: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) -> (N,1,H,W) bool: pixels within one pixel (3x3) of a BAM boundary (k = 1, T = 50: Canny)."""
    edges = (boundary_strength(x) > 0).float()
    return F.max_pool2d(edges, 3, stride=1, padding=1) > 0


def collect_fig2(files: list[Path], models: dict[str, Rescaler], scale: int, seed: int = 0) -> tuple[dict, dict]:
    """Moments and samples of Z_GT (all / boundary / flat pixels, x255) and of each model's forward Z."""
    groups = ["Z_GT", "Z_GT boundary", "Z_GT flat", *models]
    moments = {g: Moments() for g in groups}
    samples: dict[str, list[np.ndarray]] = {g: [] for g in groups}
    for i, path in enumerate(tqdm(files, desc=f"Fig. 2 at x{scale}", unit="image")):
        x, _ = load_image(path)
        z_gt = (x - bicubic_round_trip(x, scale)) * PIXEL_UNITS
        mask = near_boundary(x).expand_as(z_gt)
        parts = {"Z_GT": z_gt, "Z_GT boundary": z_gt[mask], "Z_GT flat": z_gt[~mask]}
        for label, rescaler in models.items():
            parts[label] = rescaler.forward_image(x).z
        for label, values in parts.items():
            moments[label].add(values)
            samples[label].append(sample_values(values, Z_SAMPLE, seed=seed + i))
    return {g: m.summary() for g, m in moments.items()}, {g: np.concatenate(s) for g, s in samples.items()}


def plot_fig2(stats: dict, samples: dict, models: list[str], scale: int, png: Path) -> Path:
    """Z_GT with its boundary / flat split, then each model's forward Z against N(0, 1): one row of panels."""
    fig, axes = plt.subplots(1, 1 + len(models), figsize=(4.2 * (1 + len(models)), 3.4), dpi=120)
    axes = np.atleast_1d(axes)
    lo, hi = hist_panel(axes[0], samples["Z_GT"], f"Z_GT = HR − bicubic round trip (x{scale}, grey levels)", prior=False)
    for group, colour in (("Z_GT boundary", "#ff7f0e"), ("Z_GT flat", "#2ca02c")):
        share = stats[group]["count"] / stats["Z_GT"]["count"]
        axes[0].hist(samples[group], bins=120, range=(lo, hi), density=True, histtype="step", color=colour,
                     weights=np.full(samples[group].size, share), label=f"{group.split()[1]} pixels ({100 * share:.0f} %)")
    axes[0].legend(fontsize=6.5, loc="upper right")
    for ax, label in zip(axes[1:], models):
        hist_panel(ax, samples[label], f"forward Z: {label}", prior=True)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)
    return png


def fig2(data: str, bdflow: str, twin: str, out: Path, limit: int = 0, seed: int = 0) -> dict:
    """Measure and draw Fig. 2; writes OUT.png and OUT.json and returns the statistics."""
    twin_model, bdflow_model = Rescaler.from_pretrained(twin), Rescaler.from_pretrained(bdflow)
    if twin_model.has_boundary or not bdflow_model.has_boundary:
        raise ValueError("--twin must be a B-less model (boundary=False) and --bdflow a model with B")
    if twin_model.scale != bdflow_model.scale:
        raise ValueError(f"the twin is x{twin_model.scale} but BDFlow is x{bdflow_model.scale}: they must share a scale")
    models = {row_label(twin, twin_model): twin_model, row_label(bdflow, bdflow_model): bdflow_model}
    files, scale = list_images(data)[: limit or None], bdflow_model.scale
    stats, samples = collect_fig2(files, models, scale, seed)
    plot_fig2(stats, samples, list(models), scale, out.with_suffix(".png"))
    result = {"data": data, "images": len(files), "scale": scale, "z_gt_units": "8-bit grey levels (x255), RGB",
              "boundary": "within 1 px of a BAM boundary (k=1, T=50, 2-norm)", "stats": stats}
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    return result


METRICS = ("psnr", "ssim", "lpips")
BICUBIC = "bicubic round trip"


def read_scores(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """An evaluate CSV -> {method: {"image": names, metric: per-image values}}, images in file order."""
    rows: dict[str, list[dict]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows.setdefault(row["method"], []).append(row)
    return {m: {"image": np.array([r["image"] for r in rs]), **{k: np.array([float(r[k]) for r in rs]) for k in METRICS}}
            for m, rs in rows.items()}


def arm_scores(path: Path, tau: float | None = None) -> tuple[dict, dict]:
    """(the arm's one flow row, the bicubic row) of an evaluate CSV - its row at ``tau`` when it decoded at several
    (evaluate --tau 0 0.5) - and a clear error for anything else."""
    scores = read_scores(path)
    flows = [m for m in scores if m != BICUBIC]
    if tau is not None and len(flows) > 1:
        flows = [m for m in flows if m.endswith(f" tau={tau:g}")]
    if len(flows) != 1 or BICUBIC not in scores:
        raise ValueError(f"{path}: expected the bicubic row and one model row, found {sorted(scores)}")
    return scores[flows[0]], scores[BICUBIC]


def b_entropy(csv_path: Path) -> float | None:
    """B's entropy (bits per LR pixel) from the evaluate --json summary beside the CSV; None without B or JSON."""
    summary = csv_path.with_suffix(".json")
    if not summary.is_file():
        return None
    rows = json.loads(summary.read_text())["results"]
    return next((r["b_entropy_bits_per_lr_pixel"] for r in rows if "b_entropy_bits_per_lr_pixel" in r), None)


def paired(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean of a - b over paired images and the half-width of its 95 % interval (1.96 standard errors)."""
    d = a - b
    half = 1.96 * d.std(ddof=1) / np.sqrt(d.size) if d.size > 1 else float("nan")
    return {"mean": float(d.mean()), "ci95": float(half)}


def ablation(runs: Path, scores: str, reference: str, out: Path, names: list[str] | None = None,
             tau: float | None = None) -> dict:
    """Tables 3/4: the arms (RUNS/ARM/SCORES; ``names`` in that order, else all) beside the reference arm on the
    same images, each arm's row at ``tau`` where its CSV holds several; writes OUT.md and OUT.json."""
    names = names or sorted(p.parent.name for p in runs.glob(f"*/{scores}"))
    missing = [n for n in dict.fromkeys([reference, *names]) if not (runs / n / scores).is_file()]
    if missing:
        raise FileNotFoundError(f"no scores for arm(s) {missing} (expected {runs}/ARM/{scores}; score them first)")
    arms = {name: arm_scores(runs / name / scores, tau) for name in names}
    if reference not in arms:  # compared with, not listed
        arms[reference] = arm_scores(runs / reference / scores, tau)
    ref, bicubic = arms[reference]
    for name, (flow, _) in arms.items():
        if not np.array_equal(flow["image"], ref["image"]):
            raise ValueError(f"arm {name} was scored on other images than {reference}: compare like with like")
    table = {name: {"images": int(flow["image"].size), **{k: float(flow[k].mean()) for k in METRICS},
                    "b_entropy": b_entropy(runs / name / scores), "vs_reference": {k: paired(flow[k], ref[k]) for k in METRICS}}
             for name, (flow, _) in arms.items()}
    result = {"runs": str(runs), "scores": scores, "reference": reference, "tau": tau,
              "bicubic": {k: float(bicubic[k].mean()) for k in METRICS}, "arms": table}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(ablation_markdown(result))
    return result


def ablation_markdown(result: dict) -> str:
    """The table of ``ablation``: means, then each metric's paired difference to the reference (± 95 %)."""
    ref = result["reference"]
    lines = [f"| arm | PSNR-Y | SSIM-Y | LPIPS | ΔPSNR vs {ref} | ΔSSIM vs {ref} | ΔLPIPS vs {ref} | B entropy (bits / LR px) |",
             "|---" * 8 + "|"]
    b = result["bicubic"]
    lines.append(f"| bicubic round trip | {b['psnr']:.2f} | {b['ssim']:.4f} | {b['lpips']:.3f} | | | | |")
    for name, arm in result["arms"].items():
        deltas = [arm["vs_reference"][k] for k in METRICS]
        cells = ["–" if name == ref else f"{d['mean']:+.{p}f} ± {d['ci95']:.{p}f}" for d, p in zip(deltas, (2, 4, 3))]
        entropy = "–" if arm["b_entropy"] is None else f"{arm['b_entropy']:.3f}"
        lines.append(f"| {name} | {arm['psnr']:.2f} | {arm['ssim']:.4f} | {arm['lpips']:.3f} | " + " | ".join(cells) + f" | {entropy} |")
    return "\n".join(lines) + "\n"


def crops(image: str, checkpoints: list[str], box: tuple[int, int, int], out: Path, tau: float = 0.0,
          labels: list[str] | None = None) -> dict:
    """HR, bicubic round trip and each checkpoint's tau-decode of ``image``, cropped to ``box`` = (top, left, size),
    side by side in OUT.png; whole-image PSNR-Y (border = scale) and grid ratio of each in OUT.json."""
    labels = labels or [Path(c).name for c in checkpoints]
    if len(labels) != len(checkpoints) or len(set(labels)) != len(labels):
        raise ValueError(f"--labels must name each checkpoint once, got {labels} for {len(checkpoints)} checkpoints")
    models = [Rescaler.from_pretrained(c) for c in checkpoints]
    scales = {m.scale for m in models}
    if len(scales) != 1:
        raise ValueError(f"the checkpoints must share one scale, got {sorted(scales)}")
    scale = scales.pop()
    x, _ = load_image(image)
    h, w = x.shape[-2:]
    top, left, size = box
    if top < 0 or left < 0 or size <= 0 or top + size > h or left + size > w:
        raise ValueError(f"--box {top} {left} {size} does not fit the {h}x{w} image")
    if h % scale or w % scale:
        raise ValueError(f"the image must be a multiple of the scale {scale} (got {h}x{w}): the bicubic row would be padded")
    rows = {"HR": x, f"bicubic round trip x{scale}": bicubic_round_trip(x, scale)}
    for label, m in zip(labels, models):
        rows[label] = m.decode(m.encode(x), tau=tau, output_type="pt").cpu()
    scores = {name: {"psnr_y": float(psnr_y(v, x, border=scale)), "grid": float(grid_ratio(v, x, scale))}
              for name, v in rows.items() if name != "HR"}
    tiles = [(name if name == "HR" else f"{name}: {scores[name]['psnr_y']:.2f} dB, grid {scores[name]['grid']:.2f}",
              to_output(v[..., top : top + size, left : left + size], "ndarray", "uint8"))
             for name, v in rows.items()]
    out.parent.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    Image.fromarray(tile_grid([tiles], tile_w=max(size, 256))).save(out.with_suffix(".png"))
    result = {"image": str(image), "box": list(box), "scale": scale, "tau": tau, "checkpoints": checkpoints, "scores": scores}
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    return result


@torch.inference_mode()
def diversity(image: str, checkpoint: str, out: Path, tau: float = 0.5, tau_bs: tuple[float, ...] = (1.0, 0.0),
              samples: int = 4, box: tuple[int, int, int] | None = None) -> dict:
    """Where Z decides pixels (docs/studies/where-z-is-sampled.md): the HR image, B's boundary cells (k = 1) and the
    diversity map (``Rescaler.spread``: per-pixel std over ``samples`` decodes at ``tau``, 0-255) at each ``tau_b``,
    one colour scale for all maps, cropped to ``box`` = (top, left, size); each map titled with its mean off and on
    the HR edges (``decoupling.hr_edges``). Writes OUT.png and OUT.json (the means)."""
    r = Rescaler.from_pretrained(checkpoint)
    if not r.has_boundary:
        raise ValueError(f"{checkpoint} has no B: there are no boundary cells to compare")
    x, _ = load_image(image)
    h, w = x.shape[-2:]
    top, left, size = box or (0, 0, min(h, w))
    if top < 0 or left < 0 or size <= 0 or top + size > h or left + size > w:
        raise ValueError(f"--box {top} {left} {size} does not fit the {h}x{w} image")
    enc = r.encode(x, bits=1)
    y, b = r.stored_tensors(enc)
    edges = hr_edges(x, r.model.config).numpy()
    maps = {t: r.spread(y, b, tau, samples=samples, tau_b=t)[:h, :w].numpy() for t in tau_bs}
    means = {str(t): {"off_edges": float(m[~edges].mean()), "on_edges": float(m[edges].mean())} for t, m in maps.items()}
    vmax = max(float(np.percentile(m, 99)) for m in maps.values())
    crop = (slice(top, top + size), slice(left, left + size))
    tiles = [("HR", to_output(x, "ndarray", "uint8")[crop]),
             ("B's boundary cells (k = 1)", codes_image(enc.b, 1, r.scale, (h, w))[crop])]
    for t, m in maps.items():
        name = f"tau_b {t:g}" + (" (the paper's)" if t == 1 else " (default)" if t == DEFAULT_TAU_B else "")  # the tiles' font has no τ
        tiles.append((f"{name}: off / on edges {means[str(t)]['off_edges']:.2f} / {means[str(t)]['on_edges']:.2f}",
                      heat_image(m[crop], vmax)[0]))
    out.parent.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    Image.fromarray(tile_grid([tiles], tile_w=max(size, 256))).save(out.with_suffix(".png"))
    result = {"image": str(image), "checkpoint": checkpoint, "scale": r.scale, "tau": tau, "samples": samples,
              "box": [top, left, size], "vmax": vmax, "diversity": means}
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _print_diversity(args) -> None:
    result = diversity(args.image, args.checkpoint, args.out, args.tau, tuple(args.tau_b), args.samples,
                       tuple(args.box) if args.box else None)
    for t, m in result["diversity"].items():
        print(f"tau_b {t}: diversity off / on the edges {m['off_edges']:.2f} / {m['on_edges']:.2f}")
    print(f"wrote {args.out.with_suffix('.png')} and {args.out.with_suffix('.json')}")


def _print_crops(args) -> None:
    result = crops(args.image, args.checkpoints, tuple(args.box), args.out, args.tau, args.labels)
    for name, s in result["scores"].items():
        print(f"{name:>32}: PSNR-Y {s['psnr_y']:.2f} dB, grid {s['grid']:.2f}")
    print(f"wrote {args.out.with_suffix('.png')} and {args.out.with_suffix('.json')}")


def _print_fig2(args) -> None:
    result = fig2(args.data, args.bdflow, args.twin, args.out, args.limit, args.seed)
    for group, s in result["stats"].items():
        print(f"{group:>28}: mean {s['mean']:+.4f}  var {s['var']:.4g}  excess kurtosis {s['excess_kurtosis']:.2f}  ({s['count']:,} values)")
    print(f"wrote {args.out.with_suffix('.png')} and {args.out.with_suffix('.json')}")


def _print_ablation(args) -> None:
    result = ablation(args.runs, args.scores, args.reference, args.out, args.arms, args.tau)
    print(ablation_markdown(result) + f"\nwrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.json')}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bdflow.figures", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="figure", required=True)
    p2 = sub.add_parser("fig2", help="distribution of Z_GT and of the forward Z (twin and BDFlow)")
    p2.add_argument("--bdflow", required=True, help="BDFlow checkpoint (with B)")
    p2.add_argument("--twin", required=True, help="the B-less twin at the same scale")
    p2.add_argument("--data", default="../shared/data/faces/val", help="folder of HR images (default faces/val)")
    p2.add_argument("--out", type=Path, default=Path("docs/results/fig2"), help="writes OUT.png and OUT.json")
    p2.add_argument("--limit", type=int, default=0, help="only the first N images (default: all)")
    p2.add_argument("--seed", type=int, default=0, help="seed of the histogram samples")
    p2.set_defaults(run=_print_fig2)
    pa = sub.add_parser("ablation", help="Tables 3/4: the arms of a study beside a reference arm (paired, 95 %%)")
    pa.add_argument("--runs", type=Path, required=True, help="folder of arms, each RUNS/ARM/SCORES (evaluate --csv)")
    pa.add_argument("--scores", default="val50.csv", help="the per-image CSV name inside each arm (default val50.csv)")
    pa.add_argument("--reference", default="both", help="the arm every other is compared with (default: both)")
    pa.add_argument("--arms", nargs="+", help="the arms, in the table's order (default: every scored arm)")
    pa.add_argument("--out", type=Path, default=Path("docs/results/ablation"), help="writes OUT.md and OUT.json")
    pa.add_argument("--tau", type=argument(check_tau, float), help="the rows at this Z temperature, where the CSVs hold several")
    pa.set_defaults(run=_print_ablation)
    pc = sub.add_parser("crops", help="one crop: HR, bicubic round trip and each checkpoint, with PSNR-Y and grid ratio")
    pc.add_argument("--image", required=True, help="an HR image (its sides multiples of the scale)")
    pc.add_argument("--checkpoints", nargs="+", required=True, help="checkpoints of one scale (e.g. before and after)")
    pc.add_argument("--box", nargs=3, type=int, default=[0, 0, 256], metavar=("TOP", "LEFT", "SIZE"), help="the crop (default 0 0 256)")
    pc.add_argument("--labels", nargs="+", help="a title per checkpoint (default: the folder names)")
    pc.add_argument("--tau", type=argument(check_tau, float), default=0.0, help="Z temperature of the decodes (default 0)")
    pc.add_argument("--out", type=Path, default=Path("docs/results/crops"), help="writes OUT.png and OUT.json")
    pc.set_defaults(run=_print_crops)
    pd = sub.add_parser("diversity", help="where Z decides pixels: the diversity map at each tau_b, beside HR and B")
    pd.add_argument("--image", required=True, help="an HR image")
    pd.add_argument("--checkpoint", required=True, help="a BDFlow checkpoint (with B)")
    pd.add_argument("--tau", type=argument(check_tau, float), default=0.5, help="Z temperature (default 0.5)")
    pd.add_argument("--tau-b", type=argument(check_tau_b, float), nargs="+", default=[1.0, 0.0], help="shares of tau in B's boundary cells, "
                    "one map each (default 1 0: the paper's sampling, then the default)")
    pd.add_argument("--samples", type=int, default=4, help="decodes per map (default 4)")
    pd.add_argument("--box", nargs=3, type=int, metavar=("TOP", "LEFT", "SIZE"), help="the crop shown (default: the "
                    "top-left square)")
    pd.add_argument("--out", type=Path, default=Path("docs/results/diversity"), help="writes OUT.png and OUT.json")
    pd.set_defaults(run=_print_diversity)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

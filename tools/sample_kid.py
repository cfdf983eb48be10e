"""Do samples look like real faces, as a set? Each checkpoint's decodes of held-out faces at tau 0 and at its default
tau, and the bicubic round trip, scored two ways: per image against its own truth (LPIPS, which charges a sample for
detail at other places than the truth's) and as a set against real faces (KID on LPIPS's AlexNet features averaged
over the positions, against training faces: it asks whether the decodes look like faces, not which face is which)
(docs/studies/where-z-is-sampled.md, "Samples as a set").

    python tools/sample_kid.py --checkpoint checkpoints/face-x8 checkpoints/face-x16 checkpoints/face-x16-noB \\
        checkpoints/face-x32 checkpoints/face-x64 checkpoints/face-x64-noB \\
        --out docs/results/sample-kid

The sample of image i is drawn with seed i by the decoders' rule (Z at its mean in B's boundary cells), bits 1.
One JSON per checkpoint, OUT/NAME.json (NAME: the checkpoint folder's name), so a re-trained model is re-scored
alone. KID's 95 % intervals are 1.96 jackknife standard errors over the decoded images (the reference held fixed); a
difference (tau - tau 0) is taken image by image, both decodes left out together.

A third decode asks what in a sample is unlike a face: the sample with its detail (its difference from the tau-0
decode) kept in luma alone, the colour the tau-0 decode's ("luma only"); beside it, the share of the detail's
energy that is colour (the detail less its luma, on every channel), of the sample's and of what the tau-0 decode
misses (the truth's difference from it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bdflow.bam import luma255  # noqa: E402
from bdflow.data import list_images  # noqa: E402
from bdflow.figures import paired  # noqa: E402
from bdflow.flow import sample_z  # noqa: E402
from bdflow.image_io import load_image  # noqa: E402
from bdflow.limits import DEFAULT_TAU_B  # noqa: E402
from bdflow.lpips import LPIPS, get_lpips  # noqa: E402
from bdflow.metrics import kid, kid_leave_one_out  # noqa: E402
from bdflow.pipeline import Rescaler  # noqa: E402
from bdflow.quantize import to_8bit  # noqa: E402
from bdflow.resize import bicubic_round_trip  # noqa: E402
from tools.z_offsets import decoded, write_json  # noqa: E402


def taps(x: torch.Tensor) -> list[torch.Tensor]:
    """(1, 3, H, W) in [0, 1] -> the image's LPIPS features (:meth:`bdflow.lpips.LPIPS.taps`), one AlexNet pass."""
    with torch.inference_mode():
        return get_lpips(x.device).taps(x)


def pooled(t: list[torch.Tensor]) -> np.ndarray:
    """An image's taps -> (1152,): its set features (:meth:`bdflow.lpips.LPIPS.pooled`)."""
    return LPIPS.pooled(t)[0].cpu().numpy()


def reference(folder: str, count: int) -> np.ndarray:
    """(count, 1152): set features of the first ``count`` images of a folder of real faces."""
    return np.stack([pooled(taps(load_image(p)[0])) for p in tqdm(list_images(folder)[:count], desc="reference faces", leave=False)])


def jackknife(loo: np.ndarray) -> float:
    """Half-width of the 95 % interval (1.96 jackknife standard errors) of an estimate from its leave-one-out values (n,)."""
    n = len(loo)
    return float(1.96 * np.sqrt((n - 1) / n * ((loo - loo.mean()) ** 2).sum()))


def luma(d: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) -> (1, 1, H, W): the luma of an image or of a difference of two (linear), in [0, 1] units."""
    return luma255(d, eight_bit=False) / 255


def luma_only(x0: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
    """The sample's detail against the tau-0 decode x0 kept in luma alone, on x0's colour; 8-bit, (1, 3, H, W)."""
    return to_8bit((x0 + luma(sample) - luma(x0)).clamp(0, 1))


def colour_share(detail: torch.Tensor) -> float:
    """The share of a difference's energy (1, 3, H, W) that is colour: sum of (d - luma(d))^2 over sum of d^2."""
    return float((detail - luma(detail)).pow(2).sum() / detail.pow(2).sum().clamp_min(1e-20))


def kid_row(feats: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """KID of a set of decodes against the reference, and its 95 % half-width."""
    return {"mean": kid(feats, ref), "ci95": jackknife(kid_leave_one_out(feats, ref))}


def kid_difference(a: np.ndarray, b: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """KID(a) - KID(b) for paired sets (row i of each from image i), and its 95 % half-width."""
    return {"mean": kid(a, ref) - kid(b, ref), "ci95": jackknife(kid_leave_one_out(a, ref) - kid_leave_one_out(b, ref))}


def score_checkpoint(name: str, files: list[Path], ref: np.ndarray, tau: float | None) -> dict:
    """Each decode of each image: set features and LPIPS against the truth; the rows and the paired differences."""
    rescaler = Rescaler.from_pretrained(name)
    tau = rescaler.default_tau if tau is None else tau
    drawn = f"tau {tau:g}"
    rows = {"bicubic round trip": [], "tau 0": [], drawn: [], f"{drawn}, luma only": []}
    scores = {k: [] for k in rows}
    shares = {"sample": [], "truth": []}
    for i, path in enumerate(tqdm(files, desc=str(name), leave=False)):
        x, _ = load_image(path)
        y, b = rescaler.stored_tensors(rescaler.encode(x, bits=1))
        z = sample_z(y, rescaler.model.config.z_channels, tau, torch.Generator(device=y.device).manual_seed(i), b, DEFAULT_TAU_B)
        x0, sample = decoded(rescaler, y, b, torch.zeros_like(z), x), decoded(rescaler, y, b, z, x)
        truth = taps(x)
        for key, x_hat in zip(rows, (bicubic_round_trip(x, rescaler.scale), x0, sample, luma_only(x0, sample))):
            t = taps(x_hat)
            rows[key].append(pooled(t))
            scores[key].append(float(get_lpips(x.device).distance(t, truth)))
        shares["sample"].append(colour_share(sample - x0))
        shares["truth"].append(colour_share(x - x0))
    feats = {k: np.stack(v) for k, v in rows.items()}
    lp = {k: np.array(v) for k, v in scores.items()}
    return {"tau": tau,
            "rows": {k: {"kid": kid_row(feats[k], ref), "lpips": float(lp[k].mean())} for k in rows},
            "tau_minus_0": {k: {"kid": kid_difference(feats[k], feats["tau 0"], ref), "lpips": paired(lp[k], lp["tau 0"])}
                            for k in (drawn, f"{drawn}, luma only")},
            "colour_share": {k: float(np.mean(v)) for k, v in shares.items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/sample_kid.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", nargs="+", required=True, help="checkpoint folders or shipped names")
    parser.add_argument("--data", default="../shared/data/faces/val", help="held-out faces to decode (default faces/val)")
    parser.add_argument("--limit", type=int, default=100, help="first N of them (default 100)")
    parser.add_argument("--reference", default="../shared/data/faces/train", help="real faces the sets are measured against")
    parser.add_argument("--reference-count", type=int, default=500, help="first N of them (default 500)")
    parser.add_argument("--tau", type=float, help="the sample's temperature (default: each model's default tau)")
    parser.add_argument("--out", type=Path, help="write each checkpoint's figures to OUT/NAME.json")
    args = parser.parse_args(argv)
    files = list_images(args.data)[: args.limit]
    if len(files) < 3:
        parser.error(f"--data {args.data}: {len(files)} images; KID needs at least 3")
    ref = reference(args.reference, args.reference_count)
    truth = kid_row(np.stack([pooled(taps(load_image(p)[0])) for p in files]), ref)
    common = {"data": args.data, "images": len(files), "reference": args.reference, "reference_images": len(ref),
              "features": "LPIPS (AlexNet, v0.1) unit-normalised features averaged over positions, 5 layers (1152)",
              "tau_b": DEFAULT_TAU_B, "truth": {"kid": truth}}
    print(f"{len(files)} faces of {args.data} against {len(ref)} of {args.reference}; KID x 1000 (± 95 %)")
    print(f"  the faces themselves: {1000 * truth['mean']:.3f} ± {1000 * truth['ci95']:.3f}")
    for name in args.checkpoint:
        r = score_checkpoint(name, files, ref, args.tau)
        for key, row in r["rows"].items():
            print(f"  {name} {key:18s} KID {1000 * row['kid']['mean']:7.3f} ± {1000 * row['kid']['ci95']:.3f}   LPIPS {row['lpips']:.4f}")
        for key, d in r["tau_minus_0"].items():
            print(f"  {name} {key} - tau 0: KID {1000 * d['kid']['mean']:+7.3f} ± {1000 * d['kid']['ci95']:.3f}   "
                  f"LPIPS {d['lpips']['mean']:+.4f} ± {d['lpips']['ci95']:.4f}")
        print(f"  {name} colour's share of the detail's energy: the sample's {r['colour_share']['sample']:.3f}, "
              f"what tau 0 misses {r['colour_share']['truth']:.3f}")
        if args.out:
            write_json(args.out / f"{Path(str(name)).name}.json", {"checkpoint": str(name), **common, **r})
    return 0


if __name__ == "__main__":
    sys.exit(main())

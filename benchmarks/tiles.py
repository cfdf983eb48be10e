"""Large images in bounded memory: time and peak memory of ``Rescaler`` encode + decode on real mosaics, and how
closely the tiled result matches the whole-image one (a benchmark, not a test).

    python benchmarks/tiles.py                                  # 4096² tiled, 2048² tiled vs whole, x8 x16 x64
    python benchmarks/tiles.py --scales 16 --precisions fp32 bf16 --agree-side 0

The input is a mosaic of real 1024² faces (faces/test1024, side / 1024 per row and column, saved losslessly as
PNG). Each run is a fresh process, so the peak resident memory it reports (``ru_maxrss``: Python, torch,
the model, the image and the flow's largest tile together) is that of one encode + decode from the file.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FACES = ROOT.parent / "shared" / "data" / "faces" / "test1024"


def mosaic(side: int, path: Path) -> Path:
    """A side x side PNG of real 1024² faces (the first (side/1024)^2 of faces/test1024, row by row)."""
    n = max(1, side // 1024)
    faces = sorted(FACES.glob("*.jpg"))[: n * n]
    canvas = Image.new("RGB", (n * 1024, n * 1024))
    for i, face in enumerate(faces):
        canvas.paste(Image.open(face).convert("RGB"), ((i % n) * 1024, (i // n) * 1024))
    canvas.resize((side, side), Image.Resampling.LANCZOS).save(path, compress_level=1)
    return path


def run_one(image: Path, scale: int, precision: str, whole: bool, out: Path) -> dict:
    """In this process: encode + decode ``image``; the Y codes and the decode saved to ``out`` (.npz)."""
    from bdflow import Rescaler, pipeline
    from bdflow.accel import keep_freed_memory

    keep_freed_memory()  # as the app and the CLI run
    if whole:
        pipeline.TILE_ABOVE = 1 << 30
    r = Rescaler.from_pretrained(ROOT / "checkpoints" / f"face-x{scale}", device="cpu", precision=precision)
    t = time.perf_counter()
    enc = r.encode(image)
    t_enc = time.perf_counter() - t
    t = time.perf_counter()
    x = np.asarray(r.decode(enc, tau=0.8, seed=0))
    t_dec = time.perf_counter() - t
    np.savez(out, y=enc.y, x=x)
    return {"encode_s": t_enc, "decode_s": t_dec, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def fresh(image: Path, scale: int, precision: str, whole: bool, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", str(image), str(scale), precision, str(int(whole)), str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255**2 / mse) if mse else float("inf")


def table(title: str, columns: list[str]) -> None:
    """Print a bold title and a markdown table's header."""
    print(f"\n**{title}**\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=int, nargs="+", default=[8, 16, 64])
    parser.add_argument("--precisions", nargs="+", default=["fp32"])
    parser.add_argument("--side", type=int, default=4096, help="side of the tiled run (0: skip)")
    parser.add_argument("--agree-side", type=int, default=2048, help="side of the tiled vs whole run (0: skip)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        image, scale, precision, whole, out = args.child
        print(json.dumps(run_one(Path(image), int(scale), precision, bool(int(whole)), Path(out))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.side:
            image = mosaic(args.side, tmp / f"mosaic{args.side}.png")
            table(f"{args.side}² mosaic of real faces, tiled (1024 px cores, 256 px margins), one fresh process each",
                  ["scale", "precision", "encode (s)", "decode (s)", "peak RSS (GB)"])
            for scale in args.scales:
                for precision in args.precisions:
                    m = fresh(image, scale, precision, False, tmp / "out.npz")
                    print(f"| x{scale} | {precision} | {m['encode_s']:.1f} | {m['decode_s']:.1f} | {m['peak_rss_gb']:.2f} |", flush=True)
        if args.agree_side:
            image = mosaic(args.agree_side, tmp / f"mosaic{args.agree_side}.png")
            table(f"{args.agree_side}² mosaic: tiled against whole (fp32), one fresh process each",
                  ["scale", "tiled: enc+dec (s), peak RSS (GB)", "whole: enc+dec (s), peak RSS (GB)", "Y codes equal",
                   "decode PSNR tiled vs whole (dB)"])
            for scale in args.scales:
                runs = {whole: fresh(image, scale, "fp32", whole, tmp / f"{int(whole)}.npz") for whole in (False, True)}
                tiled, whole = (np.load(tmp / f"{int(w)}.npz") for w in (False, True))
                cells = [f"{m['encode_s'] + m['decode_s']:.1f}, {m['peak_rss_gb']:.2f}" for m in runs.values()]
                same = float(np.mean(tiled["y"] == whole["y"]))
                print(f"| x{scale} | {cells[0]} | {cells[1]} | {same:.2%} | {psnr(tiled['x'], whole['x']):.1f} |", flush=True)


if __name__ == "__main__":
    main()

"""Rate-distortion of real .bdf files against JPEG, WebP, AVIF and the bicubic-LR + lossless baseline.

    OMP_NUM_THREADS=1 python benchmarks/rate_distortion.py                       # every checkpoints/*, defaults
    python benchmarks/rate_distortion.py --checkpoints checkpoints/face-x16 checkpoints/face-x16-noB \
        --sets faces/test1024:2 faces/val:4 sr/Kodak24:2 --out docs/rate_distortion

For every image: each BDFlow checkpoint at each bits setting (B-less twins once) is packed into a real .bdf file
(``bdflow.codec.pack``: header, WebP-lossless/PNG Y, range-coded B, CRC) and decoded from it; JPEG (Pillow,
4:2:0), WebP and AVIF (Pillow) at a sweep of qualities; and the bicubic round trip with its 8-bit LR stored
losslessly (the smaller of PNG and WebP lossless, as .bdf stores Y) at scales 4..64. Distortion: PSNR on the
BT.601 Y channel and LPIPS (AlexNet) on RGB, against the original image, with the same border (the largest
scale measured, ``--border``) cropped for every method. Bytes are real file sizes, per image.

Writes OUT.md (tables, Table 5 re-done, at-equal-bytes comparisons), OUT.png (PSNR and LPIPS against bytes,
log axis), OUT.csv (every image x method x setting) and OUT.json (means), and prints the markdown.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, features

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bdflow.codec import code_y, decode_file, encode_file, model_digest, pack, unpack
from bdflow.data import list_images
from bdflow.quantize import to_8bit
from bdflow.metrics import lpips_rgb, psnr_y
from bdflow.image_io import load_image, pad_to_multiple
from bdflow.pipeline import Encoded, Rescaler
from bdflow.quantize import b_to_codes, y_to_uint8
from bdflow.resize import bicubic_down, bicubic_up

JPEG_Q = [1, 2, 3, 5, 10, 20, 30, 40, 60, 80, 95]
WEBP_Q = [0, 5, 10, 25, 50, 75, 90]
AVIF_Q = [0, 10, 20, 35, 50, 70]
BICUBIC_SCALES = [4, 8, 16, 32, 64]
PAPER_TABLE5 = [  # CelebA-HQ 1024^2: (JPEG quality, PSNR, bytes), (LR side, BDFlow PSNR, bytes)
    ((1, 23.64, 18803), (16, 26.12, 724)),
    ((5, 26.94, 21511), (32, 29.15, 978)),
    ((10, 31.21, 27933), (64, 31.97, 1731)),
    ((40, 38.99, 52979), (128, 38.93, 4103)),
]


def to_tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)[None]


def pillow_round_trip(img: Image.Image, fmt: str, quality: int) -> tuple[int, torch.Tensor]:
    buf = io.BytesIO()
    kwargs = {"JPEG": {}, "WEBP": {"method": 6}, "AVIF": {"speed": 6}}[fmt]
    img.save(buf, fmt, quality=quality, **kwargs)
    return len(buf.getvalue()), to_tensor(Image.open(io.BytesIO(buf.getvalue())))


def bicubic_lossless(x: torch.Tensor, scale: int) -> tuple[int, torch.Tensor]:
    """Bicubic down to 8 bits, stored as .bdf stores Y (smaller of PNG / WebP lossless), bicubic up."""
    h, w = x.shape[-2:]
    lr = to_8bit(bicubic_down(pad_to_multiple(x, scale), scale))
    lr8 = (lr[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    return len(code_y(lr8)[1]), bicubic_up(lr, scale)[..., :h, :w]


class Scorer:
    def __init__(self, border: int, lpips: bool):
        self.border, self.lpips = border, lpips

    def __call__(self, x_hat: torch.Tensor, x: torch.Tensor) -> dict:
        x_hat = to_8bit(x_hat)
        out = {"psnr": float(psnr_y(x_hat, x, border=self.border))}
        out["lpips"] = float(lpips_rgb(x_hat, x)) if self.lpips else float("nan")
        return out


@torch.inference_mode()
def bdflow_points(r: Rescaler, name: str, path: Path, x: torch.Tensor, bits_list, tau, seed, score) -> list[dict]:
    """One forward pass, then a real .bdf file per bits setting, decoded from its bytes."""
    h, w = x.shape[-2:]
    xp = pad_to_multiple(x, r.scale).to(r.device)
    y, b, _ = r.model(xp)
    meta = {"kind": "pil", "dtype": "uint8", "notes": [], "scale": r.scale, "size": [h, w],
            "padded": list(xp.shape[-2:]), "model": name}
    y8 = y_to_uint8(y)[0].permute(1, 2, 0).cpu().numpy()
    rows = []
    for bits in bits_list if b is not None else [0]:
        codes = None if b is None else b_to_codes(b, bits)[0, 0].cpu().numpy()
        data = pack(Encoded(y=y8, b=codes, bits=bits or 1, meta=meta), name, model_digest(r))
        bdf = unpack(data)
        x_hat = r.decode(bdf.encoded, tau=tau, seed=seed, output_type="pt").cpu()
        setting = f"x{r.scale} bits {bits}" if bits else f"x{r.scale} no B"
        rows.append({"method": f"bdflow {name}", "setting": setting, "bytes": len(data), "y_bytes": bdf.y_bytes,
                     "b_bytes": bdf.b_bytes, "b_nonzero": float((codes > 0).mean()) if codes is not None else 0.0,
                     **score(x_hat, x)})
    return rows


def run(args) -> tuple[list[dict], dict]:
    models = {Path(c).name: Rescaler.from_pretrained(c, device="cpu") for c in args.checkpoints}
    score = Scorer(args.border, not args.no_lpips)
    codecs = [("JPEG", q) for q in args.jpeg_q] + [("WEBP", q) for q in args.webp_q]
    if features.check("avif"):
        codecs += [("AVIF", q) for q in args.avif_q]
    rows = []
    for spec in args.sets:
        folder, _, limit = spec.partition(":")
        files = list_images(args.data / folder)[: int(limit) if limit else None]
        for i, path in enumerate(files):
            t0 = time.perf_counter()
            x, _ = load_image(path)
            img = Image.open(path).convert("RGB")
            base = {"set": folder, "image": path.name, "pixels": x.shape[-2] * x.shape[-1]}
            for name, r in models.items():
                rows += [{**base, **row} for row in bdflow_points(r, name, path, x, args.bits, args.tau, args.seed, score)]
            for s in args.bicubic_scales:
                nbytes, x_hat = bicubic_lossless(x, s)
                rows.append({**base, "method": "bicubic LR + lossless", "setting": f"x{s}", "bytes": nbytes, **score(x_hat, x)})
            for fmt, q in codecs:
                nbytes, x_hat = pillow_round_trip(img, fmt, q)
                rows.append({**base, "method": fmt, "setting": f"q{q}", "bytes": nbytes, **score(x_hat, x)})
            print(f"{folder} {i + 1}/{len(files)} {path.name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    timing = time_codec(args) if args.time_runs else {}
    return rows, timing


def time_codec(args) -> dict:
    """Median wall time of encode_file + decode_file (in process, model loaded) of one 1024^2 face per checkpoint."""
    torch.set_num_threads(args.threads)
    face = list_images(args.data / "faces" / "test1024")[0]
    out, tmp = {}, Path(args.out).with_suffix(".timing.bdf")
    for c in args.checkpoints:
        r = Rescaler.from_pretrained(c, device="cpu")
        model_digest(r)
        times = []
        for _ in range(args.time_runs):
            t0 = time.perf_counter()
            encode_file(r, face, tmp, bits=1, force=True)
            decode_file(r, tmp, seed=0)
            times.append(time.perf_counter() - t0)
        tmp.unlink(missing_ok=True)
        enc = r.encode(face, bits=1)
        codec_times = []
        for _ in range(args.time_runs):
            t0 = time.perf_counter()
            unpack(pack(enc, "timing", model_digest(r)))
            codec_times.append(time.perf_counter() - t0)
        out[Path(c).name] = {"median_s": statistics.median(times), "runs": times, "threads": args.threads,
                             "container_median_s": statistics.median(codec_times)}
    return out


def summarize(rows: list[dict]) -> dict:
    """(set, method, setting) -> means, in the order first seen."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["set"], r["method"], r["setting"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        m = {k: float(np.mean([r[k] for r in rs])) for k in ("bytes", "psnr", "lpips")}
        m["bpp"] = float(np.mean([8 * r["bytes"] / r["pixels"] for r in rs]))
        for k in ("y_bytes", "b_bytes", "b_nonzero"):
            if k in rs[0]:
                m[k] = float(np.mean([r[k] for r in rs]))
        m["images"] = len(rs)
        out[key] = m
    return out


def curve(summary: dict, dataset: str, method: str) -> list[dict]:
    pts = [{"setting": k[2], **v} for k, v in summary.items() if k[0] == dataset and k[1] == method]
    return sorted(pts, key=lambda p: p["bytes"])


def at_bytes(points: list[dict], nbytes: float, key: str) -> float | None:
    """A codec's metric at ``nbytes``, linear in log(bytes) between its measured points; None outside its range."""
    if not points or nbytes < points[0]["bytes"] or nbytes > points[-1]["bytes"]:
        return None
    for a, b in itertools.pairwise(points):
        if a["bytes"] <= nbytes <= b["bytes"]:
            t = 0.0 if b["bytes"] == a["bytes"] else (math.log(nbytes) - math.log(a["bytes"])) / (math.log(b["bytes"]) - math.log(a["bytes"]))
            return a[key] + t * (b[key] - a[key])
    return points[-1][key]


def markdown(summary: dict, args, timing: dict) -> str:
    sets = list(dict.fromkeys(k[0] for k in summary))
    methods = list(dict.fromkeys(k[1] for k in summary))
    codecs = [m for m in ("JPEG", "WEBP", "AVIF", "bicubic LR + lossless") if m in methods]
    lines = []
    for ds in sets:
        n = next(v["images"] for k, v in summary.items() if k[0] == ds)
        lines += [f"### {ds} ({n} images)", "", "| method | setting | bytes / image | bits / pixel | PSNR-Y (dB) | LPIPS |",
                  "|---|---|---|---|---|---|"]
        for m in methods:
            for p in curve(summary, ds, m):
                lines.append(f"| {m} | {p['setting']} | {p['bytes']:,.0f} | {p['bpp']:.4f} | {p['psnr']:.2f} | {p['lpips']:.4f} |")
        lines += ["", ("**At equal bytes** (each codec's PSNR / LPIPS interpolated at bdflow's size, linear in log bytes; "
                       "'below range' = the codec cannot make a file that small):"), "",
                  "| bdflow | bytes | B bytes (nonzero codes) | PSNR | LPIPS | " + " | ".join(f"{c} PSNR Δ / LPIPS Δ" for c in codecs) + " |",
                  "|---|---|---|---|---|" + "---|" * len(codecs)]
        for m in methods:
            if not m.startswith("bdflow"):
                continue
            for p in curve(summary, ds, m):
                cells = []
                for c in codecs:
                    pts = curve(summary, ds, c)
                    ps, lp = at_bytes(pts, p["bytes"], "psnr"), at_bytes(pts, p["bytes"], "lpips")
                    if ps is None:
                        lo = pts[0] if pts else None
                        cells.append("below range" if lo and p["bytes"] < lo["bytes"] else "above range")
                    else:
                        cells.append(f"{p['psnr'] - ps:+.2f} dB / {p['lpips'] - lp:+.4f}")
                b = f"{p.get('b_bytes', 0):,.0f} ({100 * p.get('b_nonzero', 0):.1f} %)"
                lines.append(f"| {m} {p['setting']} | {p['bytes']:,.0f} | {b} | {p['psnr']:.2f} | {p['lpips']:.4f} | " + " | ".join(cells) + " |")
        lines.append("")
    if "faces/test1024" in sets:
        ds = "faces/test1024"
        lines += ["### Table 5 re-done (faces/test1024, 1024² faces, real file sizes)", "",
                  "| paper: JPEG q | paper PSNR | paper bytes | ours: JPEG PSNR | ours: JPEG bytes | paper: BDFlow LR | paper PSNR | paper bytes |",
                  "|---|---|---|---|---|---|---|---|"]
        jpeg = {p["setting"]: p for p in curve(summary, ds, "JPEG")}
        for (q, ps, nb), (side, bps, bnb) in PAPER_TABLE5:
            j = jpeg.get(f"q{q}")
            ours = f"{j['psnr']:.2f} | {j['bytes']:,.0f}" if j else "– | –"
            lines.append(f"| {q} | {ps:.2f} | {nb:,} | {ours} | {side}×{side} | {bps:.2f} | {bnb:,} |")
        lines += ["", "| ours | LR | file bytes (Y + B + header) | PSNR-Y | LPIPS |", "|---|---|---|---|---|"]
        for m in methods:
            if m.startswith("bdflow") or m == "bicubic LR + lossless":
                for p in curve(summary, ds, m):
                    lines.append(f"| {m} {p['setting']} | | {p['bytes']:,.0f} | {p['psnr']:.2f} | {p['lpips']:.4f} |")
        lines.append("")
    if timing:
        lines += ["### Encode + decode time of one 1024² face (file written and read back, model loaded, median)", "",
                  "| checkpoint | torch threads | median (s) | runs (s) | of which pack + unpack (Y, B coding, CRC) |",
                  "|---|---|---|---|---|"]
        for name, t in timing.items():
            lines.append(f"| {name} | {t['threads']} | {t['median_s']:.2f} | {', '.join(f'{v:.2f}' for v in t['runs'])} | "
                         f"{1000 * t['container_median_s']:.0f} ms |")
        lines.append("")
    return "\n".join(lines)


BEGIN, END = "<!-- results: written by benchmarks/rate_distortion.py -->", "<!-- /results -->"


def write_between_markers(path: Path, text: str) -> None:
    """Replace what lies between the markers of an existing page (its prose stays), else write a new page."""
    block = f"{BEGIN}\n\n{text}\n{END}"
    old = path.read_text() if path.is_file() else ""
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        path.write_text(head + block + rest.split(END, 1)[1])
    else:
        path.write_text(f"# Rate-distortion\n\n{block}\n")


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(k[0] for k in summary))
    methods = list(dict.fromkeys(k[1] for k in summary))
    fig, axes = plt.subplots(2, len(sets), figsize=(5.5 * len(sets), 8), squeeze=False)
    for j, ds in enumerate(sets):
        for i, key in enumerate(("psnr", "lpips")):
            ax = axes[i][j]
            for m in methods:
                pts = curve(summary, ds, m)
                if not pts:
                    continue
                style = "o-" if m.startswith("bdflow") else ".-"
                ax.plot([p["bytes"] for p in pts], [p[key] for p in pts], style, label=m, ms=5 if m.startswith("bdflow") else 4)
            ax.set_xscale("log")
            ax.set_xlabel("bytes per image (log)")
            ax.set_ylabel("PSNR-Y (dB)" if key == "psnr" else "LPIPS (lower is better)")
            ax.set_title(ds)
            ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_ckpts = sorted(str(c) for c in (REPO / "checkpoints").glob("*") if (c / "config.json").is_file())
    p.add_argument("--checkpoints", nargs="+", default=default_ckpts, help="checkpoint folders (default: all in checkpoints/)")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--sets", nargs="+", default=["faces/test1024:2", "faces/val:4", "sr/Kodak24:2"],
                   help="FOLDER[:LIMIT] under --data (default: a few images each, minutes on one CPU thread)")
    p.add_argument("--bits", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2, 3, 4])
    p.add_argument("--tau", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--border", type=int, default=16, help="pixels cropped at each side for PSNR, every method (default 16)")
    p.add_argument("--jpeg-q", type=lambda s: [int(v) for v in s.split(",")], default=JPEG_Q)
    p.add_argument("--webp-q", type=lambda s: [int(v) for v in s.split(",")], default=WEBP_Q)
    p.add_argument("--avif-q", type=lambda s: [int(v) for v in s.split(",")], default=AVIF_Q)
    p.add_argument("--bicubic-scales", type=lambda s: [int(v) for v in s.split(",")], default=BICUBIC_SCALES)
    p.add_argument("--no-lpips", action="store_true", help="PSNR only (LPIPS of a 1024² image takes ~1.5 s on one thread)")
    p.add_argument("--time-runs", type=int, default=3, help="encode+decode timing runs per checkpoint (0: skip)")
    p.add_argument("--threads", type=int, default=2, help="torch threads for the timing (default 2)")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "rate_distortion", help="OUT.md/.png/.csv/.json")
    args = p.parse_args(argv)
    if not args.checkpoints:
        p.error("no checkpoints found: pass --checkpoints")
    torch.set_num_threads(1)
    rows, timing = run(args)
    summary = summarize(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.with_suffix(".csv").open("w", newline="") as f:
        keys = list(dict.fromkeys(k for r in rows for k in r))
        writer = csv.DictWriter(f, keys)
        writer.writeheader()
        writer.writerows(rows)
    meta = {}
    for c in args.checkpoints:
        cfg = json.loads((Path(c) / "config.json").read_text())
        meta[Path(c).name] = {"digest": model_digest(Rescaler.from_pretrained(c, device="cpu"))[:16],
                              "scale": cfg.get("scale"), "boundary": cfg.get("boundary"),
                              **{k: cfg.get("meta", {}).get(k) for k in ("iterations", "seconds", "hardware")}}
    args.out.with_suffix(".json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "checkpoints": meta, "timing": timing,
         "summary": [{"set": k[0], "method": k[1], "setting": k[2], **v} for k, v in summary.items()]}, indent=1))
    text = markdown(summary, args, timing)
    write_between_markers(args.out.with_suffix(".md"), text)
    plot(summary, args.out.with_suffix(".png"))
    print(text)
    print(f"\nwrote {args.out}.md/.png/.csv/.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

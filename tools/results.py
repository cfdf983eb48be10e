"""The results tables of README.md and docs/results.md, written from the files the evaluate CLI writes, and the
shipped model cards (checkpoints/NAME/README.md), written from each checkpoint's config.json.

    python tools/results.py              # render every table from docs/results/*.json|csv, and every model card
    python tools/results.py --evaluate   # first re-create those files from checkpoints/* (python -m bdflow.evaluate)
    python tools/results.py --check      # exit 1 when a table in README.md or docs/, or a card, and its data disagree
    python tools/results.py --pair A.csv B.csv:twin   # paired per-image difference of two evaluate CSVs
    python tools/results.py --pair A.csv@0.5 A.csv --metric lpips   # what tau 0.5 costs against tau 0, per image

Each entry of ``RESULTS`` is one run of ``python -m bdflow.evaluate`` on the shipped checkpoints: the model, its
B-less twin (where one ships), the held-out faces and the file it writes under ``docs/results/``. A generated table
sits between ``<!-- results:NAME:begin -->`` and ``<!-- results:NAME:end -->`` in a markdown file; the text
between the markers is owned by this script (edit the script, not the table).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's bdflow, whose rules the renderers use (imported where used: --pair needs no torch)
RESULTS_DIR = REPO / "docs" / "results"
DATA = Path(os.environ.get("BDFLOW_DATA", REPO.parent / "shared" / "data"))


@dataclass(frozen=True)
class Run:
    """One evaluate run: ``docs/results/NAME.json`` (summary) and ``NAME.csv`` (per-image scores)."""

    name: str
    checkpoint: str  # folder under checkpoints/
    twin: str | None
    split: str  # folder under DATA/faces
    limit: int  # 0: every image
    taus: tuple[float, ...] = (0.0,)
    record: str | None = None  # also store the summary in the model cards as meta.metrics[record]

    @property
    def scale(self) -> int:
        return int(re.search(r"x(\d+)", self.checkpoint).group(1))

    def command(self, data: str = "../shared/data") -> list[str]:
        cmd = ["python", "-m", "bdflow.evaluate", "--checkpoint", f"checkpoints/{self.checkpoint}"]
        if self.twin:
            cmd += ["--twin", f"checkpoints/{self.twin}"]
        cmd += ["--data", f"{data}/faces/{self.split}", "--bits", "1", "--tau", *(f"{t:g}" for t in self.taus)]
        if self.limit:
            cmd += ["--limit", str(self.limit)]
        cmd += ["--json", f"docs/results/{self.name}.json", "--csv", f"docs/results/{self.name}.csv"]
        if self.record:
            cmd += ["--record", self.record]
        return cmd


# The shipped models: the first run of each scale is its row in the README's table (faces/val's first 50 at x8 and
# x16, all 56 faces of test1024 at x32 and x64); the others are detail tables of docs/results.md.
RESULTS = [
    Run("face-x8-val50", "face-x8", None, "val", 50, (0.0, 0.5), record="val-512"),
    Run("face-x16-val50", "face-x16", "face-x16-noB", "val", 50, (0.0, 0.5), record="val-512"),
    Run("face-x32-test1024", "face-x32", None, "test1024", 0, record="test-1024"),
    Run("face-x64-test1024", "face-x64", "face-x64-noB", "test1024", 0, record="test-1024"),
    Run("face-x8-test1024", "face-x8", None, "test1024", 10, record="test-1024"),
    Run("face-x16-val300", "face-x16", "face-x16-noB", "val", 0),
    Run("face-x16-test1024", "face-x16", "face-x16-noB", "test1024", 0, record="test-1024"),
    Run("face-x32-val50", "face-x32", None, "val", 50, record="val-512"),
    Run("face-x64-val50", "face-x64", "face-x64-noB", "val", 50, record="val-512"),
]
HEADLINE = {8: "face-x8-val50", 16: "face-x16-val50", 32: "face-x32-test1024", 64: "face-x64-test1024"}
SPLITS = {"val": "faces/val (512²)", "test1024": "faces/test1024 (1024²)"}


# ----------------------------------------------------------------------------------------------------
# Reading a run
# ----------------------------------------------------------------------------------------------------


def _kind(method: str) -> str:
    return "bicubic" if method.startswith("bicubic") else "twin" if method.startswith("twin") else "bdflow"


def _tau(method: str) -> float:
    m = re.search(r"tau=([0-9.]+)", method)
    return float(m.group(1)) if m else 0.0  # one tau: the label carries none (the runs above decode at tau 0)


def _is_probe(method: str) -> bool:
    return method.endswith(")")  # "BDFlow face-x16 (B := 0)"


def load(run: Run, root: Path = RESULTS_DIR) -> dict:
    """The summary rows at tau 0 by kind ('bicubic', 'twin', 'bdflow') and the paired per-image statistics."""
    summary = json.loads((root / f"{run.name}.json").read_text())["results"]
    rows = {_kind(r["method"]): r for r in summary if _tau(r["method"]) == 0 and not _is_probe(r["method"])}
    with (root / f"{run.name}.csv").open() as f:
        per_image: dict[str, dict[str, float]] = {}
        for r in csv.DictReader(f):
            if _tau(r["method"]) == 0 and not _is_probe(r["method"]):
                per_image.setdefault(_kind(r["method"]), {})[r["image"]] = float(r["psnr"])
    out = {"rows": rows, "all": summary, "images": rows["bicubic"]["images"]}
    for other in ("bicubic", "twin"):
        if other in per_image:
            out[f"vs_{other}"] = paired(per_image["bdflow"], per_image[other])
    return out


def paired(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """Mean of the per-image PSNR difference a - b, the half-width of its 95 % interval (1.96 standard errors) and
    how many images a wins."""
    d = [a[k] - b[k] for k in a]
    n = len(d)
    mean = sum(d) / n
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1) / n) if n > 1 else 0.0
    return {"mean": mean, "ci95": 1.96 * se, "ahead": sum(x > 0 for x in d), "n": n}


# ----------------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------------


def _pair(row: dict | None) -> str:
    return "–" if row is None else f"{row['psnr']:.2f} / {row['lpips']:.3f}"


def _diff(p: dict | None) -> str:
    return "–" if p is None else f"{p['mean']:+.2f} ± {p['ci95']:.2f} ({p['ahead']} of {p['n']})"


def summary_table(root: Path = RESULTS_DIR) -> str:
    runs = {r.name: r for r in RESULTS}
    lines = [
        "| model | held-out faces | bicubic round trip | B-less twin | BDFlow | BDFlow − bicubic (dB) | BDFlow − twin (dB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for scale, name in HEADLINE.items():
        run, res = runs[name], load(runs[name], root)
        rows = res["rows"]
        faces = f"{SPLITS[run.split].split(' ')[0]}, {'first ' if run.limit else 'all '}{res['images']}"
        lines.append(
            f"| `{run.checkpoint}` (×{scale}) | {faces} | {_pair(rows['bicubic'])} | {_pair(rows.get('twin'))} | "
            f"{_pair(rows['bdflow'])} | {rows['bdflow']['psnr'] - rows['bicubic']['psnr']:+.2f} | {_diff(res.get('vs_twin'))} |"
        )
    lines.append("")
    lines.append("PSNR-Y (dB) / LPIPS (lower is better), τ = 0, k = 1. BDFlow − twin: the mean per-image difference ± "
                 "its 95 % interval (images where BDFlow is ahead).")
    return "\n".join(lines)


def detail_tables(root: Path = RESULTS_DIR) -> str:
    out = []
    for run in RESULTS:
        res = load(run, root)
        what = f"{'first ' if run.limit else 'all '}{res['images']} faces of {SPLITS[run.split]}"
        out += [f"### `{run.name}`: ×{run.scale}, {what}", "", "```bash", " ".join(run.command()), "```", ""]
        out += ["| method | PSNR-Y (dB) | SSIM-Y | LPIPS | grid ratio | bytes / image | B entropy (bits / LR px) |",
                "|---|---|---|---|---|---|---|"]
        for r in res["all"]:
            entropy = r.get("b_entropy_bits_per_lr_pixel")
            out.append(f"| {r['method']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['lpips']:.3f} | {r['grid']:.2f} | "
                       f"{r['bytes']:.0f} | {'–' if entropy is None else f'{entropy:.3f}'} |")
        out.append("")
        notes = [f"BDFlow − {k.removeprefix('vs_')}: {_diff(res[k])} dB" for k in ("vs_bicubic", "vs_twin") if k in res]
        out += ["Paired, per image (τ = 0): " + "; ".join(notes) + ".", ""]
    return "\n".join(out).rstrip()


# The paper's Table 1, BDFlow on CelebA-HQ at 1024² (PSNR, SSIM, LPIPS; ../shared/paper/bdflow.txt)
PAPER_TABLE1 = {8: (38.93, 0.9425, 0.0850), 16: (31.97, 0.8219, 0.2476), 32: (29.15, 0.8060, 0.327),
                64: (26.12, 0.7805, 0.367)}


def table1(root: Path = RESULTS_DIR) -> str:
    """The paper's Table 1 beside the shipped models on faces/test1024 (1024², the paper's resolution)."""
    runs = {r.scale: r for r in RESULTS if r.split == "test1024"}
    lines = ["| scale | paper: PSNR / SSIM / LPIPS | ours: PSNR-Y / SSIM-Y / LPIPS | ours − paper (dB) | bicubic round trip (dB) | faces |",
             "|---|---|---|---|---|---|"]
    for scale, (psnr, ssim, lp) in PAPER_TABLE1.items():
        res = load(runs[scale], root)
        ours, bicubic = res["rows"]["bdflow"], res["rows"]["bicubic"]
        lines.append(f"| ×{scale} | {psnr:.2f} / {ssim:.4f} / {lp:.3f} | {ours['psnr']:.2f} / {ours['ssim']:.4f} / "
                     f"{ours['lpips']:.3f} | {ours['psnr'] - psnr:+.2f} | {bicubic['psnr']:.2f} | "
                     f"{'first ' if runs[scale].limit else 'all '}{res['images']} (`{runs[scale].name}`) |")
    return "\n".join(lines)


SHIPPED = ["face-x8", "face-x16", "face-x16-noB", "face-x32", "face-x64", "face-x64-noB"]


def budgets(root: Path = RESULTS_DIR) -> str:
    """Each shipped model's recipe file and training budget, from its config.json "meta" (``root`` is unused)."""
    from bdflow.card import own_runs, total_budget
    from bdflow.config import crop_sizes
    lines = ["| model | command | iterations (stages) × batch, crop | hours | hardware | started from |",
             "|---|---|---|---|---|---|"]
    for name in SHIPPED:
        meta = json.loads((REPO / "checkpoints" / name / "config.json").read_text())["meta"]
        t, runs = meta["training"], own_runs(meta)  # a staged recipe: every run, the last one's crops
        hardware = sorted({s["hardware"] for run in runs for s in run["sessions"]})
        iterations, seconds = total_budget(meta)
        hours = seconds / 3600
        parent = meta.get("parent")
        start = "scratch" if not parent else (
            f"`{parent['checkpoint']}`" + (f" as of commit {parent['revision']}" if parent.get("revision") else "")
            + f" (×{parent['scale']}, {parent['iterations']} iterations, {parent['seconds'] / 3600:.2f} h)")
        crops = " + ".join(f"{b}, {c}²" for c, b in crop_sizes(t["crop"], t["batch_size"], t.get("crop_turns", "")))
        lines.append(f"| `{name}` | `python -m bdflow.train --config training/recipes/{name}.json --out runs/{name}` | "
                     f"{iterations}{f' ({len(runs)})' if len(runs) > 1 else ''} × {crops} | {hours:.2f} | "
                     f"{'; '.join(hardware)} | {start} |")
    return "\n".join(lines)


# Fig. 2 and the decoupling the app teaches: python -m bdflow.decoupling on each shipped model (20 held-out faces:
# faces/val at x8 and x16, test1024 at x32 and x64; tau 0 and 0.5) -> docs/results/decoupling/NAME.json
DECOUPLING = {"face-x8": "val", "face-x16": "val", "face-x16-noB": "val", "face-x32": "test1024",
              "face-x64": "test1024", "face-x64-noB": "test1024"}


def decoupling_command(name: str, data: str = "../shared/data") -> list[str]:
    return ["python", "-m", "bdflow.decoupling", "--checkpoint", f"checkpoints/{name}", "--data",
            f"{data}/faces/{DECOUPLING[name]}", "--limit", "20", "--taus", "0", "0.5", "--json",
            f"docs/results/decoupling/{name}.json"]


def decoupling_table(root: Path = RESULTS_DIR) -> str:
    """The forward Z of each shipped model against N(0, 1), Z in B's cells, the cost of tau, the diversity map."""
    from bdflow.decoupling import MARKDOWN_HEAD, markdown_row

    rows = [markdown_row(json.loads((root / "decoupling" / f"{name}.json").read_text())) for name in DECOUPLING]
    return "\n".join([MARKDOWN_HEAD, *rows, "", "First 20 faces of " + ", ".join(
        f"{SPLITS[split]} ({', '.join(n for n, s in DECOUPLING.items() if s == split)})" for split in SPLITS)
        + "; `python -m bdflow.decoupling` (the command of each row: `python tools/results.py --evaluate`)."])


BLOCKS = {  # file -> {block name: renderer}
    "README.md": {"summary": summary_table},
    "docs/results.md": {"summary": summary_table, "decoupling": decoupling_table, "details": detail_tables},
    "docs/reproduction.md": {"table1": table1},
    "docs/training.md": {"budgets": budgets},
}


def render(text: str, blocks: dict, root: Path = RESULTS_DIR) -> str:
    for name, fn in blocks.items():
        begin, end = f"<!-- results:{name}:begin -->", f"<!-- results:{name}:end -->"
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
        if not pattern.search(text):
            raise ValueError(f"missing markers {begin} … {end}")
        body = fn(root)
        text = pattern.sub(lambda _: f"{begin}\n{body}\n{end}", text, count=1)
    return text


def side(spec: str, metric: str) -> dict[str, float]:
    """``FILE[,FILE...][:KIND][@TAU]``: per image, the mean over the files of the row of KIND ('bdflow', the
    default, or 'twin') at TAU (default 0), so that several seeds' CSVs average into one arm."""
    spec, at, tau = spec.rpartition("@") if "@" in spec else (spec, "", "0")
    files, _, kind = spec.rpartition(":")
    if kind not in ("bdflow", "twin"):
        files, kind = spec, "bdflow"
    runs = []
    for path in files.split(","):
        with open(path) as f:
            rows = {r["image"]: float(r[metric]) for r in csv.DictReader(f)
                    if _kind(r["method"]) == kind and _tau(r["method"]) == float(tau) and not _is_probe(r["method"])}
        if not rows:
            raise ValueError(f"{path}: no tau-{tau} {kind} rows")
        runs.append(rows)
    images = set(runs[0]).intersection(*runs[1:])
    if any(set(r) != images for r in runs):
        raise ValueError(f"{spec}: the files score different images")
    return {k: sum(r[k] for r in runs) / len(runs) for k in sorted(images)}


def evaluate(data: Path, only: list[str]) -> None:
    commands = [(run.name, run.command(str(data))) for run in RESULTS]
    commands += [(f"decoupling-{name}", decoupling_command(name, str(data))) for name in DECOUPLING]
    for name, cmd in commands:
        if only and name not in only:
            continue
        print("+", " ".join(cmd), flush=True)
        subprocess.run([sys.executable, *cmd[1:]], cwd=REPO, check=True)


def generated():
    """Each file this script owns and the text it should hold: the markdown files with tables, then every model card
    (checkpoints/NAME/README.md, written from its config.json as ``hub.record_metrics`` writes it)."""
    for rel, blocks in BLOCKS.items():
        path = REPO / rel
        yield path, render(path.read_text(), blocks)
    from bdflow.hub import card_of
    for config in sorted((REPO / "checkpoints").glob("*/config.json")):
        yield config.parent / "README.md", card_of(config.parent)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/results.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evaluate", action="store_true",
                        help="re-create docs/results/*.json|csv with python -m bdflow.evaluate on checkpoints/* "
                        "(and re-record the model cards' metrics), then render")
    parser.add_argument("--only", nargs="+", default=[], metavar="NAME", help=f"with --evaluate: only these runs "
                        f"({', '.join([r.name for r in RESULTS] + [f'decoupling-{n}' for n in DECOUPLING])})")
    parser.add_argument("--data", type=Path, default=DATA, help=f"the data folder (default: $BDFLOW_DATA or {DATA})")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a table differs from its data")
    parser.add_argument("--pair", nargs=2, metavar=("A", "B"), help="print the paired per-image difference A - B "
                        "of two evaluate CSVs and exit; each side FILE[,FILE...][:bdflow|twin][@TAU] (several files: "
                        "their mean per image, e.g. three seeds; TAU: the rows at that tau, default 0)")
    parser.add_argument("--metric", default="psnr", choices=["psnr", "ssim", "lpips"], help="with --pair (default psnr)")
    args = parser.parse_args(argv)
    if args.pair:
        try:
            a, b = (side(spec, args.metric) for spec in args.pair)
        except (OSError, ValueError) as err:
            parser.error(str(err))
        if set(a) != set(b):
            parser.error("the two sides score different images")
        p = paired(a, b)
        print(f"{args.metric}: A {sum(a.values()) / len(a):.4f}, B {sum(b.values()) / len(b):.4f}, A - B "
              f"{p['mean']:+.4f} ± {p['ci95']:.4f} (95 %), A above B on {p['ahead']} of {p['n']}")
        return 0
    if args.evaluate and args.check:
        parser.error("--check reads the results as they are; run --evaluate without it")
    if args.evaluate:
        evaluate(args.data, args.only)
    stale = []
    for path, new in generated():
        if not path.exists() or path.read_text() != new:
            stale.append(str(path.relative_to(REPO)))
            if not args.check:
                path.write_text(new)
    if args.check:
        for rel in stale:
            print(f"{rel}: differs from what docs/results and config.json say (run: python tools/results.py)", file=sys.stderr)
        return 1 if stale else 0
    print(f"rendered: {', '.join(stale) or 'nothing changed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Figures: training curves (and, with the app, the panels that show what Y, B and Z carry)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402
import numpy as np  # noqa: E402

from .codec import write_atomic  # noqa: E402
from .losses import TERMS  # noqa: E402
from .metrics import normal_bin_counts, tv_to_normal  # noqa: E402
from .quantize import max_code  # noqa: E402


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) < window:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def _read_log(path: str | Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def plot_training_log(csv_path: str | Path, png_path: str | Path, window: int = 50) -> Path:
    """log.csv of ``bdflow.train`` -> PNG with the weighted loss terms (moving average) and validation PSNR."""
    rows = _read_log(csv_path)
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    if rows:
        val = [(int(r["step"]), float(r["val_psnr"])) for r in rows if r.get("val_psnr")]
        rows = [r for r in rows if r["total"]]  # the step-0 row holds only the untrained model's validation
        steps = np.array([int(r["step"]) for r in rows])
        for term in TERMS:
            values = np.array([float(r.get(term) or 0) for r in rows])  # a log older than a term has none of it
            if np.any(values > 0):
                smooth = _smooth(values, window)
                ax_loss.plot(steps[len(steps) - len(smooth) :], smooth, label=term)
        if val:
            ax_val.plot(*zip(*val), marker="o")
    ax_loss.set(xlabel="iteration", ylabel=f"weighted loss (mean of {window})", yscale="log", title="loss terms (Eq. 7)")
    ax_loss.legend(fontsize=8)
    ax_val.set(xlabel="iteration", ylabel="PSNR-Y (dB)", title="validation, bits = 1")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return Path(png_path)


def plot_runs(logs: dict[str, str | Path], png_path: str | Path, window: int = 100) -> Path:
    """Several runs side by side (e.g. BDFlow and its twin): reconstruction L1, LPIPS and validation PSNR per step.

    ``logs`` maps a label to a run's log.csv. The L1 panel divides out lambda_2 = 2 (BAW makes it a weighted L1 later).
    """
    panels = (("back", "backward L1 (Eq. 9) / 2", 0.5), ("lpips", "LPIPS of X_back", 1.0))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for label, path in logs.items():
        rows = _read_log(path)
        val = [(int(r["step"]), float(r["val_psnr"])) for r in rows if r.get("val_psnr")]
        rows = [r for r in rows if r["total"]]
        steps = np.array([int(r["step"]) for r in rows])
        for ax, (term, title, factor) in zip(axes, panels):
            smooth = _smooth(factor * np.array([float(r[term]) for r in rows]), window)
            ax.set(xlabel="iteration", title=f"{title} (mean of {window})")
            if np.all(smooth > 0):  # a term switched off (lambda = 0) is left out
                ax.plot(steps[len(steps) - len(smooth) :], smooth, label=label)
                ax.set_yscale("log")
        if val:
            axes[2].plot(*zip(*val), marker="o", label=label)
    axes[2].set(xlabel="iteration", ylabel="PSNR-Y (dB)", title="validation: first --val-images of faces/val, bits = 1, --val-tau")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return Path(png_path)


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bdflow.viz", description="Compare training runs: "
                                     "python -m bdflow.viz OUT.png LABEL=RUN/log.csv [LABEL=RUN/log.csv ...]")
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("logs", nargs="+", help="LABEL=path/to/log.csv")
    args = parser.parse_args(argv)
    logs = dict(item.split("=", 1) if "=" in item else (Path(item).parent.name, item) for item in args.logs)
    missing = [p for p in logs.values() if not Path(p).is_file()]
    if missing:
        parser.error(f"no such log: {', '.join(missing)}")
    print(plot_runs(logs, args.out))
    return 0


# --------------------------------------------------------------------------------------------------------------
# The app's panels (see bdflow.demo and app.py): plain uint8 RGB arrays, so they work with or without Gradio.
# --------------------------------------------------------------------------------------------------------------


def figure_to_array(fig) -> np.ndarray:
    """A matplotlib figure -> uint8 RGB (H, W, 3); the figure is closed."""
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return rgb


def enlarge_nearest(img: np.ndarray, factor: int) -> np.ndarray:
    """(h, w) or (h, w, C) -> each pixel repeated ``factor`` x ``factor`` times (nearest neighbour)."""
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    return np.repeat(np.repeat(np.asarray(img), factor, axis=0), factor, axis=1)


def edges_image(edges: np.ndarray) -> np.ndarray:
    """Boolean (H, W) boundary map -> uint8 RGB, white boundaries on black."""
    gray = np.where(np.asarray(edges, dtype=bool), 255, 0).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


FRAME_RGB = (70, 110, 160)  # the frame around map panels: neither black, white nor a gray code
NO_B_TEXT = "no stored B: this model (IRN-style twin) keeps only Y and Z"


def framed(img: np.ndarray, px: int = 2, color: tuple[int, int, int] = FRAME_RGB) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> (H + 2 px, W + 2 px, 3) with a coloured frame, so that white or black cells at the
    image's edge stay visible on the page's white (or dark) background."""
    img = np.asarray(img)
    out = np.empty((img.shape[0] + 2 * px, img.shape[1] + 2 * px, 3), dtype=np.uint8)
    out[:] = color
    out[px : px + img.shape[0], px : px + img.shape[1]] = img
    return out


def no_b_image(size: tuple[int, int], text: str = NO_B_TEXT) -> np.ndarray:
    """The stored-B panel of a model without B: uint8 RGB (H, W, 3), gray diagonal hatching with ``text`` on it."""
    from PIL import Image, ImageDraw, ImageFont

    f = max(1.0, 320 / max(int(size[1]), 1))  # at least 320 px wide, so the text stays legible; the shape is kept
    h, w = max(round(int(size[0]) * f), 80), round(int(size[1]) * f)
    yy, xx = np.mgrid[:h, :w]
    gray = np.where((xx + yy) % 12 < 3, 150, 215).astype(np.uint8)
    img = Image.fromarray(np.repeat(gray[..., None], 3, axis=2))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=max(13, min(22, w // 24)))
    words, lines = text.split(), [""]
    for word in words:  # wrap to the panel's width
        trial = f"{lines[-1]} {word}".strip()
        if draw.textlength(trial, font=font) > w - 16 and lines[-1]:
            lines.append(word)
        else:
            lines[-1] = trial
    box = draw.multiline_textbbox((w / 2, h / 2), "\n".join(lines), font=font, anchor="mm", align="center")
    draw.rectangle((box[0] - 6, box[1] - 6, box[2] + 6, box[3] + 6), fill=(255, 255, 255), outline=FRAME_RGB)
    draw.multiline_text((w / 2, h / 2), "\n".join(lines), font=font, fill=(20, 20, 20), anchor="mm", align="center")
    return np.asarray(img)


def codes_image(codes: np.ndarray | None, bits: int, factor: int = 1, size: tuple[int, int] | None = None) -> np.ndarray:
    """k-bit B codes (h, w) -> uint8 RGB, code / (2^k - 1) as gray, enlarged by ``factor`` (nearest) and cropped to
    ``size`` (H, W). ``None`` (a B-less model) gives :func:`no_b_image`, which says why there is nothing to show."""
    if codes is None:
        return no_b_image(size if size is not None else (64, 128))
    gray = np.floor(np.asarray(codes, dtype=np.float64) * 255 / max_code(bits) + 0.5).astype(np.uint8)
    big = enlarge_nearest(gray, factor)
    if size is not None:
        big = big[: size[0], : size[1]]
    return np.repeat(big[..., None], 3, axis=2)


def heat_image(values: np.ndarray, vmax: float | None = None, cmap: str = "magma") -> tuple[np.ndarray, float]:
    """(H, W) non-negative values -> (uint8 RGB through ``cmap`` with 0..vmax mapped to the full range, vmax);
    vmax defaults to the 99th percentile (at least 1e-6)."""
    values = np.asarray(values, dtype=np.float64)
    if vmax is None:
        vmax = float(np.percentile(values, 99)) if values.size else 1.0
    vmax = max(vmax, 1e-6)
    rgba = matplotlib.colormaps[cmap](np.clip(values / vmax, 0, 1))
    return (rgba[..., :3] * 255 + 0.5).astype(np.uint8), vmax


def _gauss(t: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((t - mu) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))


def hist_panel(ax, values: np.ndarray, title: str, prior: bool, tau: float | None = None) -> tuple[float, float]:
    """One panel of Fig. 2: a log-density histogram of ``values`` with its fitted Gaussian (mean and sigma, the std);
    with ``prior`` also N(0, 1), the prior the decoder samples from (and N(0, tau^2), what decoding at tau draws).
    The x-range holds every value (the tails are what differs from a Gaussian), and fit and prior share it. The
    title gives the excess kurtosis (0 for a Gaussian) and the total variation distance (``metrics.tv_to_normal``)
    to N(0, 1) with ``prior``, else to the values' own Gaussian fit. Returns the x-range (lo, hi) it drew."""
    values = np.asarray(values, dtype=np.float64).ravel()
    mu, sigma = float(values.mean()), max(float(values.std()), 1e-6)
    lim = max(float(np.abs(values - mu).max()) if values.size else 0.0, 3.5 * sigma)
    lo, hi = mu - 1.02 * lim, mu + 1.02 * lim
    if prior:
        lo, hi = min(lo, -3.5), max(hi, 3.5)
    # np.histogram + one stairs patch: ax.hist draws a patch per bin (160), a third of the figure's time
    density, edges = np.histogram(values, bins=160, range=(lo, hi), density=True)
    ax.stairs(density, edges, fill=True, color="#7a9cc6", alpha=0.75, label="values")
    t = np.linspace(lo, hi, 600)
    ax.plot(t, _gauss(t, mu, sigma), color="#d62728", lw=1.5, label=f"fit: mean {mu:.2f}, σ {sigma:.3g}")
    if prior:
        ax.plot(t, _gauss(t, 0.0, 1.0), color="k", lw=1.2, ls="--", label="prior N(0, 1): σ 1")
        if tau is not None and tau > 0:
            ax.plot(t, _gauss(t, 0.0, tau), color="#2ca02c", lw=1.0, ls=":", label=f"sampled: σ τ = {tau:.2f}")
    kurtosis = float(((values - mu) ** 4).mean() / sigma**4 - 3) if values.size else float("nan")
    tv = tv_to_normal(normal_bin_counts(values if prior else (values - mu) / sigma))
    ax.set_yscale("log")
    ax.yaxis.set_minor_locator(NullLocator())  # the app redraws this per image: minor log ticks were a fifth of it
    ax.set_ylim(bottom=max(1e-5, 0.5 / max(values.size, 1) / max(edges[1] - edges[0], 1e-12)),
                top=3 * max(density.max(), 1e-3))
    against = "N(0, 1)" if prior else "its fit"
    # a set y skips matplotlib's search for a free spot (another fifth of the time)
    ax.set_title(f"{title}\nexcess kurtosis {kurtosis:.1f} · TV to {against} {tv:.3f}", fontsize=8.5, y=1.01)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6.5, loc="upper right")
    return lo, hi


LABEL_BAND = 40  # px left empty at the top of a figure panel: the app's panel label sits there, not on a title


def z_histogram(z: np.ndarray, z_gt: np.ndarray, tau: float | None = None, width: float = 7.5, height: float = 3.3) -> np.ndarray:
    """The paper's Fig. 2 for one image, as uint8 RGB: left, the forward Z of the flow (see :func:`hist_panel`);
    right, Z_GT = HR - bicubic round trip (pixel units) with its own Gaussian fit. The top LABEL_BAND pixels
    stay white (the panel label)."""
    dpi = 100
    fig, (ax_z, ax_gt) = plt.subplots(1, 2, figsize=(width, height), dpi=dpi)
    hist_panel(ax_z, z, "forward Z of the flow", prior=True, tau=tau)
    hist_panel(ax_gt, z_gt, "Z_GT = HR − bicubic", prior=False)
    # fixed margins: tight_layout measured every tick label and took half the figure's time (the app redraws this
    # figure for each new image)
    fig.subplots_adjust(left=0.07, right=0.985, bottom=0.1, top=1 - (LABEL_BAND + 42) / (height * dpi), wspace=0.2)
    return figure_to_array(fig)


def _tile(ax, img, title: str) -> None:
    ax.imshow(img, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


def _colour(values: np.ndarray, cmap: str | None, vmax: float = 1.0) -> np.ndarray:
    """(h, w, 3) in [0, 1] (cmap None) or (h, w) values in [0, vmax] through ``cmap`` -> uint8 RGB."""
    if cmap is None:
        return (np.clip(values, 0, 1) * 255 + 0.5).astype(np.uint8)
    return heat_image(values, vmax=vmax, cmap=cmap)[0]


def tile_grid(rows: list[list[tuple[str, np.ndarray | None]]], tile_w: int = 150) -> np.ndarray:
    """Rows of (title, uint8 RGB tile or None for an empty cell) -> one uint8 RGB image: each tile resized
    (nearest) to ``tile_w`` wide, its title above it, a white band of LABEL_BAND px on top (the panel label).
    Composed with Pillow: much cheaper than one matplotlib axes per tile."""
    from PIL import Image, ImageDraw, ImageFont

    first = next(img for row in rows for _, img in row if img is not None)
    tile_h = max(1, round(tile_w * first.shape[0] / first.shape[1]))
    title_h, gap = 16, 6
    cols = max(len(row) for row in rows)
    canvas = Image.new("RGB", (cols * (tile_w + gap) + gap, LABEL_BAND + len(rows) * (tile_h + title_h + gap)), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=10)
    for r, row in enumerate(rows):
        y = LABEL_BAND + r * (tile_h + title_h + gap)
        for c, (title, img) in enumerate(row):
            x = gap + c * (tile_w + gap)
            centre = y + title_h / 2 if img is not None else y + title_h + tile_h / 2  # an empty cell: text only
            draw.text((x + tile_w / 2, centre), title, fill=(20, 20, 20), font=font, anchor="mm")
            if img is not None:
                canvas.paste(Image.fromarray(img).resize((tile_w, tile_h), Image.Resampling.NEAREST), (x, y + title_h))
    return np.asarray(canvas)


def levels_image(views, tile_w: int = 150) -> np.ndarray:
    """The level view (``bdflow.levels``) as uint8 RGB: one row per level; the wavelet's low-pass and the RMS of
    its detail channels, then the same slots after the level's InvBlocks, |after - before| of the low-pass (what
    the blocks wrote into it), and B: the B channel at the last level, or, with B as a condition, the B each level's
couplings read (at the last level the stored B itself), or a note that the model has none. The two detail maps of
    a row share one colour scale. Titles are ASCII (Pillow's default font has no Greek or math signs)."""
    rows = []
    for v in views:
        vmax = max(float(np.percentile(v.before_detail, 99)), float(np.percentile(v.after_detail, 99)), 1e-6)
        delta = np.abs(v.after_low - v.before_low).mean(axis=2) * 255
        dmax = max(float(delta.max()), 1e-6)
        row = [(f"level {v.index} wavelet: low-pass", _colour(v.before_low, None)),
               (f"{v.channels - 3} detail ch. (RMS)", _colour(v.before_detail, "magma", vmax)),
               ("after InvBlocks: low-pass" + (" = Y" if v.last else ""), _colour(v.after_low, None)),
               (f"low-pass change, max {dmax:.1f}/255", _colour(delta, "viridis", dmax)),
               ("after: Z (RMS)" if v.last else "after: detail (RMS)", _colour(v.after_detail, "magma", vmax))]
        if v.after_b is not None:
            row.append(("after: B (channel 3)", _colour(np.repeat(v.after_b[..., None], 3, axis=2), None)))
        elif v.condition is not None:
            row.append(("stored B, read by its couplings" if v.last else "B read by its couplings",
                        _colour(np.repeat(v.condition[..., None], 3, axis=2), None)))
        elif v.last:
            row.append(("no B: Y and Z only", None))
        rows.append(row)
    return tile_grid(rows, tile_w)


WIDE = 1.6  # a panel this much wider than high (the level view, the Z histograms) gets a row of its own
FIGURE_COLS, TILE_IN = 3, 4.2  # up to 3 other panels per row, each TILE_IN inches wide


def _wide(img: np.ndarray) -> bool:
    return img.shape[1] >= WIDE * img.shape[0]


def figure_rows(panels: dict[str, np.ndarray]) -> list[list[str]]:
    """The rows of a figure: the panels of ordinary shape FIGURE_COLS to a row, then each wide panel (>= WIDE)
    on a row of its own, at the figure's full width, so that its small tiles and labels stay readable."""
    wide = [t for t, img in panels.items() if _wide(img)]
    other = [t for t in panels if t not in wide]
    return [other[i : i + FIGURE_COLS] for i in range(0, len(other), FIGURE_COLS)] + [[t] for t in wide]


def export_figure(panels: dict[str, np.ndarray], caption: str, stem: str | Path) -> tuple[Path, Path]:
    """Panels (title -> uint8 RGB) laid out by :func:`figure_rows` with ``caption`` under them, for slides:
    written as ``stem``.png (150 dpi) and ``stem``.pdf. Returns both paths."""
    if not panels:
        raise ValueError("nothing to export")
    rows = figure_rows(panels)
    spans = [_wide(panels[row[0]]) for row in rows]  # a wide panel spans every column
    cols = FIGURE_COLS if any(spans) or len(rows) > 1 else len(rows[0])
    width, title_in, caption_in = TILE_IN * cols, 0.35, 0.6
    heights = [max((width if span else TILE_IN) * panels[t].shape[0] / panels[t].shape[1] for t in row) + title_in
               for row, span in zip(rows, spans)]
    fig = plt.figure(figsize=(width, sum(heights) + caption_in))
    grid = fig.add_gridspec(len(rows), cols, height_ratios=heights, left=0.01, right=0.99, top=0.99,
                            bottom=caption_in / (sum(heights) + caption_in), hspace=0.12, wspace=0.04)
    for r, (row, span) in enumerate(zip(rows, spans)):
        for c, title in enumerate(row):
            _tile(fig.add_subplot(grid[r, :] if span else grid[r, c]), panels[title], title)
    fig.text(0.5, 0.01, caption, ha="center", va="bottom", fontsize=9, wrap=True)
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = stem.with_suffix(".png"), stem.with_suffix(".pdf")
    for path, kwargs in ((png, {"dpi": 150}), (pdf, {"metadata": {"CreationDate": None, "Creator": "bdflow"}})):
        buf = io.BytesIO()
        fig.savefig(buf, format=path.suffix[1:], **kwargs)
        write_atomic(path, buf.getvalue(), force=True)  # a reader (the app's download) never sees a part
    plt.close(fig)
    return png, pdf


if __name__ == "__main__":
    raise SystemExit(main())

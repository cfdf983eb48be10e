"""Figures: training curves (and, with the app, the panels that show what Y, B and Z carry)."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

LOSS_TERMS = ("total", "forw", "back", "lpips", "bam", "latent")


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) < window:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def plot_training_log(csv_path: str | Path, png_path: str | Path, window: int = 50) -> Path:
    """log.csv of ``bdflow.train`` -> PNG with the weighted loss terms (moving average) and validation PSNR."""
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    if rows:
        steps = np.array([int(r["step"]) for r in rows])
        for term in LOSS_TERMS:
            values = np.array([float(r[term]) for r in rows])
            if np.any(values > 0):
                smooth = _smooth(values, window)
                ax_loss.plot(steps[len(steps) - len(smooth) :], smooth, label=term)
        val = [(int(r["step"]), float(r["val_psnr"])) for r in rows if r.get("val_psnr")]
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
        with open(path) as f:
            rows = list(csv.DictReader(f))
        steps = np.array([int(r["step"]) for r in rows])
        for ax, (term, title, factor) in zip(axes, panels):
            smooth = _smooth(factor * np.array([float(r[term]) for r in rows]), window)
            ax.set(xlabel="iteration", title=f"{title} (mean of {window})")
            if np.all(smooth > 0):  # a term switched off (lambda = 0) is left out
                ax.plot(steps[len(steps) - len(smooth) :], smooth, label=label)
                ax.set_yscale("log")
        val = [(int(r["step"]), float(r["val_psnr"])) for r in rows if r.get("val_psnr")]
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


def codes_image(codes: np.ndarray | None, bits: int, factor: int = 1, size: tuple[int, int] | None = None) -> np.ndarray:
    """k-bit B codes (h, w) -> uint8 RGB, code / (2^k - 1) as gray, enlarged by ``factor`` (nearest) and cropped to
    ``size`` (H, W). ``None`` (a B-less model) gives a mid-gray placeholder."""
    if codes is None:
        h, w = size if size is not None else (16, 16)
        return np.full((h, w, 3), 128, dtype=np.uint8)
    levels = 2**bits - 1
    gray = np.floor(np.asarray(codes, dtype=np.float64) * 255 / levels + 0.5).astype(np.uint8)
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
    """One panel of Fig. 2: a log-density histogram of ``values`` with its fitted N(mu, sigma^2); with ``prior``
    also N(0, 1), the prior the flow's Z was trained towards (and N(0, tau^2), what decoding samples).
    Returns the x-range (lo, hi) it drew."""
    values = np.asarray(values, dtype=np.float64).ravel()
    mu, sigma = float(values.mean()), max(float(values.std()), 1e-6)
    lim = max(4 * sigma, 3.5 if prior else 0.0, abs(mu) + 4 * sigma)
    lo, hi = mu - lim, mu + lim
    if prior:
        lo, hi = min(lo, -3.5), max(hi, 3.5)
    density = ax.hist(values, bins=120, range=(lo, hi), density=True, color="#7a9cc6", alpha=0.75, label="values")[0]
    t = np.linspace(lo, hi, 400)
    ax.plot(t, _gauss(t, mu, sigma), color="#d62728", lw=1.5, label=f"fit N({mu:.2f}, {sigma**2:.3g})")
    if prior:
        ax.plot(t, _gauss(t, 0.0, 1.0), color="k", lw=1.2, ls="--", label="prior N(0, 1)")
        if tau is not None and tau > 0:
            ax.plot(t, _gauss(t, 0.0, tau), color="#2ca02c", lw=1.0, ls=":", label=f"sampled N(0, {tau:.2f}²)")
    ax.set_yscale("log")
    ax.set_ylim(bottom=max(1e-4, 0.5 / max(values.size, 1)), top=3 * max(density.max(), 1e-3))
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6.5, loc="upper right")
    return lo, hi


def z_histogram(z: np.ndarray, z_gt: np.ndarray, tau: float | None = None, width: float = 7.5, height: float = 3.0) -> np.ndarray:
    """The paper's Fig. 2 for one image, as uint8 RGB: left, the forward Z of the flow (see :func:`hist_panel`);
    right, Z_GT = HR - bicubic round trip (pixel units) with its own Gaussian fit."""
    fig, (ax_z, ax_gt) = plt.subplots(1, 2, figsize=(width, height), dpi=100)
    hist_panel(ax_z, z, "forward Z of the flow", prior=True, tau=tau)
    hist_panel(ax_gt, z_gt, "Z_GT = HR − bicubic", prior=False)
    fig.tight_layout()
    return figure_to_array(fig)


if __name__ == "__main__":
    raise SystemExit(main())

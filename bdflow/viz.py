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

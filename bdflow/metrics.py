"""Evaluation metrics: PSNR / SSIM on the Y channel (BT.601), LPIPS on RGB.

Conventions (as IRN / BasicSR evaluation):
- Y = 16 + 65.481 R + 128.553 G + 24.966 B with R, G, B in [0, 1]: ITU-R BT.601 studio range, Y in 0-255 scale
  (not rounded).
- ``border`` pixels (usually the rescaling factor) are cropped on every side before PSNR and SSIM.
- PSNR with peak 255. SSIM of Wang et al. (BasicSR ``calculate_ssim``): 11x11 Gaussian window, sigma 1.5,
  'valid' filtering, C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2, mean of the SSIM map.
- LPIPS v0.1 (AlexNet) on RGB, see :mod:`bdflow.lpips`.

All functions take float tensors (N, 3, H, W) with values in [0, 1] and return (N,) tensors on the input's device.
They do not quantise: round to 8 bit beforehand (e.g. ``(x * 255).round() / 255``) to report 8-bit image metrics.
PSNR and SSIM are computed in float64 so that they match reference implementations to ~1e-10.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .lpips import lpips as _lpips

__all__ = ["grid_ratio", "kid", "kid_leave_one_out", "lpips_rgb", "psnr_y", "rgb_to_y", "sample_values", "ssim_y"]

_Y_WEIGHTS = (65.481, 128.553, 24.966)
_Y_OFFSET = 16.0
_PEAK = 255.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
_C1 = (0.01 * _PEAK) ** 2
_C2 = (0.03 * _PEAK) ** 2


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """RGB (N, 3, H, W) in [0, 1] -> BT.601 studio-range luma Y (N, 1, H, W) in 0-255 scale (16..235)."""
    _check_rgb(x, "x")
    w = torch.tensor(_Y_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True) + _Y_OFFSET


def psnr_y(x: torch.Tensor, ref: torch.Tensor, border: int = 0) -> torch.Tensor:
    """PSNR (dB, peak 255) on Y after cropping ``border`` pixels per side. (N, 3, H, W) x2 -> (N,).

    Identical images give ``inf``.
    """
    _check_pair(x, ref, border, min_size=1)
    mse = (_y64(x, border) - _y64(ref, border)).pow(2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(_PEAK**2 / mse)


def ssim_y(x: torch.Tensor, ref: torch.Tensor, border: int = 0) -> torch.Tensor:
    """SSIM on Y after cropping ``border`` pixels per side. (N, 3, H, W) x2 -> (N,).

    The cropped images must be at least 11x11 (the 'valid' SSIM map is then (H - 2 border - 10) wide).
    """
    _check_pair(x, ref, border, min_size=SSIM_WINDOW)
    return _ssim_map(_y64(x, border), _y64(ref, border)).mean(dim=(1, 2, 3))


def grid_map(x: torch.Tensor, ref: torch.Tensor, scale: int) -> torch.Tensor:
    """The squared Y error folded by pixel position modulo ``scale``: (N, 3, H, W) x2 -> (N, s, s), the mean error
    at each offset inside an LR cell (the grid check, docs/studies/x64-grid.md). A border of ``scale`` pixels is cropped first (keeps
    the offsets aligned)."""
    return fold_cells(cell_error(x, ref, scale).pow(2), scale)


def cell_error(x: torch.Tensor, ref: torch.Tensor, scale: int) -> torch.Tensor:
    """The signed Y error the grid check folds: (N, 3, H, W) x2 -> float64 (N, 1, H - 2 s, W - 2 s), a border of
    ``scale`` pixels cropped (keeps the offsets aligned with the LR cells)."""
    _check_pair(x, ref, scale, min_size=scale)
    return _y64(x, scale) - _y64(ref, scale)


def fold_cells(err: torch.Tensor, scale: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, s, s): the mean of ``err`` at each offset inside an s x s LR cell, over the channels and
    the cells (H and W cut down to multiples of ``scale``). The fold of :func:`grid_map` and of the training loss's
    ``losses.grid_weight``."""
    n, c, h, w = err.shape
    h, w = h - h % scale, w - w % scale
    return err[..., :h, :w].reshape(n, c, h // scale, scale, w // scale, scale).mean(dim=(1, 2, 4))


def on_pixels(cells: torch.Tensor, scale: int, size: tuple[int, int]) -> torch.Tensor:
    """(..., h, w) one value per LR cell -> (..., H, W): each value over its cell's scale x scale pixels, cut to
    ``size`` (H, W) (an image whose sides are not multiples of ``scale`` was padded before encoding)."""
    return cells.repeat_interleave(scale, -2).repeat_interleave(scale, -1)[..., : size[0], : size[1]]


def peak_ratio(folded: torch.Tensor) -> torch.Tensor:
    """max / mean of (..., s, s) maps -> (...): 1 for an error that ignores the grid, large for a checkerboard."""
    return folded.amax(dim=(-2, -1)) / folded.mean(dim=(-2, -1)).clamp_min(1e-30)


def grid_ratio(x: torch.Tensor, ref: torch.Tensor, scale: int) -> torch.Tensor:
    """How much a reconstruction's error follows the LR grid, per image: (N, 3, H, W) x2 -> (N,), the
    :func:`peak_ratio` of its :func:`grid_map`. On one image each offset averages only (H/s)(W/s) pixels (256 at
    x64 on 1024^2), so the max is inflated by noise; ``evaluate`` pools the maps over the images first."""
    return peak_ratio(grid_map(x, ref, scale))


class Moments:
    """Running count, mean, variance and excess kurtosis of every value added (float64 power sums), pooled
    (:meth:`summary`) and, with ``channel_dim``, per index along that dimension (:meth:`per_channel`): Z's channels."""

    def __init__(self, channel_dim: int | None = None):
        self.channel_dim = channel_dim
        self.sums = np.zeros((5, 1))  # per channel (5, C): n, sum v, sum v^2, sum v^3, sum v^4

    def add(self, values: torch.Tensor) -> None:
        v = values.detach().double()
        v = v.flatten()[None] if self.channel_dim is None else v.movedim(self.channel_dim, 0).flatten(1)  # (C, n)
        self.sums = self.sums + np.stack([np.full(v.shape[0], float(v.shape[1])),
                                          *((v**p).sum(dim=1).cpu().numpy() for p in range(1, 5))])

    @staticmethod
    def _moments(sums: np.ndarray) -> dict:
        n, s1, s2, s3, s4 = sums
        mean = s1 / n
        var = s2 / n - mean**2
        m4 = s4 / n - 4 * mean * s3 / n + 6 * mean**2 * s2 / n - 3 * mean**4  # 4th central moment
        return {"count": n, "mean": mean, "var": var, "excess_kurtosis": m4 / var**2 - 3}

    def summary(self) -> dict[str, float]:
        """The moments of all values pooled."""
        out = self._moments(self.sums.sum(axis=1))
        return {k: int(v) if k == "count" else float(v) for k, v in out.items()}

    def per_channel(self) -> dict[str, np.ndarray]:
        """The moments of each channel, as arrays (C,)."""
        return self._moments(self.sums)


TV_BIN = 0.05  # histogram bin width of the total variation distance to N(0, 1)
TV_EDGES = np.arange(-10.0, 10.0 + TV_BIN / 2, TV_BIN)  # bins over [-10, 10]; the two tails beyond are one bin each


def normal_bin_counts(values) -> np.ndarray:
    """Counts of ``values`` in the bins of :func:`tv_to_normal`: (-inf, e0), [e0, e1), ..., [e_last, inf)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    return np.bincount(np.searchsorted(TV_EDGES, v, side="right"), minlength=len(TV_EDGES) + 1).astype(np.float64)


def channel_mean_share(channel_means: torch.Tensor, mean_square: float) -> float:
    """The share of E[z^2] (``mean_square``) that Z's per-channel means (C,) hold: mean_c m_c^2 / E[z^2]. A pooled
    histogram cannot see it: channels N(m_c, s_c^2) pool to N(0, 1) whenever the offsets and spreads balance. For
    an N(0, 1) Z about 1 / the values per channel; 1 for channels that are constants."""
    return float(torch.as_tensor(channel_means).double().pow(2).mean()) / max(float(mean_square), 1e-30)


def channel_measures(moments: Moments) -> dict[str, float]:
    """Whether each channel of Z is N(0, 1), not only their pool (``moments`` kept per channel):

    - ``channel_mean_share``: :func:`channel_mean_share` of the channels' means;
    - ``channel_kurtosis``: the excess kurtosis within the channels, that of the values with each channel standardised
      by its own mean and std (the count-weighted mean of the channels' own; constant channels left out). N(0, 1)
      per channel: 0. Gaussian channels of different spreads pool to a heavy-tailed histogram (a scale mixture) and
      score 0 here; heavy-tailed channels whose offsets and spreads balance pool to a lighter one and do not.
    """
    pooled, c = moments.summary(), moments.per_channel()
    spread = c["var"] > 0
    return {"channel_mean_share": channel_mean_share(c["mean"], pooled["var"] + pooled["mean"] ** 2),
            "channel_kurtosis": float(np.average(c["excess_kurtosis"][spread], weights=c["count"][spread]))}


def tv_to_normal(counts: np.ndarray) -> float:
    """Total variation distance between a histogram (:func:`normal_bin_counts`) and N(0, 1): half the L1 distance
    of their masses over the same bins of width TV_BIN (0: the same distribution, at this resolution; 1: disjoint)."""
    from scipy.special import ndtr

    cdf = np.concatenate([[0.0], ndtr(TV_EDGES), [1.0]])
    return float(0.5 * np.abs(counts / counts.sum() - np.diff(cdf)).sum())


def sample_values(values: torch.Tensor, n: int, seed: int = 0) -> np.ndarray:
    """At most ``n`` values of a tensor, drawn without replacement (seeded): what histograms and tests see."""
    flat = values.flatten().float().cpu().numpy()
    if flat.size <= n:
        return flat
    return flat[np.random.default_rng(seed).choice(flat.size, size=n, replace=False)]


def kid(a: np.ndarray, ref: np.ndarray) -> float:
    """Kernel inception distance (Binkowski et al., 2018) of the feature sets a (n, d) and ref (m, d): the unbiased
    estimate of the squared MMD with the cubic kernel k(u, v) = (u.v / d + 1)^3 -- 0 in expectation when both are
    drawn from one distribution, whatever their pairing (a set measure: it does not ask which image is which).
    Written out here because the libraries that carry it (torchmetrics, torch-fidelity) pull torchvision, and it is
    three sums; the features are the caller's (:meth:`bdflow.lpips.LPIPS.pooled` here, not Inception's)."""
    kaa, within_ref, kar = _kid_kernels(a, ref)
    n = len(kaa)
    return float(kaa.sum() / (n * (n - 1)) + within_ref - 2 * kar.mean())


def kid_leave_one_out(a: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(n,): :func:`kid` of a with each of its rows left out in turn, ref whole (the jackknife of a's side)."""
    kaa, within_ref, kar = _kid_kernels(a, ref)
    n, m = kar.shape
    within_a = (kaa.sum() - 2 * kaa.sum(axis=1)) / ((n - 1) * (n - 2))
    cross = (kar.sum() - kar.sum(axis=1)) / ((n - 1) * m)
    return within_a + within_ref - 2 * cross


def _kid_kernels(a: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """KID's kernel sums: k(a_i, a_j) (n, n) with a zero diagonal, the mean of k(ref_i, ref_j) over i != j, and
    k(a_i, ref_j) (n, m). Needs n >= 3 (a row left out still leaves a pair) and m >= 2."""
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    if a.ndim != 2 or ref.ndim != 2 or a.shape[1] != ref.shape[1] or len(a) < 3 or len(ref) < 2:
        raise ValueError(f"kid: feature sets (n >= 3, d) and (m >= 2, d), got {a.shape} and {ref.shape}")
    d, m = a.shape[1], len(ref)

    def k(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return (u @ v.T / d + 1.0) ** 3

    kaa, krr = k(a, a), k(ref, ref)
    np.fill_diagonal(kaa, 0.0)
    np.fill_diagonal(krr, 0.0)
    return kaa, krr.sum() / (m * (m - 1)), k(a, ref)


@torch.no_grad()
def lpips_rgb(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """LPIPS v0.1 (AlexNet) on RGB, (N, 3, H, W) in [0, 1] x2 -> (N,). No gradient (evaluation only);
    use :func:`bdflow.lpips.lpips` as a differentiable loss."""
    _check_pair(x, ref, 0, min_size=1)
    return _lpips(x, ref)


# --------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------


def _y64(x: torch.Tensor, border: int) -> torch.Tensor:
    """(N, 3, H, W) -> float64 Y (N, 1, H - 2 border, W - 2 border)."""
    y = rgb_to_y(x.to(torch.float64))
    if border > 0:
        y = y[..., border:-border, border:-border]
    return y


def _gaussian_window(device: torch.device) -> torch.Tensor:
    """1-D normalised Gaussian (11,), float64, same as ``cv2.getGaussianKernel(11, 1.5)``."""
    r = torch.arange(SSIM_WINDOW, dtype=torch.float64, device=device) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-(r**2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()


def _filter_valid(img: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filtering of (B, 1, H, W) -> (B, 1, H - 10, W - 10)."""
    img = F.conv2d(img, g.view(1, 1, -1, 1))
    return F.conv2d(img, g.view(1, 1, 1, -1))


def _ssim_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SSIM map of two float64 (N, 1, H, W) images in 0-255 -> (N, 1, H - 10, W - 10)."""
    g = _gaussian_window(a.device)
    n = a.shape[0]
    # One batched filtering pass over the five statistics: a, b, a^2, b^2, ab.
    stats = _filter_valid(torch.cat([a, b, a * a, b * b, a * b], dim=0), g)
    mu_a, mu_b, e_aa, e_bb, e_ab = stats.split(n, dim=0)
    var_a, var_b, cov = e_aa - mu_a**2, e_bb - mu_b**2, e_ab - mu_a * mu_b
    num = (2 * mu_a * mu_b + _C1) * (2 * cov + _C2)
    den = (mu_a**2 + mu_b**2 + _C1) * (var_a + var_b + _C2)
    return num / den


def _check_rgb(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name}: expected an RGB image batch of shape (N, 3, H, W), got {shape}")


def _check_pair(x: torch.Tensor, ref: torch.Tensor, border: int, min_size: int) -> None:
    _check_rgb(x, "x")
    _check_rgb(ref, "ref")
    if x.shape != ref.shape:
        raise ValueError(f"x and ref must have the same shape, got {tuple(x.shape)} and {tuple(ref.shape)}")
    if isinstance(border, bool) or not isinstance(border, int) or border < 0:
        raise ValueError(f"border must be a non-negative int, got {border!r}")
    h, w = x.shape[2] - 2 * border, x.shape[3] - 2 * border
    if min(h, w) < min_size:
        raise ValueError(
            f"image {tuple(x.shape[2:])} with border={border} leaves a {h}x{w} region, "
            f"need at least {min_size}x{min_size}" + (" (the SSIM window)" if min_size == SSIM_WINDOW else "")
        )


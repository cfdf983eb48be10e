"""Tests of bdflow.metrics against scikit-image on real photographs.

The reference Y channel is computed here with numpy, independently of ``bdflow.metrics.rgb_to_y``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import kurtosis
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from bdflow import metrics as M

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PHOTOS = ["faces/val/1.jpg", "sr/Set5/bird.png", "sr/Set5/woman.png"]  # 512x512, 288x288, 344x228 (H x W)
DEGRADATIONS = ["bicubic_x4", "jpeg_q15", "noise_8"]

# Measured max |ours - skimage| over the 9 photo/degradation pairs and borders 0/4/8 (float32 inputs, as callers
# pass them): PSNR 2.7e-7 dB, SSIM 4.2e-9. That is the float32 rounding of x / 255 in the inputs (the reference
# Y is built from exact uint8 / 255 in float64): with float64 inputs the differences drop to 7e-15 dB and
# 1.6e-15. skimage filters the whole image (reflect padding) and then drops (11 - 1) / 2 = 5 pixels per side,
# which leaves exactly our 'valid' SSIM map, so the two definitions coincide; the tolerances below are just
# above the measured float32 effect and far below any real disagreement (wrong window, constants or Y weights).
PSNR_TOL_DB = 1e-6
SSIM_TOL = 2e-8


def _degrade(img: Image.Image, kind: str) -> Image.Image:
    """A realistic degraded version of ``img`` (PIL RGB), same size."""
    if kind == "bicubic_x4":
        w, h = img.size
        small = img.resize((w // 4, h // 4), Image.BICUBIC)
        return small.resize((w, h), Image.BICUBIC)
    if kind == "jpeg_q15":
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=15)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    if kind == "noise_8":
        rng = np.random.default_rng(0)
        arr = np.asarray(img, dtype=np.float64) + rng.normal(0.0, 8.0, size=(img.size[1], img.size[0], 3))
        return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8))
    raise ValueError(kind)


def _to_tensor(arr: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (1, 3, H, W) in [0, 1]."""
    return torch.from_numpy(arr.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0).contiguous()


def _numpy_y(arr: np.ndarray) -> np.ndarray:
    """Independent reference: uint8 RGB (H, W, 3) -> BT.601 studio-range Y (H, W), float64, 0-255 scale."""
    rgb = arr.astype(np.float64) / 255.0
    return 16.0 + rgb @ np.array([65.481, 128.553, 24.966])


@pytest.fixture(scope="module")
def pairs() -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """(photo, degradation) -> (ref uint8 (H, W, 3), degraded uint8 (H, W, 3))."""
    if not DATA.is_dir():
        pytest.skip(f"shared data not found at {DATA}")
    out = {}
    for photo in PHOTOS:
        img = Image.open(DATA / photo).convert("RGB")
        for kind in DEGRADATIONS:
            out[(photo, kind)] = (np.asarray(img), np.asarray(_degrade(img, kind)))
    return out


def _crop(a: np.ndarray, b: int) -> np.ndarray:
    return a[b:-b, b:-b] if b else a


def _skimage_reference(ref: np.ndarray, deg: np.ndarray, border: int) -> tuple[float, float]:
    y_ref, y_deg = _crop(_numpy_y(ref), border), _crop(_numpy_y(deg), border)
    psnr = peak_signal_noise_ratio(y_ref, y_deg, data_range=255)
    ssim = structural_similarity(
        y_ref, y_deg, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    return psnr, ssim


def test_rgb_to_y_matches_numpy_reference(pairs):
    ref, _ = pairs[(PHOTOS[1], DEGRADATIONS[0])]
    y = M.rgb_to_y(_to_tensor(ref).double())
    assert y.shape == (1, 1, *ref.shape[:2])
    np.testing.assert_allclose(y[0, 0].numpy(), _numpy_y(ref), atol=1e-9)
    assert M.rgb_to_y(torch.zeros(1, 3, 2, 2)).eq(16).all() and M.rgb_to_y(torch.ones(1, 3, 2, 2)).allclose(
        torch.tensor(235.0)
    )


@pytest.mark.parametrize("border", [0, 4, 8])
@pytest.mark.parametrize("photo", PHOTOS)
def test_psnr_ssim_match_skimage_on_real_photos(pairs, photo, border):
    """All degradations of one photo in one batch: checks batching and agreement with skimage at once."""
    refs = np.stack([pairs[(photo, k)][0] for k in DEGRADATIONS])
    degs = np.stack([pairs[(photo, k)][1] for k in DEGRADATIONS])
    x = torch.cat([_to_tensor(d) for d in degs])
    r = torch.cat([_to_tensor(a) for a in refs])
    psnr, ssim = M.psnr_y(x, r, border=border), M.ssim_y(x, r, border=border)
    assert psnr.shape == ssim.shape == (len(DEGRADATIONS),)
    for i in range(len(DEGRADATIONS)):
        exp_psnr, exp_ssim = _skimage_reference(refs[i], degs[i], border)
        assert abs(psnr[i].item() - exp_psnr) < PSNR_TOL_DB
        assert abs(ssim[i].item() - exp_ssim) < SSIM_TOL
    # Sanity: real degradations, not trivially close images.
    assert (psnr < 45).all() and (ssim < 0.99).all() and (ssim > 0.2).all()


@pytest.mark.parametrize("border", [0, 4, 8])
def test_border_equals_manual_crop(pairs, border):
    ref, deg = pairs[(PHOTOS[0], "jpeg_q15")]
    x, r = _to_tensor(deg), _to_tensor(ref)
    xc, rc = (x[..., border:-border, border:-border], r[..., border:-border, border:-border]) if border else (x, r)
    assert M.psnr_y(x, r, border=border).item() == pytest.approx(M.psnr_y(xc, rc).item(), abs=1e-12)
    assert M.ssim_y(x, r, border=border).item() == pytest.approx(M.ssim_y(xc, rc).item(), abs=1e-12)
    if border:
        # The crop must actually change the result (the border contributes to both metrics).
        assert M.psnr_y(x, r, border=border).item() != M.psnr_y(x, r).item()
        assert M.ssim_y(x, r, border=border).item() != M.ssim_y(x, r).item()


def test_identical_images():
    x = torch.rand(2, 3, 32, 40)
    assert torch.isinf(M.psnr_y(x, x.clone())).all()
    torch.testing.assert_close(M.ssim_y(x, x.clone()), torch.ones(2, dtype=torch.float64))


def test_lpips_rgb_matches_oracle_and_has_no_grad():
    check = DATA / "lpips_check"
    if not check.is_dir():
        pytest.skip("lpips_check images not found")
    ref, p1 = (_to_tensor(np.asarray(Image.open(check / n).convert("RGB"))) for n in ("ex_ref.png", "ex_p1.png"))
    x = p1.clone().requires_grad_(True)
    d = M.lpips_rgb(x, ref)
    assert d.shape == (1,) and not d.requires_grad
    assert abs(d.item() - 0.137566) < 1e-4


@pytest.mark.parametrize(
    "x_shape, ref_shape, border, match",
    [
        ((1, 3, 32, 32), (1, 3, 32, 31), 0, "same shape"),
        ((1, 1, 32, 32), (1, 1, 32, 32), 0, r"\(N, 3, H, W\)"),
        ((3, 32, 32), (3, 32, 32), 0, r"\(N, 3, H, W\)"),
        ((1, 3, 20, 32), (1, 3, 20, 32), 5, "10x22 region, need at least 11x11"),
        ((1, 3, 32, 32), (1, 3, 32, 32), -1, "non-negative"),
    ],
)
def test_ssim_shape_errors(x_shape, ref_shape, border, match):
    with pytest.raises(ValueError, match=match):
        M.ssim_y(torch.rand(x_shape), torch.rand(ref_shape), border=border)


def test_psnr_shape_errors():
    with pytest.raises(ValueError, match="same shape"):
        M.psnr_y(torch.rand(2, 3, 16, 16), torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="0x0 region"):
        M.psnr_y(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), border=8)
    # PSNR needs no SSIM window: a small crop is fine.
    assert M.psnr_y(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), border=7).shape == (1,)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        M.rgb_to_y(torch.rand(1, 4, 8, 8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(pairs):
    ref, deg = pairs[(PHOTOS[1], "bicubic_x4")]
    x, r = _to_tensor(deg), _to_tensor(ref)
    for fn in (M.psnr_y, M.ssim_y):
        out = fn(x.cuda(), r.cuda(), border=4)
        assert out.device.type == "cuda"
        assert abs(out.item() - fn(x, r, border=4).item()) < 1e-9


def test_grid_ratio_sees_a_checkerboard_and_not_plain_noise(face):
    """The grid check: error folded by position modulo s; max/mean of the s x s map."""
    from bdflow.metrics import grid_ratio

    g = torch.Generator().manual_seed(0)
    noisy = (face + 0.02 * torch.randn(face.shape, generator=g)).clamp(0, 1)
    grid = face.clone()
    grid[..., ::8, ::8] = (grid[..., ::8, ::8] + 0.1).clamp(0, 1)  # one offset of every 8x8 cell is wrong
    plain, checker = float(grid_ratio(noisy, face, 8)), float(grid_ratio(grid, face, 8))
    assert 1.0 <= plain < 1.3 and checker > 30  # the 64-cell map has all its error at one offset: ratio ~64
    with pytest.raises(ValueError):
        grid_ratio(face[..., :10, :10], face[..., :10, :10], 8)


def test_pooled_grid_map_averages_the_noise_out(face):
    """At x64 each offset of one image's map averages few pixels: pooling the maps over images (what evaluate
    reports) brings grid-free noise towards 1, while a real grid keeps its ratio."""
    from bdflow.metrics import grid_map, grid_ratio, peak_ratio

    g = torch.Generator().manual_seed(1)
    noisy = (face.repeat(8, 1, 1, 1) + 0.05 * torch.randn((8, *face.shape[1:]), generator=g)).clamp(0, 1)
    ref = face.repeat(8, 1, 1, 1)
    per_image = grid_ratio(noisy, ref, 64).mean()
    pooled = peak_ratio(grid_map(noisy, ref, 64).mean(dim=0))
    assert pooled < 0.75 * per_image  # 8 images of 6 x 6 cells: pooled ~1.35, per image ~2.2
    gridded = noisy.clone()
    gridded[..., ::64, :] = (gridded[..., ::64, :] + 0.2).clamp(0, 1)  # every LR cell's first row is off
    assert peak_ratio(grid_map(gridded, ref, 64).mean(dim=0)) > 3


def test_channel_mean_share_is_the_offsets_part_of_e_z2():
    z = torch.randn(1, 40, 64, 64, generator=torch.Generator().manual_seed(0))
    assert M.channel_mean_share(z.mean(dim=(0, 2, 3)), float(z.pow(2).mean())) < 3 / 4096  # N(0, 1): ~1 / 4096
    offsets = torch.linspace(-1, 1, 40).view(1, 40, 1, 1)  # constants: all of E[z^2] is in the means
    assert M.channel_mean_share(offsets.mean(dim=(0, 2, 3)), float(offsets.pow(2).mean())) == pytest.approx(1)


def test_moments_match_numpy_and_scipy():
    values = torch.distributions.StudentT(5.0).sample((3, 4000)).double()
    m = M.Moments()
    for part in values:  # added in pieces, summarised once
        m.add(part)
    s, flat = m.summary(), values.flatten().numpy()
    assert s["count"] == flat.size
    assert s["mean"] == pytest.approx(flat.mean(), abs=1e-12)
    assert s["var"] == pytest.approx(flat.var(), rel=1e-9)
    assert s["excess_kurtosis"] == pytest.approx(kurtosis(flat), rel=1e-6)


@pytest.mark.parametrize("channel_dim", [0, 1, 3])
def test_moments_per_channel_match_numpy_and_pool_to_the_summary(channel_dim):
    g = torch.Generator().manual_seed(0)
    values = torch.randn(3, 5, 40, 6, generator=g).double() * torch.arange(1, 7).double() + 2  # channel 3: scales
    m = M.Moments(channel_dim=channel_dim)
    for part in values.split(1, dim=2):  # added in pieces
        m.add(part)
    per = m.per_channel()
    flat = values.movedim(channel_dim, 0).flatten(1).numpy()
    assert per["count"] == pytest.approx(np.full(flat.shape[0], flat.shape[1]))
    assert per["mean"] == pytest.approx(flat.mean(axis=1), abs=1e-12)
    assert per["var"] == pytest.approx(flat.var(axis=1), rel=1e-9)
    assert per["excess_kurtosis"] == pytest.approx(kurtosis(flat, axis=1), rel=1e-6, abs=1e-9)
    pooled = M.Moments()
    pooled.add(values)
    assert m.summary() == pytest.approx(pooled.summary(), rel=1e-9)


def test_on_pixels_spreads_each_lr_cell_over_its_pixels_and_cuts_to_the_image():
    """metrics.on_pixels: pixel (i, j) holds cell (i // s, j // s); an image smaller than the cells' grid is cut."""
    from bdflow.metrics import on_pixels

    cells = torch.arange(6.0).view(1, 1, 2, 3)
    full = on_pixels(cells, 4, (8, 12))
    assert full.shape == (1, 1, 8, 12)
    assert all(full[0, 0, i, j] == cells[0, 0, i // 4, j // 4] for i in range(8) for j in range(12))
    assert torch.equal(on_pixels(cells[0, 0], 4, (7, 10)), full[0, 0, :7, :10])  # 2-D maps alike


def test_kid_is_the_unbiased_squared_mmd_with_the_cubic_kernel():
    """metrics.kid: equals the three sums written out on a small example; near 0 for two samples of one distribution,
    far above for a shifted one; its leave-one-out values are kid of the set without that row; bad shapes raise."""
    from bdflow.metrics import kid, kid_leave_one_out

    rng = np.random.default_rng(0)
    a, r = rng.normal(size=(4, 3)), rng.normal(size=(5, 3))
    k = lambda u, v: (u @ v / 3 + 1) ** 3  # noqa: E731
    by_hand = (sum(k(a[i], a[j]) for i in range(4) for j in range(4) if i != j) / 12
               + sum(k(r[i], r[j]) for i in range(5) for j in range(5) if i != j) / 20
               - 2 * sum(k(a[i], r[j]) for i in range(4) for j in range(5)) / 20)
    assert kid(a, r) == pytest.approx(by_hand, rel=1e-12)
    same, other, shifted = rng.normal(size=(400, 8)), rng.normal(size=(500, 8)), rng.normal(0.5, 1, size=(400, 8))
    assert abs(kid(same, other)) < kid(shifted, other) / 20
    loo = kid_leave_one_out(same[:30], other)
    assert loo == pytest.approx([kid(np.delete(same[:30], i, 0), other) for i in range(30)], rel=1e-10)
    with pytest.raises(ValueError, match="feature sets"):
        kid(same[:2], other)
    with pytest.raises(ValueError, match="feature sets"):
        kid(same, other[:, :4])

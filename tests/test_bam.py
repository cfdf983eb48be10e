"""Boundary-aware Mask (Algorithm 1): agreement with OpenCV's Canny on real photos, quantisation, LR targets.

The reference is the OpenCV pipeline the design names (design §4):
    gray = cv2.cvtColor(rgb_uint8, COLOR_RGB2GRAY)
    cv2.Canny(cv2.GaussianBlur(gray, (0, 0), sigma), T, T, L2gradient=True)
fed the same decoded pixels as our tensor (both come from one cv2.imread). OpenCV rounds the gray and the blurred
image to uint8; ``bam`` reproduces that arithmetic by default (``eight_bit=True``), so it is compared to the cv2
pipeline as is. The floating-point path (``eight_bit=False``) is reported beside it with a looser bound.
Run ``pytest tests/test_bam.py -s`` to see the precision / recall / F1 figures.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from bdflow.bam import (
    BAM,
    bam,
    boundary_strength,
    boundary_target,
    gaussian_ksize,
    gaussian_taps,
    luma255,
    luma_std,
    normalize_strength,
)
from bdflow.quantize import max_code

# (folder, index in sorted order, longest side after an INTER_AREA downscale or None): 14 real photos.
PHOTOS = [
    ("faces/val", 0, None),
    ("faces/val", 1, None),
    ("faces/val", 2, None),
    ("faces/test1024", 0, None),  # full 1024 x 1024
    ("faces/test1024", 1, 512),  # downscaled to 512
    ("sr/Set5", 0, None),
    ("sr/Set5", 2, None),
    ("sr/Set14", 0, None),
    ("sr/Set14", 2, None),  # bridge.png, a grayscale PNG
    ("sr/Kodak24", 0, None),
    ("sr/Kodak24", 1, None),
    ("cats/test", 0, None),
    ("cats/afhq_test", 0, None),
    ("churches/lsun_test", 0, None),
]
PHOTO_IDS = [f"{folder.replace('/', '-')}-{i}" + (f"-{size}" if size else "") for folder, i, size in PHOTOS]
THRESHOLDS = (20, 50, 100)

_cache: dict = {}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """BAM is ~80 small element-wise ops; on the shared 2-core machine, torch's intra-op threads spinning at
    barriers while another process holds the other core made this file 20x slower. One thread is fast enough."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _files(data_dir: Path, folder: str) -> list[Path]:
    exts = {".jpg", ".jpeg", ".png"}
    return sorted(p for p in (data_dir / folder).iterdir() if p.suffix.lower() in exts)


def load_rgb(data_dir: Path, folder: str, index: int, size: int | None) -> np.ndarray:
    """(H,W,3) uint8 RGB, decoded once by cv2 (so both sides see identical pixels)."""
    key = (folder, index, size)
    if key not in _cache:
        path = _files(data_dir, folder)[index]
        rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        if size is not None:
            h, w = rgb.shape[:2]
            f = size / max(h, w)
            rgb = cv2.resize(rgb, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
        _cache[key] = (path.name, rgb)
    return _cache[key]


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255


def cv2_canny(rgb: np.ndarray, threshold: float, sigma: float = 1.0, l2: bool = True) -> np.ndarray:
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    blurred = cv2.GaussianBlur(gray, (0, 0), sigma)
    return cv2.Canny(blurred, threshold, threshold, L2gradient=l2) > 0


def prf(ref: np.ndarray, ours: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall, F1 over edge pixels (edges are sparse: count edge pixels, not all pixels)."""
    tp = float(np.logical_and(ref, ours).sum())
    p = tp / max(float(ours.sum()), 1.0)
    r = tp / max(float(ref.sum()), 1.0)
    return p, r, 2 * p * r / max(p + r, 1e-12)


def edges(t: torch.Tensor) -> np.ndarray:
    return t[0, 0].cpu().numpy() > 0


# ----------------------------------------------------------------------------------------------------------------
# agreement with cv2.Canny (the acceptance test)
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", THRESHOLDS)
@pytest.mark.parametrize("photo", PHOTOS, ids=PHOTO_IDS)
def test_canny_agreement(data_dir, photo, threshold):
    name, rgb = load_rgb(data_dir, *photo)
    x = to_tensor(rgb)
    ref = cv2_canny(rgb, threshold)
    ours = edges(bam(x, bits=1, norm=2, threshold=threshold))
    p, r, f1 = prf(ref, ours)
    fp, fr, ff1 = prf(ref, edges(bam(x, bits=1, norm=2, threshold=threshold, eight_bit=False)))
    print(
        f"\n[canny] {photo[0]}/{name} WxH {rgb.shape[1]}x{rgb.shape[0]} T={threshold}: edges {int(ref.sum())}, "
        f"8-bit P={p:.4f} R={r:.4f} F1={f1:.4f} (mismatched pixels {int((ref != ours).sum())}); "
        f"float F1={ff1:.4f}"
    )
    assert ref.sum() > 100, "the reference found almost no edges: a bad test image"
    assert f1 >= 0.95, f"F1 {f1:.4f} < 0.95 against cv2.Canny on {name} at T={threshold}"
    assert ff1 >= 0.8, f"float path F1 {ff1:.4f} < 0.8 on {name} at T={threshold}"


@pytest.mark.parametrize("sigma", (0.8, 1.5, 2.0))
@pytest.mark.parametrize("photo", PHOTOS[::4], ids=PHOTO_IDS[::4])
def test_canny_agreement_other_sigmas(data_dir, photo, sigma):
    name, rgb = load_rgb(data_dir, *photo)
    ref = cv2_canny(rgb, 50, sigma)
    p, r, f1 = prf(ref, edges(bam(to_tensor(rgb), sigma=sigma, bits=1, threshold=50)))
    print(f"\n[canny] {photo[0]}/{name} sigma={sigma} T=50: P={p:.4f} R={r:.4f} F1={f1:.4f}")
    assert f1 >= 0.95


@pytest.mark.parametrize("size, stride", [(8, None), (3, 1), (4, 2)])
def test_luma_std_is_the_windows_standard_deviation(size, stride):
    """luma_std: numpy's (population) std of the unrounded 0-255 luma over each unpadded window."""
    x = torch.rand(2, 3, 17, 20, dtype=torch.float64)
    ours = luma_std(x, size, stride)
    luma = luma255(x, eight_bit=False)[:, 0].numpy()
    step = stride or size
    rows, cols = (luma.shape[1] - size) // step + 1, (luma.shape[2] - size) // step + 1
    want = np.array([[[luma[n, i * step:i * step + size, j * step:j * step + size].std() for j in range(cols)]
                      for i in range(rows)] for n in range(2)])
    assert ours.shape == (2, 1, rows, cols) and np.allclose(ours[:, 0].numpy(), want, atol=1e-6)
    assert torch.allclose(luma_std(torch.full((1, 3, 8, 8), 0.4), 4), torch.zeros(1, 1, 2, 2), atol=1e-3)  # flat: no contrast


def test_luma_and_blur_match_opencv(data_dir):
    """The two roundings the 8-bit path reproduces: cvtColor RGB2GRAY and the fixed-point GaussianBlur."""
    _, rgb = load_rgb(data_dir, "sr/Kodak24", 0, None)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    ours = luma255(to_tensor(rgb))[0, 0].numpy()
    assert np.array_equal(ours, gray.astype(np.float32))
    noise = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    assert np.array_equal(luma255(to_tensor(noise))[0, 0].numpy(), cv2.cvtColor(noise, cv2.COLOR_RGB2GRAY))
    from bdflow.bam import _blur

    for sigma in (0.5, 1.0, 1.5, 3.0):
        ref = cv2.GaussianBlur(gray, (0, 0), sigma)
        got = _blur(torch.from_numpy(gray).float()[None, None], sigma)[0, 0].numpy()
        assert np.array_equal(got, ref.astype(np.float32)), f"blur differs from cv2 at sigma={sigma}"
    assert gaussian_ksize(1.0) == 7 and gaussian_taps(1.0) == [1, 14, 62, 102, 62, 14, 1]
    assert abs(sum(gaussian_taps(1.3, eight_bit=False)) - 1) < 1e-12


def test_one_norm_differs_from_canny(data_dir):
    """norm=1 (|gx| + |gy|) is a different BAM than Canny's 2-norm (and equals cv2's L1 Canny)."""
    f1s = []
    for photo in PHOTOS[::2]:
        name, rgb = load_rgb(data_dir, *photo)
        n1 = edges(bam(to_tensor(rgb), norm=1, threshold=50))
        _, _, f1_l2 = prf(cv2_canny(rgb, 50), n1)
        _, _, f1_l1 = prf(cv2_canny(rgb, 50, l2=False), n1)
        print(f"\n[norm] {photo[0]}/{name} T=50: 1-norm BAM vs 2-norm Canny F1={f1_l2:.4f}, vs L1 Canny {f1_l1:.4f}")
        f1s.append(f1_l2)
        assert f1_l2 < 0.97, f"1-norm and 2-norm maps nearly identical on {name}"
        assert f1_l1 >= 0.95
    print(f"[norm] mean F1 1-norm vs 2-norm Canny: {np.mean(f1s):.4f}")
    assert np.mean(f1s) < 0.9


# ----------------------------------------------------------------------------------------------------------------
# synthetic geometry
# ----------------------------------------------------------------------------------------------------------------


def step_image(h=64, w=64, col=32, lo=0.2, hi=0.8) -> torch.Tensor:
    x = torch.full((1, 3, h, w), lo)
    x[..., col:] = hi
    return x


def test_step_edge_is_one_pixel_wide():
    b = bam(step_image())[0, 0]
    assert torch.equal(b.sum(dim=1), torch.full((64,), 1.0)), "one edge pixel per row"
    assert torch.all(b[:, 31] == 1)  # OpenCV's asymmetric NMS keeps the left pixel of a two-pixel plateau
    rgb = (step_image()[0].permute(1, 2, 0) * 255).round().byte().numpy()
    assert np.array_equal(edges(bam(step_image())), cv2_canny(rgb, 50))


def test_flat_and_thresholds():
    flat = torch.full((2, 3, 32, 48), 0.5)
    assert bam(flat).sum() == 0 and boundary_strength(flat).sum() == 0
    # a step of 0.6 * 255 = 153 levels: magnitude about 3.2 * 153 ~ 490 after the blur; T above it removes it
    assert bam(step_image(), threshold=1000).sum() == 0
    assert bam(step_image(), threshold=0).sum() > 0


def test_boundary_strength_values():
    x = step_image()
    b_s = boundary_strength(x)
    on = b_s > 0
    assert torch.equal(on, bam(x) > 0)
    assert torch.all(b_s[on] > 50)
    # B_s is the Sobel 2-norm of the blurred luma at the edge pixel
    lum = luma255(x)
    assert 0 < float(b_s.max()) < 4 * float(lum.max() - lum.min())


def test_tiny_images_run():
    for h, w in ((1, 1), (2, 3), (3, 3), (5, 4)):
        out = bam(torch.rand(1, 3, h, w), threshold=0)
        assert out.shape == (1, 1, h, w)


# ----------------------------------------------------------------------------------------------------------------
# quantisation (step 6)
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def face_small(face) -> torch.Tensor:
    return face[..., :256, 128:384].contiguous()


def test_bits1_is_binary(face_small):
    b = bam(face_small, bits=1)
    assert set(torch.unique(b).tolist()) == {0.0, 1.0}


@pytest.mark.parametrize("bits", (1, 2, 3, 4))
def test_k_bit_grid_and_support(face_small, bits):
    b = bam(face_small, bits=bits)
    n = max_code(bits)
    codes = b * n
    assert torch.allclose(codes, codes.round(), atol=1e-5), "values off the k-bit grid"
    assert b.min() >= 0 and b.max() <= 1
    assert torch.equal(b > 0, bam(face_small, bits=1) > 0), "support must not depend on k"
    b_s = boundary_strength(face_small)
    expected = torch.ceil(normalize_strength(b_s) * n) / n
    assert torch.allclose(b, expected)
    used = torch.unique((codes[b > 0]).round()).numel()
    print(f"\n[quant] bits={bits}: {used} of {n} non-zero levels used on the face crop")
    if bits > 1:
        assert used > 1


def test_saturation_keyword(face_small):
    b_s = boundary_strength(face_small)
    assert torch.allclose(normalize_strength(b_s, 50.0), (b_s / 200).clamp(0, 1))
    assert torch.allclose(normalize_strength(b_s, 50.0, saturation=1000.0), (b_s / 1000).clamp(0, 1))
    assert torch.allclose(normalize_strength(b_s, 0.0), (b_s / 200).clamp(0, 1))
    b = bam(face_small, bits=4, saturation=1e6)
    assert torch.equal(b > 0, bam(face_small) > 0) and torch.allclose(b[b > 0], torch.tensor(1 / 15))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(bits=0), "bits"),
        (dict(bits=5), "bits"),
        (dict(bits=1.5), "bits"),
        (dict(bits=True), "bits"),
        (dict(norm=3), "norm"),
        (dict(norm=0), "norm"),
        (dict(sigma=0), "sigma"),
        (dict(sigma=-1.0), "sigma"),
        (dict(sigma=float("nan")), "sigma"),
        (dict(threshold=-1), "threshold"),
        (dict(threshold=float("inf")), "threshold"),
        (dict(saturation=0.0), "saturation"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bam(torch.rand(1, 3, 16, 16), **kwargs)


@pytest.mark.parametrize(
    "x",
    [
        torch.rand(3, 16, 16),
        torch.rand(1, 2, 16, 16),
        torch.rand(1, 4, 16, 16),
        torch.rand(1, 1, 3, 16, 16),
        torch.zeros(1, 3, 16, 16, dtype=torch.uint8),
        torch.rand(0, 3, 16, 16),
    ],
    ids=["3d", "2ch", "4ch", "5d", "uint8", "empty"],
)
def test_invalid_images(x):
    with pytest.raises(ValueError, match="x must"):
        bam(x)
    with pytest.raises(ValueError, match="x must"):
        boundary_target(x, 2)


def test_module_wrapper(face_small):
    m = BAM(threshold=50, bits=2)
    assert torch.equal(m(face_small), bam(face_small, bits=2))
    assert "bits=2" in repr(m) and not list(m.parameters())
    with pytest.raises(ValueError):
        BAM(bits=7)
    with pytest.raises(TypeError):
        BAM(treshold=50)  # a misspelt parameter is refused, as bam() refuses it


# ----------------------------------------------------------------------------------------------------------------
# the LR-grid target for B (design §3)
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ("density", "max", "lr"))
def test_boundary_target_shapes(face, mode):
    for scale in (2, 4, 8, 16, 32, 64):
        t = boundary_target(face, scale, mode)
        assert t.shape == (1, 1, 512 // scale, 512 // scale), (mode, scale)
        assert t.min() >= 0 and t.max() <= 1
        assert t.max() > 0 and not t.requires_grad


def test_boundary_target_density_and_max(face):
    flat = torch.full((1, 3, 64, 64), 0.3)
    for mode in ("density", "max", "lr"):
        assert boundary_target(flat, 8, mode).sum() == 0
    # a vertical step: the 1-pixel edge lies in column 31, i.e. crosses the blocks of LR column 3 once each
    t = boundary_target(step_image(), 8, "density")[0, 0]
    expected = torch.zeros(8, 8)
    expected[:, 3] = 0.5
    assert torch.allclose(t, expected)
    for scale in (4, 8, 16):
        dens = boundary_target(face, scale, "density")
        mx = boundary_target(face, scale, "max")
        assert torch.equal(dens > 0, mx > 0), "max > 0 exactly where the density is"
        assert torch.all(mx[mx > 0] >= 0.25), "an edge just over T normalises to T / 4T"
        b_s = boundary_strength(face)
        indicator = torch.nn.functional.avg_pool2d((b_s > 0).float(), scale)
        assert torch.allclose(dens, (indicator * scale / 2).clamp(0, 1))


def test_boundary_target_lr(face):
    t = boundary_target(face, 4, "lr")
    small = torch.nn.functional.interpolate(face, size=(128, 128), mode="bicubic", antialias=True).clamp(0, 1)
    assert torch.allclose(t, normalize_strength(boundary_strength(small)))


@pytest.mark.parametrize("bad", [dict(scale=3), dict(scale=0), dict(scale=2.0), dict(scale=2, mode="mean")])
def test_boundary_target_invalid(bad):
    x = torch.rand(1, 3, 64, 48)
    with pytest.raises(ValueError):
        boundary_target(x, **bad)
    with pytest.raises(ValueError, match="multiples"):
        boundary_target(torch.rand(1, 3, 60, 64), 8)


# ----------------------------------------------------------------------------------------------------------------
# batching, dtypes, autograd, devices
# ----------------------------------------------------------------------------------------------------------------


def test_batch_equals_per_image(face):
    x = torch.cat([face[..., :256, :256], face[..., 256:, 256:]])
    for fn in (
        lambda t: bam(t, bits=3),
        lambda t: boundary_strength(t),
        lambda t: boundary_target(t, 8, "density"),
        lambda t: boundary_target(t, 8, "max"),
        lambda t: boundary_target(t, 8, "lr"),
        lambda t: bam(t, bits=2, eight_bit=False),
    ):
        both = fn(x)
        assert torch.equal(both, torch.cat([fn(x[:1]), fn(x[1:])]))


def test_one_channel_input_is_luma(data_dir):
    _, rgb = load_rgb(data_dir, "sr/Set5", 0, None)
    gray = torch.from_numpy(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)).float()[None, None] / 255
    assert torch.equal(bam(gray, bits=3), bam(to_tensor(rgb), bits=3))


def test_dtypes(face_small):
    ref = bam(face_small, bits=4)
    assert torch.equal(bam(face_small.double(), bits=4).float(), ref)  # 8-bit path: exact integer arithmetic
    assert bam(face_small.double()).dtype == torch.float64
    assert torch.equal(bam(face_small.half(), bits=4), ref)
    f32 = edges(bam(face_small, eight_bit=False))
    f64 = edges(bam(face_small.double(), eight_bit=False))
    assert prf(f64, f32)[2] > 0.99


def test_requires_grad_input_is_detached(face_small):
    x = face_small.clone().requires_grad_(True)
    for out in (bam(x, bits=2), boundary_strength(x), boundary_target(x, 4), luma255(x)):
        assert not out.requires_grad
    assert x.grad is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
@pytest.mark.parametrize("eight_bit", (True, False))
def test_cuda_matches_cpu(face, eight_bit):
    x = face.repeat(2, 1, 1, 1)
    cpu = bam(x, bits=4, eight_bit=eight_bit)
    gpu = bam(x.cuda(), bits=4, eight_bit=eight_bit)
    assert gpu.is_cuda
    if eight_bit:
        assert torch.equal(gpu.cpu(), cpu)
    else:
        assert prf(edges(cpu), edges(gpu.cpu()))[2] > 0.999
    for mode in ("density", "max", "lr"):
        t = boundary_target(x.cuda(), 16, mode, eight_bit=eight_bit)
        ref = boundary_target(x, 16, mode, eight_bit=eight_bit)
        if mode == "lr":  # CUDA's bicubic may differ in the last bits, which can move a rounding or an edge
            assert (t.cpu() - ref).abs().mean() < 0.01
        else:
            assert torch.allclose(t.cpu(), ref, atol=1e-6)


def test_boundary_target_reuses_a_given_strength():
    x = torch.rand(1, 3, 32, 32)
    b_s = boundary_strength(x)
    for mode in ("density", "max"):
        assert torch.equal(boundary_target(x, 8, mode=mode, b_s=b_s), boundary_target(x, 8, mode=mode))

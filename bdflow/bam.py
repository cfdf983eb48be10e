"""Boundary-aware Mask (paper Algorithm 1, design §3-4), batched on torch tensors (CPU or CUDA).

BAM runs on the image's luma scaled to 0-255 (the weights of ``cv2.cvtColor(..., COLOR_RGB2GRAY)``), and the
threshold T is in OpenCV Canny units (Sobel magnitudes of 0-255 intensities), so that

    bam(x, bits=1, norm=2, threshold=T)  ==  cv2.Canny(cv2.GaussianBlur(gray, (0, 0), sigma), T, T, L2gradient=True)

with gray = cv2.cvtColor(rgb_uint8, COLOR_RGB2GRAY). With both Canny thresholds equal to T, hysteresis changes
nothing: an edge pixel is a pixel that survives non-maximum suppression with magnitude > T.

8-bit path (``eight_bit=True``, the default). OpenCV works on uint8 images: it rounds the gray image and the
blurred image to integers, and those roundings move weak edges and break ties in non-maximum suppression (a
floating-point pipeline agrees with cv2.Canny only to edge-pixel F1 0.88-0.99 on real photos at sigma = 1, down
to 0.82 at sigma = 1.5, worst at low T). So by
default this module reproduces OpenCV's integer arithmetic: RGB snapped to 8 bits, luma with OpenCV's 15-bit
fixed-point weights, and the Gaussian blur with OpenCV's 8-bit fixed-point kernel (integer taps summing to 256,
result rounded half up). Every intermediate is an integer below 2^24, hence exact in float32 on any device, and
the result equals cv2.Canny pixel for pixel (OpenCV 5.0.0; 17 real photos x T = 20, 50, 100 x sigma = 1, 1.5;
the 1-norm equals cv2.Canny(..., L2gradient=False) likewise). ``eight_bit=False`` keeps everything
in floating point (smooth in the input; use it for inputs that are not 8-bit images, if ever needed).

Filters are written as sums of shifted slices rather than convolutions: on CUDA, cuDNN convolutions may run in
TF32 (10-bit mantissa), which would break both the exactness of the 8-bit path and ties in the float path.

BAM is a fixed target, never differentiated: every function detaches its input, so it may be called on a tensor
that requires grad (inside or outside ``torch.no_grad``) and returns a tensor without grad.

Public functions (all take ``eight_bit=True``; the image functions also ``saturation=None``)
    luma255(x)                                        -> (N,1,H,W) luma in 0-255
    boundary_strength(x, sigma, norm, threshold)      -> B_s (N,1,H,W): thinned, thresholded magnitudes (steps 1-5)
    normalize_strength(b_s, threshold, saturation)    -> B_s / saturation clamped to [0, 1]
    bam(x, sigma, norm, threshold, bits)              -> B_q (N,1,H,W) on the k-bit grid (steps 1-6)
    boundary_target(x, scale, mode, sigma, norm, threshold) -> (N,1,H/s,W/s) in [0, 1], LR-grid target (design §3)
    BAM(**params)                                     -> nn.Module wrapper of ``bam`` (its keyword parameters)
    gaussian_ksize(sigma), gaussian_taps(sigma)       -> the blur kernel cv2.GaussianBlur(ksize=(0, 0)) uses
"""

from __future__ import annotations

import inspect
import math
import numbers
import operator

import torch
import torch.nn.functional as F
from torch import nn

from .config import B_TARGETS
from .quantize import check_bits, codes8, quantize_b
from .resize import bicubic_down

# cv2.cvtColor(RGB2GRAY) weights (ITU-R BT.601 luma), and the 15-bit fixed-point weights OpenCV uses for uint8:
# round(w * 2^15) for R and G, B takes the remainder so that they sum to 2^15 (checked against cv2: exact).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
LUMA_SHIFT = 15
LUMA_WEIGHTS_FIXED = (9798, 19235, 32768 - 9798 - 19235)
# OpenCV's 8-bit Gaussian blur: integer taps with 8 fractional bits, two separable passes, so the result is
# sum(taps_i taps_j I) / 2^16 rounded half up.
BLUR_FRACTION_BITS = 8

# OpenCV Canny's sector boundaries: tan(22.5 deg) in its 15-bit fixed point (TG22 = 13573 / 2^15), and
# tan(67.5 deg) = tan(22.5 deg) + 2 as OpenCV forms it (tg67x = tg22x + (x << 16)).
TAN22 = 13573.0 / 32768.0
TAN67 = TAN22 + 2.0

# Saturation of the normalised strength: B_s / saturation, clamped to [0, 1]. The default is 4 T: an edge just
# over the threshold lands at 0.25 (so with rounding="ceil" it keeps the first level at every k), and edges at
# 4 T and above saturate. At T = 50 (the paper's best T) that is a magnitude of 200, the Sobel 2-norm of a step of
# about 60 gray levels after a sigma = 1 blur (a blurred step of height h peaks near 3.2 h); on the 512 faces the
# edge magnitudes have median ~1.7 T and 90th percentile ~4 T, so the levels spread over real contours. Since
# B_s > T, values below 0.25 never occur: at k = 3 the first level, at k = 4 the first three are unused (the
# price of a saturation proportional to T and of B_s / saturation being the normalisation). With T = 0 (no
# threshold) 4 T is meaningless, and the saturation of the paper's T = 50, i.e. 200, is used instead.
SATURATION_FACTOR = 4.0
DEFAULT_SATURATION = 200.0


# ----------------------------------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------------------------------


def _check_image(x: torch.Tensor) -> torch.Tensor:
    """Validate an image batch (N,3,H,W) RGB or (N,1,H,W) luma, both in [0, 1]; return it detached."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"x must have shape (N,3,H,W) (RGB) or (N,1,H,W) (luma), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor with values in [0, 1], got dtype {x.dtype}")
    if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"x must not be empty, got shape {tuple(x.shape)}")
    return x.detach()


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _check_params(sigma: float, norm: int, threshold: float) -> None:
    if isinstance(norm, bool) or norm not in (1, 2):
        raise ValueError(f"norm must be 1 (|gx| + |gy|) or 2 (sqrt(gx^2 + gy^2)), got {norm!r}")
    if not (_is_real(sigma) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
    if not (_is_real(threshold) and math.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"threshold must be a finite number >= 0 (OpenCV Canny units), got {threshold!r}")


def _saturation(threshold: float, saturation: float | None) -> float:
    if saturation is None:
        return SATURATION_FACTOR * threshold if threshold > 0 else DEFAULT_SATURATION
    if not (_is_real(saturation) and math.isfinite(saturation) and saturation > 0):
        raise ValueError(f"saturation must be a finite number > 0, got {saturation!r}")
    return float(saturation)


def gaussian_ksize(sigma: float) -> int:
    """Kernel size cv2.GaussianBlur picks for ksize=(0, 0) on an 8-bit image: round(6 sigma + 1), made odd.

    (OpenCV: ``cvRound(sigma * 3 * 2 + 1) | 1`` for CV_8U.) sigma = 1 gives 7.
    """
    return int(round(sigma * 6 + 1)) | 1


# ----------------------------------------------------------------------------------------------------------------
# Algorithm 1
# ----------------------------------------------------------------------------------------------------------------


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32  # half / bfloat16 computed in float32


def luma255(x: torch.Tensor, eight_bit: bool = True) -> torch.Tensor:
    """Luma in 0-255 of an image batch, with the weights of cv2 RGB2GRAY (0.299, 0.587, 0.114).

    x: (N,3,H,W) RGB in [0, 1], or (N,1,H,W) that is already luma in [0, 1] (then only scaled by 255).
    eight_bit=True: as cv2.cvtColor on the uint8 image: RGB snapped to round(255 x), OpenCV's 15-bit fixed-point
    weights, rounded half up to an integer (a 1-channel input: round(255 x)). False: 255 * (w . x), unrounded.
    Returns (N,1,H,W), float32 (float64 for a float64 input), same device, detached.
    """
    x = _check_image(x).to(_work_dtype(x))
    if eight_bit:
        x = codes8(x)  # the uint8 image
        if x.shape[1] == 1:
            return x
        w = torch.tensor(LUMA_WEIGHTS_FIXED, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        acc = (x * w).sum(dim=1, keepdim=True)  # integers < 2^23: exact
        return torch.floor((acc + 2 ** (LUMA_SHIFT - 1)) / 2**LUMA_SHIFT)
    if x.shape[1] == 1:
        return x * 255.0
    w = torch.tensor(LUMA_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True) * 255.0


def luma_std(x: torch.Tensor, size: int, stride: int | None = None) -> torch.Tensor:
    """Local contrast: the standard deviation of x's luma (0-255, unrounded) over each size x size window, unpadded,
    (N, 1, (H - size) / stride + 1, ...); stride = size (the default): one value per patch. Detached, like luma255.
    The rule that calls a patch flat (``losses.flat_patches``, tools/z_cost_by_region.py)."""
    luma = luma255(x, eight_bit=False)
    mean, square = (F.avg_pool2d(t, size, stride or size) for t in (luma, luma**2))
    return (square - mean**2).clamp_min(0).sqrt()


def gaussian_taps(sigma: float, eight_bit: bool = True) -> list[float]:
    """1-D Gaussian kernel of cv2.GaussianBlur(ksize=(0, 0), sigma): ``gaussian_ksize(sigma)`` taps.

    eight_bit=False: exp(-i^2 / (2 sigma^2)) normalised to sum 1. True: the integer taps (summing to 2^8) that
    OpenCV's bit-exact 8-bit blur uses: the half-kernel is scaled by 256 and rounded from the outside in,
    carrying each rounding error to the next tap; the centre takes what is left. (sigma = 1: 1 14 62 102 62 14 1.)
    """
    k = gaussian_ksize(sigma)
    r = k // 2
    g = [math.exp(-(i * i) / (2.0 * sigma * sigma)) for i in range(-r, r + 1)]
    total = math.fsum(g)
    g = [v / total for v in g]
    if not eight_bit:
        return g
    one = 2**BLUR_FRACTION_BITS
    taps = [0] * k
    err = 0.0
    for i in range(r):
        v = g[i] * one + err
        q = round(v)  # OpenCV's cvRound: to nearest, ties to even, as Python's round
        err = v - q
        taps[i] = taps[k - 1 - i] = q
    taps[r] = one - 2 * sum(taps[:r])
    return [float(t) for t in taps]


def _pad(img: torch.Tensor, r: int, mode: str) -> torch.Tensor:
    h, w = img.shape[-2:]
    if mode == "reflect" and min(h, w) <= r:
        # torch 'reflect' (= OpenCV BORDER_REFLECT_101) needs the padding to be smaller than the side; images that
        # small (a few pixels, e.g. an LR image at x64) fall back to 'replicate'.
        mode = "replicate"
    return F.pad(img, (r, r, r, r), mode=mode)


def _correlate_sep(img: torch.Tensor, row_taps, col_taps, mode: str) -> torch.Tensor:
    """Separable correlation of (N,1,H,W) with odd 1-D kernels (row_taps along x, col_taps along y), as sums of
    shifted slices (exact FP32 arithmetic on every device, no TF32; zero taps skipped)."""
    h, w = img.shape[-2:]
    r = len(row_taps) // 2
    p = _pad(img, r, mode)
    rows = sum(t * p[..., :, i : i + w] for i, t in enumerate(row_taps) if t != 0)  # (N,1,H+2r,W)
    return sum(t * rows[..., i : i + h, :] for i, t in enumerate(col_taps) if t != 0)


def _blur(lum: torch.Tensor, sigma: float, eight_bit: bool = True) -> torch.Tensor:
    """Step 1 on (N,1,H,W): cv2.GaussianBlur(ksize=(0, 0), sigma) with its default BORDER_REFLECT_101.

    eight_bit=True: OpenCV's fixed-point blur of a uint8 image, exactly (integer result)."""
    taps = gaussian_taps(sigma, eight_bit)
    out = _correlate_sep(lum, taps, taps, "reflect")
    if eight_bit:  # sum < 255 * 2^16 < 2^24: exact; OpenCV rounds half up
        out = torch.floor((out + 2 ** (2 * BLUR_FRACTION_BITS - 1)) / 2 ** (2 * BLUR_FRACTION_BITS))
    return out


def _gradients(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 2 on (N,1,H,W): 3x3 Sobel gx, gy, unnormalised (OpenCV aperture 3: [-1 0 1] x [1 2 1]), with the
    BORDER_REPLICATE that cv2.Canny uses for its Sobel (checked by experiment: pixel-exact at the borders)."""
    gx = _correlate_sep(img, (-1.0, 0.0, 1.0), (1.0, 2.0, 1.0), "replicate")
    gy = _correlate_sep(img, (1.0, 2.0, 1.0), (-1.0, 0.0, 1.0), "replicate")
    return gx, gy


def _non_max_suppression(mag: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """Step 4: Canny non-maximum suppression; returns a bool mask (N,1,H,W) of the local maxima of ``mag``.

    As OpenCV's Canny: the gradient direction is quantised to 4 sectors with tan(22.5 deg) comparisons,
    neighbours outside the image count as magnitude 0, and the comparison is asymmetric (> the left / upper
    neighbour, >= the right / lower one) so that a plateau two pixels wide gives a 1-pixel edge; diagonals use
    > on both sides. ``mag`` may be any monotone function of the magnitude (the 2-norm path passes gx^2 + gy^2,
    as OpenCV does, so that ties are exact).
    """
    h, w = mag.shape[-2:]
    p = F.pad(mag, (1, 1, 1, 1))  # zeros outside the image

    def nb(dy: int, dx: int) -> torch.Tensor:  # neighbour at (row + dy, col + dx)
        return p[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    ax, ay = gx.abs(), gy.abs()
    horizontal = ay < TAN22 * ax  # gradient ~ along x: compare left / right
    vertical = ay > TAN67 * ax  # gradient ~ along y: compare up / down
    diagonal = ~(horizontal | vertical)
    opposite = (gx < 0) != (gy < 0)  # gradient towards up-right / down-left (y grows downwards)

    keep_h = (mag > nb(0, -1)) & (mag >= nb(0, 1))
    keep_v = (mag > nb(-1, 0)) & (mag >= nb(1, 0))
    keep_same = (mag > nb(-1, -1)) & (mag > nb(1, 1))
    keep_opp = (mag > nb(-1, 1)) & (mag > nb(1, -1))
    keep_d = torch.where(opposite, keep_opp, keep_same)
    return (horizontal & keep_h) | (vertical & keep_v) | (diagonal & keep_d)


def _strength_from_luma(
    lum: torch.Tensor, sigma: float, norm: int, threshold: float, eight_bit: bool = True
) -> torch.Tensor:
    """Steps 1-5 on luma (N,1,H,W) in 0-255 -> B_s (N,1,H,W)."""
    blurred = _blur(lum, sigma, eight_bit)  # 1: I_g = GaussBlur(I, sigma)
    gx, gy = _gradients(blurred)  # 2: G_x, G_y = Gradient(I_g)
    if norm == 2:  # 3: M = getMagnitude(G_x, G_y)
        key = gx * gx + gy * gy  # squared 2-norm: same order as the norm, exact ties (OpenCV L2gradient)
        limit = float(threshold) ** 2
        mag = key.sqrt()
    else:
        key = gx.abs() + gy.abs()
        limit = float(threshold)
        mag = key
    keep = _non_max_suppression(key, gx, gy)  # 4: M' = NonMaximumSuppress(M)
    keep = keep & (key > limit)  # 5: B_s = SparsifyBoundary(M', T): keep M' > T
    return torch.where(keep, mag, torch.zeros_like(mag))


def boundary_strength(
    x: torch.Tensor, sigma: float = 1.0, norm: int = 2, threshold: float = 50.0, eight_bit: bool = True
) -> torch.Tensor:
    """B_s of Algorithm 1 (steps 1-5): thinned, thresholded gradient magnitude, unquantised.

    x: (N,3,H,W) RGB or (N,1,H,W) luma, floating point in [0, 1] (detached: BAM is a fixed target).
    eight_bit: reproduce OpenCV's uint8 arithmetic (default; see the module docstring).
    Returns (N,1,H,W), float32 (float64 for float64 input), same device: the Sobel magnitude (of the 0-255 luma,
    1- or 2-norm) at pixels that survive non-maximum suppression with magnitude > threshold, 0 elsewhere. This is
    what the BAW loss weight (Eq. 4) normalises per image.
    """
    _check_params(sigma, norm, threshold)
    return _strength_from_luma(luma255(x, eight_bit), sigma, norm, threshold, eight_bit)


def normalize_strength(
    b_s: torch.Tensor, threshold: float = 50.0, saturation: float | None = None
) -> torch.Tensor:
    """B_s -> B_s / saturation clamped to [0, 1] (saturation default: 4 T, or 200 when T = 0; see above)."""
    return (b_s / _saturation(threshold, saturation)).clamp(0, 1)


def bam(
    x: torch.Tensor,
    sigma: float = 1.0,
    norm: int = 2,
    threshold: float = 50.0,
    bits: int = 1,
    saturation: float | None = None,
    eight_bit: bool = True,
) -> torch.Tensor:
    """Boundary-aware Mask B_q (Algorithm 1, steps 1-6).

    x: (N,3,H,W) RGB or (N,1,H,W) luma, floating point in [0, 1]. Returns (N,1,H,W) in [0, 1] on the k-bit grid
    {0, 1/L, ..., 1}, L = 2^bits - 1. Step 6 normalises B_s by ``saturation`` (default 4 T) and rounds *up*, so
    every boundary pixel keeps at least the first level and the support is the same for every k: with bits=1 and
    norm=2 the result is the binary Canny edge map. No gradient (fixed target).
    """
    bits = check_bits(bits)
    b_s = boundary_strength(x, sigma, norm, threshold, eight_bit)
    return quantize_b(normalize_strength(b_s, threshold, saturation), bits, rounding="ceil")  # 6: Quantify(B_s)


def _check_scale(x: torch.Tensor, scale: int) -> int:
    try:
        s = operator.index(scale) if not isinstance(scale, bool) else 0
    except TypeError:
        s = 0
    if s < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    scale = s
    h, w = x.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"image sides must be multiples of scale={scale}, got {h}x{w}")
    return scale


def boundary_target(
    x: torch.Tensor,
    scale: int,
    mode: str = "density",
    sigma: float = 1.0,
    norm: int = 2,
    threshold: float = 50.0,
    saturation: float | None = None,
    eight_bit: bool = True,
    b_s: torch.Tensor | None = None,
) -> torch.Tensor:
    """The training target for B on the LR grid (design §3), unquantised, in [0, 1].

    x: (N,3,H,W) RGB or (N,1,H,W) luma in [0, 1], H and W multiples of ``scale``. Returns (N,1,H/s,W/s).
    mode
      "density": BAM on the HR image; the boundary indicator (B_s > 0) averaged over each s x s block, then
                 clamp(density * s / 2, 0, 1). A straight 1-pixel edge crossing a block covers about s of its
                 s^2 pixels (density ~ 1/s), so one crossing gives ~0.5 and two or more saturate at ~1.
      "max":     BAM on the HR image; the normalised strength (B_s / saturation, clamped) max-pooled per block.
      "lr":      BAM strength of the bicubic-downscaled image (antialiased, clamped to [0, 1]), normalised by the
                 saturation. Note this one is computable from Y alone (design §3: an ablation).
    eight_bit: see the module docstring (for "lr", the downscaled image is snapped to 8 bits, as a stored LR).
    b_s: ``boundary_strength(x, ...)`` when the caller has it already (the loss needs it for BAW too).
    """
    x = _check_image(x)
    scale = _check_scale(x, scale)
    if mode not in B_TARGETS:
        raise ValueError(f"mode must be one of {B_TARGETS}, got {mode!r}")
    _check_params(sigma, norm, threshold)
    h, w = x.shape[-2:]
    if mode == "lr":
        small = bicubic_down(x, scale) if scale > 1 else x
        b_lr = boundary_strength(small, sigma, norm, threshold, eight_bit)
        return normalize_strength(b_lr, threshold, saturation)
    if b_s is None:
        b_s = boundary_strength(x, sigma, norm, threshold, eight_bit)
    if mode == "density":
        density = F.avg_pool2d((b_s > 0).to(b_s.dtype), scale)
        return (density * (scale / 2.0)).clamp(0, 1)
    return F.max_pool2d(normalize_strength(b_s, threshold, saturation), scale)


class BAM(nn.Module):
    """``bam`` as a module (kornia style): (N,3,H,W) or (N,1,H,W) in [0, 1] -> B_q (N,1,H,W). No parameters.

    ``BAM(**params)`` takes ``bam``'s keyword parameters (sigma, norm, threshold, bits, saturation, eight_bit) and its
    defaults, read from ``bam``'s own signature: one parameter list, not two; an unknown name is a TypeError."""

    def __init__(self, **params):
        super().__init__()
        bound = inspect.signature(bam).bind(None, **params)  # None stands for x
        bound.apply_defaults()
        self.params = {name: value for name, value in bound.arguments.items() if name != "x"}
        _check_params(self.params["sigma"], self.params["norm"], self.params["threshold"])
        self.params["bits"] = check_bits(self.params["bits"])
        _saturation(self.params["threshold"], self.params["saturation"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bam(x, **self.params)

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={self.params[name]}" for name in ("sigma", "norm", "threshold", "bits"))

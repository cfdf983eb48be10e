"""The decoupling lab (the app's lab): decode image A's Y with a B from somewhere else, to see what each part carries.

    codes = source_codes(demo, an_a, bits, "image", other=an_b)   # B of another image (encoded at A's size)
    codes = source_codes(demo, an_a, bits, "zero")                # B := 0
    codes = source_codes(demo, an_a, bits, "bam", threshold=20)   # the HR's own BAM target at another threshold T
    codes = paint_codes(painted_rgb, codes.shape, bits)            # or B as painted with a brush (white = boundary)
    dec = decode_with(demo, an_a, codes, bits, tau, seed)          # the inverse pass; demo.scores(an_a, dec)

Y always is the flow's own Y of image A, Z is sampled at tau with the seed (at the share tau_b of it in the given B's
boundary cells, as every decode): only B changes.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from . import viz
from .bam import boundary_target
from .demo import Analysis, Decoded, Demo
from .limits import DEFAULT_TAU_B, check_bits, check_seed, check_tau, check_tau_b
from .image_io import load_image, pad_to_multiple, to_output
from .quantize import b_to_codes, to_8bit

# the B a student can give the decoder: key -> what the app's radio shows
B_SOURCES = {"own": "the flow's own B", "image": "B of image B", "zero": "B := 0", "bam": "the HR's BAM at threshold T"}


def _needs_b(an: Analysis) -> None:
    if an.b is None:
        raise ValueError(f"{an.label} stores no B (a B-less twin): pick a model with B for the lab")


def at_size_of(image, an: Analysis, max_pixels: int) -> np.ndarray:
    """Image B as uint8 (H, W, 3) at image A's HR size (bicubic), so that its B lies on A's LR grid."""
    x, _ = load_image(image, max_pixels)
    rgb = to_output(x, "ndarray", "uint8")
    h, w = an.x.shape[-2:]
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BICUBIC))


def source_codes(demo: Demo, an: Analysis, bits: int, source: str, other: Analysis | None = None,
                 threshold: float = 50.0) -> np.ndarray:
    """k-bit B codes (h, w) on A's LR grid from ``source`` (a key of :data:`B_SOURCES`)."""
    _needs_b(an)
    bits = check_bits(bits)
    own = demo.stored(an, bits).enc.b
    if source == "own":
        return own
    if source == "zero":
        return np.zeros_like(own)
    if source == "image":
        if other is None:
            raise ValueError("upload an image B to take its B")
        if other.label != an.label or other.b is None or other.b.shape != an.b.shape:
            raise ValueError("image B must be encoded by the same model at image A's size")
        return demo.stored(other, bits).enc.b
    if source == "bam":
        config = demo.rescaler(an.label).model.config
        x = pad_to_multiple(an.x, an.scale)
        target = boundary_target(x, an.scale, mode=config.b_target, sigma=config.bam_sigma, norm=config.bam_norm,
                                 threshold=float(threshold))
        return b_to_codes(target, bits)[0, 0].numpy()
    raise ValueError(f"unknown B source {source!r}; choose one of: {', '.join(B_SOURCES)}")


def paint_codes(painted: np.ndarray, lr_shape: tuple[int, int], bits: int) -> np.ndarray:
    """A painted B, uint8 (H', W', 3 or 4) gray (white = boundary, black = none, e.g. the brush's composite), ->
    k-bit codes (h, w): the luma averaged over the cells of the LR grid it is stretched onto, then quantised."""
    bits = check_bits(bits)
    a = np.asarray(painted)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or a.dtype != np.uint8:
        raise ValueError(f"a painted B must be a uint8 (H, W, 3|4) image, got {a.dtype} {a.shape}")
    rgb = a[..., :3].astype(np.float32) / 255
    if a.shape[2] == 4:  # transparent = black (nothing painted on an empty canvas)
        rgb = rgb * (a[..., 3:] / 255.0)
    gray = torch.from_numpy(rgb.mean(axis=2))[None, None]
    cells = torch.nn.functional.adaptive_avg_pool2d(gray, tuple(lr_shape))
    return b_to_codes(cells, bits)[0, 0].numpy()


def codes_canvas(codes: np.ndarray, bits: int, scale: int, size: tuple[int, int]) -> np.ndarray:
    """Codes (h, w) -> the brush's background: uint8 gray (H, W, 3), each code a scale x scale cell, cropped."""
    return viz.codes_image(codes, check_bits(bits), scale, size)


@torch.inference_mode()
def decode_with(demo: Demo, an: Analysis, codes: np.ndarray, bits: int, tau: float, seed: int,
                tau_b: float = DEFAULT_TAU_B) -> Decoded:
    """Image A's Y with the given B codes (h, w) and Z sampled at tau (the share ``tau_b`` of it in the given B's
    boundary cells): the inverse pass, as ``Demo.decode``."""
    _needs_b(an)
    tau, seed, bits, tau_b = check_tau(tau), check_seed(seed), check_bits(bits), check_tau_b(tau_b)
    s = demo.stored(an, bits)
    codes = np.asarray(codes, dtype=np.uint8)
    if codes.shape != s.enc.b.shape:
        raise ValueError(f"B must be {s.enc.b.shape} codes on image A's LR grid, got {codes.shape}")
    changed = int((codes != s.enc.b).sum())
    s.enc.b = codes
    x_hat = to_8bit(demo.rescaler(an.label).decode(s.enc, tau=tau, seed=seed, output_type="pt", tau_b=tau_b).cpu())  # as Demo.decode
    return Decoded.of(s, x_hat, an.hr_pixels, notes=[f"{changed} of {codes.size} B cells differ from the flow's own B"])

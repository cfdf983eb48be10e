"""Bicubic resizing: the LR target of L_forw (Eq. 8) and the bicubic round-trip baseline (design §5).

Antialiased bicubic (like PIL's and MATLAB's imresize) for downscaling; plain bicubic for upscaling. Inputs of any
size are reflect-padded to a multiple of the scale (``pad_to_multiple``), as the pipeline does.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from .image_io import pad_to_multiple
from .quantize import to_8bit, y_to_uint8


def bicubic_down(x: torch.Tensor, scale: int) -> torch.Tensor:
    """(N,C,H,W) -> (N,C,H/scale,W/scale), antialiased bicubic, clamped to [0, 1]."""
    h, w = x.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"H and W must be multiples of the scale {scale}, got {h}x{w}")
    out = F.interpolate(x, size=(h // scale, w // scale), mode="bicubic", antialias=True, align_corners=False)
    return out.clamp(0, 1)


def _bicubic_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The one upscaling rule: plain bicubic (no antialias) to ``size``, clamped to [0, 1]."""
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


def bicubic_up(y: torch.Tensor, scale: int) -> torch.Tensor:
    """(N,C,h,w) -> (N,C,h*scale,w*scale), bicubic, clamped to [0, 1]."""
    h, w = y.shape[-2:]
    return _bicubic_to(y, (h * scale, w * scale))


def bicubic_enlarge(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N,C,h,w) -> (N,C,size,size) for size >= h, w: ``bicubic_up``'s rule at a factor that need not be an integer
    (training's ``zoom``)."""
    if size < max(x.shape[-2:]):
        raise ValueError(f"bicubic_enlarge only enlarges: {tuple(x.shape[-2:])} to {size}")
    return _bicubic_to(x, (size, size))


def bicubic_lr(x: torch.Tensor, scale: int) -> torch.Tensor:
    """The 8-bit bicubic LR (N,3,h,w) of the padded HR x (N,3,H,W), values k/255."""
    return to_8bit(bicubic_down(pad_to_multiple(x, scale), scale))


def bicubic_lr_codes(x: torch.Tensor, scale: int) -> np.ndarray:
    """The same LR as stored data: uint8 (h,w,3) of the first image, like ``Encoded.y``."""
    return y_to_uint8(bicubic_lr(x, scale))[0].permute(1, 2, 0).cpu().numpy()


def bicubic_round_trip(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic down (8-bit LR), bicubic up, cropped back: the baseline of every table."""
    h, w = x.shape[-2:]
    return bicubic_up(bicubic_lr(x, scale), scale)[..., :h, :w]

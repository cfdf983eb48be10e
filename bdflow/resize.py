"""Bicubic resizing: the LR target of L_forw (Eq. 8) and the bicubic round-trip baseline (design §5).

Antialiased bicubic (like PIL's and MATLAB's imresize) for downscaling; plain bicubic for upscaling.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def bicubic_down(x: torch.Tensor, scale: int) -> torch.Tensor:
    """(N,C,H,W) -> (N,C,H/scale,W/scale), antialiased bicubic, clamped to [0, 1]."""
    h, w = x.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"H and W must be multiples of the scale {scale}, got {h}x{w}")
    out = F.interpolate(x, size=(h // scale, w // scale), mode="bicubic", antialias=True, align_corners=False)
    return out.clamp(0, 1)


def bicubic_up(y: torch.Tensor, scale: int) -> torch.Tensor:
    """(N,C,h,w) -> (N,C,h*scale,w*scale), bicubic, clamped to [0, 1]."""
    h, w = y.shape[-2:]
    out = F.interpolate(y, size=(h * scale, w * scale), mode="bicubic", align_corners=False)
    return out.clamp(0, 1)

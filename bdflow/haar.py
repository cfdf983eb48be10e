"""Orthonormal 2-D Haar wavelet transform (paper Eq. 5) and its exact inverse.

Written by hand rather than taken from a wavelet library: it is four signed sums of a 2x2 pixel block, and
the channel order [A, H, V, D] matters to the flow (the first C channels are the low-pass A of all C
input channels, so the first 3 channels at every level are the RGB low-pass that becomes Y).
"""

from __future__ import annotations

import torch


def haar_forward(x: torch.Tensor) -> torch.Tensor:
    """(N,C,H,W) -> (N,4C,H/2,W/2) as [A, H, V, D], each C channels. Orthonormal: energy is preserved."""
    n, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"Haar transform needs even height and width, got {h}x{w}")
    a = x[:, :, 0::2, 0::2]
    b = x[:, :, 0::2, 1::2]
    cc = x[:, :, 1::2, 0::2]
    d = x[:, :, 1::2, 1::2]
    low = (a + b + cc + d) / 2
    horizontal = (a - b + cc - d) / 2  # differences across columns
    vertical = (a + b - cc - d) / 2  # differences across rows
    diagonal = (a - b - cc + d) / 2
    return torch.cat([low, horizontal, vertical, diagonal], dim=1)


def haar_inverse(u: torch.Tensor) -> torch.Tensor:
    """(N,4C,h,w) [A, H, V, D] -> (N,C,2h,2w); the exact inverse of :func:`haar_forward`."""
    n, c4, h, w = u.shape
    if c4 % 4:
        raise ValueError(f"inverse Haar transform needs a multiple of 4 channels, got {c4}")
    low, horizontal, vertical, diagonal = u.chunk(4, dim=1)
    x = u.new_empty(n, c4 // 4, 2 * h, 2 * w)
    x[:, :, 0::2, 0::2] = (low + horizontal + vertical + diagonal) / 2
    x[:, :, 0::2, 1::2] = (low - horizontal + vertical - diagonal) / 2
    x[:, :, 1::2, 0::2] = (low + horizontal - vertical - diagonal) / 2
    x[:, :, 1::2, 1::2] = (low - horizontal - vertical + diagonal) / 2
    return x

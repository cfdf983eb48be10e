"""Quantisation of what is stored: Y to 8 bits, B to k bits (design §2), with straight-through gradients.

The forward pass rounds; the backward pass lets the gradient through unchanged (the straight-through
estimator IRN uses for its 8-bit LR), so the encoder learns to put information where rounding keeps it.
"""

from __future__ import annotations

import torch

from .limits import check_bits

Y_LEVELS = 255  # Y is stored as 8-bit RGB


def _straight_through(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Value of ``q``, gradient of ``x``."""
    return x + (q - x).detach()


def max_code(bits: int) -> int:
    """The largest k-bit code, 2^k - 1: the number of non-zero levels of B (codes 0 .. 2^k - 1)."""
    return 2 ** check_bits(bits) - 1


def codes8(x: torch.Tensor) -> torch.Tensor:
    """The one 8-bit rounding rule: values in [0, 1] (clipped) -> codes 0..255 as floats, round half up."""
    return torch.floor(x.clamp(0, 1) * Y_LEVELS + 0.5)


def to_8bit(x: torch.Tensor) -> torch.Tensor:
    """An image (any shape) in [0, 1] -> the same on the 8-bit grid k/255, as a saved image file holds it."""
    return codes8(x) / Y_LEVELS


def quantize_y(y: torch.Tensor) -> torch.Tensor:
    """Y (N,3,h,w) -> the same on the 8-bit grid {0, 1/255, ..., 1}, clipped to [0, 1]; straight-through."""
    return _straight_through(y, to_8bit(y))


def quantize_b(b: torch.Tensor, bits: int, rounding: str = "round") -> torch.Tensor:
    """B in [0, 1] -> the k-bit grid {0, 1/L, ..., 1}, L = 2^k - 1; straight-through.

    ``rounding="round"`` (nearest level) is for what the network emits; ``"ceil"`` is for boundary
    strengths, so that any boundary pixel keeps at least the first level (at k = 1: BAM = Canny).
    """
    n = max_code(bits)
    scaled = b.clamp(0, 1) * n
    if rounding == "round":
        q = torch.floor(scaled + 0.5)
    elif rounding == "ceil":
        q = torch.ceil(scaled)
    else:
        raise ValueError(f"rounding must be 'round' or 'ceil', got {rounding!r}")
    return _straight_through(b, q / n)


def y_to_uint8(y: torch.Tensor) -> torch.Tensor:
    """Y (or any image) in [0, 1], (N,3,h,w) or any shape -> uint8 codes 0..255, same shape."""
    return codes8(y).to(torch.uint8)


def b_to_codes(b: torch.Tensor, bits: int) -> torch.Tensor:
    """B in [0, 1] -> uint8 codes 0 .. 2^k - 1, same shape."""
    return torch.floor(b.clamp(0, 1) * max_code(bits) + 0.5).to(torch.uint8)


def boundary_cells(b: torch.Tensor) -> torch.Tensor:
    """B (N,1,h,w) in [0, 1] -> bool (N,1,h,w): the LR cells where B stored at k = 1 is 1 (nearest rounding)."""
    return b_to_codes(b, 1) > 0


def codes_to_b(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """uint8 codes 0 .. 2^k - 1 -> B in [0, 1] (float32)."""
    n = max_code(bits)
    if codes.numel() and int(codes.max()) > n:
        raise ValueError(f"B codes exceed {n}, the largest {bits}-bit code")
    return codes.float() / n

"""``Encoded``: what bdflow stores for one image, as arrays (torch-free at import, so the .bdf container can be read
without torch; ``Rescaler.encode`` makes one, ``Rescaler.decode`` reads one)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .limits import check_bits


@dataclass
class Encoded:
    """What bdflow stores for one image: the 8-bit LR image and the k-bit boundary codes."""

    y: np.ndarray  # uint8 (h, w, 3)
    b: np.ndarray | None  # uint8 codes 0 .. 2^bits - 1, (h, w); None for a B-less model
    bits: int
    meta: dict = field(default_factory=dict)  # scale, size, padded, kind, dtype, notes, model

    @property
    def nbytes(self) -> int:
        """Raw storage: 8 bits per Y value plus k bits per B code (before any entropy coding)."""
        b_bits = 0 if self.b is None else self.b.size * self.bits
        return self.y.size + math.ceil(b_bits / 8)

    def to_tensors(self, device=None):
        """What a decoder reads: y (1,3,h,w) float32 in [0, 1] (code / 255) and b (1,1,h,w) in [0, 1]
        (code / (2^bits - 1)), or None without B; on ``device``. Torch is imported here, on the first call."""
        import torch

        from .quantize import codes_to_b

        bits = check_bits(self.bits)
        y8 = np.asarray(self.y)
        if y8.dtype != np.uint8 or y8.ndim != 3 or y8.shape[2] != 3:
            raise ValueError(f"Encoded.y must be uint8 (h,w,3), got {y8.dtype} {y8.shape}")
        y = torch.from_numpy(y8.copy()).permute(2, 0, 1)[None].float().div(255).to(device)
        if self.b is None:
            return y, None
        if np.asarray(self.b).shape != y8.shape[:2]:
            raise ValueError(f"Encoded.b must be uint8 codes shaped {y8.shape[:2]} for this model")
        b = codes_to_b(torch.from_numpy(np.asarray(self.b, dtype=np.uint8).copy()), bits)
        return y, b[None, None].to(device)

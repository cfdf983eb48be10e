"""``Encoded``: what bdflow stores for one image, as arrays (torch-free, so the .bdf container can be read without
torch; ``Rescaler.encode`` makes one, ``Rescaler.decode`` reads one)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


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

"""Any image size in bounded memory: the flow runs on overlapping tiles of the LR grid (docs/design.md, "Tiles").

    y, b, z = tiled_forward(model, x, tile=128, margin=32)     # x (N,3,H,W) -> like model(x)
    x_back = tiled_inverse(model, y, b, z, tile=128, margin=32) # -> like model.inverse(y, b, z)

The LR grid (h, w) = (H/s, W/s) is cut into core tiles of ``tile`` x ``tile`` LR pixels. Each core is run with a
``margin`` of LR pixels of real context on every side (less at the image border, where the whole-image pass
sees the same zero padding), and only the core of the result is kept. Tiles start on the LR grid, so every
Haar level of a tile lines up with the whole image's. The flow's receptive field is finite (``exact_margin``):
with at least that margin a tile's core is the whole-image result up to float rounding; smaller margins trade a
measured, tiny difference for less recomputation (benchmarks/tiles.py, tests/test_tiles.py). Peak memory is
that of one tile of (tile + 2 margin) s pixels per side, plus the outputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import nn

Window = tuple[int, int, int, int]  # rows [r0, r1), columns [c0, c1) on the LR grid


def lr_tiles(h: int, w: int, tile: int, margin: int) -> Iterator[tuple[Window, Window]]:
    """Core windows of side ``tile`` covering an (h, w) LR grid, each with its window grown by ``margin``."""
    if tile < 1 or margin < 0:
        raise ValueError(f"tile must be >= 1 and margin >= 0 LR pixels, got {tile} and {margin}")
    for r0 in range(0, h, tile):
        for c0 in range(0, w, tile):
            r1, c1 = min(r0 + tile, h), min(c0 + tile, w)
            yield (r0, r1, c0, c1), (max(r0 - margin, 0), min(r1 + margin, h), max(c0 - margin, 0), min(c1 + margin, w))


def _map_tiles(fn: Callable, inputs: list[torch.Tensor | None], s_in: int, s_out: int, tile: int, margin: int):
    """Run ``fn`` on every margin-grown window of ``inputs`` (sides h s_in) and assemble the cores of its outputs
    (sides h s_out) into full-size tensors; None inputs and outputs pass through as None."""
    ref = next(t for t in inputs if t is not None)
    h, w = ref.shape[-2] // s_in, ref.shape[-1] // s_in
    outs = None
    for (r0, r1, c0, c1), (e0, e1, f0, f1) in lr_tiles(h, w, tile, margin):
        window = [None if t is None else t[..., e0 * s_in : e1 * s_in, f0 * s_in : f1 * s_in] for t in inputs]
        parts = fn(*window)
        parts = parts if isinstance(parts, tuple) else (parts,)
        if outs is None:
            outs = [None if p is None else p.new_empty(*p.shape[:2], h * s_out, w * s_out) for p in parts]
        for out, part in zip(outs, parts):
            if out is not None:
                core = part[..., (r0 - e0) * s_out : (r1 - e0) * s_out, (c0 - f0) * s_out : (c1 - f0) * s_out]
                out[..., r0 * s_out : r1 * s_out, c0 * s_out : c1 * s_out] = core
    return outs


def tiled_forward(model: nn.Module, x: torch.Tensor, tile: int, margin: int):
    """x (N,3,H,W), H and W multiples of s -> y (N,3,h,w), b (N,1,h,w) or None, z (N,z_channels,h,w), as
    ``model(x)``; ``tile`` and ``margin`` in LR pixels."""
    s = model.scale
    if x.shape[-2] % s or x.shape[-1] % s:
        raise ValueError(f"H and W must be multiples of the scale {s}, got {x.shape[-2]}x{x.shape[-1]}")
    return tuple(_map_tiles(model, [x], s, 1, tile, margin))


def tiled_inverse(model: nn.Module, y: torch.Tensor, b: torch.Tensor | None, z: torch.Tensor, tile: int,
                  margin: int) -> torch.Tensor:
    """y (N,3,h,w), b (N,1,h,w) or None, z (N,z_channels,h,w) -> x (N,3,h s,w s), as ``model.inverse``."""
    return _map_tiles(model.inverse, [y, b, z], 1, model.scale, tile, margin)[0]


def exact_margin(model: nn.Module) -> int:
    """An upper bound, in LR pixels, of how far one LR pixel of the output depends on the input (either way):
    the padding of every convolution of a level's subnets, summed, at that level's resolution (2^(n-l) finer
    than LR at level l). With a margin this large, tiles agree with the whole image up to float rounding."""
    levels = model.levels
    total = 0.0
    for l, blocks in enumerate(levels, start=1):
        reach = sum(m.padding[0] for m in blocks.modules() if isinstance(m, nn.Conv2d))
        total += reach / 2 ** (len(levels) - l)
    return math.ceil(total)

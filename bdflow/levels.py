"""The flow level by level (the app's level view): what each level's wavelet gives and what its InvBlocks make of it.

    with levels.record(model, hr_size) as views:     # forward hooks on each level's InvBlocks
        y, b, z = model(x)                           # the one forward pass (the app caches it with the encoder)
    views[0].before_low, views[0].after_detail, ...  # one LevelView per level, small numpy arrays

A pre-hook on a level's first block sees the wavelet's output (times the flow's gain): the low-pass in channels
0-2, the detail channels after them. A hook on its last block sees what the InvBlocks made of it: the low-pass
slot (at the last level, Y), the detail slots (at the last level, B if the model stores it in a channel, then Z
before its scale exp(a)). With B as a condition, the pre-hook also sees the B the level's couplings
read. Hooking the blocks instead of re-implementing the transform keeps the view right for
whatever wavelet and B layout the model uses.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch.nn import functional as F

from .coupling import Y_CHANNELS

MAX_SIDE = 192  # each map is area-downscaled to at most this many pixels per side (the view stays small)


@dataclass
class LevelView:
    """One level of the flow for one image; maps are float32, (h, w, 3) for low-pass slots, (h, w) otherwise."""

    index: int  # 1 .. n (level 1 sees the HR image)
    channels: int  # 3 * 4^index
    before_low: np.ndarray  # the wavelet's low-pass (channels 0-2)
    before_detail: np.ndarray  # the wavelet's detail channels (3 ..): RMS over them per pixel
    after_low: np.ndarray  # channels 0-2 after the level's InvBlocks (the last level's: Y)
    after_detail: np.ndarray  # RMS over the detail slots after the InvBlocks (the last level's: Z only)
    after_b: np.ndarray | None  # the last level's B channel (None elsewhere, and for a model without a B channel)
    condition: np.ndarray | None  # the B this level's couplings read (B as a condition, on this level's grid), or None
    last: bool
    stats: dict  # detail_rms_before/after, low_change (mean |after - before| of the low-pass, 0-255 scale)


def _small(t: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) -> cropped to ``size``, area-downscaled to MAX_SIDE, (h', w', C) float32."""
    t = t[:, : size[0], : size[1]]
    f = MAX_SIDE / max(t.shape[-2:])
    if f < 1:
        out = (max(1, round(t.shape[-2] * f)), max(1, round(t.shape[-1] * f)))
        t = F.adaptive_avg_pool2d(t[None], out)[0]
    return t.permute(1, 2, 0).float().cpu().numpy()


def _rms(t: torch.Tensor) -> torch.Tensor:
    """(C, h, w) -> (1, h, w): root mean square over channels (zeros when C = 0)."""
    return t.pow(2).mean(dim=0, keepdim=True).sqrt() if t.shape[0] else t.new_zeros(1, *t.shape[1:])


def summarise(index: int, before: torch.Tensor, after: torch.Tensor, hr_size: tuple[int, int], b_channels: int,
              last: bool, condition: torch.Tensor | None = None) -> LevelView:
    """One level from its first block's input and last block's output, both (N, 3 * 4^index, h, w), and the
    condition its blocks read ((N, 1, h, w) or None); item 0 only."""
    before, after = before[0].detach(), after[0].detach()
    size = tuple(-(-s // 2**index) for s in hr_size)  # the LR cells that cover the unpadded image
    nb = b_channels if last else 0
    detail_after = after[Y_CHANNELS + nb :]
    stats = {
        "detail_rms_before": float(_rms(before[Y_CHANNELS:]).pow(2).mean().sqrt()),
        "detail_rms_after": float(_rms(after[Y_CHANNELS:]).pow(2).mean().sqrt()),
        "low_change": float((after[:Y_CHANNELS] - before[:Y_CHANNELS]).abs().mean() * 255),
    }
    return LevelView(
        index=index, channels=int(before.shape[0]),
        before_low=_small(before[:Y_CHANNELS], size), before_detail=_small(_rms(before[Y_CHANNELS:]), size)[..., 0],
        after_low=_small(after[:Y_CHANNELS], size), after_detail=_small(_rms(detail_after), size)[..., 0],
        after_b=_small(after[Y_CHANNELS : Y_CHANNELS + nb], size)[..., 0] if nb else None,
        condition=None if condition is None else _small(condition[0].detach(), size)[..., 0], last=last, stats=stats,
    )


@contextmanager
def record(model, hr_size: tuple[int, int]) -> Iterator[list[LevelView]]:
    """Hooks on ``model.levels`` (a ModuleList of levels, each a ModuleList of InvBlocks) while the block runs;
    the yielded list fills with one :class:`LevelView` per level as the forward pass goes. ``hr_size`` (H, W) is
    the unpadded input's size. The number of B channels is what the last level's channels leave after Y and Z."""
    n = len(model.levels)
    total = 3 * 4**n
    b_channels = total - Y_CHANNELS - int(model.config.z_channels)
    views: list[LevelView] = []
    handles = []
    for index, blocks in enumerate(model.levels, start=1):
        seen: dict = {}

        def before_hook(module, args, seen=seen):
            seen["before"], seen["condition"] = args[0], (args[1] if len(args) > 1 else None)

        def after_hook(module, args, out, seen=seen, index=index):
            out = out[0] if isinstance(out, tuple) else out
            views.append(summarise(index, seen.pop("before"), out, hr_size, b_channels, last=index == n,
                                   condition=seen.pop("condition")))

        handles.append(blocks[0].register_forward_pre_hook(before_hook))
        handles.append(blocks[-1].register_forward_hook(after_hook))
    try:
        yield views
    finally:
        for handle in handles:
            handle.remove()

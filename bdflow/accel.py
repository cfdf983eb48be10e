"""bfloat16 inference: the coupling subnets run in bf16, the flow's state stays float32 (docs/design.md, "bf16").

    net = accelerate(model, "bf16")    # an inference copy; ``model`` is left as it is
    y, b, z = net(x); x_back = net.inverse(y, b, z)

Each InvBlock's subnets (phi, rho, eta) get bf16 weights; their input is cast to bf16 on the way in and their
output back to float32 on the way out, so the additions, the affine scale exp(s), the Haar steps and the split
into [Y, B, Z] stay in float32 and the flow remains invertible to float32 rounding for its own (bf16) subnets.
On the CPU the subnets run on oneDNN's blocked tensors (``Tensor.to_mkldnn``): one layout change per subnet
instead of one per convolution, and bf16 dot products where the CPU has them (AVX512-BF16, AMX). On CUDA they
run as plain bf16 modules. "fp32" returns the model itself, unchanged: the exact reference path.

``keep_freed_memory()`` is the other half of CPU speed, for any precision: see its docstring.
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import sys

import torch
from torch import nn
from torch.utils import mkldnn as mkldnn_utils

from .coupling import InvBlock
from .limits import check_precision

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEEP_BYTES = 1 << 30


def keep_freed_memory(limit: int = KEEP_BYTES) -> bool:
    """Let glibc's malloc keep freed blocks below ``limit`` bytes for reuse (process-wide; True if applied).

    By default glibc hands every freed block above its mmap threshold (128 kB, adapting up to 32 MB) back to the
    kernel, and the next tensor of that size page-faults its memory in again, zero-filled. At 1024² every tensor of
    the flow (12-34 MB per level) pays that on every operation: a third (bf16) to nearly half (fp32) of the x16
    round trip's time (benchmarks/speed.py prints it with and without). Raising the mmap and trim thresholds makes freed
    memory stay in the heap; the price is that the process keeps its peak heap until it exits, which an app or a
    CLI run that processes images one after another wants anyway. A no-op on other C libraries (macOS, musl).
    Called by the app, the CLI and the benchmarks, never on import: it changes the whole process.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, limit)) and bool(mallopt(M_TRIM_THRESHOLD, limit))


def default_precision(device: str | torch.device = "cpu") -> str:
    """bf16 where it runs natively (CUDA; a CPU with oneDNN bf16), else fp32: what the app uses unless told."""
    if torch.device(device).type == "cuda":
        return "bf16"
    return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"


def accelerate(model: nn.Module, precision: str = "bf16", device: str | torch.device | None = None) -> nn.Module:
    """``model`` (a BDFlow, on ``device``) for inference at ``precision``: itself for "fp32", else a bf16 copy in
    which every child of every InvBlock is a bf16 subnet.

    The copy is a snapshot: later changes to ``model``'s weights do not reach it.
    """
    if check_precision(precision) == "fp32":
        return model
    device = torch.device(device or next(model.parameters()).device)
    if device.type == "cpu" and default_precision() != "bf16":
        raise ValueError("precision 'bf16' needs a CPU with AVX512 (oneDNN bf16); use 'fp32' on this machine")
    net = copy.deepcopy(model).eval()
    for block in net.modules():
        if isinstance(block, InvBlock):
            for name, subnet in list(block.named_children()):
                setattr(block, name, _bf16_subnet(subnet, device))
    return net


def _bf16_subnet(subnet: nn.Module, device: torch.device) -> nn.Module:
    """(N,c,h,w) float32 -> (N,c',h,w) float32 through ``subnet`` in bf16 (oneDNN on the CPU)."""
    if device.type == "cpu":
        subnet = mkldnn_utils.to_mkldnn(subnet, torch.bfloat16)  # Conv2d -> MkldnnConv2d, weights prepacked
        subnet.register_forward_pre_hook(lambda _, args: (args[0].contiguous().to_mkldnn(torch.bfloat16),))
        subnet.register_forward_hook(lambda _, args, out: out.to_dense(torch.float32))
    else:
        subnet = subnet.to(torch.bfloat16)
        subnet.register_forward_pre_hook(lambda _, args: (args[0].to(torch.bfloat16),))
        subnet.register_forward_hook(lambda _, args, out: out.float())
    return subnet


def train_precision(model: nn.Module, precision: str) -> nn.Module:
    """Training at ``precision``: "bf16" runs every InvBlock's subnets under bf16 autocast (``InvBlock.compute_dtype``),
    with the flow's state, the wavelets and the losses in float32; "fp32" runs everything in float32. In place, on
    the model that trains (no copy: the optimiser's parameters stay float32). Returns ``model``."""
    dtype = torch.bfloat16 if check_precision(precision) == "bf16" else None
    for block in model.modules():
        if isinstance(block, InvBlock):
            block.compute_dtype = dtype
    return model

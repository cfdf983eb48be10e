"""IRN's published architecture, re-created from its paper for timing beside bdflow (a benchmark, not a model).

Xiao et al., "Invertible Image Rescaling" (ECCV 2020), §3-4: for x2^n, n downscaling modules, each a Haar
transform followed by 8 InvBlocks; every subnet (phi, rho, eta) is a densely connected block of 5 3x3
convolutions, growth 32, LeakyReLU(0.2) after the first four; the coupling is the one bdflow uses (IRN's).
At x8 that is 24 InvBlocks and ~11.1 M parameters. Weights are random: only the cost matters here.

    peer = IRN(scale=8); u = peer(x); x_back = peer.inverse(u)      # u (N, 3 s^2, H/s, W/s)

The coupling is written here, not taken from ``bdflow.coupling.InvBlock``, because that class builds its own
subnets; the arithmetic is the same four lines.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from bdflow.coupling import Y_CHANNELS
from bdflow.wavelets import haar_forward, haar_inverse

BLOCKS_PER_LEVEL = 8
GROWTH = 32
CLAMP = 1.0


class DenseBlock(nn.Module):
    """5 3x3 convolutions; each sees the input and every earlier output (IRN's subnet)."""

    def __init__(self, c_in: int, c_out: int, growth: int = GROWTH):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c_in + i * growth, growth, 3, padding=1) for i in range(4))
        self.conv_out = nn.Conv2d(c_in + 4 * growth, c_out, 3, padding=1)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        features = [u]
        for conv in self.convs:
            features.append(F.leaky_relu(conv(torch.cat(features, 1)), 0.2))
        return self.conv_out(torch.cat(features, 1))


class IRNBlock(nn.Module):
    """IRN's InvBlockExp: u1' = u1 + phi(u2); u2' = u2 exp(s(u1')) + eta(u1')."""

    def __init__(self, channels: int):
        super().__init__()
        c2 = channels - Y_CHANNELS
        self.phi, self.rho, self.eta = DenseBlock(c2, Y_CHANNELS), DenseBlock(Y_CHANNELS, c2), DenseBlock(Y_CHANNELS, c2)

    def _log_scale(self, u1: torch.Tensor) -> torch.Tensor:
        return CLAMP * (2 * torch.sigmoid(self.rho(u1)) - 1)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        u1 = u[:, :Y_CHANNELS] + self.phi(u[:, Y_CHANNELS:])
        return torch.cat([u1, u[:, Y_CHANNELS:] * torch.exp(self._log_scale(u1)) + self.eta(u1)], 1)

    def inverse(self, v: torch.Tensor) -> torch.Tensor:
        v1 = v[:, :Y_CHANNELS]
        u2 = (v[:, Y_CHANNELS:] - self.eta(v1)) * torch.exp(-self._log_scale(v1))
        return torch.cat([v1 - self.phi(u2), u2], 1)


class IRN(nn.Module):
    """x (N,3,H,W) -> u (N,3 s^2,H/s,W/s) and back; ``levels`` = log2(scale) Haar + 8 InvBlocks each."""

    def __init__(self, scale: int = 8):
        super().__init__()
        self.scale = scale
        self.levels = nn.ModuleList(
            nn.ModuleList(IRNBlock(3 * 4**level) for _ in range(BLOCKS_PER_LEVEL))
            for level in range(1, int(math.log2(scale)) + 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blocks in self.levels:
            x = haar_forward(x)
            for block in blocks:
                x = block(x)
        return x

    def inverse(self, u: torch.Tensor) -> torch.Tensor:
        for blocks in reversed(self.levels):
            for block in reversed(blocks):
                u = block.inverse(u)
            u = haar_inverse(u)
        return u

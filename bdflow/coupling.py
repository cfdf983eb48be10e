"""The InvBlock: an affine coupling with the subnets phi, rho, eta (paper Eq. 6, design §1).

Eq. 6 of the paper is garbled (phi appears as both scale and shift of u1). We use the stable coupling IRN
uses, which the design doc fixes::

    u1' = u1 + phi(u2)
    u2' = u2 * exp(s(u1')) + eta(u1'),      s = clamp * (2 sigmoid(rho(u1')) - 1)  in [-clamp, clamp]

and the inverse in reverse order. u1 is the first 3 channels (the RGB low-pass that becomes Y), u2 the rest.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

Y_CHANNELS = 3


class ResidualBlock(nn.Module):
    """conv-ReLU-conv with an identity shortcut (He et al. 2016)."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.conv2(F.relu(self.conv1(h)))


class Subnet(nn.Module):
    """One of phi, rho, eta: (N,c_in,h,w) -> (N,c_out,h,w).

    The output convolution starts at zero, so a fresh InvBlock is the identity and a fresh BDFlow is the
    plain Haar pyramid (Y starts as the box-filtered LR image). The input and output convolutions are 3x3, or
    1x1 on a side wider than ``max_3x3_channels`` (docs/design.md, "1×1 kernels on the wide side": at x64 one
    3x3 convolution to the 12,285 channels of the last level would hold 3.5 M weights; the hidden layers keep
    their 3x3 context).
    """

    def __init__(self, c_in: int, c_out: int, hidden: int, res_blocks: int, max_3x3_channels: int):
        super().__init__()
        k_in, k_out = (3 if c <= max_3x3_channels else 1 for c in (c_in, c_out))
        self.conv_in = nn.Conv2d(c_in, hidden, k_in, padding=k_in // 2)
        self.body = nn.Sequential(*(ResidualBlock(hidden) for _ in range(res_blocks)))
        self.conv_out = nn.Conv2d(hidden, c_out, k_out, padding=k_out // 2)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.conv_out(F.relu(self.body(F.relu(self.conv_in(u)))))


class InvBlock(nn.Module):
    """Affine coupling over ``channels`` = 3 + (channels - 3); exactly invertible for any weights."""

    def __init__(self, channels: int, hidden: int, res_blocks: int, clamp: float, max_3x3_channels: int):
        super().__init__()
        c2 = channels - Y_CHANNELS
        self.clamp = clamp
        self.phi, self.rho, self.eta = (
            Subnet(c_in, c_out, hidden, res_blocks, max_3x3_channels)
            for c_in, c_out in ((c2, Y_CHANNELS), (Y_CHANNELS, c2), (Y_CHANNELS, c2))
        )

    def _log_scale(self, u1: torch.Tensor) -> torch.Tensor:
        return self.clamp * (2 * torch.sigmoid(self.rho(u1)) - 1)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        u1, u2 = u[:, :Y_CHANNELS], u[:, Y_CHANNELS:]
        u1 = u1 + self.phi(u2)
        u2 = u2 * torch.exp(self._log_scale(u1)) + self.eta(u1)
        return torch.cat([u1, u2], dim=1)

    def inverse(self, v: torch.Tensor) -> torch.Tensor:
        v1, v2 = v[:, :Y_CHANNELS], v[:, Y_CHANNELS:]
        u2 = (v2 - self.eta(v1)) * torch.exp(-self._log_scale(v1))
        u1 = v1 - self.phi(u2)
        return torch.cat([u1, u2], dim=1)

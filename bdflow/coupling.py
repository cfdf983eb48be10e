"""The InvBlock: an affine coupling with the subnets phi, rho, eta (paper Eq. 6, design §1).

Eq. 6 of the paper is garbled (phi appears as both scale and shift of u1). We use the stable coupling IRN
uses, which the design doc fixes::

    u1' = u1 + phi(u2)
    u2' = u2 * exp(s(u1')) + eta(u1'),      s = clamp * (2 sigmoid(rho(u1')) - 1) = clamp * tanh(rho(u1') / 2)

and the inverse in reverse order. u1 is the first ``split`` = 3 channels (the RGB low-pass that becomes Y), u2 the
rest. Like FrEIA's and IRN's blocks, an InvBlock takes a ``subnet_constructor(c_in, c_out)``, so another subnet is
one argument. With ``cond_channels`` > 0 every subnet also reads a condition c (B as a condition, design:
"B as a condition"): phi(u2, c), rho(u1', c), eta(u1', c); the block stays exactly invertible for any c.
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
        return h + self.conv2(F.relu(self.conv1(h), inplace=True))


class Subnet(nn.Module):
    """One of phi, rho, eta: (N,c_in,h,w) -> (N,c_out,h,w).

    The output convolution starts at zero, so a fresh InvBlock is the identity and a fresh BDFlow is the
    plain Haar pyramid (Y starts as the box-filtered LR image). The input and output convolutions are 3x3, or
    1x1 on a side wider than ``max_3x3_channels`` (docs/design.md, "1×1 kernels on the wide side": at x64 one
    3x3 convolution to the 12,285 channels of the last level would hold 3.5 M weights; the hidden layers keep
    their 3x3 context). The last ``zero_inputs`` input channels (a condition) start with zero weights, so they
    have no effect until training gives them one (ControlNet's "zero convolution" idea).
    """

    def __init__(self, c_in: int, c_out: int, hidden: int, res_blocks: int, max_3x3_channels: int, zero_inputs: int = 0):
        super().__init__()
        k_in, k_out = (3 if c <= max_3x3_channels else 1 for c in (c_in, c_out))
        self.conv_in = nn.Conv2d(c_in, hidden, k_in, padding=k_in // 2)
        if zero_inputs:
            nn.init.zeros_(self.conv_in.weight[:, c_in - zero_inputs :])
        self.body = nn.Sequential(*(ResidualBlock(hidden) for _ in range(res_blocks)))
        self.conv_out = nn.Conv2d(hidden, c_out, k_out, padding=k_out // 2)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        # ReLUs in place (on fresh convolution outputs and sums, which autograd allows); with no residual blocks the
        # second ReLU would repeat the first, so it is skipped (and a second in-place ReLU would break backward).
        h = F.relu(self.conv_in(u), inplace=True)
        return self.conv_out(F.relu(self.body(h), inplace=True) if len(self.body) else h)


def _with(u: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    return u if cond is None else torch.cat([u, cond], dim=1)


class InvBlock(nn.Module):
    """Affine coupling over ``channels`` = split + (channels - split); exactly invertible for any weights.

    u (N,channels,h,w), cond (N,cond_channels,h,w) or None -> (N,channels,h,w).

    ``compute_dtype`` (``bdflow.accel.train_precision``): the subnets run under autocast at this dtype and return
    float32, so the coupling's additions and exp(s) - the flow's state - stay float32 and the block stays exactly
    invertible for its own (lower-precision) subnets. None: float32 throughout.
    """

    compute_dtype: torch.dtype | None = None

    def __init__(self, channels: int, subnet_constructor, clamp: float = 1.0, split: int = Y_CHANNELS, cond_channels: int = 0):
        super().__init__()
        c2 = channels - split
        self.split, self.clamp, self.cond_channels = split, clamp, cond_channels
        self.phi, self.rho, self.eta = (
            subnet_constructor(c_in + cond_channels, c_out) for c_in, c_out in ((c2, split), (split, c2), (split, c2))
        )

    def _log_scale(self, u1: torch.Tensor, sign: float = 1.0) -> torch.Tensor:
        """sign * s(u1) = clamp * tanh(sign * rho(u1) / 2): two passes over the wide half instead of the
        sigmoid form's four (the same function; benchmarks/speed.py --profile)."""
        s = torch.tanh(self._subnet(self.rho, u1).mul_(0.5 * sign))  # in place on rho's fresh output (autograd allows it)
        return s if self.clamp == 1 else s * self.clamp

    def _subnet(self, net: nn.Module, u: torch.Tensor) -> torch.Tensor:
        """net(u) in float32, computed at ``compute_dtype`` when set."""
        if self.compute_dtype is None:
            return net(u)
        with torch.autocast(u.device.type, dtype=self.compute_dtype):
            return net(u).float()

    def _check_cond(self, cond: torch.Tensor | None) -> None:
        if (cond is None) != (self.cond_channels == 0) or (cond is not None and cond.shape[1] != self.cond_channels):
            raise ValueError(f"this block takes a condition of {self.cond_channels} channels, got {None if cond is None else tuple(cond.shape)}")

    def forward(self, u: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        self._check_cond(cond)
        u1, u2 = u[:, : self.split], u[:, self.split :]
        u1 = self._subnet(self.phi, _with(u2, cond)).add_(u1)
        c1 = _with(u1, cond)
        u2 = torch.addcmul(self._subnet(self.eta, c1), u2, torch.exp(self._log_scale(c1)))  # one pass: eta + u2 * exp(s)
        return torch.cat([u1, u2], dim=1)

    def inverse(self, v: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        self._check_cond(cond)
        v1, v2 = v[:, : self.split], v[:, self.split :]
        c1 = _with(v1, cond)
        u2 = (v2 - self._subnet(self.eta, c1)).mul_(torch.exp(self._log_scale(c1, -1.0)))
        u1 = v1 - self._subnet(self.phi, _with(u2, cond))
        return torch.cat([u1, u2], dim=1)

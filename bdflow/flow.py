"""BDFlow: n levels of a wavelet + InvBlocks mapping X to [Y, B, Z] and back (paper §3.1-3.2, Fig. 3, design §1).

Forward, for scale 2^n, with B as the paper's channel (``b_mode="channel"``)::

    X (N,3,H,W) --[wavelet, InvBlock x blocks_per_level] x n--> (N,3 s^2,H/s,W/s) = [Y (3) | B (1) | Z (3 s^2 - 4)]

and with B as a condition (``b_mode="condition"``, the default; design: "B as a condition")::

    B = BAM target of X (N,1,H/s,W/s);  X --[wavelet, InvBlock(. | B) x blocks_per_level] x n--> [Y (3) | Z (3 s^2 - 3)]

where every coupling also reads B, upsampled to its level's grid (bilinear; nearest for the first conditioned models). The
flow is then exact for any B, and the k-bit rounding of the stored B no longer enters the inverse as an error in
one of its channels.

Channels are never split off between levels (IRN's layout). Each level's wavelet (``config.wavelet``: haar,
cdf53, cdf97; bdflow.wavelets) gives A = 2c on a constant image and is followed by a fixed gain of 1/2 (IRN's
normalisation), so the low-pass keeps Y in the image's [0, 1] range. Inverse runs the same steps backwards; it is
exact up to float rounding.

Z leaves the flow through a per-channel scale exp(a) (Glow's ActNorm, scale only), initialised from the first
training batch so the forward Z starts with unit variance (design notes, "Z scale"). Without it the wavelet
details that become Z have a standard deviation of ~0.003 at x8 (median over channels on face crops) and a prior
sample is ~300x too loud for the decoder; the couplings' clamped scales (at most e^2 per level) cannot close that
gap, and Adam moves a log-scale by only ~lr per step.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .bam import boundary_target
from .config import BDFlowConfig, LossConfig
from .coupling import Y_CHANNELS, InvBlock, Subnet
from .hub import check_state_dict, read_checkpoint, resolve_checkpoint, save_checkpoint, weights_digest
from .limits import check_tau, check_tau_b
from .wavelets import dwt2, idwt2

LEVEL_GAIN = 0.5


class BDFlow(nn.Module):
    """The invertible network F_theta of the paper: ``y, b, z = model(x)``; ``x = model.inverse(y, b, z)``."""

    def __init__(self, config: BDFlowConfig | None = None, loss_config: LossConfig | None = None):
        """``loss_config``: the loss it is (or was) trained with, which its checkpoint records (default: today's)."""
        super().__init__()
        self.config = config or BDFlowConfig()
        self.loss_config = loss_config or LossConfig()
        self.loss_config.check(self.config)
        c = self.config
        self.levels = nn.ModuleList(
            nn.ModuleList(
                InvBlock(3 * 4**level, self._subnet(level), c.clamp, cond_channels=int(c.reads_b(level)))
                for _ in range(c.blocks_at(level))
            )
            for level in range(1, c.levels + 1)
        )
        # a: Z = Z_flow * exp(a); trained only for z_scale="learned" ("fixed" is set once by init_z_scale)
        self.z_log_scale = nn.Parameter(torch.zeros(1, c.z_channels, 1, 1), requires_grad=c.z_scale == "learned")
        self.meta: dict = {}  # config.json's "meta" (recipe, budget, metrics); from_pretrained fills it
        self.name: str | None = None  # the checkpoint's folder name (from_pretrained): what a .bdf file records
        self._weights_digest: str | None = None

    def _subnet(self, level: int):
        """The subnet constructor (c_in, c_out) -> Subnet of ``level``'s couplings; with ``b_init="zero"`` their B input
        starts with zero weights."""
        c = self.config
        zero_inputs = int(c.reads_b(level) and c.b_init == "zero")
        return partial(Subnet, hidden=c.hidden, res_blocks=c.res_blocks_at(level), max_3x3_channels=c.max_3x3_channels,
                       zero_inputs=zero_inputs)

    def weights_digest(self) -> str:
        """SHA-256 of the weights (``hub.weights_digest``), computed on the first call and cached: identifies the
        exact weights a .bdf file was encoded with. The cache assumes the weights do not change after that call."""
        if self._weights_digest is None:
            self._weights_digest = weights_digest(self.state_dict())
        return self._weights_digest

    @property
    def scale(self) -> int:
        return self.config.scale

    def save_pretrained(self, directory, meta: dict | None = None):
        """config.json (BDFlowConfig's and LossConfig's fields, flat, + ``meta``: recipe, metrics) and safetensors
        weights, each file < 16 MiB."""
        config = {**self.config.to_dict(), **self.loss_config.to_dict()}
        return save_checkpoint(directory, config, self.state_dict(), meta)

    @classmethod
    def from_pretrained(cls, name_or_path, revision: str | None = None, cache_dir=None) -> "BDFlow":
        """A checkpoint folder or Hugging Face Hub repo id; the loaded ``meta`` is kept as ``model.meta``, the folder's
        name as ``model.name``."""
        folder = resolve_checkpoint(name_or_path, revision, cache_dir)
        config, meta, state = read_checkpoint(folder)
        model = cls(BDFlowConfig.from_dict(config), LossConfig.from_dict(config))
        check_state_dict(model.state_dict(), state, str(name_or_path))
        model.load_state_dict(state)
        model.meta = meta
        model.name = Path(str(name_or_path)).name
        return model.eval()

    def forward(self, x: torch.Tensor, b: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """x (N,3,H,W) in [0,1], H and W multiples of s -> y (N,3,H/s,W/s), b (N,1,H/s,W/s) or None, z.

        z has ``config.z_channels`` channels; the twin (``config.boundary=False``) returns b = None. With B as a
        condition, b is the BAM target of x (:meth:`boundary_map`, unquantised), or the ``b`` passed in (the loss
        passes the target it computed anyway).
        """
        self._check_hr(x)
        c = self.config
        if c.conditioned and b is None:
            b = self.boundary_map(x)
        conds = self._conditions(b)
        u = x
        for level, (blocks, cond) in enumerate(zip(self.levels, conds), 1):
            u = dwt2(u, c.wavelet, c.phase(level)) * LEVEL_GAIN
            for block in blocks:
                u = block(u, cond)
        y, b_out, z = self.split(u)
        return y, (b if c.conditioned else b_out), z

    def inverse(self, y: torch.Tensor, b: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor:
        """y (N,3,h,w), b (N,1,h,w) or None for the twin, z (N,z_channels,h,w) -> x (N,3,h s,w s)."""
        c = self.config
        u = self.merge(y, b, z)
        conds = self._conditions(b)
        for level, blocks, cond in zip(range(c.levels, 0, -1), reversed(self.levels), reversed(conds)):
            for block in reversed(blocks):
                u = block.inverse(u, cond)
            u = idwt2(u / LEVEL_GAIN, c.wavelet, c.phase(level))
        return u

    @torch.no_grad()
    def boundary_map(self, x: torch.Tensor, b_s: torch.Tensor | None = None) -> torch.Tensor:
        """B's LR-grid target under this model's BAM settings: x (N,3,H,W) -> (N,1,H/s,W/s) in [0, 1]. The B a
        conditioned flow reads, and L_BAM's target; ``b_s``: the boundary strength of x when the caller has it."""
        c = self.config
        return boundary_target(x, c.scale, mode=c.b_target, sigma=c.bam_sigma, norm=c.bam_norm,
                               threshold=c.bam_threshold, b_s=b_s)

    def _conditions(self, b: torch.Tensor | None) -> list[torch.Tensor | None]:
        """B (N,1,h,w) on the LR grid -> one condition per level l = 1..n, (N,1,h 2^(n-l),w 2^(n-l)), or None for a
        level whose couplings do not read B (every level of an unconditioned model; ``config.b_from_level``).

        ``config.b_upsample``: bilinear (smooth, no LR-pixel blocks for the couplings to copy into X) or nearest
        (the first conditioned models; their B blocks showed as a grid at x16, design: 'B as a condition').
        """
        c = self.config
        conds = []
        for level in range(1, c.levels + 1):
            f = 2 ** (c.levels - level)
            if not c.reads_b(level):
                conds.append(None)
            elif c.b_upsample == "nearest":
                conds.append(b.repeat_interleave(f, dim=2).repeat_interleave(f, dim=3))
            else:
                conds.append(b if f == 1 else F.interpolate(b, scale_factor=f, mode="bilinear", align_corners=False))
        return conds

    @torch.no_grad()
    def recentre_z(self, mean: torch.Tensor) -> None:
        """Move the forward Z by -``mean`` (z_channels,), so that decoding Z = 0 gives what Z = ``mean`` gave before
        (design: "Z's mean"). The last coupling's eta bias absorbs the shift: u2' = u2 exp(s) + eta(u1') moves by a
        constant, Y and B do not change and the flow stays exactly invertible."""
        bias = self.levels[-1][-1].eta.conv_out.bias  # over u2 = [B (channel mode) | Z / exp(a)]
        bias[int(self.config.b_channel):] -= mean.to(bias) * torch.exp(-self.z_log_scale.view(-1))

    @torch.no_grad()
    def init_z_scale(self, x: torch.Tensor | Iterable[torch.Tensor], min_std: float = 1e-3) -> torch.Tensor:
        """ActNorm's data-dependent init: set a so the forward Z of x - one batch (N,3,H,W) or several, pooled - has
        unit variance per channel. On a trained flow this is a calibration (``TrainConfig.z_calibration``): Y, B
        and the decode of Z = 0 do not change, a forward Z and a sampled Z are rescaled per channel.

        Returns the per-channel standard deviation found (z_channels,). ``min_std`` bounds the scale for
        channels that are (nearly) constant on the batches.
        """
        self.z_log_scale.zero_()
        n, s1, s2 = 0, 0.0, 0.0  # per-channel sums over every batch (float64: millions of values)
        for batch in [x] if torch.is_tensor(x) else x:
            z = self(batch)[2].double()
            n, s1, s2 = n + z[:, 0].numel(), s1 + z.sum(dim=(0, 2, 3)), s2 + z.pow(2).sum(dim=(0, 2, 3))
        std = ((s2 - s1 * s1 / n) / (n - 1)).clamp_min(0).sqrt().float().clamp_min(min_std)
        self.z_log_scale.copy_(-std.log().view_as(self.z_log_scale))
        return std

    @torch.no_grad()
    def grow_from(self, parent: "BDFlow") -> bool:
        """Progressive init (docs/design.md): copy the levels of a model of smaller (or equal: a fine-tune) scale;
        the extra levels stay identity.

        With fresh (identity) levels on top, this model starts as the parent followed by 2x2 mean pooling: its Y
        and B are the pooled Y and B of the parent (exactly so for Haar and for ``y_phase="corner"``; with a centred
        Y the parent's coarsest level lifts on the odd samples and becomes an even one here, a one-pixel shift of its
        sampling that training absorbs). A grown model's Z scale is set anew (``init_z_scale``); a fine-tune (equal
        scale) copies the parent's, so its Z starts as the parent's Z and not as one batch's per-channel estimate.
        Returns whether Z's scale was copied (the caller sets it otherwise).

        ``y_phase`` may differ where every level of the parent keeps its phase (``BDFlowConfig.phase``): a corner
        parent grows into a centred child of more levels, whose new coarsest level alone lifts on the odd samples
        (design: "Y's phase").
        """
        keep = ("hidden", "res_blocks", "res_from_level", "clamp", "boundary", "blocks_per_level", "level1_blocks",
                "max_3x3_channels", "wavelet", "b_mode")
        keep += ("b_upsample", "b_from_level") if self.config.conditioned else ()  # the twin reads no B
        differ = [k for k in keep if getattr(parent.config, k) != getattr(self.config, k)]
        phases_kept = all(parent.config.phase(l) == self.config.phase(l) for l in range(1, parent.config.levels + 1))
        if parent.config.y_phase != self.config.y_phase and not phases_kept:
            differ.append("y_phase")
        if differ or parent.config.levels > self.config.levels:
            raise ValueError(f"can only grow from a smaller or equal scale with the same {keep} and y_phase (or a corner "
                             f"parent's phases kept); differs: {differ or ['scale']}")
        for mine, theirs in zip(self.levels, parent.levels):
            mine.load_state_dict(theirs.state_dict())
        if parent.config.levels == self.config.levels:  # a fine-tune keeps the parent's Z scale as well
            self.z_log_scale.copy_(parent.z_log_scale)
            return True
        return False

    def split(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """The last level's 3 s^2 channels read as [Y, B, Z] (design §1; [Y, Z] unless B is a channel), Z through its scale exp(a)."""
        y, b = u[:, :Y_CHANNELS], u[:, Y_CHANNELS : Y_CHANNELS + int(self.config.b_channel)]
        z = u[:, Y_CHANNELS + b.shape[1] :] * torch.exp(self.z_log_scale)
        return y, (b if self.config.b_channel else None), z

    def merge(self, y: torch.Tensor, b: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`split`, with the shapes checked."""
        if self.config.boundary and b is None:
            raise ValueError("this model stores a boundary map: inverse() needs b (N,1,h,w)")
        if not self.config.boundary and b is not None:
            raise ValueError("this model has no boundary channel (the B-less twin): pass b=None")
        parts = {"y": (y, Y_CHANNELS), "b": (b, 1), "z": (z, self.config.z_channels)}
        parts = {name: part for name, part in parts.items() if part[0] is not None}
        for name, (part, channels) in parts.items():
            if part.dim() != 4 or part.shape[1] != channels or part.shape[2:] != y.shape[2:]:
                raise ValueError(f"{name} must be (N,{channels},h,w) like y {tuple(y.shape)}, got {tuple(part.shape)}")
        z_flow = z * torch.exp(-self.z_log_scale)
        stored = ["y", "b"] if self.config.b_channel else ["y"]  # a condition B is not one of the flow's channels
        return torch.cat([parts[name][0] for name in stored] + [z_flow], dim=1)

    def _check_hr(self, x: torch.Tensor) -> None:
        s = self.scale
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"x must be (N,3,H,W), got {tuple(x.shape)}")
        if x.shape[2] % s or x.shape[3] % s:
            raise ValueError(f"H and W must be multiples of the scale {s}, got {x.shape[2]}x{x.shape[3]}")


def z_origin_levels(levels: int) -> torch.Tensor:
    """(3 4^n - 3,) for each Z channel of an n-level flow (B as a condition), the first level at which it was a
    wavelet detail (1: the finest). Each level's wavelet stacks [A, H, V, D] of all its input channels (dwt2) and
    the couplings keep each channel in its slot, so channel i = colour + 3 (band_1 + 4 band_2 + ... + 4^(n-1) band_n),
    band_l in 0..3 = [A, H, V, D] at level l; channels 0..2 (A at every level) are Y."""
    def origin(i: int) -> int:
        first = 0
        for level in range(levels, 0, -1):
            band, i = divmod(i, 3 * 4 ** (level - 1))
            first = level if band else first
        return first
    return torch.tensor([origin(i) for i in range(Y_CHANNELS, 3 * 4**levels)])


def sample_z(y: torch.Tensor, channels: int, tau: float, generator: torch.Generator | None = None,
             b: torch.Tensor | None = None, tau_b: float = 1.0) -> torch.Tensor:
    """Z shaped (N, channels, h, w) like y, each LR cell's values ~ N(0, tau_cell^2) (design §2: tau = 0 gives the
    deterministic mean, zeros, drawn from no generator).

    Without ``b`` (or with ``tau_b`` = 1), tau_cell = tau everywhere: the paper's sampling. With the stored B
    (N,1,h,w) in [0, 1], tau_cell = tau (1 - (1 - tau_b) B): Z keeps the share ``tau_b`` of tau where B marks a
    boundary (graded with a k-bit B). B has one value per LR cell, so where an edge runs inside its cell is in that
    cell's Z (docs/studies/gaussian-z.md); tau_b = 0 keeps the edges where the decoder's mean puts them and samples
    texture elsewhere (design.md, "Where Z is sampled")."""
    tau, tau_b = check_tau(tau), check_tau_b(tau_b)
    n, _, h, w = y.shape
    if b is not None and b.shape != (n, 1, h, w):
        raise ValueError(f"b must be shaped {(n, 1, h, w)} like y's cells, got {tuple(b.shape)}")
    if tau == 0:
        return y.new_zeros(n, channels, h, w)
    z = torch.randn(n, channels, h, w, generator=generator, device=y.device, dtype=y.dtype).mul_(tau)
    if b is not None and tau_b < 1:
        z.mul_(1 - (1 - tau_b) * b.to(z.dtype))
    return z

"""The training loss of BDFlow (paper §3.3, Eq. 4 and 7-11); each term is a function of its own.

    L = lambda_1 L_forw(Y) + L_back(X; lambda_BAW) + lambda_3 L_LPIPS + lambda_4 L_BAM(B) + lambda_5 L_latent(Z)
        (+ lambda_grid L_grid, beyond the paper: docs/studies/x64-grid.md;
         + lambda_channels L_channels(Z), beyond the paper: docs/studies/gaussian-z.md;
         + lambda_critic L_critic(X_back), beyond the paper: bdflow.critic)

Every term is a mean over its elements (the paper's 1/N sums), so the lambdas of §4.2 (2, 2, 1, 16, 4)
weigh per-pixel errors. The reconstruction X_back is decoded from the *quantised* Y and B and a Z sampled
from the prior at temperature ``tau_train`` (IRN's recipe and the paper's: tau = 1; ours: 0, design "Recipe"),
exactly what a user's decoder sees at that tau. LPIPS joins after ``lpips_from`` of training, BAW after
``baw_alpha``. With B as a condition (``b_mode="condition"``) B *is* the BAM target, so L_BAM is zero by
construction and is not computed; the encoder reads the unquantised target, the decoder the k-bit one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .bam import boundary_strength, luma_std
from .config import BDFlowConfig, LossConfig
from .critic import generator_term
from .flow import BDFlow, sample_z
from .lpips import get_lpips, lpips
from .metrics import fold_cells
from .quantize import boundary_cells, quantize_b, quantize_y
from .resize import bicubic_down, bicubic_up

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
W2_SAMPLE = 32768  # Z values per batch that latent_w2 sorts


def forward_loss(y: torch.Tensor, y_ref: torch.Tensor) -> torch.Tensor:
    """Eq. 8: mean squared error of the flow's LR y (N,3,h,w) against the bicubic LR."""
    return torch.mean((y - y_ref) ** 2)


def baw_weight(b_s: torch.Tensor, lambda_back: float, active: bool) -> torch.Tensor | float:
    """Eq. 4: lambda_BAW, the per-pixel weight of L_back, from B_s (N,1,H,W).

    lambda_2 alone while training is below alpha; afterwards lambda_2 + B_s min-max normalised per image.
    """
    if not active:
        return lambda_back
    lo = b_s.amin(dim=(1, 2, 3), keepdim=True)
    hi = b_s.amax(dim=(1, 2, 3), keepdim=True)
    return lambda_back + (b_s - lo) / (hi - lo).clamp_min(1e-12)


def backward_loss(x_back: torch.Tensor, x: torch.Tensor, weight: torch.Tensor | float) -> torch.Tensor:
    """Eq. 9: L1 of the reconstruction (N,3,H,W), weighted per pixel by lambda_BAW (N,1,H,W) or a scalar."""
    return torch.mean(weight * torch.abs(x_back - x))


def energy_score(x1: torch.Tensor, x2: torch.Tensor, x: torch.Tensor, weight: torch.Tensor | float, patch: int,
                 spread: torch.Tensor | float = 1.0, colour: float = 1.0) -> torch.Tensor:
    """L_back as the energy score (beyond the paper; ``LossConfig.back = "energy"``): two decodes x1, x2 (N,3,H,W) of
    the same Y and B at one tau, against x, each p x p patch compared as one vector of d = 3 p^2 values:

        mean over patches of  w_c (||x1 - x||_c + ||x2 - x||_c - ||x1 - x2||_c) / (2 sqrt(d)),

    with w_c the patch's mean lambda_BAW (N,1,H,W, or a scalar). The energy score is strictly proper (Gneiting and
    Raftery, 2007): its expectation is least when x1 and x2 are independent samples of X's law given Y and B, so the
    decoder is paid for drawing the detail Y and B leave open from Z, where an L1 on one decode pays it to ignore Z.
    With x1 = x2 (tau = 0) it is the patches' RMS error. Written by hand: no library scores image patches this way.

    ``spread`` (N,1,H/p,W/p) or a scalar weighs the spread term ||x1 - x2|| patch by patch: 1 is the proper score;
    below 1 a patch's samples are paid less for differing, so they agree there, and below 0 they pay for differing
    (``LossConfig.energy_edge_spread``). ``colour`` weighs the colour part of x1 - x2 inside that term (each pixel's
    difference less its mean over R, G, B; the grey part is that mean on every channel, so the two parts are
    orthogonal and colour = 1 is the plain norm): below 1 the samples are paid less for differing in colour, so
    they differ in luminance, where a face's missing detail is (``LossConfig.energy_colour_spread``)."""
    if x1.shape != x.shape or x2.shape != x.shape:
        raise ValueError(f"energy_score needs x1, x2 and x of one shape, got {tuple(x1.shape)}, {tuple(x2.shape)}, {tuple(x.shape)}")

    def rms(d: torch.Tensor, colour: float = 1.0) -> torch.Tensor:  # ||d||_c / sqrt(d): (N,1,H/p,W/p); the epsilon keeps sqrt's gradient finite at 0
        square = d.pow(2).mean(dim=1, keepdim=True)
        if colour != 1:  # grey^2 + colour * mean_c (d_c - grey)^2, which is mean_c d_c^2 at colour 1
            grey = d.mean(dim=1, keepdim=True)
            square = grey.pow(2) + colour * (d - grey).pow(2).mean(dim=1, keepdim=True)
        return torch.sqrt(torch.nn.functional.avg_pool2d(square, patch) + 1e-12)

    w = torch.nn.functional.avg_pool2d(weight, patch) if torch.is_tensor(weight) else weight
    return torch.mean(w * (rms(x1 - x) + rms(x2 - x) - spread * rms(x1 - x2, colour))) / 2


def flat_patches(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H/p, W/p): 1 where the p x p patch's luma std is below the batch's median, else 0 (the
    flat half of the batch's patches, where a sample's detail is noise; ``LossConfig.energy_flat_spread``)."""
    std = luma_std(x, patch)  # a mask: detached, and the scale does not move the median
    return (std < std.median()).to(x.dtype)


def grid_weight(x_back: torch.Tensor, x: torch.Tensor, scale: int, gamma: float) -> torch.Tensor:
    """L_back's weight per offset inside the LR cell (beyond the paper; ``LossConfig.grid_gamma``, docs/studies/x64-grid.md):
    (1,1,H,W), ``(e_o / mean e)^gamma`` normalised to mean 1, where e_o is the batch's squared error at offset o of
    the s x s cell (``metrics.fold_cells``, the grid check's fold, here on RGB and without gradient). An offset the
    decoder gets wrong in every cell - a faint lattice of dots at period s, what the check's max finds - weighs more
    until the error is flat across the cell. H and W are multiples of ``scale`` (training crops are)."""
    h, w = x.shape[-2:]
    err = fold_cells((x_back.detach() - x).pow(2), scale).mean(0)
    weight = (err / err.mean().clamp_min(1e-12)).pow(gamma)
    return (weight / weight.mean()).repeat(h // scale, w // scale)[None, None]


def grid_energy_loss(x_back: torch.Tensor, x: torch.Tensor, y: torch.Tensor, scale: int) -> torch.Tensor:
    """L_grid (beyond the paper; ``LossConfig.lambda_grid``, docs/studies/x64-grid.md): where inside the LR cell the decoder
    puts its detail. x_back, x (N,3,H,W), y (N,3,H/s,W/s) the stored LR; H and W multiples of ``scale``.

    The detail is what the reconstruction adds to Y's bicubic upsampling; its energy at each offset o of the s x s
    cell, D(o), folded over the batch's cells (``metrics.fold_cells``, the grid check's fold), is compared as a profile
    with the true detail's, R(o), on the same images: mean_o (D(o) / mean D - R(o) / mean R)^2. Only where the energy
    sits counts, not how much there is (LPIPS and L_back decide that). A decoder that paints texture at one offset of
    every cell (a lattice of dots: LPIPS rewards texture, a constant latent puts it in the same place each time) pays
    whatever the sign of that texture, which an error-weighted L1 (``grid_weight``) does not see. Y is detached: the
    term shapes the decoder only."""
    up = bicubic_up(y.detach(), scale)
    d = fold_cells((x_back - up).pow(2), scale).mean(0)
    r = fold_cells((x - up).pow(2), scale).mean(0)
    return (d / d.mean().clamp_min(1e-12) - r / r.mean().clamp_min(1e-12)).pow(2).mean()


def shifted_crops(x_back: torch.Tensor, x: torch.Tensor, period: int, generator: torch.Generator | None = None):
    """Both (N,3,H,W) images cropped to (N,3,H-period,W-period) at one random offset in [0, period)^2 (design, the
    loss's LPIPS note; ``LossConfig.lpips_shift``): the LR cells of a x``period`` model then sit at a random phase of LPIPS's own strided
    grid, so texture painted in step with the LR cells is not rewarded at one phase."""
    device = generator.device if generator is not None else x.device
    dy, dx = torch.randint(0, period, (2,), generator=generator, device=device).tolist()
    h, w = x.shape[-2] - period, x.shape[-1] - period
    return x_back[..., dy : dy + h, dx : dx + w], x[..., dy : dy + h, dx : dx + w]


def bam_loss(b: torch.Tensor, b_target: torch.Tensor) -> torch.Tensor:
    """Eq. 10: mean squared error of the flow's B (N,1,h,w) against the BAM target on the LR grid."""
    return torch.mean((b - b_target) ** 2)


def latent_nll(z: torch.Tensor) -> torch.Tensor:
    """Eq. 11: negative log-likelihood of Z under N(0, 1), per element (nats)."""
    return torch.mean(0.5 * z**2) + HALF_LOG_2PI


def normal_quantiles(n: int, device=None) -> torch.Tensor:
    """(n,) the N(0, 1) quantiles at the mid-points (i + 1/2) / n: the sorted sample a perfect Gaussian would give."""
    p = (torch.arange(n, device=device, dtype=torch.float64) + 0.5) / n
    return (math.sqrt(2) * torch.erfinv(2 * p - 1)).float()


def w2_to_normal(values: torch.Tensor) -> torch.Tensor:
    """Squared 1-D Wasserstein-2 distance to N(0, 1) of each row of ``values`` (..., n): the row sorted against
    :func:`normal_quantiles`, averaged over every row and value."""
    return (values.sort(dim=-1).values - normal_quantiles(values.shape[-1], values.device)).pow(2).mean()


def latent_w2(z: torch.Tensor, n: int = W2_SAMPLE, generator: torch.Generator | None = None) -> torch.Tensor:
    """Squared 1-D Wasserstein-2 distance between the values of z (any shape) and N(0, 1) (beyond the paper): a
    random sample of ``n`` values, sorted, against :func:`normal_quantiles`. Unlike Eq. 11's E[z^2]/2, which a spike
    at 0 minimises, it sees the whole distribution - scale, skew and tails - and is zero only for a Gaussian sample."""
    flat = z.flatten()
    if flat.numel() > n:
        device = generator.device if generator is not None else flat.device
        flat = flat[torch.randint(flat.numel(), (n,), generator=generator, device=device).to(flat.device)]
    return w2_to_normal(flat)


def latent_term(z: torch.Tensor, kind: str, cells: torch.Tensor | None, generator: torch.Generator | None = None):
    """L_latent of ``LossConfig.latent`` for z (N,C,h,w): "nll" (Eq. 11), "w2" (:func:`latent_w2` over all of Z) or
    "w2_b": W2 of the Z values in B's boundary cells and W2 of the rest, averaged, so that Z is N(0, 1) on both
    sides of B - not louder where the boundaries are. ``cells`` (N,1,h,w) bool: the LR cells where the 1-bit B is 1
    (None for the twin, whose "w2_b" falls back to "w2")."""
    if kind == "nll":
        return latent_nll(z)
    if kind == "w2" or cells is None:
        return latent_w2(z, generator=generator)
    cells = cells.expand_as(z)
    parts = [latent_w2(z[m], generator=generator) for m in (cells, ~cells) if m.any()]
    return sum(parts) / len(parts)


def latent_channels(z: torch.Tensor, kind: str = "moments") -> torch.Tensor:
    """L_channels for z (N,C,h,w) (beyond the paper; ``LossConfig.lambda_channels`` and ``.channels``), mean over the
    channels of

    - "moments": each channel's batch mean held at 0 and its std at 1, m_c^2 + (s_c - 1)^2;
    - "w2": the squared 1-D Wasserstein-2 distance of each channel's values (all N*h*w of them, sorted) to N(0, 1), as
      :func:`latent_w2` does for the pool (:func:`w2_to_normal` per channel): offset, spread and the tails inside it.

    The pooled terms (Eq. 11, "w2", "w2_b") see Z's values as one sample, so a Z whose channels sit at their own
    offsets, or are heavy-tailed with spreads that balance, passes them; the decoder then reads Z = 0 where the
    forward Z never is (docs/studies/gaussian-z.md "Per channel")."""
    if kind == "w2":
        return w2_to_normal(z.transpose(0, 1).flatten(1))  # (C, N*h*w)
    m = z.mean(dim=(0, 2, 3))
    s = z.std(dim=(0, 2, 3))
    return (m.pow(2) + (s - 1).pow(2)).mean()


@dataclass
class Passes:
    """The three networks a loss evaluation runs, as callables: the flow's forward (x, b) -> (y, b, z), its inverse
    (y, b, z) -> x and LPIPS (x, y) -> (N,). :meth:`of` gives the model's own; :meth:`compiled` the same under
    ``torch.compile`` (the training CLI's fast step: Inductor fuses the couplings' element-wise work, forward and
    backward, into few kernels; benchmarks/speed.py --train). The glue around them (BAM, bicubic, rounding, the
    terms) stays eager: it is cheap and changes with ``bits`` and the schedule, which would each cost a recompile."""

    forward: Callable
    inverse: Callable
    perceptual: Callable

    @classmethod
    def of(cls, model: BDFlow) -> "Passes":
        return cls(model, model.inverse, lpips)

    @classmethod
    def compiled(cls, model: BDFlow, device: torch.device | str | None = None) -> "Passes":
        """The model's passes and LPIPS on ``device`` (default: the model's), each ``torch.compile``d."""
        device = device or next(model.parameters()).device
        return cls(*(torch.compile(fn, dynamic=False) for fn in (model.forward, model.inverse, get_lpips(device))))


@dataclass
class LossTerms:
    """The weighted terms of Eq. 7 and their sum; ``total`` is what is minimised. ``decodes`` (samples N, 3, H, W),
    where the loss has a critic (else None): the training decodes clamped to [0, 1], which the critic's own step
    (``bdflow.train``) learns to tell from X."""

    total: torch.Tensor
    forw: torch.Tensor
    back: torch.Tensor
    lpips: torch.Tensor
    bam: torch.Tensor
    latent: torch.Tensor
    channels: torch.Tensor
    grid: torch.Tensor
    texture: torch.Tensor
    critic: torch.Tensor
    decodes: torch.Tensor | None

    def items(self) -> dict[str, float]:
        return {name: float(getattr(self, name).detach()) for name in TERMS}


TERMS = ("total", "forw", "back", "lpips", "bam", "latent", "channels", "grid", "texture", "critic")  # LossTerms.items()


def training_z(y: torch.Tensor, channels: int, lc: LossConfig, generator: torch.Generator | None = None,
               samples: int = 1, b: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The prior Z (samples N, channels, h, w) the training decodes read beside y (N, C, h, w) and each image's
    temperature tau (N,): N(0, tau_train^2) for every image (``tau_draw`` fixed, the paper's), or each image at its
    own tau ~ U(0, tau_train) (uniform). ``samples`` independent draws per image share that image's tau, stacked draw
    after draw (the energy score's pair). With the stored B of the decodes ``b`` (samples N, 1, h, w), Z keeps the
    share ``tau_b`` of it in B's boundary cells (``flow.sample_z``)."""
    z = sample_z(y.repeat(samples, 1, 1, 1), channels, tau=lc.tau_train, generator=generator, b=b, tau_b=lc.tau_b)
    tau = torch.full((len(y),), lc.tau_train, device=z.device, dtype=z.dtype)
    if lc.tau_draw == "uniform" and lc.tau_train > 0:
        share = torch.rand(len(y), 1, 1, 1, generator=generator, device=z.device, dtype=z.dtype)
        z, tau = z * share.repeat(samples, 1, 1, 1), tau * share.view(-1)
    return z, tau


def bdflow_loss(
    model: BDFlow,
    x: torch.Tensor,
    bits: int,
    progress: float,
    generator: torch.Generator | None = None,
    passes: Passes | None = None,
    critic: Callable | None = None,
) -> LossTerms:
    """Eq. 7 for a batch x (N,3,H,W) in [0, 1]; ``progress`` in [0, 1] is the fraction of training done.

    The loss is ``model.loss_config``; ``passes`` runs the networks (default: ``Passes.of(model)``); ``critic``
    (images -> patch logits, ``bdflow.critic.PatchCritic``) scores the decodes where ``lambda_critic`` > 0. The twin (``config.boundary=False``) drops L_BAM, and BAW too unless
    ``loss_config.baw_twin`` (Table 3's 'BAW only'): same recipe otherwise.
    """
    c: BDFlowConfig = model.config
    lc: LossConfig = model.loss_config
    passes = passes or Passes.of(model)
    if lc.lambda_critic > 0 and critic is None:
        raise ValueError("lambda_critic > 0 scores the decodes with a critic: pass one (bdflow.critic.PatchCritic)")
    baw = lc.uses_baw(c)
    zero = torch.zeros((), device=x.device)
    edges = lc.back == "energy" and lc.energy_edge_spread != 1  # the patches where samples agree: BAM's edges of x
    b_s = boundary_strength(x, sigma=c.bam_sigma, norm=c.bam_norm, threshold=c.bam_threshold) if baw or edges else None
    b_target = model.boundary_map(x, b_s) if c.boundary else None  # b_s computed once, for B's target and BAW
    y, b, z = passes.forward(x, b_target) if c.conditioned else passes.forward(x)
    forw = forward_loss(y, bicubic_down(x, c.scale))
    cells = boundary_cells(b) if c.boundary and lc.latent == "w2_b" else None
    latent = latent_term(z, lc.latent, cells, generator) if lc.lambda_latent > 0 else zero
    samples = 2 if lc.back == "energy" else 1
    y_q = quantize_y(y)
    b_q = quantize_b(b, bits).repeat(samples, 1, 1, 1) if c.boundary else None
    z_prior, tau = training_z(y, c.z_channels, lc, generator, samples, None if b_q is None else b_q.detach())  # B learns its target, not how loud Z is
    weight = baw_weight(b_s, lc.lambda_back, active=progress >= lc.baw_alpha) if baw else lc.lambda_back
    bam_term = bam_loss(b, b_target) if c.b_channel else zero
    decodes = passes.inverse(y_q.repeat(samples, 1, 1, 1), b_q, z_prior).chunk(samples)  # one batch: both draws at once
    judged = torch.cat(decodes).clamp(0, 1) if lc.lambda_critic > 0 else None  # what the critic scores, here and in its own step
    x_back = decodes[0]
    if lc.grid_gamma > 0:
        weight = weight * grid_weight(x_back, x, c.scale, lc.grid_gamma)
    if samples == 2:  # patches that hold a boundary (B_s > 0) spread at energy_edge_spread: B (the twin: Y), not Z, draws the edges
        edged = torch.nn.functional.max_pool2d((b_s > 0).to(x.dtype), lc.energy_patch) if edges else 0.0
        spread = 1 - (1 - lc.energy_edge_spread) * edged
        if lc.energy_flat_spread != 1:  # and flat patches at energy_flat_spread: Z draws no noise on flat skin
            spread = spread * (1 - (1 - lc.energy_flat_spread) * flat_patches(x, lc.energy_patch))
        back = energy_score(*decodes, x, weight, lc.energy_patch, spread=spread, colour=lc.energy_colour_spread)
    else:
        back = backward_loss(x_back, x, weight)
    use_lpips = (lc.lambda_lpips > 0 or lc.lambda_lpips_tau > 0) and progress >= lc.lpips_from
    if use_lpips:  # each image's LPIPS at its weight: lambda_3, plus lambda_lpips_tau * tau / tau_train (a warmer decode)
        pair = (x_back.clamp(0, 1), x)
        weight_lpips = lc.lambda_lpips + (lc.lambda_lpips_tau * tau / lc.tau_train if lc.lambda_lpips_tau else 0.0)
        lpips_term = (weight_lpips * passes.perceptual(*(shifted_crops(*pair, c.scale, generator) if lc.lpips_shift else pair))).mean()
    else:
        lpips_term = zero
    terms = dict(
        forw=lc.lambda_forw * forw,
        back=back,
        lpips=lpips_term,
        bam=lc.lambda_bam * bam_term,
        latent=lc.lambda_latent * latent,
        channels=lc.lambda_channels * latent_channels(z, lc.channels) if lc.lambda_channels > 0 else zero,
        grid=lc.lambda_grid * grid_energy_loss(x_back, x, y_q, c.scale) if lc.lambda_grid > 0 else zero,
        texture=lc.lambda_texture * (tau / lc.tau_train * get_lpips(x.device).texture(x_back.clamp(0, 1), x)).mean()
        if lc.lambda_texture > 0 else zero,  # eager: LPIPS's features, not the compiled distance
        critic=lc.lambda_critic * (tau.repeat(samples) / lc.tau_train * generator_term(critic(judged))).mean()
        if lc.lambda_critic > 0 and progress >= lc.critic_from else zero,
    )
    return LossTerms(total=sum(terms.values()), **terms, decodes=judged)

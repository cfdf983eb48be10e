"""A learned critic for the warm decodes (beyond the paper; docs/studies/where-z-is-sampled.md "A critic").

A decoder trained on fidelity terms turns a prior draw of Z into detail that each of those terms charges as error,
so its samples look like noise. A critic scores how real an image patch looks: trained to tell the training crops
from the decodes, its judgement of a decode at temperature tau is the generator's term ``LossConfig.lambda_critic``,
weighed tau / tau_train, so tau 0 stays the fidelity decode and only a sample is asked to look real.

Written here rather than taken from a GAN library: it is a few convolutions, and what BDFlow needs of it (a
per-image term weighed by each decode's temperature, a state that resumes bit for bit with the flow's) is its own.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.functional import softplus
from torch.nn.utils.parametrizations import spectral_norm

# the critic's learning rate over the flow's, at every step of the flow's schedule: at the flow's fine-tuning rates
# (5e-5) a spectrally normalised critic needs ~10x to tell a x8 decode at tau 0.5 from its truth within ~200 steps
LR_FACTOR = 10.0
BETAS = (0.5, 0.999)  # Adam's for the critic: a short memory, as the decodes it judges keep changing


class PatchCritic(nn.Module):
    """Logits (N, 1, H/4, W/4) of how real each ~20-pixel patch of x (N, 3, H, W) in [0, 1] looks; spectrally
    normalised convolutions, so no one step of it moves far."""

    def __init__(self, width: int = 32):
        super().__init__()
        act = lambda: nn.LeakyReLU(0.2)  # noqa: E731
        self.net = nn.Sequential(
            spectral_norm(nn.Conv2d(3, width, 3, padding=1)), act(),
            spectral_norm(nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)), act(),
            spectral_norm(nn.Conv2d(2 * width, 2 * width, 4, stride=2, padding=1)), act(),
            spectral_norm(nn.Conv2d(2 * width, 1, 3, padding=1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"the critic scores images (N, 3, H, W), got {tuple(x.shape)}")
        return self.net(x * 2 - 1)


def critic_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The critic's own loss (logistic): real patches (N, 1, h, w) towards +, fake ones towards -."""
    return softplus(-real).mean() + softplus(fake).mean()


def generator_term(fake: torch.Tensor) -> torch.Tensor:
    """Per image (N,): the non-saturating generator loss of a decode's patch logits (N, 1, h, w)."""
    return softplus(-fake).flatten(1).mean(1)

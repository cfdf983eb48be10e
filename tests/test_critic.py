"""The patch critic of the warm decodes: its shapes, its losses' directions, and that a few steps teach it to tell
real faces from their blurred copies."""

import pytest
import torch

from bdflow.critic import PatchCritic, critic_loss, generator_term
from bdflow.resize import bicubic_down, bicubic_up


@pytest.mark.parametrize("size", [32, 64, 96])
def test_patch_logits_are_a_quarter_of_the_image(size):
    assert PatchCritic(width=8)(torch.rand(2, 3, size, size)).shape == (2, 1, size // 4, size // 4)


def test_a_bad_input_is_refused():
    with pytest.raises(ValueError, match=r"the critic scores images \(N, 3, H, W\)"):
        PatchCritic(width=8)(torch.rand(3, 32, 32))


def test_losses_point_the_right_way():
    low, high = torch.full((2, 1, 4, 4), -3.0), torch.full((2, 1, 4, 4), 3.0)
    assert critic_loss(high, low) < critic_loss(low, high)  # the critic wants real high, fake low
    assert generator_term(high).shape == (2,) and (generator_term(high) < generator_term(low)).all()  # a decode wants to look real


def test_a_few_steps_tell_sharp_faces_from_blurred_ones(face):
    torch.manual_seed(0)
    critic = PatchCritic(width=16)
    real = torch.cat([face[:, :, i : i + 64, j : j + 64] for i in (0, 128, 256) for j in (64, 192)])
    fake = bicubic_up(bicubic_down(real, 4), 4).clamp(0, 1)  # what a decoder that ignores Z gives
    optimizer = torch.optim.Adam(critic.parameters(), lr=3e-3, betas=(0.5, 0.999))
    for _ in range(150):
        optimizer.zero_grad()
        critic_loss(critic(real), critic(fake)).backward()
        optimizer.step()
    with torch.no_grad():
        assert critic(real).mean() > critic(fake).mean() + 0.5

"""Each term of Eq. 7 on its own, then the assembled loss (BDFlow and its B-less twin)."""

import math

import pytest
import torch

from bdflow import BDFlow, BDFlowConfig, LossConfig
from bdflow.bam import boundary_strength
from bdflow.losses import (Passes, backward_loss, bam_loss, baw_weight, bdflow_loss, energy_score, flat_patches, forward_loss,
                           grid_energy_loss, grid_weight, latent_channels, latent_nll, latent_term, latent_w2, normal_quantiles, shifted_crops, training_z)
from bdflow.metrics import grid_map
from bdflow.resize import bicubic_up
from tests.helpers import perturb_


def test_forward_and_bam_losses_are_mse():
    a, b = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.5)
    assert forward_loss(a, a) == 0 and forward_loss(a, b) == pytest.approx(0.25)
    assert bam_loss(a[:, :1], b[:, :1]) == pytest.approx(0.25)


def test_latent_nll_is_the_gaussian_nll():
    z = torch.randn(2, 5, 3, 3)
    expected = -torch.distributions.Normal(0.0, 1.0).log_prob(z).mean()
    assert latent_nll(z) == pytest.approx(float(expected), rel=1e-6)
    assert latent_nll(torch.zeros(1)) == pytest.approx(0.5 * math.log(2 * math.pi))


def test_latent_w2_is_zero_for_a_gaussian_and_sees_scale_and_tails():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(8, 12, 32, 32, generator=g)
    assert latent_w2(z, generator=g) < 2e-3
    assert latent_w2(3 * z, generator=g) == pytest.approx(4, rel=0.05)  # (3 - 1)^2: a scale error
    assert latent_w2(torch.zeros_like(z)) == pytest.approx(1, rel=1e-3)  # the spike E[z^2]/2 prefers is far
    heavy = torch.distributions.StudentT(3.0).sample((8, 12, 32, 32)) / math.sqrt(3)  # unit variance, heavy tails
    assert latent_w2(heavy, generator=g) > 10 * latent_w2(z, generator=g)
    assert latent_nll(heavy) == pytest.approx(float(latent_nll(z)), abs=0.05)  # Eq. 11 cannot tell them apart
    q = normal_quantiles(4)
    assert torch.allclose(q, -q.flip(0)) and q[2] == pytest.approx(0.3186, abs=1e-4)


def test_latent_channels_sees_offsets_the_pooled_terms_miss():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(8, 12, 16, 16, generator=g)
    shifted = 0.6 * torch.tensor([1.0, -1.0]).repeat(6).view(1, 12, 1, 1) + 0.8 * z  # pooled: still ~N(0, 1)
    assert latent_channels(z) < 0.01 and latent_channels(shifted) == pytest.approx(0.36 + 0.04, abs=0.02)
    assert latent_w2(shifted, generator=g) < 0.02  # what the pooled W2 sees of it
    with pytest.raises(ValueError, match="lambda_channels"):
        LossConfig(lambda_channels=-1)


def test_latent_channels_w2_sees_tails_inside_each_channel_that_moments_miss():
    """Unit-variance Laplace channels pass the two moments but not the per-channel W2; a Gaussian Z passes both, and
    the W2 term also sees the offsets."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(8, 12, 16, 16, generator=g)
    laplace = torch.distributions.Laplace(0.0, 1 / math.sqrt(2)).sample((8, 12, 16, 16))
    shifted = 0.6 * torch.tensor([1.0, -1.0]).repeat(6).view(1, 12, 1, 1) + 0.8 * z
    assert latent_channels(laplace) < 0.02 and latent_channels(laplace, "w2") > 3 * latent_channels(z, "w2")
    assert latent_channels(z, "w2") < 0.01 and latent_channels(shifted, "w2") > 0.3
    with pytest.raises(ValueError, match="channels must be one of"):
        LossConfig(channels="kurtosis")


def test_latent_w2_b_holds_each_side_of_b_to_n01():
    z = torch.randn(4, 12, 16, 16, generator=torch.Generator().manual_seed(0))
    cells = torch.zeros(4, 1, 16, 16, dtype=torch.bool)
    cells[..., :4] = True
    louder = torch.where(cells, 2 * z, z * 0.9)  # pooled std ~1.2, but twice as loud in the boundary cells
    assert latent_term(louder, "w2_b", cells) > 2 * latent_term(louder, "w2", None)
    assert latent_term(z, "w2_b", cells) < 0.02
    assert latent_term(z, "w2_b", None) == latent_term(z, "w2", None)  # the twin: no B, pooled


@pytest.mark.slow
def test_compiled_passes_give_the_eager_loss_and_gradients(face):
    torch.manual_seed(0)
    model = perturb_(BDFlow(BDFlowConfig(scale=4, hidden=8)), std=0.02)
    x = face[..., :64, :64].expand(2, -1, -1, -1).contiguous()
    grads = []
    for passes in (None, Passes.compiled(model)):
        model.zero_grad()
        terms = bdflow_loss(model, x, bits=1, progress=0.9, passes=passes)
        terms.total.backward()
        grads.append(([float(terms.total)], [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (loss_a, grad_a), (loss_b, grad_b) = grads
    assert loss_a == pytest.approx(loss_b, rel=1e-4)
    assert all(torch.allclose(a, b, rtol=1e-3, atol=1e-6) for a, b in zip(grad_a, grad_b))


def test_baw_weight_eq4(face):
    b_s = boundary_strength(face)
    assert baw_weight(b_s, 2.0, active=False) == 2.0  # first alpha of training: lambda_2 alone
    w = baw_weight(b_s, 2.0, active=True)
    assert w.shape == b_s.shape
    assert w.min() == pytest.approx(2.0) and w.max() == pytest.approx(3.0)  # lambda_2 + min-max normalised B_s
    assert torch.equal(w > 2.0, b_s > 0)  # extra weight exactly on the boundary pixels


def test_backward_loss_weights_boundary_pixels():
    x = torch.zeros(1, 3, 4, 4)
    x_back = x.clone()
    x_back[..., 0, 0] = 1.0
    weight = torch.ones(1, 1, 4, 4)
    plain = backward_loss(x_back, x, 1.0)
    assert plain == pytest.approx(3 / 48)
    weight[..., 0, 0] = 3.0
    assert backward_loss(x_back, x, weight) == pytest.approx(3 * plain)


@pytest.mark.parametrize("boundary, b_mode", [(True, "channel"), (True, "condition"), (False, "condition")])
def test_full_loss_terms_and_gradients(face, boundary, b_mode):
    model = perturb_(BDFlow(BDFlowConfig(scale=8, hidden=8, boundary=boundary, b_mode=b_mode), LossConfig(tau_train=1.0)), std=0.01)
    x = face[..., 128:192, 128:192]
    terms = bdflow_loss(model, x, bits=2, progress=0.5, generator=torch.Generator().manual_seed(0))
    values = terms.items()
    assert values["total"] == pytest.approx(sum(v for k, v in values.items() if k != "total"), rel=1e-5)
    assert all(math.isfinite(v) for v in values.values())
    # L_BAM only where B is a channel: the twin has no B, and a condition B *is* the BAM target
    assert (values["bam"] > 0) == (boundary and b_mode == "channel")
    assert values["lpips"] > 0
    terms.total.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_lpips_switches_on_after_lpips_from(face):
    model = perturb_(BDFlow(BDFlowConfig(scale=8, hidden=8), LossConfig(lpips_from=0.5)), std=0.01)
    x = face[..., 128:192, 128:192]
    before, after = (bdflow_loss(model, x, 1, progress=p, generator=torch.Generator().manual_seed(0)) for p in (0.49, 0.5))
    assert before.lpips == 0 < after.lpips and before.back == after.back


def test_lambda_lpips_tau_weighs_each_decodes_lpips_by_its_temperature(face):
    """lambda_3 + lambda_lpips_tau * tau / tau_train: at tau = tau_train (fixed draw) LPIPS weighs 0.1 + 1.0, eleven
    times lambda_3 alone, and nothing else moves; it needs a temperature to weigh by."""
    x = face[..., 128:192, 128:192]
    terms = {}
    for extra in (0.0, 1.0):
        torch.manual_seed(0)
        loss = LossConfig(lpips_from=0.0, lambda_lpips=0.1, lambda_lpips_tau=extra, tau_train=1.0)
        model = perturb_(BDFlow(BDFlowConfig(scale=8, hidden=8), loss), std=0.01)
        terms[extra] = bdflow_loss(model, x, 1, progress=0.5, generator=torch.Generator().manual_seed(0))
    assert terms[0.0].back == terms[1.0].back and terms[0.0].lpips > 0
    assert torch.allclose(terms[1.0].lpips, 11 * terms[0.0].lpips, rtol=1e-5)
    with pytest.raises(ValueError, match="needs tau_train > 0"):
        LossConfig(lambda_lpips_tau=1.0, tau_train=0.0)
    with pytest.raises(ValueError, match="lambda_lpips_tau must be >= 0"):
        LossConfig(lambda_lpips_tau=-1.0, tau_train=1.0)


def test_shifted_crops_take_one_random_offset_for_both_images():
    x = torch.arange(2 * 3 * 24 * 24, dtype=torch.float32).view(2, 3, 24, 24)
    offsets = set()
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        a, b = shifted_crops(x + 0.5, x, 8, g)
        assert a.shape == b.shape == (2, 3, 16, 16) and torch.equal(a - 0.5, b)  # the same window in both
        dy, dx = divmod(int(b[0, 0, 0, 0]), 24)
        offsets.add((dy, dx))
        assert 0 <= dy < 8 and 0 <= dx < 8
    assert len(offsets) > 20  # the phase moves over the LR cell


def test_lpips_shift_changes_only_the_lpips_term(face):
    x = face[..., 128:192, 128:192]
    terms = {}
    for shift in (False, True):
        torch.manual_seed(0)  # the same weights for both
        model = perturb_(BDFlow(BDFlowConfig(scale=8, hidden=8), LossConfig(lpips_from=0.0, lpips_shift=shift)), std=0.01)
        terms[shift] = bdflow_loss(model, x, 1, progress=0.5, generator=torch.Generator().manual_seed(0))
    assert terms[False].back == terms[True].back and terms[False].forw == terms[True].forw
    assert terms[True].lpips > 0 and terms[True].lpips != terms[False].lpips


@pytest.mark.parametrize("gamma", [1.0, 2.0])
def test_grid_weight_lifts_the_offset_every_cell_gets_wrong(gamma):
    """A dot lattice at period s (one offset wrong in every cell, the rest uniformly off) gets the weight of
    (its error / the mean)^gamma, normalised to mean 1 and tiled over the cells; a flat error weighs 1 everywhere."""
    s, x = 4, torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(grid_weight(x + 0.1, x, s, gamma), torch.ones(1, 1, 16, 24))
    x_back = x + 0.1
    x_back[..., 1::s, 2::s] += 0.2  # offset (1, 2) is 0.3 off, the others 0.1
    w = grid_weight(x_back, x, s, gamma)
    assert w.shape == (1, 1, 16, 24) and torch.allclose(w.mean(), torch.tensor(1.0))
    assert torch.allclose(w[0, 0, 1::s, 2::s], w[0, 0, 1, 2].expand(4, 6))  # the same weight in every cell
    expected = torch.ones(s, s)
    expected[1, 2] = 9.0**gamma  # squared errors 0.09 against 0.01
    assert torch.allclose(w[0, 0, :s, :s], expected / expected.mean())
    e = grid_map(x_back, x, s).mean(0)  # metrics' fold (on Y) ranks the offsets alike
    assert divmod(int(e.argmax()), s) == (1, 2)


def loss_terms(face, **loss):
    """bdflow_loss's terms on one 64² crop of a face, a slightly perturbed ×8 flow, the same seeds on every call."""
    torch.manual_seed(0)
    model = perturb_(BDFlow(BDFlowConfig(scale=8, hidden=8), LossConfig(lpips_from=0.0, **loss)), std=0.01)
    return bdflow_loss(model, face[..., 128:192, 128:192], 1, progress=0.5, generator=torch.Generator().manual_seed(0))


def test_lambda_channels_adds_its_own_term_only(face):
    terms = {lam: loss_terms(face, lambda_channels=lam) for lam in (0.0, 1.0)}
    assert float(terms[0.0].channels) == 0 and float(terms[1.0].channels) > 0
    assert terms[0.0].back == terms[1.0].back and terms[0.0].latent == terms[1.0].latent
    assert float(terms[1.0].total - terms[0.0].total) == pytest.approx(float(terms[1.0].channels), rel=1e-5)


def test_grid_gamma_changes_only_the_reconstruction_term(face):
    terms = {gamma: loss_terms(face, grid_gamma=gamma) for gamma in (0.0, 2.0)}
    assert terms[0.0].lpips == terms[2.0].lpips and terms[0.0].forw == terms[2.0].forw
    assert terms[2.0].back > terms[0.0].back  # the weight moves to where the error is: a larger weighted mean
    with pytest.raises(ValueError, match="grid_gamma"):
        LossConfig(grid_gamma=-1)


def test_grid_energy_loss_sees_a_dot_lattice_of_either_sign():
    """L_grid is zero when the decoded detail's energy sits where the true detail's does, and grows for detail painted
    at one offset of every cell whatever its sign per image (what the x64 grid's dot is, docs/studies/x64-grid.md)."""
    s = 4
    g = torch.Generator().manual_seed(0)
    y = torch.rand(2, 3, 6, 8, generator=g) * 0.5 + 0.25
    up = bicubic_up(y, s)
    x = up + 0.05 * torch.randn(2, 3, 24, 32, generator=g)  # true detail spread over every offset
    assert grid_energy_loss(x, x, y, s) == 0
    dotted = x.clone()
    dotted[0, :, 1::s, 2::s] += 0.2  # one image's dots bright, the other's dark
    dotted[1, :, 1::s, 2::s] -= 0.2
    shuffled = up + 0.5 * (x - up).flip(-1)  # weaker detail, in other places: no excess at any offset
    assert grid_energy_loss(dotted, x, y, s) > 100 * grid_energy_loss(shuffled, x, y, s)


def test_lambda_grid_adds_its_own_term_only(face):
    terms = {lam: loss_terms(face, lambda_grid=lam) for lam in (0.0, 1.0)}
    assert terms[0.0].grid == 0 and terms[1.0].grid > 0
    assert terms[0.0].back == terms[1.0].back and terms[0.0].lpips == terms[1.0].lpips
    assert torch.isclose(terms[1.0].total, terms[0.0].total + terms[1.0].grid)
    with pytest.raises(ValueError, match="lambda_grid"):
        LossConfig(lambda_grid=-1)


def test_tau_train_sets_the_temperature_of_the_training_decode(face):
    """tau_train = 0 decodes from Z = 0: the loss no longer depends on the Z sample; tau_train = 1 does."""
    x = face[..., 128:192, 128:192]
    for tau, same in ((0.0, True), (1.0, False)):
        model = perturb_(BDFlow(BDFlowConfig(scale=8, hidden=8), LossConfig(lambda_lpips=0, tau_train=tau)), std=0.01)
        a, b = (bdflow_loss(model, x, 1, 0.0, generator=torch.Generator().manual_seed(s)).back for s in (0, 1))
        assert bool(a == b) == same


def test_uniform_tau_draw_gives_each_image_its_own_temperature():
    """tau_draw uniform: image i's Z is N(0, t_i^2) with t_i ~ U(0, tau_train), so the batch spans 0..tau_train; fixed:
    every image at tau_train; tau_train 0: zeros either way."""
    y = torch.zeros(64, 3, 32, 32)
    g = torch.Generator().manual_seed(0)
    z, tau = training_z(y, 9, LossConfig(tau_train=1.0, tau_draw="uniform"), g)
    stds = z.std(dim=(1, 2, 3))
    assert stds.max() <= 1.05 and stds.min() < 0.1 and 0.4 < stds.mean() < 0.6  # E[U(0, 1)] = 0.5
    assert torch.allclose(stds, tau, rtol=0.1, atol=0.01)  # the tau it reports is each image's own
    fixed, tau = training_z(y, 9, LossConfig(tau_train=1.0), g)
    assert torch.allclose(fixed.std(dim=(1, 2, 3)), torch.ones(64), atol=0.05) and torch.equal(tau, torch.ones(64))
    assert not training_z(y, 9, LossConfig(tau_train=0.0, tau_draw="uniform"), g)[0].any()
    with pytest.raises(ValueError, match="tau_draw"):
        LossConfig(tau_draw="normal")


@pytest.mark.parametrize("tau_b", [0.0, 0.5])
def test_training_z_keeps_tau_b_of_tau_in_bs_cells(face, tau_b):
    """LossConfig.tau_b: the training decodes draw Z as a decode does (flow.sample_z), both samples of the pair
    alike; 1 (the default) is the paper's draw, bit for bit; a gated step trains (finite, different gradients)."""
    y, b = torch.zeros(2, 3, 4, 4), torch.zeros(4, 1, 4, 4)
    b[:, :, :2] = 1.0
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    paper, _ = training_z(y, 5, LossConfig(tau_train=1.0), g(), samples=2, b=b)
    assert torch.equal(paper, training_z(y, 5, LossConfig(tau_train=1.0), g(), samples=2)[0])
    gated, _ = training_z(y, 5, LossConfig(tau_train=1.0, tau_b=tau_b), g(), samples=2, b=b)
    assert torch.allclose(gated[:, :, :2], tau_b * paper[:, :, :2]) and torch.equal(gated[:, :, 2:], paper[:, :, 2:])
    x = face[:, :, :32, :32].repeat(2, 1, 1, 1)
    grads = {}
    for name, lc in (("paper", LossConfig(tau_train=1.0, lambda_bam=0.0)), ("gated", LossConfig(tau_train=1.0, tau_b=tau_b, lambda_bam=0.0))):
        model = perturb_(BDFlow(BDFlowConfig(scale=4, hidden=8), lc), std=0.01)
        bdflow_loss(model, x, 1, progress=0.5, generator=torch.Generator().manual_seed(0)).total.backward()
        grads[name] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert torch.isfinite(grads["gated"]).all() and not torch.equal(grads["gated"], grads["paper"])
    with pytest.raises(ValueError, match="tau_b must be a number between 0 and 1"):
        LossConfig(tau_b=2.0)


@pytest.mark.parametrize("config, loss", [(dict(), dict()), (dict(boundary=False), dict(baw_twin=True))], ids=["bdflow", "twin-baw-only"])
def test_baw_switches_on_after_alpha(face, config, loss):
    model = perturb_(BDFlow(BDFlowConfig(scale=8, hidden=8, **config), LossConfig(lambda_lpips=0, **loss)), std=0.01)
    x = face[..., 128:192, 128:192]
    before = bdflow_loss(model, x, 1, progress=0.29, generator=torch.Generator().manual_seed(0))
    after = bdflow_loss(model, x, 1, progress=0.30, generator=torch.Generator().manual_seed(0))
    assert after.back > before.back  # the same error, now weighted up on boundaries
    assert after.forw == before.forw and after.latent == before.latent


def test_twin_without_baw_weighs_every_pixel_alike(face):
    model = perturb_(BDFlow(BDFlowConfig(scale=8, hidden=8, boundary=False), LossConfig(lambda_lpips=0)), std=0.01)
    x = face[..., 128:192, 128:192]
    before, after = (bdflow_loss(model, x, 1, progress=p, generator=torch.Generator().manual_seed(0)) for p in (0.29, 0.9))
    assert after.back == before.back


def test_energy_score_is_the_patch_rms_error_for_one_decode():
    g = torch.Generator().manual_seed(0)
    x, x_back = torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g)
    rms = ((x_back - x) ** 2).mean(dim=1).unflatten(-1, (4, 4)).unflatten(1, (4, 4)).mean(dim=(2, 4)).sqrt()
    assert torch.allclose(energy_score(x_back, x_back, x, 1.0, 4), rms.mean(), atol=1e-6)
    assert torch.allclose(energy_score(x_back, x_back, x, 2.0, 4), 2 * rms.mean(), atol=1e-6)


def test_energy_score_prefers_samples_of_the_truth_to_its_mean():
    # x = m + noise: the mean m (what an L1 on one decode learns) scores ~0.1; two independent samples m + noise'
    # score ~0.1 (sqrt 2 - sqrt 2 / 2) = 0.071 (a proper score ranks the true law first); pure noise scores worse
    g = torch.Generator().manual_seed(0)
    m = torch.rand(4, 3, 32, 32, generator=g)
    noise = lambda: 0.1 * torch.randn(4, 3, 32, 32, generator=g)  # noqa: E731
    x = m + noise()
    at_mean = energy_score(m, m, x, 1.0, 8)
    sampled = energy_score(m + noise(), m + noise(), x, 1.0, 8)
    too_wide = energy_score(m + 3 * noise(), m + 3 * noise(), x, 1.0, 8)
    assert at_mean == pytest.approx(0.1, rel=0.03) and sampled == pytest.approx(0.1 * math.sqrt(2) / 2, rel=0.03)
    assert sampled < at_mean < too_wide


def test_energy_score_weighs_each_patch_by_its_mean_baw_weight():
    x = torch.zeros(1, 3, 8, 8)
    x_back = torch.zeros(1, 3, 8, 8)
    x_back[..., :4, :4] = 1.0  # one patch of four wrong
    weight = torch.ones(1, 1, 8, 8)
    weight[..., :4, :4] = 3.0
    assert energy_score(x_back, x_back, x, weight, 4) == pytest.approx(3.0 / 4, rel=1e-5)


def test_energy_score_spread_weight_makes_samples_agree_where_it_is_low():
    """spread < 1 in a patch: two samples around the truth score worse than the truth twice (they should agree there);
    spread 1 is the proper score, where they tie with it in expectation and here exactly (x = m, samples m +- d)."""
    x = torch.zeros(1, 3, 8, 8)
    d = torch.full((1, 3, 8, 8), 0.2)
    assert energy_score(x + d, x - d, x, 1.0, 4) == pytest.approx(0.0, abs=1e-6)  # 0.2 + 0.2 - 0.4, halved
    spread = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])  # one patch of four agrees
    assert energy_score(x + d, x - d, x, 1.0, 4, spread=spread) == pytest.approx(0.4 / 2 / 4, rel=1e-5)


def test_energy_edge_spread_changes_only_the_back_term_for_bdflow_and_twin(face):
    x = face[..., 128:160, 128:160].repeat(2, 1, 1, 1)

    def terms(spread: float, boundary: bool = True):  # the twin takes the edges from x's BAM (nothing stored)
        torch.manual_seed(0)
        loss = LossConfig(back="energy", energy_patch=4, tau_train=1.0, energy_edge_spread=spread)
        model = perturb_(BDFlow(BDFlowConfig(scale=4, hidden=8, boundary=boundary), loss), std=0.01)
        return bdflow_loss(model, x, bits=1, progress=1.0, generator=torch.Generator().manual_seed(1))

    strict, agree, proper = terms(-1.0), terms(0.0), terms(1.0)
    assert strict.back > agree.back > proper.back and strict.forw == agree.forw == proper.forw
    twin_agree, twin_proper = terms(0.0, boundary=False), terms(1.0, boundary=False)
    assert twin_agree.back > twin_proper.back and twin_agree.forw == twin_proper.forw and twin_agree.bam == 0
    with pytest.raises(ValueError, match="only with back = energy"):
        LossConfig(energy_edge_spread=0.5)
    with pytest.raises(ValueError, match=r"must be in \[-1, 1\]"):
        LossConfig(back="energy", energy_edge_spread=-1.5)


def test_flat_patches_are_the_flatter_half_and_energy_flat_spread_moves_only_the_back_term(face):
    x = face[..., 96:160, 96:160].repeat(2, 1, 1, 1)
    flat = flat_patches(x, 8)
    assert flat.shape == (2, 1, 8, 8) and 0 < flat.mean() <= 0.5  # strictly below the median: at most half
    luma = x.mean(1, keepdim=True)
    std = (torch.nn.functional.avg_pool2d(luma**2, 8) - torch.nn.functional.avg_pool2d(luma, 8) ** 2).clamp_min(0).sqrt()
    assert std[flat.bool()].max() <= std[~flat.bool()].min() + 1e-3  # the flat ones are the quiet ones

    def terms(spread: float):
        torch.manual_seed(0)
        loss = LossConfig(back="energy", energy_patch=4, tau_train=1.0, energy_flat_spread=spread)
        model = perturb_(BDFlow(BDFlowConfig(scale=4, hidden=8), loss), std=0.01)
        return bdflow_loss(model, x, bits=1, progress=1.0, generator=torch.Generator().manual_seed(1))

    agree, proper = terms(0.0), terms(1.0)
    assert agree.back > proper.back and agree.forw == proper.forw  # less spread credited: a higher score
    with pytest.raises(ValueError, match="energy_flat_spread must be in"):
        LossConfig(energy_flat_spread=0.5)


def test_energy_back_decodes_two_samples_at_one_tau_and_trains(face):
    torch.manual_seed(0)
    model = BDFlow(BDFlowConfig(scale=4), LossConfig(back="energy", energy_patch=4, tau_train=1.0, tau_draw="uniform"))
    terms = bdflow_loss(model, face[:, :, :32, :32].repeat(2, 1, 1, 1), bits=1, progress=1.0, generator=torch.Generator().manual_seed(1))
    terms.total.backward()
    assert torch.isfinite(terms.total) and terms.back > 0
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    y = torch.zeros(3, 3, 4, 4)
    z, _ = training_z(y, 5, LossConfig(tau_train=1.0, tau_draw="uniform"), torch.Generator().manual_seed(2), samples=2)
    first, second = z.chunk(2)
    assert z.shape == (6, 5, 4, 4) and not torch.equal(first, second)
    # each image's two draws share its tau: their spreads agree image by image
    assert torch.allclose(first.std(dim=(1, 2, 3)), second.std(dim=(1, 2, 3)), rtol=0.5)
    one, _ = training_z(y, 5, LossConfig(tau_train=1.0, tau_draw="uniform"), torch.Generator().manual_seed(2))
    assert torch.equal(one, training_z(y, 5, LossConfig(tau_train=1.0, tau_draw="uniform"), torch.Generator().manual_seed(2), samples=1)[0])


def test_texture_term_weighs_warm_decodes_only(face):
    """lambda_texture: AlexNet feature statistics of each decode against the truth's, weighed tau / tau_train; off
    by default (0, and a zero term); it needs a training temperature."""
    x = face[:, :, :64, :64].repeat(2, 1, 1, 1)
    terms = {}
    for lam in (0.0, 1.0):
        model = perturb_(BDFlow(BDFlowConfig(scale=4, hidden=8), LossConfig(tau_train=1.0, tau_draw="uniform", lambda_texture=lam)), std=0.01)
        terms[lam] = bdflow_loss(model, x, 1, progress=0.5, generator=torch.Generator().manual_seed(0))
    assert terms[0.0].texture == 0 and terms[1.0].texture > 0 and "texture" in terms[1.0].items()
    terms[1.0].total.backward()
    with pytest.raises(ValueError, match="lambda_texture weighs a term by the decode's temperature"):
        LossConfig(lambda_texture=1.0)
    with pytest.raises(ValueError, match="lambda_texture must be >= 0"):
        LossConfig(tau_train=1.0, lambda_texture=-1.0)


def test_critic_term_weighs_warm_decodes_and_joins_at_critic_from(face):
    """lambda_critic: the critic's generator term of each decode, weighed tau / tau_train; zero before critic_from;
    it needs a critic and a training temperature; the decodes come back for the critic's own step."""
    from bdflow.critic import PatchCritic, generator_term

    x = face[:, :, :64, :64].repeat(2, 1, 1, 1)
    critic = PatchCritic(width=8).eval()  # eval: its spectral norms hold still between the two calls
    lc = LossConfig(tau_train=0.5, lambda_critic=2.0, critic_from=0.3)
    model = perturb_(BDFlow(BDFlowConfig(scale=4, hidden=8), lc), std=0.01)
    terms = bdflow_loss(model, x, 1, progress=0.5, generator=torch.Generator().manual_seed(0), critic=critic)
    assert terms.decodes.shape == x.shape and "critic" in terms.items()
    with torch.no_grad():  # tau_draw fixed: every decode at tau_train, weight 1
        assert torch.allclose(terms.critic, 2.0 * generator_term(critic(terms.decodes.clamp(0, 1))).mean())
    early = bdflow_loss(model, x, 1, progress=0.2, generator=torch.Generator().manual_seed(0), critic=critic)
    assert early.critic == 0
    with pytest.raises(ValueError, match="lambda_critic > 0 scores the decodes with a critic"):
        bdflow_loss(model, x, 1, progress=0.5)
    with pytest.raises(ValueError, match="lambda_critic weighs a term by the decode's temperature"):
        LossConfig(lambda_critic=1.0)


def test_energy_colour_spread_splits_the_spread_term_into_grey_and_colour():
    """energy_score's colour weight: at 1 the plain score; a pair of samples that differ only in colour (opposite R and
    G changes) has no spread at colour 0, and one that differs only in grey keeps its whole spread at any colour."""
    from bdflow.losses import energy_score

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 8, 8, generator=g)
    x1 = x + 0.05 * torch.randn(2, 3, 8, 8, generator=g)
    tint = torch.tensor([0.1, -0.1, 0.0]).view(1, 3, 1, 1)
    plain = energy_score(x1, x1 + tint, x, 1.0, 4)
    assert energy_score(x1, x1 + tint, x, 1.0, 4, colour=1.0) == plain
    half_sum = (energy_score(x1, x1, x, 1.0, 4) + energy_score(x1 + tint, x1 + tint, x, 1.0, 4)) / 2
    assert float(energy_score(x1, x1 + tint, x, 1.0, 4, colour=0.0)) == pytest.approx(float(half_sum), rel=1e-5)
    assert float(energy_score(x1, x1 + tint, x, 1.0, 4, colour=0.0)) > float(plain)  # the colour spread no longer pays
    grey = torch.full((1, 3, 1, 1), 0.1)
    assert float(energy_score(x1, x1 + grey, x, 1.0, 4, colour=0.0)) == pytest.approx(float(energy_score(x1, x1 + grey, x, 1.0, 4)), rel=1e-5)
    with pytest.raises(ValueError, match="energy_colour_spread must be in"):
        LossConfig(energy_colour_spread=0.0)

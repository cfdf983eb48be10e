from functools import partial

import pytest
import torch

from bdflow import BDFlow, BDFlowConfig, LossConfig, sample_z
from bdflow.flow import z_origin_levels
from bdflow.config import LEGACY
from bdflow.coupling import InvBlock, Subnet
from bdflow.quantize import to_8bit
from bdflow.resize import bicubic_down, bicubic_round_trip
from bdflow.metrics import psnr_y
from bdflow.quantize import quantize_b, quantize_y
from tests.helpers import perturb_

SCALES = [2, 4, 8, 16, 32, 64]
# every scale with the defaults (CDF 9/7, B as a condition), two scales with the other designs
DESIGNS = [(s, "cdf97", "condition") for s in SCALES] + [
    (s, w, m) for s in (4, 16) for w, m in (("haar", "channel"), ("cdf53", "condition"), ("cdf97", "channel"))
]


@pytest.mark.parametrize("scale, wavelet, b_mode", DESIGNS)
def test_shapes_and_exact_invertibility(scale, wavelet, b_mode):
    """The public contract of [core]: shapes at every scale and max |F^-1(F(x)) - x| <= 1e-4 in fp32."""
    torch.manual_seed(scale)
    model = perturb_(BDFlow(BDFlowConfig(scale=scale, hidden=16, wavelet=wavelet, b_mode=b_mode)))
    h, w = 2 * max(scale, 32), max(scale, 32)
    x = torch.rand(2, 3, h, w)
    with torch.no_grad():
        y, b, z = model(x)
        x_back = model.inverse(y, b, z)
    s = scale
    assert y.shape == (2, 3, h // s, w // s)
    assert b.shape == (2, 1, h // s, w // s)
    assert z.shape == (2, 3 * s * s - 4 + (b_mode == "condition"), h // s, w // s)
    err = (x_back - x).abs().max().item()
    print(f"x{scale} {wavelet} {b_mode}: max |inverse(forward(x)) - x| = {err:.2e}")
    assert err <= 1e-4


@pytest.mark.slow
def test_perturbation_makes_the_flow_nontrivial(face):
    model = BDFlow(BDFlowConfig(scale=8, wavelet="haar"))
    with torch.no_grad():
        y0, _, _ = model(face)
        y1, _, _ = perturb_(model)(face)
    # a fresh Haar flow is the plain Haar pyramid: Y is the 8x8 box mean
    assert torch.allclose(y0, torch.nn.functional.avg_pool2d(face, 8), atol=1e-5)
    assert (y1 - y0).abs().max() > 1e-2


@pytest.mark.parametrize("wavelet", ["haar", "cdf53", "cdf97"])
def test_fresh_flow_keeps_a_flat_image_in_y(wavelet):
    """Every wavelet is scaled so a constant image stays that constant in Y, with zero Z."""
    with torch.no_grad():
        y, _, z = BDFlow(BDFlowConfig(scale=16, wavelet=wavelet, b_mode="channel"))(torch.full((1, 3, 64, 64), 0.3))
    assert torch.allclose(y, torch.full_like(y, 0.3), atol=1e-5) and z.abs().max() < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("scale", [8, 16])
def test_fresh_97_pyramid_beats_the_bicubic_round_trip_and_haar_does_not(face_paths, scale):
    """The untrained start (design: 'Wavelet'): a fresh flow decoded from its 8-bit Y, 1-bit B and Z = 0, on real
    faces. The CDF 9/7 pyramid scores at or above the bicubic round trip, the Haar pyramid (the paper's) below it."""
    from bdflow.image_io import read_rgb

    x = torch.stack([read_rgb(p) for p in face_paths[:4]])
    scores = {}
    for wavelet in ("haar", "cdf97"):
        model = BDFlow(BDFlowConfig(scale=scale, wavelet=wavelet))
        with torch.no_grad():
            y, b, z = model(x)
            x_back = model.inverse(quantize_y(y), quantize_b(b, 1), torch.zeros_like(z))
        scores[wavelet] = float(psnr_y(to_8bit(x_back), x, border=scale).mean())
    bicubic = float(psnr_y(to_8bit(bicubic_round_trip(x, scale)), x, border=scale).mean())
    print(f"x{scale}: bicubic {bicubic:.2f}, Haar {scores['haar']:.2f}, CDF 9/7 {scores['cdf97']:.2f} dB")
    assert scores["cdf97"] >= bicubic > scores["haar"] + 0.5


@pytest.mark.parametrize("scale", [4, 16])
def test_twin_has_no_boundary_channel(scale):
    model = perturb_(BDFlow(BDFlowConfig(scale=scale, boundary=False, hidden=8)))
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        y, b, z = model(x)
        assert b is None and z.shape[1] == 3 * scale**2 - 3
        assert (model.inverse(y, None, z) - x).abs().max() <= 1e-4
    with pytest.raises(ValueError, match="no boundary channel"):
        model.inverse(y, torch.zeros(1, 1, *y.shape[2:]), z)


def test_inverse_rejects_wrong_shapes():
    model = BDFlow(BDFlowConfig(scale=4, hidden=8))
    y, b, z = model(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="needs b"):
        model.inverse(y, None, z)
    with pytest.raises(ValueError, match="z must be"):
        model.inverse(y, b, z[:, 1:])
    with pytest.raises(ValueError, match="multiples of the scale"):
        model(torch.rand(1, 3, 18, 16))


@pytest.mark.parametrize("boundary", [True, False])
def test_z_scale_init_gives_unit_variance_and_stays_exact(face, boundary):
    """ActNorm's data-dependent init: a fresh flow's Z of real face crops has std 1 per channel, and is invertible."""
    model = BDFlow(BDFlowConfig(scale=8, boundary=boundary))
    crops = face.unfold(2, 64, 64).unfold(3, 64, 64).reshape(3, -1, 64, 64).transpose(0, 1)[:16]
    std_before = model.init_z_scale(crops)
    with torch.no_grad():
        y, b, z = model(crops)
        x_back = model.inverse(y, b, z)
    assert std_before.median() < 0.05  # raw wavelet details are far quieter than the N(0, 1) prior
    assert torch.allclose(z.std(dim=(0, 2, 3))[std_before > 1e-3], torch.ones(1), atol=1e-3)
    assert (x_back - crops).abs().max() <= 1e-4
    pooled = model.init_z_scale(crops.split(4))  # several batches pool to the statistics of their union
    assert torch.allclose(pooled, model.init_z_scale(crops), rtol=1e-4)


@pytest.mark.parametrize("cond_channels", [0, 1])
def test_invblock_exact_for_large_weights(cond_channels):
    torch.manual_seed(0)  # the default init and the draws must not depend on which tests ran before
    subnet = partial(Subnet, hidden=8, res_blocks=2, max_3x3_channels=1024)
    block = perturb_(InvBlock(12, subnet, clamp=1.0, cond_channels=cond_channels), std=0.5).double()
    u = torch.randn(2, 12, 8, 8, dtype=torch.float64)
    cond = torch.rand(2, 1, 8, 8, dtype=torch.float64) if cond_channels else None
    with torch.no_grad():
        out = block(u, cond)  # large weights: |out| reaches ~1e6, so exact means exact to float64 rounding of that
        assert torch.allclose(block.inverse(out, cond), u, rtol=0, atol=1e-12 * float(out.abs().max()))
        if cond_channels:  # the condition is read: another B gives another output
            assert not torch.allclose(block(u, cond), block(u, 1 - cond))
    with pytest.raises(ValueError, match="condition"):
        block(u, None if cond_channels else torch.zeros(2, 1, 8, 8, dtype=torch.float64))


@pytest.mark.parametrize("cond_channels", [0, 1])
def test_invblock_with_bf16_subnets_stays_exact(cond_channels):
    """Training at bf16 (accel.train_precision): the subnets run under bf16 autocast, the coupling in float32, so
    the inverse undoes the forward to float32 rounding; the outputs differ from float32 subnets by bf16 rounding."""
    subnet = partial(Subnet, hidden=8, res_blocks=1, max_3x3_channels=1024)
    block = perturb_(InvBlock(12, subnet, clamp=1.0, cond_channels=cond_channels), std=0.2)
    u = torch.randn(2, 12, 8, 8)
    cond = torch.rand(2, 1, 8, 8) if cond_channels else None
    with torch.no_grad():
        reference = block(u, cond)
        block.compute_dtype = torch.bfloat16
        v = block(u, cond)
        assert v.dtype == torch.float32 and not torch.equal(v, reference)
        assert (v - reference).abs().max() < 0.03 * reference.abs().max()  # bf16 keeps 8 bits of mantissa
        assert torch.allclose(block.inverse(v, cond), u, atol=1e-5)


def test_invblock_takes_any_subnet_and_split():
    """FrEIA/IRN vocabulary: another subnet is one argument (here a single 1x1 convolution), any split."""
    block = perturb_(InvBlock(10, lambda c_in, c_out: torch.nn.Conv2d(c_in, c_out, 1), split=4), std=0.3)
    u = torch.randn(1, 10, 4, 4)
    with torch.no_grad():
        assert (block.inverse(block(u)) - u).abs().max() < 1e-5


@pytest.mark.parametrize("b_upsample", ["bilinear", "nearest"])
def test_conditions_per_level(b_upsample):
    """B (LR grid) reaches level l at 2^(n-l) times its size; bilinear has no jumps at LR-pixel borders."""
    model = perturb_(BDFlow(BDFlowConfig(scale=16, hidden=8, b_upsample=b_upsample)))
    b = torch.rand(1, 1, 4, 4)
    conds = model._conditions(b)
    assert [tuple(c.shape[2:]) for c in conds] == [(32, 32), (16, 16), (8, 8), (4, 4)] and torch.equal(conds[-1], b)
    step = (conds[0][..., 1:] - conds[0][..., :-1]).abs().max()
    largest = (b[..., 1:] - b[..., :-1]).abs().max()
    if b_upsample == "nearest":  # blocks of 8 x 8: the whole LR step at each border
        assert torch.allclose(step, largest)
    else:  # a ramp: at most 1/8 of the LR step between neighbours
        assert step <= largest / 8 + 1e-6
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        y, b, z = model(x)
        assert (model.inverse(y, b, z) - x).abs().max() < 1e-4


@pytest.mark.parametrize("level", [1, 2, 3])
def test_z_origin_levels_name_the_level_of_a_detail(level):
    """A checkerboard of 2^(level-1) px squares is one Haar detail of that level alone: a fresh flow (identity
    couplings) puts it only on the Z channels whose origin level it is."""
    origin = z_origin_levels(3)
    assert [int((origin == l).sum()) for l in (1, 2, 3)] == [9 * 16, 9 * 4, 9]
    model = BDFlow(BDFlowConfig(scale=8, wavelet="haar", boundary=False)).eval()
    i = torch.arange(32) // 2 ** (level - 1)
    x = 0.5 + 0.1 * (-1.0) ** (i[:, None] + i[None, :]).expand(3, 32, 32)[None]
    with torch.no_grad():
        z = model(x)[2].abs().amax(dim=(0, 2, 3))
    assert z[origin == level].max() > 0.01 and z[origin != level].max() < 1e-6


@pytest.mark.parametrize("b_mode", ["condition", "channel"])
def test_recentre_z_shifts_only_z(b_mode):
    """recentre_z(m): the forward Z moves by -m, Y and B stay, Z = 0 now decodes what Z = m decoded, still exact."""
    model = perturb_(BDFlow(BDFlowConfig(scale=4, hidden=8, b_mode=b_mode))).eval()
    with torch.no_grad():
        model.z_log_scale.normal_()
    x = torch.rand(1, 3, 16, 16)
    m = torch.randn(model.config.z_channels)
    with torch.no_grad():
        y, b, z = model(x)
        old = model.inverse(y, b, m.view(1, -1, 1, 1).expand_as(z))
        model.recentre_z(m)
        y2, b2, z2 = model(x)
        assert torch.equal(y2, y) and (b is None or torch.equal(b2, b))
        assert (z2 - (z - m.view(1, -1, 1, 1))).abs().max() < 1e-4
        torch.testing.assert_close(model.inverse(y, b, torch.zeros_like(z)), old, rtol=1e-5, atol=1e-4)
        assert (model.inverse(y2, b2, z2) - x).abs().max() < 1e-4


@pytest.mark.parametrize("res_from_level", [1, 2, 3])
def test_res_from_level_lightens_only_the_finer_levels(res_from_level):
    """Subnets below res_from_level have no residual blocks (fewer weights, fewer MACs); the flow stays exact."""
    config = BDFlowConfig(scale=8, hidden=8, res_from_level=res_from_level)
    model = perturb_(BDFlow(config)).eval()
    assert [len(blocks[0].eta.body) for blocks in model.levels] == [int(l >= res_from_level) for l in range(1, 4)]
    x = torch.rand(1, 3, 32, 32)
    y, b, z = model(x)
    assert (model.inverse(y, b, z) - x).abs().max() < 1e-5
    full = sum(p.numel() for p in BDFlow(BDFlowConfig(scale=8, hidden=8)).parameters())
    assert (sum(p.numel() for p in model.parameters()) < full) == (res_from_level > 1)


@pytest.mark.parametrize("level1_blocks", [0, 1, 3])
def test_level1_blocks_sets_only_the_finest_level(level1_blocks):
    """level1_blocks overrides blocks_per_level at level 1 alone (0 keeps it); the flow stays exact."""
    model = perturb_(BDFlow(BDFlowConfig(scale=8, hidden=8, level1_blocks=level1_blocks))).eval()
    assert [len(blocks) for blocks in model.levels] == [level1_blocks or 2, 2, 2]
    x = torch.rand(1, 3, 32, 32)
    y, b, z = model(x)
    assert (model.inverse(y, b, z) - x).abs().max() < 1e-5


@pytest.mark.parametrize("b_from_level", [1, 3, 4])
def test_b_from_level_conditions_only_the_coarser_levels(b_from_level):
    """Levels below b_from_level have couplings without a condition input; the flow stays exact and B still
    changes the decode (it reaches the coarser levels)."""
    model = perturb_(BDFlow(BDFlowConfig(scale=16, hidden=8, b_from_level=b_from_level))).eval()
    assert [blocks[0].cond_channels for blocks in model.levels] == [int(l >= b_from_level) for l in range(1, 5)]
    assert [c is None for c in model._conditions(torch.rand(1, 1, 4, 4))] == [l < b_from_level for l in range(1, 5)]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        y, b, z = model(x)
        assert (model.inverse(y, b, z) - x).abs().max() < 1e-4
        assert (model.inverse(y, 1 - b, z) - x).abs().max() > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("scale", [8, 16, 64])
def test_centred_y_lines_up_with_the_bicubic_lr(face, scale):
    """y_phase: a fresh 9/7 flow's Y is the pyramid's low-pass. Centred (the coarsest level lifts on the odd
    samples) it matches the bicubic LR to > 30 dB; at the corner phase (the earlier 9/7 models) it sits (s-1)/2 HR px up-left
    and matches it to < 25 dB. The zero-detail decode stays at or above the bicubic round trip either way."""
    x = face
    ref, scores = bicubic_down(x, scale)[..., 1:-1, 1:-1], {}
    for phase in ("centred", "corner"):
        model = BDFlow(BDFlowConfig(scale=scale, y_phase=phase)).eval()
        with torch.no_grad():
            y, b, z = model(x)
            x_back = model.inverse(quantize_y(y), b, torch.zeros_like(z)).clamp(0, 1)
        scores[phase] = -10 * torch.log10((y[..., 1:-1, 1:-1] - ref).pow(2).mean()).item()
        assert psnr_y(x_back, x, border=scale) >= psnr_y(bicubic_round_trip(x, scale), x, border=scale) - 0.05
    assert scores["centred"] > 30 > 25 > scores["corner"], scores


@pytest.mark.parametrize("b_init", ["random", "zero"])
def test_b_init_zero_starts_as_the_twin(b_init):
    """With b_init="zero" the couplings' B inputs start with zero weights: even with the output convolutions
    perturbed, a fresh flow computes the same Y and Z for any B (it starts as its twin), and gradients reach
    those weights, so training can give B an effect. With "random" B changes the output from the start."""
    torch.manual_seed(0)
    model = BDFlow(BDFlowConfig(scale=16, hidden=8, b_init=b_init))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "conv_out" in name:
                p.normal_(0, 0.05)
    x = torch.rand(1, 3, 64, 64)
    y0, _, z0 = model(x, torch.zeros(1, 1, 4, 4))
    y1, _, z1 = model(x, torch.rand(1, 1, 4, 4))
    differs = max((y0 - y1).abs().max().item(), (z0 - z1).abs().max().item())
    assert (differs == 0) == (b_init == "zero")
    (y1.sum() + z1.pow(2).sum()).backward()
    assert model.levels[0][0].phi.conv_in.weight.grad[:, -1].abs().sum() > 0


@pytest.mark.parametrize("b_mode", ["condition", "channel"])
def test_gradients_reach_every_subnet(b_mode):
    model = perturb_(BDFlow(BDFlowConfig(scale=4, hidden=8, b_mode=b_mode, z_scale="learned")))
    y, b, z = model(torch.rand(1, 3, 16, 16))
    (y.sum() + b.sum() + z.pow(2).sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_fixed_z_scale_is_not_trained():
    assert not BDFlow(BDFlowConfig(scale=4, hidden=8, z_scale="fixed")).z_log_scale.requires_grad


def test_sample_z_temperature_and_seed():
    y = torch.zeros(2, 3, 4, 4)
    g = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    assert torch.equal(sample_z(y, 5, 0.8, g()), sample_z(y, 5, 0.8, g()))
    assert torch.all(sample_z(y, 5, 0.0, g()) == 0)
    assert torch.allclose(sample_z(y, 5, 0.5, g()), 0.5 * sample_z(y, 5, 1.0, g()))
    with pytest.raises(ValueError, match="tau"):
        sample_z(y, 5, -0.1)


@pytest.mark.parametrize("tau_b", [0.0, 0.3, 1.0])
def test_sample_z_keeps_the_share_tau_b_of_tau_in_b_cells(tau_b):
    """tau_cell = tau (1 - (1 - tau_b) B): B = 1 cells get tau_b tau, B = 0 cells tau, a 2-bit B in between;
    the draw itself is the one without B (same seed, same values elsewhere)."""
    y, g = torch.zeros(2, 3, 4, 4), lambda: torch.Generator().manual_seed(3)  # noqa: E731
    b = torch.zeros(2, 1, 4, 4)
    b[:, :, 0], b[:, :, 1] = 1.0, 1 / 3  # a boundary row, and a weak one (code 1 of a 2-bit B)
    plain, gated = sample_z(y, 5, 0.8, g()), sample_z(y, 5, 0.8, g(), b, tau_b)
    assert torch.allclose(gated[:, :, 0], tau_b * plain[:, :, 0])
    assert torch.allclose(gated[:, :, 1], (1 - (1 - tau_b) / 3) * plain[:, :, 1])
    assert torch.equal(gated[:, :, 2:], plain[:, :, 2:])
    assert torch.equal(sample_z(y, 5, 0.8, g(), None, tau_b), plain)  # a model without B: the paper's sampling
    assert torch.all(sample_z(y, 5, 0.0, g(), b, tau_b) == 0)
    with pytest.raises(ValueError, match="tau_b must be a number between 0 and 1"):
        sample_z(y, 5, 0.8, g(), b, 1.5)
    with pytest.raises(ValueError, match=r"b must be shaped \(2, 1, 4, 4\)"):
        sample_z(y, 5, 0.8, g(), b[:, :, :2], tau_b)


@pytest.mark.parametrize("bad", [dict(scale=3), dict(scale=128), dict(bam_norm=3), dict(b_target="mean"), dict(hidden=0),
                                 dict(wavelet="db4"), dict(b_mode="input"), dict(z_scale="free"), dict(b_upsample="bicubic"), dict(b_init="ones"), dict(y_phase="middle"),
                                 dict(scale=16, b_from_level=5), dict(b_from_level=0), dict(res_from_level=0), dict(scale=8, res_from_level=4),
                                 dict(level1_blocks=-1)])
def test_config_validation(bad):
    with pytest.raises(ValueError):
        BDFlowConfig(**bad)


def test_loss_config_validation():
    with pytest.raises(ValueError, match="tau must be between 0 and 10"):
        LossConfig(tau_train=-0.1)
    with pytest.raises(ValueError, match="baw_twin applies to the twin only"):
        BDFlow(BDFlowConfig(scale=2, hidden=4), LossConfig(baw_twin=True))
    assert LossConfig(baw_twin=True).uses_baw(BDFlowConfig(boundary=False))
    assert not LossConfig().uses_baw(BDFlowConfig(boundary=False)) and LossConfig().uses_baw(BDFlowConfig())


def test_config_counts_and_roundtrip():
    c = BDFlowConfig(scale=16)
    assert (c.levels, c.channels, c.z_channels) == (4, 768, 765)  # B as a condition: Y and Z share the channels
    assert BDFlowConfig(scale=16, b_mode="channel").z_channels == 764
    loss = LossConfig(lambda_lpips=0.5, baw_alpha=0.2)
    flat = {**c.to_dict(), **loss.to_dict()}  # a config.json holds both, flat
    assert BDFlowConfig.from_dict(flat) == BDFlowConfig.from_dict(c.to_dict()) == c
    assert LossConfig.from_dict(flat) == loss and LossConfig.from_dict(c.to_dict()) == LossConfig(**{k: v for k, v in LEGACY.items() if k in ("tau_train", "lpips_from")})
    old = {k: v for k, v in flat.items() if k not in LEGACY}  # a config.json from before these fields
    legacy = {**BDFlowConfig.from_dict(old).to_dict(), **LossConfig.from_dict(old).to_dict()}
    assert {k: legacy[k] for k in LEGACY} == LEGACY
    for cls in (BDFlowConfig, LossConfig):
        with pytest.raises(ValueError, match="unknown"):
            cls.from_dict({**flat, "width": 3})


@pytest.mark.parametrize("limit, wide_kernel", [(1024, 1), (4096, 3)])
def test_wide_subnet_convolutions_use_1x1_kernels(limit, wide_kernel):
    """max_3x3_channels: at x32 the last level's 3069-channel side gets 1x1 kernels below the limit, 3x3 above it."""
    model = BDFlow(BDFlowConfig(scale=32, hidden=8, max_3x3_channels=limit))
    last, first = model.levels[-1][0], model.levels[0][0]
    assert last.phi.conv_in.kernel_size == last.rho.conv_out.kernel_size == (wide_kernel, wide_kernel)
    assert last.rho.conv_in.kernel_size == last.phi.conv_out.kernel_size == (3, 3)  # the 3-channel side
    assert first.eta.conv_out.kernel_size == (3, 3)


@pytest.mark.parametrize("boundary", [True, False])
def test_grow_from_a_smaller_scale_starts_as_the_pooled_parent(face, boundary):
    """Progressive init: x16 grown from a x4 parent gives the parent's Y and B, 4x4 mean-pooled, and stays exact."""
    haar = dict(hidden=8, boundary=boundary, wavelet="haar", b_mode="channel")  # exact for the Haar pyramid only
    parent = perturb_(BDFlow(BDFlowConfig(scale=4, **haar)), seed=1)
    child = BDFlow(BDFlowConfig(scale=16, **haar))
    child.grow_from(parent)
    x = face[..., :128, :128]
    with torch.no_grad():
        y4, b4, _ = parent(x)
        y16, b16, z16 = child(x)
        assert torch.allclose(y16, torch.nn.functional.avg_pool2d(y4, 4), atol=1e-5)
        if boundary:
            assert torch.allclose(b16, torch.nn.functional.avg_pool2d(b4, 4), atol=1e-5)
        assert (child.inverse(y16, b16, z16) - x).abs().max() <= 1e-4


def test_a_fine_tune_starts_as_its_parent_z_scale_included(face):
    """grow_from at equal scale copies every level and Z's scale: the child's Y, B and Z are the parent's."""
    parent = perturb_(BDFlow(BDFlowConfig(scale=8, hidden=8)), seed=1)
    x = face[..., :64, :64]
    with torch.no_grad():
        parent.init_z_scale(x)
        child = BDFlow(BDFlowConfig(scale=8, hidden=8))
        child.grow_from(parent)
        for mine, theirs in zip(child(x), parent(x)):
            assert torch.equal(mine, theirs)


@pytest.mark.parametrize("parent_config", [dict(scale=32), dict(scale=4, hidden=16), dict(scale=4, boundary=False), dict(scale=4, wavelet="haar"),
                                           dict(scale=16, y_phase="corner")])
def test_grow_from_refuses_an_incompatible_parent(parent_config):
    with pytest.raises(ValueError, match="grow"):
        BDFlow(BDFlowConfig(scale=16, hidden=8)).grow_from(BDFlow(BDFlowConfig(**{"hidden": 8, **parent_config})))


@pytest.mark.parametrize("parent_phase, child_phase, allowed", [("corner", "centred", True), ("centred", "corner", False)])
def test_grow_from_changes_y_phase_only_where_the_parent_keeps_its_phases(parent_phase, child_phase, allowed):
    """A corner x4 parent (both levels even) grows into a centred x16 (levels 1-3 even, 4 odd): its levels keep their
    phase. A centred parent's odd coarsest level would turn even in a corner child: refused."""
    parent = perturb_(BDFlow(BDFlowConfig(scale=4, hidden=8, y_phase=parent_phase)), seed=1)
    child = BDFlow(BDFlowConfig(scale=16, hidden=8, y_phase=child_phase))
    if not allowed:
        with pytest.raises(ValueError, match="y_phase"):
            child.grow_from(parent)
        return
    child.grow_from(parent)
    assert [child.config.phase(l) for l in (1, 2)] == [parent.config.phase(l) for l in (1, 2)] == ["even", "even"]
    assert child.config.phase(4) == "odd"
    assert all(torch.equal(p, q) for p, q in zip(child.levels[1].parameters(), parent.levels[1].parameters()))

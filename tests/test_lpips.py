"""Tests of bdflow.lpips: oracle agreement, properties, gradient, safe weight loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bdflow import lpips as lp

# The shared data sit beside the project checkout: <root>/main (repo) and <root>/shared/data.
CHECK_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "lpips_check"

# Oracle distances of the official `lpips` 0.1.4 (net='alex', v0.1), from lpips_check/README.md.
ORACLE = {"ex_p0.png": 0.721881, "ex_p1.png": 0.137566}


def _load(name: str) -> torch.Tensor:
    """PNG -> (1, 3, H, W) float32 in [0, 1]."""
    arr = np.asarray(Image.open(CHECK_DIR / name).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


@pytest.fixture(scope="module")
def images() -> dict[str, torch.Tensor]:
    if not CHECK_DIR.is_dir():
        pytest.skip(f"shared LPIPS oracle images not found at {CHECK_DIR}")
    return {name: _load(name) for name in ("ex_ref.png", "ex_p0.png", "ex_p1.png")}


@pytest.mark.parametrize("other", sorted(ORACLE))
def test_matches_official_lpips_oracle(images, other):
    d = lp.lpips(images["ex_ref.png"], images[other])
    assert d.shape == (1,)
    # Measured |difference| < 4e-7 (float32 rounding only).
    assert abs(d.item() - ORACLE[other]) < 1e-4


def test_batched_matches_oracle_and_is_symmetric(images):
    ref = torch.cat([images["ex_ref.png"]] * 2)
    other = torch.cat([images["ex_p0.png"], images["ex_p1.png"]])
    expected = torch.tensor([ORACLE["ex_p0.png"], ORACLE["ex_p1.png"]])
    d_xy, d_yx = lp.lpips(ref, other), lp.lpips(other, ref)
    assert d_xy.shape == (2,)
    torch.testing.assert_close(d_xy, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(d_xy, d_yx, atol=1e-6, rtol=0)


def test_identical_images_give_zero(images):
    x = torch.cat([images["ex_ref.png"], images["ex_p1.png"]])
    assert torch.equal(lp.lpips(x, x.clone()), torch.zeros(2))


def test_gradient_flows_to_inputs_but_not_to_parameters(images):
    x = images["ex_p0.png"].clone().requires_grad_(True)
    d = lp.lpips(x, images["ex_ref.png"])
    d.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    net = lp.get_lpips()
    assert all(not p.requires_grad and p.grad is None for p in net.parameters())


def test_module_is_frozen_and_stays_in_eval_mode():
    net = lp.get_lpips("cpu")
    assert net is lp.get_lpips() is lp.get_lpips(torch.device("cpu"))
    assert not net.training
    net.train()
    assert not net.training and not any(m.training for m in net.modules())


def test_shape_errors_are_value_errors():
    with pytest.raises(ValueError, match="same shape"):
        lp.lpips(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 48))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        lp.lpips(torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match=">= 31"):
        lp.lpips(torch.rand(1, 3, 30, 64), torch.rand(1, 3, 30, 64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(images):
    x, y = images["ex_ref.png"], images["ex_p1.png"]
    d = lp.lpips(x.cuda(), y.cuda())
    assert d.device.type == "cuda"
    assert abs(d.item() - ORACLE["ex_p1.png"]) < 1e-4


# ---------------------------------------------------------------------------------------------- weight loading


def test_weights_have_expected_layout():
    state = lp.load_lpips_weights()
    assert state["convs.0.weight"].shape == (64, 3, 11, 11)
    assert state["convs.4.weight"].shape == (256, 256, 3, 3)
    assert state["lins.2.weight"].shape == (1, 384, 1, 1)
    assert all(v.dtype == torch.float32 for v in state.values())


def test_weights_ship_with_the_package_and_match_their_hash():
    """The file bdflow ships (no extra install step): under 16 MiB, its sha256 the pinned one."""
    assert lp.lpips_weights_path() == lp.WEIGHTS_FILE and lp.WEIGHTS_FILE.parent.parent == Path(lp.__file__).parent
    assert lp.WEIGHTS_FILE.stat().st_size < 16 * 2**20
    assert lp._sha256(lp.WEIGHTS_FILE) == lp.WEIGHTS_SHA256


def test_missing_weights_file_raises_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv(lp.WEIGHTS_ENV_VAR, str(tmp_path / "nope" / "lpips.safetensors"))
    with pytest.raises(lp.LPIPSWeightsNotFound, match="reinstall bdflow") as info:
        lp.LPIPS()
    assert isinstance(info.value, FileNotFoundError)


def test_corrupted_weights_file_raises_hash_error(monkeypatch, tmp_path):
    from safetensors.torch import save_file

    bad = tmp_path / "lpips.safetensors"
    save_file({k: torch.zeros_like(v) for k, v in lp.load_lpips_weights().items()}, str(bad))
    monkeypatch.setenv(lp.WEIGHTS_ENV_VAR, str(bad))
    with pytest.raises(lp.LPIPSWeightsHashMismatch, match="sha256"):
        lp.LPIPS()


def test_first_use_inside_inference_mode_still_serves_autograd():
    """Evaluation (inference mode) may build the cached module before training (autograd) uses it."""
    from bdflow import lpips as lpips_module

    lpips_module._cached_lpips.cache_clear()
    lpips_module._load_verified.cache_clear()
    x = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        lpips_module.lpips(x, x.flip(-1))
    y = x.clone().requires_grad_(True)
    lpips_module.lpips(y, x.flip(-1)).sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all()


def test_texture_sees_the_kind_of_detail_not_its_place(face):
    """LPIPS.texture: a shifted copy of an image keeps nearly its statistics, a blurred one does not; identical
    images score 0; differentiable, as a training term."""
    from bdflow.lpips import get_lpips

    net = get_lpips()
    x = face[:, :, 100:228, 100:228]
    shifted = face[:, :, 103:231, 103:231]
    blurred = torch.nn.functional.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
    same, moved, blur = (float(net.texture(a, x)) for a in (x, shifted, blurred))
    assert same == 0 and moved < blur / 2
    y = blurred.clone().requires_grad_(True)
    net.texture(y, x).sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def test_pooled_is_one_vector_per_image_that_ignores_place(face):
    """LPIPS.pooled: (N, 1152), the five layers' unit-normalised features averaged over positions; a copy shifted by
    a few pixels keeps nearly the same vector, a blurred one does not. distance() on the same taps is forward()."""
    from bdflow.lpips import get_lpips

    net = get_lpips()
    x = face[:, :, 100:228, 100:228]
    shifted = face[:, :, 103:231, 103:231]
    blurred = torch.nn.functional.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
    v = net.pooled(net.taps(torch.cat([x, shifted, blurred])))
    assert v.shape == (3, 1152) and torch.isfinite(v).all()
    moved, blur = float((v[1] - v[0]).norm()), float((v[2] - v[0]).norm())
    assert moved < blur / 2
    tx, tb = net.taps(x), net.taps(blurred)
    assert torch.equal(net.distance(tb, tx), net(blurred, x))

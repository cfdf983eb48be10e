"""Tiled inference (bdflow.tiles) on a real face with shipped checkpoints: tiles with a 256 px margin agree with
the whole image to > 100 dB, no margin leaves seams; the Rescaler tiles only above 1024 px per side."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from bdflow import BDFlow, Rescaler
from bdflow import image_io, pipeline
from bdflow.tiles import exact_margin, lr_tiles, tiled_forward, tiled_inverse
from tests.helpers import REPO

CKPTS = REPO / "checkpoints"
AGREE_DB = 100  # tiled vs whole with TILE_MARGIN (256 HR px) at x8/x16 (x64, 4 LR px of margin: ~80 dB)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1 / max(float((a - b).pow(2).mean()), 1e-30))


def test_tiles_cover_the_grid_once():
    seen = np.zeros((37, 20), int)
    for (r0, r1, c0, c1), (e0, e1, f0, f1) in lr_tiles(37, 20, tile=8, margin=3):
        seen[r0:r1, c0:c1] += 1
        assert e0 == max(r0 - 3, 0) and e1 == min(r1 + 3, 37) and f0 == max(c0 - 3, 0) and f1 == min(c1 + 3, 20)
    assert (seen == 1).all()
    with pytest.raises(ValueError, match="tile"):
        list(lr_tiles(4, 4, tile=0, margin=1))


SMALL_MARGIN_DB = 60


@pytest.mark.slow
@pytest.mark.parametrize("name", ["face-x8", "face-x16"])
@torch.inference_mode()
def test_tiled_agrees_with_whole_on_a_real_face(face, name):
    model = BDFlow.from_pretrained(CKPTS / name)
    s = model.scale
    # 16 tiles of 128 px on the 512² face, each with 12 LR px of context (96 px at x8, 192 px at x16): less than
    # the Rescaler's 256 px, so that the windows do not all reach across the whole face. 12 LR px is below the flow's
    # receptive field (exact_margin: 32 at x8) and a conditioned flow's B is each window's own BAM, so the
    # agreement is not exact: measured > 93 dB on Y, Z (whose values reach ~±40, so this PSNR against a peak of 1
    # understates it) and the decode with the shipped x8; with 8 LR px, Z agreed to 57 dB only
    tile, margin = 128 // s, 12
    y, b, z = model(face)
    z_sample = torch.randn(z.shape, generator=torch.Generator().manual_seed(0)) * 0.8
    x_whole = model.inverse(y, b, z_sample)
    for tiled, whole in zip(tiled_forward(model, face, tile, margin), (y, b, z)):
        assert psnr(tiled, whole) > SMALL_MARGIN_DB
    assert psnr(tiled_inverse(model, y, b, z_sample, tile, margin), x_whole) > SMALL_MARGIN_DB
    # without the margin the tile borders show: the margin is what removes the seams
    assert psnr(tiled_inverse(model, y, b, z_sample, tile, 0), x_whole) < 60


def test_exact_margin_bounds_the_receptive_field():
    model = BDFlow.from_pretrained(CKPTS / "face-x8")
    # 3x3 convolutions: level 3 (1 LR px) 2 InvBlocks x 3 subnets x 4 convolutions, 24 of padding; levels 2 and 1
    # (1/2 and 1/4 LR px) have no residual blocks (res_from_level 3): 12 there, and 6 at level 1 of one InvBlock
    assert (model.config.res_from_level, model.config.level1_blocks) == (3, 1)
    assert exact_margin(model) == math.ceil(24 + 12 / 2 + 6 / 4)


@pytest.mark.slow
def test_rescaler_tiles_only_above_1024(face, monkeypatch):
    r = Rescaler.from_pretrained(CKPTS / "face-x16", device="cpu")
    calls = []
    monkeypatch.setattr(pipeline, "tiled_forward", lambda *a: calls.append(a) or tiled_forward(*a))
    big = Image.fromarray((face[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).resize((1056, 528))
    enc = r.encode(big)
    assert len(calls) == 1
    x_tiled = r.decode(enc, tau=0.8, seed=0, output_type="pt")
    monkeypatch.setattr(pipeline, "TILE_ABOVE", 4096)
    enc_whole = r.encode(big)
    assert (enc.y == enc_whole.y).mean() > 0.999 and (enc.b == enc_whole.b).mean() > 0.999
    assert psnr(x_tiled, r.decode(enc, tau=0.8, seed=0, output_type="pt")) > AGREE_DB
    monkeypatch.undo()
    calls.clear()
    monkeypatch.setattr(pipeline, "tiled_forward", lambda *a: calls.append(a) or tiled_forward(*a))
    small = big.resize((1024, 512))
    with torch.inference_mode():
        y, b, _ = r.model(image_io.load_image(small)[0])
    assert not calls and np.array_equal(r.encode(small).y, Rescaler.quantize(y, b, 1, {}).y)  # whole, as before

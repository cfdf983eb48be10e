"""The decoupling lab (bdflow.lab): where B comes from, the brush's round trip, and decoding with another B."""

import numpy as np
import pytest
import torch
from PIL import Image

from bdflow import lab
from bdflow.demo import Demo, Toggles
from tests.helpers import tiny_checkpoints


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    tiny_checkpoints(root, twin_name="x8-noB")
    return Demo.from_checkpoints(root, max_side=128, device="cpu")


@pytest.fixture(scope="module")
def an(demo, face_paths):
    return demo.analyse(np.asarray(Image.open(face_paths[5]).convert("RGB").resize((96, 80))), "×8")


def test_sources(demo, an, face_paths, tmp_path):
    own = demo.stored(an, 2).enc.b
    assert np.array_equal(lab.source_codes(demo, an, 2, "own"), own)
    assert not lab.source_codes(demo, an, 2, "zero").any() and lab.source_codes(demo, an, 2, "zero").shape == own.shape
    # the HR's own BAM target: a lower threshold T finds more boundaries, and T = 0 ... 200 stay on the grid
    bam = {t: lab.source_codes(demo, an, 2, "bam", threshold=t) for t in (10, 50, 150)}
    assert all(c.shape == (10, 12) and c.max() <= 3 for c in bam.values())
    assert bam[10].sum() > bam[50].sum() > bam[150].sum() and bam[10].any()
    other_path = tmp_path / "other.png"
    Image.open(face_paths[9]).convert("RGB").resize((200, 150)).save(other_path)
    other_rgb = lab.at_size_of(other_path, an, 10**8)
    assert other_rgb.shape == (80, 96, 3)  # image B is encoded at A's size, so its B lies on A's grid
    other = demo.analyse(other_rgb, "×8")
    assert np.array_equal(lab.source_codes(demo, an, 2, "image", other), demo.stored(other, 2).enc.b)
    with pytest.raises(ValueError, match="upload an image B"):
        lab.source_codes(demo, an, 2, "image")
    with pytest.raises(ValueError, match="same model at image A's size"):
        lab.source_codes(demo, an, 2, "image", demo.analyse(np.zeros((64, 64, 3), np.uint8), "×8"))
    with pytest.raises(ValueError, match="unknown B source"):
        lab.source_codes(demo, an, 2, "moon")
    twin = demo.analyse(other_rgb, "×8 without B (IRN-style twin)")
    with pytest.raises(ValueError, match="stores no B"):
        lab.source_codes(demo, twin, 1, "zero")


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_canvas_round_trip_and_painting(demo, an, bits):
    codes = lab.source_codes(demo, an, bits, "bam", threshold=20)
    canvas = lab.codes_canvas(codes, bits, an.scale, (80, 96))
    assert canvas.shape == (80, 96, 3)
    assert np.array_equal(lab.paint_codes(canvas, codes.shape, bits), codes)  # unpainted: the same B back
    painted = canvas.copy()
    painted[16:32, 40:56] = 255  # a white brush over cells (2..3, 5..6)
    painted[:, :8] = 0  # a black one over the first column
    out = lab.paint_codes(painted, codes.shape, bits)
    assert (out[2:4, 5:7] == 2**bits - 1).all() and not out[:, 0].any()
    untouched = np.ones_like(codes, bool)
    untouched[2:4, 5:7] = untouched[:, 0] = False
    assert np.array_equal(out[untouched], codes[untouched])
    rgba = np.zeros((80, 96, 4), np.uint8)  # an empty, transparent canvas is no boundary
    assert not lab.paint_codes(rgba, codes.shape, bits).any()
    with pytest.raises(ValueError, match="uint8"):
        lab.paint_codes(painted.astype(np.float32), codes.shape, bits)


def test_decode_with_another_b(demo, an):
    own = demo.stored(an, 1).enc.b
    same = lab.decode_with(demo, an, own, 1, 0.0, 0)
    assert torch.equal(same.x_hat, demo.decode(an, 1, 0.0, 0).x_hat)  # the flow's own B: the app's decode
    assert same.notes == [f"0 of {own.size} B cells differ from the flow's own B"]
    painted = own.copy()
    painted[4, 6] = 1 - painted[4, 6]  # flip one cell
    dec = lab.decode_with(demo, an, painted, 1, 0.0, 0)
    diff = (dec.x_hat - same.x_hat).abs().amax(dim=1)[0]
    assert diff.max() > 0 and dec.notes[0].startswith("1 of")
    cy, cx = np.unravel_index(int(diff.argmax()), diff.shape)
    assert abs(cy // 8 - 4) <= 2 and abs(cx // 8 - 6) <= 2  # B acts where it is: around the painted cell
    with pytest.raises(ValueError, match="codes on image A's LR grid"):
        lab.decode_with(demo, an, own[:5], 1, 0.0, 0)
    # at tau > 0 the lab samples Z as the app's decode does, tau_b included: the flow's own B gives the same image
    for tau_b in (0.0, 1.0):
        warm = lab.decode_with(demo, an, own, 1, 0.8, 3, tau_b)
        assert torch.equal(warm.x_hat, demo.decode(an, 1, 0.8, 3, Toggles(tau_b=tau_b)).x_hat)
    assert not torch.equal(lab.decode_with(demo, an, own, 1, 0.8, 3, 0.0).x_hat, lab.decode_with(demo, an, own, 1, 0.8, 3, 1.0).x_hat)
    with pytest.raises(ValueError, match="tau_b must be"):
        lab.decode_with(demo, an, own, 1, 0.8, 3, 2.0)

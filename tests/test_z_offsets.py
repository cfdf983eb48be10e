"""tools/z_offsets.py, tools/z_cost_by_region.py and tools/sample_kid.py: where a face's forward Z lies per channel against where a decode reads it, where a sample's LPIPS cost comes from, and whether samples look like faces as a set."""

import json
import shutil

import pytest

from tools.z_offsets import main


@pytest.fixture
def faces(odd_face, tmp_path):
    """A folder of two small real faces (the tools read folders)."""
    folder = tmp_path / "faces"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        shutil.copy(odd_face, folder / name)
    return folder


def test_offsets_and_the_three_decodes_are_measured(tiny_x8, faces, tmp_path, capsys):
    out = tmp_path / "z.json"
    assert main(["--checkpoint", str(tiny_x8), "--train", str(faces), "--val", str(faces), "--fit", "2", "--limit", "1",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert (result["train_faces"], result["val_faces"]) == (2, 1)
    assert 0 <= result["share_of_data_set_channel_means"] <= result["share_of_image_channel_means"] <= 1
    assert set(result["decodes"]) == {"z = 0", "z = channel means", "z = true"}
    true, zero = result["decodes"]["z = true"], result["decodes"]["z = 0"]
    assert true["psnr_y"] > 20 and true["lpips"] >= 0 and zero["psnr_y"] > 0  # the true Z rebuilds the face up to Y's and B's rounding
    assert "decode at z = true" in capsys.readouterr().out


def test_cost_by_region_splits_the_lr_cells_and_scores_each_arm(tiny_x8, faces, tmp_path, capsys):
    """tools/z_cost_by_region.py: the halves split every LR cell once; each arm's sample is scored against tau 0."""
    import torch

    from tools.z_cost_by_region import main as cost_main, regions

    keep = regions(torch.rand(2, 3, 9, 7))
    assert torch.equal(keep["textured half"] + keep["flat half"], keep["everywhere"])
    assert keep["textured quarter"].sum() <= keep["textured half"].sum()
    out = tmp_path / "cost.json"
    assert cost_main(["--checkpoint", str(tiny_x8), "--data", str(faces), "--limit", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["images"] == 2 and set(result["minus_tau_0"]) == {"everywhere", "textured half", "flat half", "textured quarter"}
    assert "LPIPS" in capsys.readouterr().out
    assert set(result["spread_and_miss"]) == {"textured half", "flat half"}
    assert all(v["spread"] >= 0 and v["miss"] > 0 for v in result["spread_and_miss"].values())


def test_spread_and_miss_measure_the_detail_within_each_lr_cell():
    """A shift of a cell's mean is Y's, not Z's: it counts for nothing; a +-d checkerboard inside the kept cells is
    RMS d grey levels of luma; the cells not kept are not counted; a sample equal to the mean spreads 0."""
    import torch

    from tools.z_cost_by_region import spread_and_miss

    scale, d = 4, 6 / 255
    x0 = torch.full((1, 3, 8, 12), 0.5)
    keep = torch.tensor([[[[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]]])
    shifted = x0 + torch.rand(1, 1, 2, 3).repeat_interleave(scale, -2).repeat_interleave(scale, -1) * 0.1
    checker = (torch.arange(8).view(-1, 1) + torch.arange(12)) % 2 * 2 - 1.0
    assert spread_and_miss(shifted, x0, x0, keep, scale) == pytest.approx((0, 0), abs=1e-4)
    spread, miss = spread_and_miss(x0 + d * checker, x0, x0 + d * checker * (1 - keep.repeat_interleave(scale, -2).repeat_interleave(scale, -1)), keep, scale)
    assert (spread, miss) == pytest.approx((0, 6), abs=1e-3)


def test_sample_kid_scores_each_checkpoint_per_image_and_as_a_set(tiny_x8, faces, tmp_path, capsys):
    """tools/sample_kid.py: one JSON per checkpoint with the four decodes' KID and LPIPS and the paired tau - tau 0;
    too few faces for KID is a usage error, not a traceback."""
    from tools.sample_kid import main as kid_main

    shutil.copy(faces / "a.png", faces / "c.png")  # KID needs three faces
    out = tmp_path / "kid"
    assert kid_main(["--checkpoint", str(tiny_x8), "--data", str(faces), "--reference", str(faces), "--reference-count", "3",
                     "--tau", "0.5", "--out", str(out)]) == 0
    result = json.loads((out / f"{tiny_x8.name}.json").read_text())
    assert result["images"] == 3 and result["tau"] == 0.5
    assert set(result["rows"]) == {"bicubic round trip", "tau 0", "tau 0.5", "tau 0.5, luma only"}
    assert all(row["lpips"] >= 0 and row["kid"]["ci95"] >= 0 for row in result["rows"].values())
    for key in ("tau 0.5", "tau 0.5, luma only"):
        d = result["tau_minus_0"][key]
        assert d["kid"]["mean"] == pytest.approx(result["rows"][key]["kid"]["mean"] - result["rows"]["tau 0"]["kid"]["mean"])
    assert all(0 <= v <= 1 for v in result["colour_share"].values())
    assert "tau 0.5, luma only - tau 0" in capsys.readouterr().out
    (faces / "c.png").unlink()
    (faces / "b.png").unlink()
    with pytest.raises(SystemExit):
        kid_main(["--checkpoint", str(tiny_x8), "--data", str(faces)])
    assert "KID needs at least 3" in capsys.readouterr().err


def test_luma_only_keeps_the_mean_colour_and_colour_share_splits_a_difference():
    """A grey change is all luma (share 0, kept whole by luma_only); a change of opposite sign in R and in G of
    luma weight balance is all colour (share 1, dropped: the tau-0 decode back)."""
    import torch

    from tools.sample_kid import colour_share, luma_only

    x0 = torch.full((1, 3, 4, 4), 0.5)
    grey = x0 + 10 / 255
    assert colour_share(grey - x0) == pytest.approx(0, abs=1e-6)
    assert torch.allclose(luma_only(x0, grey), grey, atol=1 / 255)
    colour = x0 + torch.tensor([0.587, -0.299, 0.0]).view(1, 3, 1, 1) * 0.1
    assert colour_share(colour - x0) == pytest.approx(1, abs=1e-6)
    assert torch.allclose(luma_only(x0, colour), x0, atol=1 / 255)

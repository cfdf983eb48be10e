"""The decoupling measures (bdflow.decoupling): Z against N(0, 1), Z in B's boundary cells, the cost of tau."""

import json
import math

import numpy as np
import pytest
import torch

from bdflow.decoupling import ZStats, main
from bdflow.metrics import normal_bin_counts, tv_to_normal
from tests.helpers import tiny_checkpoint


def test_a_gaussian_sample_is_n01_and_a_heavy_tailed_one_is_not():
    g = torch.Generator().manual_seed(0)
    gauss = ZStats()
    gauss.add(torch.randn(4, 30, 64, 64, generator=g))
    s = gauss.summary()
    assert abs(s["mean"]) < 0.01 and s["std"] == pytest.approx(1, abs=0.01)
    assert abs(s["excess_kurtosis"]) < 0.05 and s["tail_share"] == pytest.approx(0.0027, abs=0.0005)
    assert s["total_variation"] < 0.01
    laplace = ZStats()  # unit variance, excess kurtosis 3
    laplace.add(torch.distributions.Laplace(0.0, 1 / math.sqrt(2)).sample((4, 30, 64, 64)))
    t = laplace.summary()
    assert t["std"] == pytest.approx(1, abs=0.01) and t["excess_kurtosis"] == pytest.approx(3, abs=0.3)
    assert t["total_variation"] > 0.05


def test_channel_mean_share_sees_channels_at_their_own_offsets():
    """Channels N(m_c, 1 - m_c^2) with m_c = +-0.6 pool to mean 0, variance 1 (a histogram cannot tell), but their
    means hold 0.36 of E[z^2]; an N(0, 1) sample's share is about 1 / the values per channel."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4, 30, 32, 32, generator=g)
    offsets = 0.6 * torch.tensor([1.0, -1.0]).repeat(15).view(1, 30, 1, 1)
    stats, gauss = ZStats(), ZStats()
    stats.add(offsets + 0.8 * z)
    gauss.add(z)
    s = stats.summary()
    assert s["std"] == pytest.approx(1, abs=0.01) and s["channel_mean_share"] == pytest.approx(0.36, abs=0.01)
    assert gauss.summary()["channel_mean_share"] < 5 / 4096


def test_tv_to_normal_is_one_for_a_far_away_sample():
    assert tv_to_normal(normal_bin_counts(np.full(1000, 50.0))) == pytest.approx(1.0, abs=1e-6)


def test_z2_ratio_sees_a_louder_z_in_boundary_cells():
    z = torch.randn(2, 12, 16, 16, generator=torch.Generator().manual_seed(1))
    cells = torch.zeros(2, 1, 16, 16, dtype=torch.bool)
    cells[..., :8] = True
    stats = ZStats()
    stats.add(torch.where(cells, 2 * z, z), cells)
    assert stats.summary()["z2_ratio_b"] == pytest.approx(4, rel=0.1)


def test_cli_measures_a_checkpoint(tmp_path, data_dir, capsys):
    ckpt = tiny_checkpoint(tmp_path / "tiny")
    out = tmp_path / "d.json"
    assert main(["--checkpoint", str(ckpt), "--data", str(data_dir / "faces" / "val"), "--limit", "2",
                 "--taus", "0", "0.5", "--seeds", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["taus"]) == {"0.0", "0.5"} and result["images"] == 2
    assert result["z"]["count"] > 0 and 0 <= result["z"]["total_variation"] <= 1
    d = result["diversity"]  # the map at tau 0.5 (tiny's default is 0): in/out B's cells, on/off the HR edges
    assert d["tau"] == 0.5 and {"in_b", "out_b", "on_edges", "off_edges"} <= set(d) and d["on_edges"] >= 0
    # beside it the tau-0 decode's error in the same regions, on the diversity's 0-255 scale
    assert {"error_on_edges", "error_off_edges", "error_in_b", "error_out_b"} <= set(d)
    assert 0 < d["error_off_edges"] < 255 and 0 < d["error_on_edges"] < 255
    assert "| tiny |" in capsys.readouterr().out


def test_hr_edges_are_bams_canny_edges_widened_by_a_pixel():
    """A vertical step: the 1-bit BAM marks one column at full resolution; hr_edges widens it to three."""
    from bdflow.config import BDFlowConfig
    from bdflow.decoupling import hr_edges

    x = torch.zeros(1, 3, 32, 32)
    x[..., 16:] = 1.0
    edges = hr_edges(x, BDFlowConfig(scale=8, hidden=8))
    cols = edges[8:24].any(dim=0).nonzero().flatten().tolist()
    assert edges.shape == (32, 32) and 3 <= len(cols) <= 4 and all(13 <= c <= 18 for c in cols)
    assert not edges[:, :10].any() and not edges[:, 22:].any()


def test_cli_refuses_a_missing_folder(tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path / "tiny")
    assert main(["--checkpoint", str(ckpt), "--data", str(tmp_path / "nowhere")]) == 1
    assert "image folder not found" in capsys.readouterr().err


def test_table_gathers_a_studys_arms(tmp_path, data_dir, capsys):
    ckpt = tiny_checkpoint(tmp_path / "tiny")
    arms = {"a": ["--tau-b", "1"], "b": []}  # the paper's sampling, and the default: Z at its mean in B's cells
    for arm, flags in arms.items():
        assert main(["--checkpoint", str(ckpt), "--data", str(data_dir / "faces" / "val"), "--limit", "1", *flags,
                     "--taus", "0", "0.5", "--seeds", "2", "--json", str(tmp_path / "study" / arm / "decoupling.json")]) == 0
    assert main(["--table", str(tmp_path / "study")]) == 0
    table = (tmp_path / "study" / "decoupling.md").read_text()
    assert "| a | 0 (1 in B) |" in table and "| b | 0 (0 in B) |" in table and "0.5: " in table
    a, b = (json.loads((tmp_path / "study" / arm / "decoupling.json").read_text()) for arm in arms)
    assert (a["tau_b"], b["tau_b"]) == (1.0, 0.0)
    assert b["diversity"]["in_b"] < a["diversity"]["in_b"]  # Z at its mean in B's cells: quieter there
    assert a["taus"]["0.0"] == b["taus"]["0.0"]  # tau 0 draws nothing: tau_b cannot change it
    assert main(["--table", str(tmp_path / "nothing")]) == 1
    with pytest.raises(SystemExit) as exit_:
        main(["--checkpoint", str(ckpt), "--data", str(data_dir / "faces" / "val"), "--tau-b", "2"])
    assert exit_.value.code == 2 and "argument --tau-b: tau_b must be a number between 0 and 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["--checkpoint", str(ckpt), "--data", str(data_dir / "faces" / "val"), "--taus", "0", "11"])
    assert exit_.value.code == 2 and "argument --taus: tau must be between 0 and 10" in capsys.readouterr().err


def test_channel_kurtosis_sees_tails_inside_the_channels_not_between_them():
    """Gaussian channels of different spreads pool to a heavy-tailed histogram (a scale mixture) but are Gaussian
    each: within-channel kurtosis about 0. Laplace channels are heavy-tailed each: about 3, whatever their spreads."""
    g = torch.Generator().manual_seed(0)
    spreads = torch.linspace(0.2, 2.0, 30).view(1, 30, 1, 1)
    mixture = ZStats()
    mixture.add(spreads * torch.randn(4, 30, 64, 64, generator=g))
    s = mixture.summary()
    assert s["excess_kurtosis"] > 1 and abs(s["channel_kurtosis"]) < 0.1
    laplace = ZStats()
    laplace.add(spreads * torch.distributions.Laplace(0.0, 1.0).sample((4, 30, 64, 64)))
    assert laplace.summary()["channel_kurtosis"] == pytest.approx(3, abs=0.3)


def test_z_of_tiles_of_the_whole_image_is_the_whole_images_z(tmp_path, data_dir, face_paths):
    """One tile the size of the image is the image: the same Z, the same measures; smaller tiles pass every piece
    through the flow on its own (another Z: the convolutions meet each tile's border), and a tile that is not a
    multiple of the scale, or larger than every image, is refused with a message."""
    from bdflow.decoupling import measure, z_of_tiles
    from bdflow.pipeline import Rescaler
    from tests.helpers import small_face

    r = Rescaler.from_pretrained(tiny_checkpoint(tmp_path / "tiny"))
    files = [small_face(face_paths[0], (64, 64), tmp_path / "a.png")]
    whole = measure(r, files, taus=(0.0,), seeds=2)["z"]
    same = z_of_tiles(r, files, 64)
    assert same["count"] == whole["count"] and same["std"] == pytest.approx(whole["std"], rel=1e-6)
    assert same["z2_ratio_b"] == pytest.approx(whole["z2_ratio_b"], rel=1e-6, nan_ok=True)
    quarters = z_of_tiles(r, files, 32)
    assert quarters["count"] == whole["count"] and quarters["std"] != pytest.approx(whole["std"], rel=1e-6)
    with pytest.raises(ValueError, match="multiple of the scale 8"):
        z_of_tiles(r, files, 20)
    with pytest.raises(ValueError, match="holds a 128² tile"):
        z_of_tiles(r, files, 128)


def test_cli_prints_z_of_tiles_beside_the_whole_images(tmp_path, data_dir, capsys):
    ckpt = tiny_checkpoint(tmp_path / "tiny")
    out = tmp_path / "d.json"
    assert main(["--checkpoint", str(ckpt), "--data", str(data_dir / "faces" / "val"), "--limit", "1", "--taus", "0",
                 "--z-tiles", "256", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["z_tiles"]["256"]["count"] == result["z"]["count"]  # four 256² tiles of a 512² face
    printed = capsys.readouterr().out
    assert "tiny, Z of whole images: std" in printed and "tiny, Z of 256² tiles: std" in printed
    assert main(["--checkpoint", str(ckpt), "--data", str(data_dir / "faces" / "val"), "--limit", "1",
                 "--z-tiles", "100"]) == 1
    assert "multiple of the scale 8" in capsys.readouterr().err

"""Fig. 2 re-created: exact moments, the boundary split of Z_GT, the twin/BDFlow pair checked, files written."""

import json

import pytest
import torch
from scipy import stats

from bdflow import BDFlow, BDFlowConfig
from bdflow.figures import Moments, main, near_boundary
from tests.conftest import perturb_


def test_moments_match_numpy_and_scipy():
    values = torch.distributions.StudentT(5.0).sample((3, 4000)).double()
    m = Moments()
    for part in values:  # added in pieces, summarised once
        m.add(part)
    s, flat = m.summary(), values.flatten().numpy()
    assert s["count"] == flat.size
    assert s["mean"] == pytest.approx(flat.mean(), abs=1e-12)
    assert s["var"] == pytest.approx(flat.var(), rel=1e-9)
    assert s["excess_kurtosis"] == pytest.approx(stats.kurtosis(flat), rel=1e-6)


def test_near_boundary_covers_canny_edges_and_their_neighbours(face):
    mask = near_boundary(face)
    share = mask.float().mean().item()
    assert mask.shape == (1, 1, 512, 512) and 0.05 < share < 0.6  # a face has edges, but is not all edges


@pytest.fixture
def pair(tmp_path):
    for name, boundary in (("bd", True), ("twin", False)):
        perturb_(BDFlow(BDFlowConfig(scale=16, hidden=8, boundary=boundary))).save_pretrained(tmp_path / name)
    return tmp_path / "bd", tmp_path / "twin"


def test_fig2_writes_png_and_json(pair, data_dir, tmp_path):
    bd, twin = pair
    out = tmp_path / "fig2"
    assert main(["fig2", "--bdflow", str(bd), "--twin", str(twin), "--data", str(data_dir / "faces" / "val"),
                 "--limit", "1", "--out", str(out)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    groups = result["stats"]
    assert result["images"] == 1 and set(groups) == {"Z_GT", "Z_GT boundary", "Z_GT flat", "twin twin", "BDFlow bd"}
    assert groups["Z_GT boundary"]["count"] + groups["Z_GT flat"]["count"] == groups["Z_GT"]["count"] == 3 * 512 * 512
    assert groups["Z_GT boundary"]["var"] > groups["Z_GT flat"]["var"]  # the paper's premise: boundaries carry the energy
    assert groups["twin twin"]["count"] == 765 * 32 * 32 and groups["BDFlow bd"]["count"] == 764 * 32 * 32
    assert out.with_suffix(".png").stat().st_size > 10_000


def test_fig2_refuses_a_swapped_pair(pair, data_dir, capsys):
    bd, twin = pair
    assert main(["fig2", "--bdflow", str(twin), "--twin", str(bd), "--limit", "1"]) == 1
    assert "--twin must be a B-less model" in capsys.readouterr().err

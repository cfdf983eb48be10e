"""Fig. 2 re-created: exact moments, the boundary split of Z_GT, the twin/BDFlow pair checked, files written."""

import csv
import json

import numpy as np
import pytest
import torch

from bdflow import BDFlow, BDFlowConfig
from bdflow.figures import main, near_boundary
from tests.helpers import perturb_


def test_near_boundary_covers_canny_edges_and_their_neighbours(face):
    mask = near_boundary(face)
    share = mask.float().mean().item()
    assert mask.shape == (1, 1, 512, 512) and 0.05 < share < 0.6  # a face has edges, but is not all edges


@pytest.fixture
def pair(tmp_path):
    torch.manual_seed(0)  # the weights must not depend on which tests ran before
    for name, boundary in (("bd", True), ("twin", False)):
        perturb_(BDFlow(BDFlowConfig(scale=16, hidden=8, boundary=boundary))).save_pretrained(tmp_path / name)
    return tmp_path / "bd", tmp_path / "twin"


@pytest.mark.slow
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
    assert groups["twin twin"]["count"] == 765 * 32 * 32 and groups["BDFlow bd"]["count"] == 765 * 32 * 32  # B as a condition: Z has 3 s^2 - 3 channels too
    assert out.with_suffix(".png").stat().st_size > 10_000


def test_fig2_refuses_a_swapped_pair(pair, data_dir, capsys):
    bd, twin = pair
    assert main(["fig2", "--bdflow", str(twin), "--twin", str(bd), "--limit", "1"]) == 1
    assert "--twin must be a B-less model" in capsys.readouterr().err


def write_arm(runs, arm, psnr, images=("a.png", "b.png", "c.png"), model="BDFlow arm/final"):
    """An evaluate --csv file for one arm: bicubic at 20 dB, the model at the given per-image PSNRs."""
    (runs / arm).mkdir(parents=True, exist_ok=True)
    with open(runs / arm / "val50.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "image", "psnr", "ssim", "lpips", "bytes"])
        w.writerows(["bicubic round trip", im, 20.0, 0.5, 0.7, 192] for im in images)
        w.writerows([model, im, v, 0.4, 0.4, 200] for im, v in zip(images, psnr))


def test_ablation_table_pairs_every_arm_with_the_reference(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_arm(runs, "both", [21.0, 22.0, 23.0])
    write_arm(runs, "neither", [21.5, 22.0, 24.0], model="twin neither/final")
    rows = [{"method": "bicubic round trip"}, {"method": "BDFlow both/final", "b_entropy_bits_per_lr_pixel": 0.78}]
    (runs / "both" / "val50.json").write_text(json.dumps({"results": rows}))  # evaluate --json beside the CSV
    out = tmp_path / "table"
    assert main(["ablation", "--runs", str(runs), "--reference", "both", "--out", str(out)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    delta = result["arms"]["neither"]["vs_reference"]["psnr"]
    d = np.array([0.5, 0.0, 1.0])
    assert delta["mean"] == pytest.approx(d.mean()) and delta["ci95"] == pytest.approx(1.96 * d.std(ddof=1) / np.sqrt(3))
    assert result["arms"]["both"]["psnr"] == pytest.approx(22.0) and result["bicubic"]["psnr"] == 20.0
    assert result["arms"]["both"]["b_entropy"] == 0.78 and result["arms"]["neither"]["b_entropy"] is None
    table = out.with_suffix(".md").read_text()
    assert "| neither | 22.50 |" in table and "+0.50 ± 0.57" in table and table in capsys.readouterr().out


@pytest.mark.parametrize(
    "arms, message",
    [({"both": ("a.png", "b.png"), "T20": ("a.png", "c.png")}, "other images"), ({"T20": ("a.png", "b.png")}, "['both']")],
)
def test_ablation_refuses_unpaired_or_missing_arms(tmp_path, capsys, arms, message):
    for arm, images in arms.items():
        write_arm(tmp_path, arm, [21.0, 22.0], images=images)
    assert main(["ablation", "--runs", str(tmp_path), "--out", str(tmp_path / "t")]) == 1
    assert message in capsys.readouterr().err


def test_ablation_picks_the_rows_of_one_tau(tmp_path):
    """Arms scored at several temperatures (evaluate --tau 0 0.5) are compared at the tau asked for."""
    for arm, offset in (("shipped", 0.0), ("new", 1.0)):
        write_arm(tmp_path, arm, [21.0 + offset, 22.0 + offset], images=("a.png", "b.png"), model="BDFlow m tau=0")
        with open(tmp_path / arm / "val50.csv", "a", newline="") as f:
            csv.writer(f).writerows([["BDFlow m tau=0.5", im, 19.0 + 2 * offset, 0.4, 0.5, 200] for im in ("a.png", "b.png")])
    for tau, delta in ((0.0, 1.0), (0.5, 2.0)):
        assert main(["ablation", "--runs", str(tmp_path), "--reference", "shipped", "--tau", str(tau),
                     "--out", str(tmp_path / "t")]) == 0
        assert json.loads((tmp_path / "t.json").read_text())["arms"]["new"]["vs_reference"]["psnr"]["mean"] == pytest.approx(delta)
    assert main(["ablation", "--runs", str(tmp_path), "--reference", "shipped", "--out", str(tmp_path / "t")]) == 1


def test_ablation_keeps_the_order_asked_for(tmp_path):
    for arm in ("both", "T20", "T100"):
        write_arm(tmp_path, arm, [21.0, 22.0, 23.0])
    assert main(["ablation", "--runs", str(tmp_path), "--arms", "T20", "both", "T100", "--out", str(tmp_path / "t")]) == 0
    assert list(json.loads((tmp_path / "t.json").read_text())["arms"]) == ["T20", "both", "T100"]


@pytest.mark.slow
def test_crops_scores_each_checkpoint_beside_bicubic(pair, tmp_path):
    """The crop figure of #14: one tile per row, whole-image PSNR-Y and grid ratio recorded, bad input refused."""
    face = "assets/face-female-015248.jpg"
    bd, twin = pair
    out = tmp_path / "crops"
    assert main(["crops", "--image", face, "--checkpoints", str(bd), str(twin), "--box", "128", "64", "96", "--out", str(out)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    assert list(result["scores"]) == ["bicubic round trip x16", "bd", "twin"]
    assert all(10 < s["psnr_y"] < 60 and s["grid"] >= 1 for s in result["scores"].values())
    from PIL import Image

    assert Image.open(out.with_suffix(".png")).width > 4 * 256  # HR, bicubic and two checkpoints, 256 px each
    assert main(["crops", "--image", face, "--checkpoints", str(bd), "--box", "480", "0", "64", "--out", str(out)]) == 1
    assert main(["crops", "--image", face, "--checkpoints", str(bd), str(twin), "--labels", "one", "--out", str(out)]) == 1
    perturb_(BDFlow(BDFlowConfig(scale=8, hidden=8))).save_pretrained(tmp_path / "x8")
    assert main(["crops", "--image", face, "--checkpoints", str(bd), str(tmp_path / "x8"), "--out", str(out)]) == 1


def test_diversity_figure_maps_each_tau_b_on_one_scale(pair, tmp_path, capsys):
    """The where-Z-is-sampled figure: HR, B's cells and one map per tau_b; tau_b 0 is quieter on the edges than the
    paper's sampling, and a B-less model or a box outside the image is refused with a message."""
    face = "assets/face-female-015248.jpg"
    bd, twin = pair
    out = tmp_path / "div"
    assert main(["diversity", "--image", face, "--checkpoint", str(bd), "--box", "96", "128", "128", "--samples", "3",
                 "--out", str(out)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    paper, default = result["diversity"]["1.0"], result["diversity"]["0.0"]
    assert default["on_edges"] < paper["on_edges"] and result["vmax"] > 0 and result["samples"] == 3
    assert "tau_b 0.0: diversity off / on the edges" in capsys.readouterr().out
    from PIL import Image

    assert Image.open(out.with_suffix(".png")).width >= 4 * 256  # HR, B's cells, two maps
    assert main(["diversity", "--image", face, "--checkpoint", str(twin), "--out", str(out)]) == 1
    assert "has no B" in capsys.readouterr().err
    assert main(["diversity", "--image", face, "--checkpoint", str(bd), "--box", "480", "0", "64", "--out", str(out)]) == 1
    assert "does not fit" in capsys.readouterr().err
    for flag, value, message in (("--tau-b", "1.5", "tau_b must be a number between 0 and 1"), ("--tau", "-1", "tau must be between 0 and 10")):
        with pytest.raises(SystemExit) as exit_:  # the CLIs' one rule (bdflow.limits.argument): a usage error
            main(["diversity", "--image", face, "--checkpoint", str(bd), flag, value, "--out", str(out)])
        assert exit_.value.code == 2 and message in capsys.readouterr().err

"""The evaluation CLI on real faces with a tiny model: the table, the JSON and the per-image CSV."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from bdflow import BDFlow, BDFlowConfig
from bdflow.evaluate import entropy_bits, main
from tests.helpers import perturb_


@pytest.fixture(scope="module")
def small_faces(face_paths, tmp_path_factory):
    folder = tmp_path_factory.mktemp("faces")
    for path in face_paths[:2]:
        Image.open(path).convert("RGB").crop((128, 128, 320, 288)).save(folder / f"{path.stem}.png")
    return folder


@pytest.mark.slow
def test_evaluate_prints_the_table(small_faces, tmp_path, capsys):
    perturb_(BDFlow(BDFlowConfig(scale=8, hidden=8)), std=0.005).save_pretrained(tmp_path / "m")
    BDFlow(BDFlowConfig(scale=8, hidden=8, boundary=False)).save_pretrained(tmp_path / "twin")
    code = main(["--checkpoint", str(tmp_path / "m"), "--twin", str(tmp_path / "twin"), "--data", str(small_faces),
                 "--bits", "2", "--json", str(tmp_path / "r.json"), "--csv", str(tmp_path / "r.csv")])
    assert code == 0
    out = capsys.readouterr().out
    # a run at a tau other than 0 says so in every label (a CSV row names its tau: tools/results.py --pair FILE@TAU)
    assert "| bicubic round trip |" in out and "| twin twin tau=0.8 |" in out and "| BDFlow m tau=0.8 |" in out
    results = {r["method"]: r for r in json.loads((tmp_path / "r.json").read_text())["results"]}
    bicubic, flow = results["bicubic round trip"], results["BDFlow m tau=0.8"]
    assert 20 < bicubic["psnr"] < 40 and 0 < bicubic["lpips"] < 1
    assert bicubic["bytes"] == 24 * 20 * 3  # 192x160 at x8: 24x20 LR pixels, 8-bit RGB
    assert flow["bytes"] == 24 * 20 * 3 + 24 * 20 * 2 // 8  # plus 2-bit B
    assert 0 <= flow["b_entropy_bits_per_lr_pixel"] <= 2
    assert set(flow["z"]) >= {"mean", "var", "normaltest_p"}
    with open(tmp_path / "r.csv") as f:
        assert len(list(csv.DictReader(f))) == 3 * 2


def test_several_taus_share_one_forward_pass(small_faces, tmp_path, capsys):
    perturb_(BDFlow(BDFlowConfig(scale=8, hidden=8)), std=0.005).save_pretrained(tmp_path / "m")
    assert main(["--checkpoint", str(tmp_path / "m"), "--data", str(small_faces), "--tau", "0.8", "0",
                 "--json", str(tmp_path / "r.json")]) == 0
    assert "| BDFlow m tau=0.8 |" in capsys.readouterr().out
    results = {r["method"]: r for r in json.loads((tmp_path / "r.json").read_text())["results"]}
    mean, sampled = results["BDFlow m tau=0"], results["BDFlow m tau=0.8"]
    assert mean["bytes"] == sampled["bytes"] and mean["z"] == sampled["z"]  # the same forward pass
    assert mean["psnr"] != sampled["psnr"]
    with pytest.raises(SystemExit) as exit_:  # a usage error, one rule for every CLI (bdflow.limits.argument)
        main(["--checkpoint", str(tmp_path / "m"), "--data", str(small_faces), "--tau", "-1"])
    assert exit_.value.code == 2 and "tau must be between 0 and 10" in capsys.readouterr().err


def test_tau_b_changes_the_sampled_rows_only(small_faces, tmp_path, capsys):
    """--tau-b: the share of tau Z keeps in B's boundary cells (default 0); the paper's 1 changes the sampled row,
    never the tau-0 one; out of range is refused like tau."""
    perturb_(BDFlow(BDFlowConfig(scale=8, hidden=8)), std=0.005).save_pretrained(tmp_path / "m")
    runs = {}
    for tau_b in ("0", "1"):
        assert main(["--checkpoint", str(tmp_path / "m"), "--data", str(small_faces), "--tau", "0", "0.8", "--tau-b", tau_b,
                     "--json", str(tmp_path / f"{tau_b}.json")]) == 0
        assert f"({tau_b} of it in B's boundary cells)" in capsys.readouterr().out
        runs[tau_b] = {r["method"]: r for r in json.loads((tmp_path / f"{tau_b}.json").read_text())["results"]}
    assert runs["0"]["BDFlow m tau=0"] == runs["1"]["BDFlow m tau=0"]
    assert runs["0"]["BDFlow m tau=0.8"]["psnr"] != runs["1"]["BDFlow m tau=0.8"]["psnr"]
    with pytest.raises(SystemExit) as exit_:  # a usage error, as in `bdflow decode`: the rule of bdflow.limits
        main(["--checkpoint", str(tmp_path / "m"), "--data", str(small_faces), "--tau-b", "1.5"])
    assert exit_.value.code == 2 and "argument --tau-b: tau_b must be a number between 0 and 1" in capsys.readouterr().err


@pytest.mark.slow
def test_probes_decode_from_altered_y_and_b(small_faces, tmp_path, capsys):
    """--probe bicubic-y feeds the bicubic LR: a fresh flow is a Haar pyramid, so Y is the box mean, not bicubic."""
    model = BDFlow(BDFlowConfig(scale=8, hidden=8, wavelet="haar", b_mode="channel"))
    with torch.no_grad():
        model.levels[-1][-1].eta.conv_out.bias[0] = 1.0  # B's channel (first of u2 in the last coupling) reads 1
    model.save_pretrained(tmp_path / "m")
    BDFlow(BDFlowConfig(scale=8, hidden=8, boundary=False)).save_pretrained(tmp_path / "twin")
    assert main(["--checkpoint", str(tmp_path / "m"), "--twin", str(tmp_path / "twin"), "--data", str(small_faces),
                 "--tau", "0", "--probe", "bicubic-y", "no-b", "--json", str(tmp_path / "r.json")]) == 0
    results = {r["method"]: r for r in json.loads((tmp_path / "r.json").read_text())["results"]}
    assert set(results) == {"bicubic round trip", "twin twin", "twin twin (Y := bicubic LR)", "BDFlow m",
                            "BDFlow m (Y := bicubic LR)", "BDFlow m (B := 0)"}  # the twin has no B to drop
    assert results["BDFlow m (Y := bicubic LR)"]["psnr"] != results["BDFlow m"]["psnr"]
    assert results["BDFlow m (B := 0)"]["psnr"] != results["BDFlow m"]["psnr"]  # B's channel feeds the inverse
    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", str(tmp_path / "m"), "--data", str(small_faces), "--probe", "nothing"])
    assert exit_info.value.code == 2 and "invalid choice: 'nothing'" in capsys.readouterr().err


def test_record_writes_metrics_and_model_card(small_faces, tmp_path):
    BDFlow(BDFlowConfig(scale=8, hidden=8)).save_pretrained(tmp_path / "m", meta={"iterations": 5})
    args = ["--checkpoint", str(tmp_path / "m"), "--data", str(small_faces), "--limit", "1", "--tau", "0", "--record"]
    assert main([*args, "val-512", "--notes", "Tiny test model."]) == 0
    assert main([*args, "test-1024"]) == 0
    model = BDFlow.from_pretrained(tmp_path / "m")
    assert model.meta["iterations"] == 5
    assert [r["method"] for r in model.meta["metrics"]["val-512"]] == ["bicubic round trip", "BDFlow m"]
    card = (tmp_path / "m" / "README.md").read_text()
    assert "| val-512 | BDFlow m |" in card and "| test-1024 | BDFlow m |" in card and "non-commercial" in card
    assert "Tiny test model." in card and "λ = 2, 2, 0.1, 16, 0" in card  # the notes are kept by a later --record


def test_bad_arguments_are_clear(small_faces, tmp_path, capsys):
    BDFlow(BDFlowConfig(scale=8, hidden=8)).save_pretrained(tmp_path / "m")
    assert main(["--checkpoint", str(tmp_path / "m"), "--data", str(small_faces), "--bits", "9"]) == 1
    assert "bits must be" in capsys.readouterr().err
    assert main(["--checkpoint", str(tmp_path / "m"), "--data", str(tmp_path / "none")]) == 1
    assert "image folder not found" in capsys.readouterr().err


def test_entropy():
    assert entropy_bits(np.array([5, 5, 0, 0])) == 1.0
    assert entropy_bits(np.array([7, 0])) == 0.0


@pytest.mark.parametrize(
    "folder, boundary, label",
    [("face-x8", True, "BDFlow face-x8"), ("run/final", True, "BDFlow run/final"), ("arm/last", False, "twin arm/last")],
)
def test_rows_are_named_by_kind_and_run(small_faces, tmp_path, folder, boundary, label):
    BDFlow(BDFlowConfig(scale=8, hidden=8, boundary=boundary)).save_pretrained(tmp_path / folder)
    assert main(["--checkpoint", str(tmp_path / folder), "--data", str(small_faces), "--limit", "1", "--tau", "0",
                 "--json", str(tmp_path / "r.json")]) == 0
    assert [r["method"] for r in json.loads((tmp_path / "r.json").read_text())["results"]] == ["bicubic round trip", label]

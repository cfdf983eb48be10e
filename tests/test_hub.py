"""Checkpoints: config.json + safetensors < 16 MiB per file, local folders and an offline Hub cache."""

import json
import shutil

import pytest
import torch

from bdflow import BDFlow, BDFlowConfig, LossConfig, Rescaler
from bdflow.card import model_card
from bdflow.hub import weights_digest
from tests.helpers import perturb_

MiB = 1 << 20


def test_roundtrip_and_meta(tmp_path):
    model = perturb_(BDFlow(BDFlowConfig(scale=4, hidden=8)))
    model.save_pretrained(tmp_path / "m", meta={"iterations": 3})
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert files == ["config.json", "model.safetensors"]
    loaded = BDFlow.from_pretrained(tmp_path / "m")
    assert loaded.meta == {"iterations": 3} and loaded.config == model.config
    assert weights_digest(loaded.state_dict()) == weights_digest(model.state_dict())


@pytest.mark.parametrize(
    "config, loss, says",
    [(dict(), dict(), "BAW after 30 %"), (dict(boundary=False), dict(), "no BAW"),
     (dict(boundary=False), dict(baw_twin=True), "BAW after 30 %")],
    ids=["bdflow", "twin", "twin-baw-only"],
)
def test_model_card_says_whether_baw_weighted_the_loss(config, loss, says):
    card = model_card("m", {**BDFlowConfig(scale=4, **config).to_dict(), **LossConfig(**loss).to_dict()}, meta={})
    assert says in card


def test_large_model_sharded_below_16_mib(tmp_path):
    model = BDFlow(BDFlowConfig(scale=64, hidden=16, max_3x3_channels=16384))  # 3x3 everywhere: ~60 MB
    assert sum(p.numel() for p in model.parameters()) * 4 > 16 * MiB
    model.save_pretrained(tmp_path / "big")
    sizes = {p.name: p.stat().st_size for p in (tmp_path / "big").iterdir()}
    assert "model.safetensors.index.json" in sizes and max(sizes.values()) < 16 * MiB
    loaded = BDFlow.from_pretrained(tmp_path / "big")
    assert weights_digest(loaded.state_dict()) == weights_digest(model.state_dict())


def test_mismatch_is_refused_with_the_reason(tmp_path):
    BDFlow(BDFlowConfig(scale=4, hidden=8)).save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["hidden"] = 16
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"do not match its config.json: .*shape mismatches .*\(8, 10, 3, 3\)"):
        BDFlow.from_pretrained(tmp_path / "m")
    config.update(hidden=8, blocks_per_level=1)
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="unexpected tensors"):
        BDFlow.from_pretrained(tmp_path / "m")


def test_missing_pieces_have_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        BDFlow.from_pretrained(tmp_path / "empty")
    BDFlow(BDFlowConfig(scale=2, hidden=4)).save_pretrained(tmp_path / "noweights")
    (tmp_path / "noweights" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no model safetensors"):
        BDFlow.from_pretrained(tmp_path / "noweights")


def test_hub_repo_id_from_offline_cache(tmp_path, monkeypatch):
    """A repo id resolves through huggingface_hub's cache layout with HF_HUB_OFFLINE=1 (no network)."""
    model = perturb_(BDFlow(BDFlowConfig(scale=8, hidden=8)))
    model.save_pretrained(tmp_path / "src")
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "cache" / "models--bdflow--face-x8"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(tmp_path / "src", snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = Rescaler.from_pretrained("bdflow/face-x8", cache_dir=tmp_path / "cache", device="cpu")
    assert weights_digest(r.model.state_dict()) == weights_digest(model.state_dict())
    with pytest.raises(FileNotFoundError, match="not in the Hugging Face cache"):
        Rescaler.from_pretrained("bdflow/not-cached", cache_dir=tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="neither a checkpoint folder nor a Hub repo id"):
        Rescaler.from_pretrained("no such//folder", cache_dir=tmp_path / "cache")


def test_save_pretrained_replaces_older_shards(tmp_path):
    BDFlow(BDFlowConfig(scale=64, hidden=16)).save_pretrained(tmp_path / "m")
    small = BDFlow(BDFlowConfig(scale=2, hidden=4))
    small.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    assert torch.equal(BDFlow.from_pretrained(tmp_path / "m").state_dict()["levels.0.0.phi.conv_in.weight"], small.state_dict()["levels.0.0.phi.conv_in.weight"])


def test_model_card_names_the_training_data_from_meta():
    """The card's data text comes from meta (the training folder train.py records), not a fixed 'CelebA-HQ faces'."""
    config = BDFlowConfig(scale=4).to_dict()
    cats = model_card("cat-x4", config, meta={"training": {"data": "../shared/data/cats/train"}})
    assert "`../shared/data/cats/train`" in cats and "CelebA" not in cats and "# cat-x4: ×4 image rescaler" in cats
    assert "Trained on `cats/train` only" in cats and "license_name: other" in cats
    faces = model_card("face-x4", config, meta={"training": {"data": "../shared/data/faces/train"}})
    assert "3,600 CelebA-HQ faces" in faces and "license_name: celeba-hq-non-commercial" in faces
    assert model_card("face-x4", config, meta={}) == faces  # no folder recorded: the faces every old checkpoint had


def test_model_card_says_when_crops_were_zoomed():
    config = {**BDFlowConfig(scale=4).to_dict(), **LossConfig().to_dict()}
    zoomed = model_card("m", config, meta={"training": {"crop": 64, "zoom": 2.0}})
    assert "64² crops cut from faces enlarged by a random factor from 1 to 2" in zoomed
    assert "enlarged" not in model_card("m", config, meta={"training": {"crop": 64}})  # runs before --zoom: none
    fixed = model_card("m", config, meta={"training": {"crop": 1024, "zoom": 2.0, "zoom_min": 2.0}})
    assert "1024² crops cut from faces enlarged by 2," in fixed
    stage = {"iterations": 5, "training": {"lr": 1e-4, "zoom": 2.0}, "loss": {"lambda_latent": 1.0, "tau_train": 1.0}}
    staged = model_card("m", config, meta={"training": {"crop": 64}, "stages": [stage, {**stage, "training": {"lr": 1e-4}}]})
    assert "- stage 1: 5 iterations (lr 0.0001, λ₅ 1, τ_train 1 fixed, zoom 2)" in staged
    assert "- stage 2: 5 iterations (lr 0.0001, λ₅ 1, τ_train 1 fixed), " in staged  # a stage without zoom says none
    stage_fixed = {**stage, "training": {"lr": 1e-4, "zoom": 2.0, "zoom_min": 2.0, "batch_size": 1, "crop": 1024}}
    assert "- stage 1: 5 iterations of batch 1 on 1024² crops (lr 0.0001, λ₅ 1, τ_train 1 fixed, zoom 2 fixed)" in model_card(
        "m", config, meta={"stages": [stage_fixed], "training": {}})
    turns = model_card("m", config, meta={"training": {"crop": 512, "batch_size": 4, "crop_turns": "1024:1", "zoom": 2.0, "zoom_min": 2.0}})
    assert "iterations of batch 4 on 512² crops and batch 1 on 1024² crops in turn cut from faces enlarged by 2," in turns


def test_model_card_names_an_lpips_weight_that_grows_with_tau():
    warm = {**BDFlowConfig(scale=4).to_dict(), **LossConfig(lambda_lpips_tau=0.5, tau_train=1.0).to_dict()}
    assert "LPIPS weighted λ₃ + 0.5 τ / τ_train in a decode at τ" in model_card("m", warm, meta={})
    assert "τ / τ_train" not in model_card("m", {**BDFlowConfig(scale=4).to_dict(), **LossConfig().to_dict()}, meta={})


def test_model_card_names_an_energy_score_and_where_samples_agree():
    plain = {**BDFlowConfig(scale=4).to_dict(), **LossConfig().to_dict()}
    assert "energy score" not in model_card("m", plain, meta={})
    energy = {**plain, **LossConfig(back="energy", energy_edge_spread=0.0).to_dict()}
    card = model_card("m", energy, meta={})
    assert "L_back the energy score of two decodes over 8×8 patches; in patches holding a boundary (BAM's, of the training image) the spread term weighs 0" in card
    flat = model_card("m", {**plain, **LossConfig(back="energy", energy_edge_spread=0.0, energy_flat_spread=0.5).to_dict()}, meta={})
    assert "weighs 0, so samples agree on the edges; in the flatter half of each batch's patches" in flat
    assert "it weighs 0.5, so samples agree on flat surfaces" in flat and "flat surfaces" not in card
    proper = model_card("m", {**plain, **LossConfig(back="energy").to_dict()}, meta={})
    assert "over 8×8 patches," in proper and "agree" not in proper
    stage = {"iterations": 5, "training": {"lr": 1e-4}, "loss": {"lambda_latent": 1.0, "tau_train": 1.0, "back": "energy"}}
    assert "(lr 0.0001, λ₅ 1, τ_train 1 fixed, L_back energy), " in model_card("m", plain, meta={"stages": [stage], "training": {}})


def test_model_card_names_the_training_temperature_and_its_draw():
    config = {**BDFlowConfig(scale=4).to_dict(), **LossConfig(tau_train=1.0).to_dict()}
    assert "decoded in training from a Z at τ = 1," in model_card("m", config, meta={})
    uniform = {**config, **LossConfig(tau_train=1.0, tau_draw="uniform").to_dict()}
    assert "decoded in training from a Z at τ drawn per image from U(0, 1)," in model_card("m", uniform, meta={})

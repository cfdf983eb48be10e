"""The training CLI on real faces: the loss goes down, --resume continues bit for bit, bad flags are refused."""

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from bdflow import BDFlow
from bdflow.hub import model_card
from bdflow.data import CropBatches
from bdflow.train import TrainConfig, fast_step, lr_lambda, main, parse_args, parse_stages, train
from bdflow.viz import main as viz_main

TINY = ["--scale", "4", "--hidden", "8", "--crop", "32", "--batch-size", "4", "--workers", "0", "--val-images", "0"]


def _args(data_dir, out, *extra) -> list[str]:
    return [*TINY, "--data", str(data_dir / "faces" / "train"), "--out", str(out), *extra]


def _losses(out) -> list[float]:
    with open(out / "log.csv") as f:
        return [float(r["total"]) for r in csv.DictReader(f)]


@pytest.mark.slow
def test_few_steps_decrease_the_loss_on_real_faces(data_dir, tmp_path):
    out = tmp_path / "run"
    assert main(_args(data_dir, out, "--iters", "40", "--lr", "1e-3", "--lambda-lpips", "0")) == 0
    losses = _losses(out)
    assert len(losses) == 40
    assert sum(losses[-8:]) / 8 < 0.8 * sum(losses[:8]) / 8
    model = BDFlow.from_pretrained(out / "final")
    assert model.meta["iterations"] == 40 and "CPU" in model.meta["sessions"][-1]["hardware"]
    assert (out / "curves.png").stat().st_size > 0
    assert viz_main([str(out / "compare.png"), f"a={out / 'log.csv'}", str(out / "log.csv")]) == 0  # run comparison
    assert (out / "compare.png").stat().st_size > 0


def test_lr_schedule_warmup_constant_then_cosine():
    f = lr_lambda(TrainConfig(iters=100, lr=1e-3, lr_min=1e-5, warmup=10, decay_from=0.5))
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)  # linear warm-up
    assert f(10) == f(50) == pytest.approx(1.0)  # constant until half-way
    assert f(75) == pytest.approx((1e-5 + 0.5 * (1e-3 - 1e-5)) / 1e-3) and f(100) == pytest.approx(0.01)
    paper = lr_lambda(TrainConfig(iters=100, lr=1e-3, lr_min=1e-5))  # the paper's cosine over the whole run
    assert paper(0) == 1.0 and paper(50) == pytest.approx((1e-5 + 0.5 * (1e-3 - 1e-5)) / 1e-3)


@pytest.mark.slow
def test_untrained_start_is_validated_and_logged(data_dir, tmp_path):
    """Training must improve on its own starting point: step 0 carries the untrained model's validation PSNR."""
    out = tmp_path / "run"
    flags = ["--iters", "2", "--val-images", "1", "--val-every", "2", "--val-tau", "0", "--val-data", str(data_dir / "faces" / "val")]
    assert main(_args(data_dir, out, *flags)) == 0
    with open(out / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["0", "1", "2"] and float(rows[0]["val_psnr"]) > 20 and rows[0]["total"] == ""
    assert rows[2]["val_psnr"] and (out / "curves.png").stat().st_size > 0


@pytest.mark.slow
def test_resume_continues_bit_for_bit(data_dir, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(*parse_args(_args(data_dir, straight, "--iters", "6", "--checkpoint-minutes", "100")))
    train(*parse_args(_args(data_dir, resumed, "--iters", "6", "--stop-at", "3")))
    assert BDFlow.from_pretrained(resumed / "last").meta["iterations"] == 3
    assert not (resumed / "final").exists()
    train(*parse_args(_args(data_dir, resumed, "--iters", "6", "--resume")))
    a = load_file(straight / "final" / "model.safetensors")
    b = load_file(resumed / "final" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _losses(straight) == _losses(resumed)
    sessions = BDFlow.from_pretrained(resumed / "final").meta["sessions"]
    assert [(s["from_iteration"], s["to_iteration"]) for s in sessions] == [(0, 3), (3, 6)]  # the budget of each session


def test_resume_continues_bit_for_bit_with_bf16_subnets(data_dir, tmp_path):
    """The bf16 step (CUDA's default, here on the CPU as its stand-in) resumes bit for bit too, records its precision
    and trains a model whose round trip stays exact in float32."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    flags = ["--iters", "4", "--precision", "bf16", "--compile", "off"]
    train(*parse_args(_args(data_dir, straight, *flags, "--checkpoint-minutes", "100")))
    train(*parse_args(_args(data_dir, resumed, *flags, "--stop-at", "2")))
    train(*parse_args(_args(data_dir, resumed, *flags, "--resume")))
    assert _losses(straight) == _losses(resumed) and all(map(torch.isfinite, torch.tensor(_losses(straight))))
    model = BDFlow.from_pretrained(straight / "final")
    assert model.meta["training"]["precision"] == "bf16"
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert (model.inverse(*model(x)) - x).abs().max() < 1e-4  # the checkpoint is an ordinary float32 flow


def test_resume_continues_bit_for_bit_with_a_critic(data_dir, tmp_path):
    """With --lambda-critic the critic and its Adam live in OUT/last: a resumed run trains the same flow, and the
    critic's own loss is logged beside the flow's terms."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    flags = ["--iters", "4", "--tau-train", "1", "--lambda-critic", "0.1", "--critic-from", "0", "--compile", "off"]
    train(*parse_args(_args(data_dir, straight, *flags, "--checkpoint-minutes", "100")))
    train(*parse_args(_args(data_dir, resumed, *flags, "--stop-at", "2")))
    train(*parse_args(_args(data_dir, resumed, *flags, "--resume")))
    assert _losses(straight) == _losses(resumed)
    a, b = (load_file(out / "last" / "training_state.safetensors") for out in (straight, resumed))
    assert any(k.startswith("critic.") for k in a) and all(torch.equal(a[k], b[k]) for k in a if k != "rng.torch")
    with open(straight / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(float(r["critic"]) > 0 and float(r["critic_own"]) > 0 for r in rows)
    assert "critic" not in " ".join(load_file(straight / "final" / "model.safetensors"))  # the shipped weights are the flow's


def test_cached_batches_are_the_decoded_ones(data_dir):
    cached = CropBatches(data_dir / "faces" / "train", 64, 4, cache=True)
    plain = CropBatches(data_dir / "faces" / "train", 64, 4)
    for step in (0, 1, 0, 9):
        (a, bits_a), (b, bits_b) = cached[step], plain[step]
        assert torch.equal(a, b) and bits_a == bits_b and a.dtype == torch.float32


def test_zoomed_crops_are_enlarged_8_bit_windows_and_zoom_1_draws_nothing_new(data_dir):
    folder = data_dir / "faces" / "train"
    plain, one = CropBatches(folder, 64, 4), CropBatches(folder, 64, 4, zoom=1.0)
    assert all(torch.equal(plain[t][0], one[t][0]) for t in (0, 3))  # zoom 1: the batches of a run without it
    zoomed = CropBatches(folder, 64, 4, zoom=2.0)
    for t in range(4):
        x, _ = zoomed[t]
        assert x.shape == (4, 3, 64, 64) and torch.equal(x, torch.round(x * 255) / 255)  # 8-bit values
    # an enlarged window is smoother: less energy in neighbour differences than the unzoomed crops
    rough = lambda x: (x[..., 1:] - x[..., :-1]).abs().mean()  # noqa: E731
    assert sum(rough(zoomed[t][0]) for t in range(8)) < 0.9 * sum(rough(plain[t][0]) for t in range(8))
    with pytest.raises(ValueError, match="zoom must be >= 1"):
        CropBatches(folder, 64, 4, zoom=0.5)


def test_fast_step_is_compiled_only_where_it_pays():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert fast_step(TrainConfig(iters=10), cpu) == ("fp32", False)  # a short run: compiling would cost more
    assert fast_step(TrainConfig(iters=10, compile="on", precision="bf16"), cpu) == ("bf16", True)
    assert fast_step(TrainConfig(iters=5000), cuda) == ("bf16", True)
    assert fast_step(TrainConfig(iters=5000, compile="off", precision="fp32"), cuda) == ("fp32", False)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--scale", "8", "--crop", "100"], "multiple of the scale"),
        (["--scale", "8", "--crop-turns", "64:2,100:1"], "crop 100 (--crop, --crop-turns) must be a multiple of the scale"),
        (["--crop-turns", "1024"], "CROP:BATCH pairs of integers"),
        (["--crop-turns", "1024:0"], "batch sizes (--batch-size, --crop-turns) must be positive"),
        (["--batch-size", "0"], "must be positive"),
        (["--bits", "1,7"], "integers from 1 to 4"),
        (["--bam-norm", "3"], "bam_norm"),
        (["--precision", "fp16"], "--precision"),
        (["--compile", "yes"], "--compile"),
        (["--latent", "kl"], "latent"),
        (["--back", "l2"], "back must be one of"),
        (["--back", "energy", "--energy-patch", "7"], "multiple of --energy-patch"),
        (["--iters", "0"], "calibration of a trained model"),
        (["--z-calibration", "-1"], "at least 0"),
        (["--z-calibration", "2", "--z-scale", "none"], "--z-scale none"),
    ],
)
def test_bad_flags_are_refused(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(flags)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    assert main([*TINY, "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), "--iters", "1"]) == 1
    assert "image folder not found" in capsys.readouterr().err


def test_init_from_a_smaller_scale_records_the_parent(data_dir, tmp_path):
    """--init-from: a x8 run starts from a trained x4 run's levels and its card names the parent and its budget."""
    parent, child = tmp_path / "x4", tmp_path / "x8"
    assert main(_args(data_dir, parent, "--iters", "2")) == 0
    assert main(_args(data_dir, child, "--iters", "2", "--scale", "8", "--init-from", str(parent / "final"))) == 0
    model = BDFlow.from_pretrained(child / "final")
    assert model.meta["parent"]["scale"] == 4 and model.meta["parent"]["iterations"] == 2
    assert f"grown from `{parent / 'final'}` (×4, 2 iterations" in model_card("x8", model.config.to_dict(), model.meta)
    parent_weights = BDFlow.from_pretrained(parent / "final").state_dict()
    first_level = {k: v for k, v in model.state_dict().items() if k.startswith("levels.0.")}
    # two Adam steps at lr 2e-4 move a weight by ~4e-4; a fresh initialisation would differ by ~0.1
    drift = max((v - parent_weights[k]).abs().max().item() for k, v in first_level.items())
    assert first_level and 0 < drift < 1e-2


def test_staged_recipe_runs_its_stages_and_records_them(data_dir, tmp_path):
    """A recipe with "stages": each earlier run writes OUT/stage-i and starts the next; the final's meta lists them
    (run, loss, iterations) and names the recipe's init_from as its parent, and the card shows every stage."""
    parent, out = tmp_path / "parent", tmp_path / "staged"
    assert main(_args(data_dir, parent, "--iters", "2")) == 0
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"init_from": str(parent / "final"), "iters": 3, "tau_train": 1.0,
                                  "stages": [{"iters": 2}, {"iters": 1, "lr": 1e-4, "tau_draw": "uniform"}]}))
    runs = parse_stages(["--config", str(recipe), *_args(data_dir, out)])
    assert [r.iters for _, _, r in runs] == [2, 1, 3] and [l.tau_draw for _, l, _ in runs] == ["fixed", "uniform", "fixed"]
    assert runs[1][2].init_from == str(out / "stage-1" / "final") and runs[2][2].init_from == str(out / "stage-2" / "final")
    assert main(["--config", str(recipe), *_args(data_dir, out)]) == 0
    model = BDFlow.from_pretrained(out / "final")
    stages = model.meta["stages"]
    assert [st["iterations"] for st in stages] == [2, 1] and stages[1]["training"]["lr"] == 1e-4
    assert stages[1]["loss"]["tau_draw"] == "uniform" and model.meta["parent"]["checkpoint"] == str(parent / "final")
    card = model_card("x4", model.config.to_dict(), model.meta)
    assert "- stage 1: 2 iterations" in card and "- stage 3, this run:" in card
    first = out / "stage-1" / "final" / "config.json"
    stamp = first.stat().st_mtime_ns  # a second call keeps the stages' finals and resumes the last run
    assert main(["--config", str(recipe), *_args(data_dir, out), "--resume"]) == 0
    assert first.stat().st_mtime_ns == stamp and "stages" in BDFlow.from_pretrained(out / "final").meta


def test_z_calibration_rescales_z_only(data_dir, tmp_path):
    """--iters 0 --z-calibration N: the trained model's Z gets unit variance per channel on N batches drawn as in
    training (their own seed); Y, B and the decode of Z = 0 stay bit for bit, the flow stays invertible."""
    parent, out = tmp_path / "parent", tmp_path / "calibrated"
    assert main(_args(data_dir, parent, "--iters", "3", "--lr", "1e-3")) == 0
    assert main(_args(data_dir, out, "--iters", "0", "--init-from", str(parent / "final"), "--z-calibration", "3")) == 0
    before, after = BDFlow.from_pretrained(parent / "final"), BDFlow.from_pretrained(out / "final")
    assert after.meta["training"]["z_calibration"] == 3 and after.meta["iterations"] == 0
    batches = CropBatches(data_dir / "faces" / "train", 32, 4, seed=1)
    x = torch.cat([batches[i][0] for i in range(3)])
    with torch.no_grad():
        (y0, b0, z0), (y1, b1, z1) = before(x), after(x)
        assert torch.equal(y0, y1) and torch.equal(b0, b1) and not torch.allclose(z0, z1)
        assert torch.allclose(z1.std(dim=(0, 2, 3)), torch.ones(1), atol=1e-3)
        assert torch.equal(before.inverse(y0, b0, torch.zeros_like(z0)), after.inverse(y1, b1, torch.zeros_like(z1)))
        assert (after.inverse(y1, b1, z1) - x).abs().max() < 1e-4


def test_a_stage_cannot_change_the_model(tmp_path, capsys):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"stages": [{"hidden": 16}]}))
    with pytest.raises(SystemExit):
        parse_stages(["--config", str(recipe)])
    assert "stages change the loss and the run only" in capsys.readouterr().err


def test_crop_turns_take_turns_and_leave_the_own_crops_steps_as_they_were(data_dir):
    """--crop-turns: step t draws at sizes[t % len(sizes)]; the steps of the run's own crop are the batches of a run
    without turns, bit for bit, and init/calibration batches come from the same rule (train.crop_batches)."""
    from bdflow.data import CropBatches
    from bdflow.train import crop_batches

    folder = data_dir / "faces" / "train"
    plain = CropBatches(folder, 64, 4, seed=3)
    turns = CropBatches(folder, 64, 4, seed=3, turns=((128, 1), (96, 2)))
    assert [turns[t][0].shape[:3:2] for t in range(4)] == [(4, 64), (1, 128), (2, 96), (4, 64)]
    assert all(torch.equal(plain[t][0], turns[t][0]) for t in (0, 3))
    run = TrainConfig(data=str(folder), crop=64, batch_size=4, crop_turns="128:1, 96:2", seed=3)
    assert crop_batches(run, 3).sizes == turns.sizes and torch.equal(crop_batches(run, 3)[1][0], turns[1][0])


def test_zoom_min_fixes_the_factor_and_allows_crops_larger_than_the_images(data_dir):
    """zoom_min = zoom = 2: every crop is a window of crop / 2 enlarged, so a 1024² crop of a 512² face is the whole
    face enlarged twice; a factor that leaves the window larger than the image is refused with a message."""
    from bdflow.data import CropBatches

    folder = data_dir / "faces" / "val"
    whole = CropBatches(folder, 1024, 1, zoom=2.0, zoom_min=2.0)
    x, _ = whole[0]
    assert x.shape == (1, 3, 1024, 1024) and torch.equal(x, (x * 255).round() / 255)
    with pytest.raises(ValueError, match=r"smaller than the crop 1024 at zoom 1\.\d+"):
        CropBatches(folder, 1024, 1, zoom=2.0)[0]  # factors from 1: windows of up to 1024 px of a 512² face
    with pytest.raises(ValueError, match=r"zoom_min must be in \[1, zoom = 2\]"):
        CropBatches(folder, 64, 4, zoom=2.0, zoom_min=3.0)

"""The app's engine without Gradio: forward_image/quantize, the cache, toggles, numbers."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from bdflow import BDFlow, BDFlowConfig, Rescaler, bam
from bdflow.accel import default_precision
from bdflow.demo import (FIGURE_PANELS, Demo, Toggles, fit_side, jpeg_round_trip, model_label, model_sources,
                         scores_markdown)
from tests.helpers import perturb_, small_face, tiny_checkpoints


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    tiny_checkpoints(root)
    (root / "not-a-checkpoint").mkdir()
    return root


@pytest.fixture(scope="module")
def demo(ckpts):
    return Demo.from_checkpoints(ckpts, max_side=96, device="cpu")


@pytest.fixture(scope="module")
def image(face_paths, tmp_path_factory):
    return small_face(face_paths[2], (80, 72), tmp_path_factory.mktemp("img") / "face.png")


def test_forward_image_then_quantize_equals_encode(demo, image):
    r = demo.rescaler("×8")
    f = r.forward_image(image)
    y, b, z, meta = f.y, f.b, f.z, f.meta
    assert y.shape == (1, 3, 9, 10) and b.shape == (1, 1, 9, 10) and z.shape == (1, r.model.config.z_channels, 9, 10)
    for bits in (1, 3):
        enc, ref = Rescaler.quantize(y, b, bits, meta), r.encode(image, bits=bits)
        assert np.array_equal(enc.y, ref.y) and np.array_equal(enc.b, ref.b) and enc.meta == ref.meta


def test_models_found_and_labelled(demo, ckpts, monkeypatch):
    assert demo.labels == ["×8", "×8 without B (IRN-style twin)"]  # with-B models first
    assert demo.rescaler("x8") is demo.rescaler("×8")
    with pytest.raises(ValueError, match="unknown model"):
        demo.rescaler("×64")
    assert model_label({"scale": 16, "boundary": False}) == "×16 without B (IRN-style twin)"
    monkeypatch.setenv("BDFLOW_MODELS", "org/a, org/b")
    assert model_sources(ckpts) == ["org/a", "org/b"]
    monkeypatch.delenv("BDFLOW_MODELS")
    assert model_sources(ckpts) == [str(ckpts / "face-x8"), str(ckpts / "face-x8-noB")]
    with pytest.raises(ValueError, match="no checkpoints found"):
        Demo({})


def test_analysis_cached_and_decode_only_reruns_inverse(demo, image, monkeypatch):
    an = demo.analyse(image, "×8")
    assert demo.analyse(str(image), "x8") is an  # same content and model: the forward pass is not repeated
    calls = []
    model = demo.rescaler("×8").model
    monkeypatch.setattr(model, "forward", lambda *a: calls.append(1))
    a = demo.decode(an, bits=1, tau=0.8, seed=0)
    b = demo.decode(an, bits=2, tau=0.3, seed=5)
    assert calls == []  # bits, tau and seed never run the encoder
    assert demo.decode(an, bits=1, tau=0.8, seed=0) is a
    assert not torch.equal(a.x_hat, b.x_hat)
    assert a.x_hat.shape == an.x.shape == (1, 3, 72, 80)
    assert a.b_bytes == 90 * 1 // 8 + 1 and b.b_bytes == 90 * 2 // 8 + 1 and a.y_bytes == 270


def test_tau_zero_is_deterministic_and_seed_reproducible(demo, image):
    an = demo.analyse(image, "×8")
    assert torch.equal(demo.decode(an, tau=0, seed=1).x_hat, demo.decode(an, tau=0, seed=2).x_hat)
    d = demo.diversity(an, tau=0, samples=3)
    assert d.shape == (72, 80) and d.max() == 0
    assert demo.diversity(an, tau=1.0, samples=3).mean() > 0


def test_tau_b_is_where_the_diversity_map_goes_dark(demo, image):
    """Toggles(tau_b): Z at a share of tau in B's boundary cells. At 0 (the default) the map is darker inside B's
    cells than with the paper's 1; decodes are cached apart; dropping B leaves nothing to gate."""
    an = demo.analyse(image, "×8")
    cells = np.kron(demo.stored(an, 1).enc.b > 0, np.ones((8, 8), bool))[:72, :80]
    gated, paper = (demo.diversity(an, tau=1.0, samples=3, toggles=Toggles(tau_b=t)) for t in (0.0, 1.0))
    assert cells.any() and gated[cells].mean() < paper[cells].mean()
    assert not torch.equal(demo.decode(an, tau=1.0, toggles=Toggles(tau_b=1.0)).x_hat, demo.decode(an, tau=1.0).x_hat)
    dropped = (demo.diversity(an, tau=1.0, samples=3, toggles=Toggles(drop_b=True, tau_b=t)) for t in (0.0, 1.0))
    assert np.array_equal(*dropped)


def test_toggles_change_what_the_decoder_gets(demo, image):
    an = demo.analyse(image, "×8")
    s = demo.stored(an, 2)
    plain, y_bytes, b_bytes, notes = s.enc, s.y_bytes, s.b_bytes, s.notes
    assert notes == [] and y_bytes == plain.y.size and b_bytes == 23
    bic = demo.stored(an, 2, Toggles(bicubic_lr=True)).enc
    assert np.array_equal(bic.y, an.bicubic_lr) and np.array_equal(bic.b, plain.b)
    s = demo.stored(an, 2, Toggles(jpeg_quality=30))
    jpg, jpg_bytes, notes = s.enc, s.y_bytes, s.notes
    assert jpg.y.shape == plain.y.shape and 0 < jpg_bytes and "JPEG q30" in notes[0]
    s = demo.stored(an, 2, Toggles(drop_b=True))
    nob, zero, notes = s.enc, s.b_bytes, s.notes
    assert zero == 0 and not nob.b.any() and notes == ["B dropped (all zeros)"]
    twin = demo.analyse(image, "×8 without B (IRN-style twin)")
    s = demo.stored(twin, 2, Toggles(drop_b=True))
    enc, b_bytes, notes = s.enc, s.b_bytes, s.notes
    assert enc.b is None and b_bytes == 0 and notes == ["this model has no B to drop"]
    assert demo.decode(twin, bits=3).b_bytes == 0
    with pytest.raises(ValueError, match="JPEG quality"):
        Toggles(jpeg_quality=0)


def test_scores_and_table(demo, image):
    an = demo.analyse(image, "×8")
    dec = demo.decode(an, bits=1, tau=0.5, seed=0)
    s = demo.scores(an, dec)
    assert set(s["reconstruction"]) == {"psnr", "ssim", "lpips"} and s["bicubic"]["psnr"] > 15
    assert s["bytes"] == s["bytes_y"] + s["bytes_b"] == 270 + 12
    assert s["bits_per_hr_pixel"] == pytest.approx(8 * 282 / (72 * 80))
    json.dumps(s)  # the API returns it as JSON
    table = scores_markdown(s)
    assert "reconstruction" in table and "bicubic round trip" in table and "270 (Y) + 12 (B)" in table
    assert "…" in scores_markdown(None, dec)


def test_large_input_downscaled_with_note_and_bad_input_refused(demo, face_paths, tmp_path):
    big = tmp_path / "big.png"
    Image.open(face_paths[0]).convert("RGB").resize((300, 200)).save(big)
    an = demo.analyse(big, "×8")
    assert an.x.shape[-2:] == (64, 96) and "downscaled the 300x200 input to 96x64" in an.notes[-1]
    x, note = fit_side(torch.rand(1, 3, 50, 40), 64)
    assert note is None and x.shape == (1, 3, 50, 40)
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(ValueError, match="not an image Pillow can read"):
        demo.analyse(bad, "×8")
    with pytest.raises(ValueError, match="no such image file"):
        demo.analyse(tmp_path / "missing.png", "×8")
    with pytest.raises(ValueError, match="needs at least 8x8"):
        demo.analyse(np.zeros((5, 30, 3), np.uint8), "×8")
    # a long thin upload is named at the size it was uploaded at, and the downscaling that made it too small
    with pytest.raises(ValueError, match=r"the image is 2000x12 \(downscaled to 96x1: the app's limit is 96 px per "
                                         r"side\): at ×8 it needs at least 8x8 pixels"):
        demo.analyse(np.zeros((12, 2000, 3), np.uint8), "×8")
    an = demo.analyse(np.full((10, 10, 3), 128, np.uint8), "×8")
    tiny_scores = demo.scores(an, demo.decode(an))["reconstruction"]  # too small for SSIM: NaN, no error
    assert np.isnan(tiny_scores["ssim"]) and not np.isnan(tiny_scores["psnr"])
    assert np.isfinite(tiny_scores["lpips"]) or "lpips_note" in tiny_scores
    for bad_tau in (-1, float("nan"), "a"):
        with pytest.raises(ValueError, match="tau must be"):
            demo.decode(an, tau=bad_tau)
    for bad_seed in (-1, 1.5, None):
        with pytest.raises(ValueError, match="seed must be"):
            demo.decode(an, seed=bad_seed)
    with pytest.raises(ValueError, match="bits must be"):
        demo.decode(an, bits=5)


def test_jpeg_round_trip_smaller_than_raw():
    rng = np.random.default_rng(0)
    y8 = (np.linspace(0, 255, 32 * 32 * 3).reshape(32, 32, 3) + rng.normal(0, 2, (32, 32, 3))).clip(0, 255).astype(np.uint8)
    out, nbytes = jpeg_round_trip(y8, 50)
    assert out.shape == y8.shape and out.dtype == np.uint8 and nbytes < y8.size


def test_bam_panel_uses_the_models_bam_settings(tmp_path, image):
    """The 'BAM of the HR' panel is the BAM the model was trained with (its T, sigma and norm), not the default T."""
    config = BDFlowConfig(scale=8, hidden=8, bam_threshold=20.0, bam_sigma=1.5, bam_norm=1)
    perturb_(BDFlow(config), std=0.01).save_pretrained(tmp_path / "face-x8-t20")
    an = Demo.from_sources([str(tmp_path / "face-x8-t20")], max_side=96, device="cpu").analyse(image, "×8")
    own = bam(an.x, sigma=1.5, norm=1, threshold=20.0, bits=1)[0, 0].numpy() > 0
    default = bam(an.x, bits=1)[0, 0].numpy() > 0
    assert not np.array_equal(own, default)  # the settings matter on this face
    assert np.array_equal(an.edges, own)


BF16 = pytest.mark.skipif(default_precision() != "bf16", reason="bf16 needs a CPU with AVX512-BF16")
PRECISIONS = ["fp32", pytest.param("bf16", marks=BF16)]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_level_view_and_figure_at_each_precision(ckpts, image, precision):
    """The level view is recorded on the network that runs (the bf16 copy at bf16), so it and the figure that
    holds it exist at both precisions, and its last level is the Y that was decoded from."""
    demo = Demo.from_checkpoints(ckpts, max_side=96, device="cpu", precision=precision)
    an = demo.analyse(image, "×8")
    assert [v.index for v in an.levels] == [1, 2, 3]
    np.testing.assert_allclose(an.levels[-1].after_low, an.y[0, :, :9, :10].permute(1, 2, 0).numpy(), atol=1e-6)
    panels = demo.figure_panels(an, demo.decode(an), 1)
    assert list(panels) == list(FIGURE_PANELS) and panels["level by level"].ndim == 3

"""The Rescaler API: sizes, type families, conversions and clear errors for bad input."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from bdflow import BDFlow, BDFlowConfig, Encoded, LossConfig, Rescaler
from bdflow.hub import weights_digest
from bdflow.image_io import load_image, to_output
from tests.helpers import perturb_, tiny_checkpoint


@pytest.fixture(scope="module")
def rescaler(tmp_path_factory) -> Rescaler:
    folder = tmp_path_factory.mktemp("ckpt") / "tiny-x8"
    perturb_(BDFlow(BDFlowConfig(scale=8, hidden=8)), std=0.01).save_pretrained(folder)
    return Rescaler.from_pretrained(folder, max_pixels=1024 * 1024, device="cpu")


@pytest.fixture(scope="module")
def face_pil(face_paths) -> Image.Image:
    return Image.open(face_paths[1]).convert("RGB")


@pytest.mark.slow
@pytest.mark.parametrize("size", [(512, 512), (100, 37), (8, 8), (333, 250)])
def test_any_size_padded_and_cropped_back(rescaler, face_pil, size):
    img = face_pil.resize(size)
    enc = rescaler.encode(img, bits=2)
    h8, w8 = -(-size[1] // 8), -(-size[0] // 8)
    assert enc.y.shape == (h8, w8, 3) and enc.y.dtype == np.uint8
    assert enc.b.shape == (h8, w8) and enc.b.max() <= 3
    out = rescaler.decode(enc, tau=0.8, seed=0)
    assert isinstance(out, Image.Image) and out.size == size and out.mode == "RGB"


@pytest.mark.slow
def test_decode_reproducible_per_seed_and_tau_zero_is_deterministic(rescaler, face_pil):
    enc = rescaler.encode(face_pil)
    a, b, c = (np.asarray(rescaler.decode(enc, tau=1.0, seed=s)) for s in (3, 3, 4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(np.asarray(rescaler.decode(enc, tau=0, seed=1)), np.asarray(rescaler.decode(enc, tau=0, seed=2)))


def test_decode_samples_z_at_the_share_tau_b_of_tau_in_bs_boundary_cells(rescaler, face_pil, tmp_path):
    """The default tau_b = 0 keeps Z at its mean in B's boundary cells: a decode that differs from the paper's
    sampling (tau_b = 1) only where the stored B is set; the same Z as inverse(y, b, sample_z(...)) by hand; a
    model without B samples the paper's way whatever tau_b."""
    from bdflow.flow import sample_z
    from bdflow.limits import DEFAULT_TAU_B

    enc = rescaler.encode(face_pil.resize((128, 128)), bits=1)
    assert DEFAULT_TAU_B == 0 and enc.b.any() and not enc.b.all()
    y, b = rescaler.stored_tensors(enc)
    z = sample_z(y, rescaler.model.config.z_channels, 0.8, torch.Generator().manual_seed(5), b, 0.0)
    assert torch.equal(z[b.expand_as(z) > 0], torch.zeros(int((b > 0).sum()) * z.shape[1]))
    by_hand = rescaler.net.inverse(y, b, z).clamp(0, 1)
    assert torch.equal(rescaler.decode(enc, tau=0.8, seed=5, output_type="pt"), by_hand)
    paper = rescaler.decode(enc, tau=0.8, seed=5, output_type="pt", tau_b=1.0)
    assert not torch.equal(paper, by_hand)
    assert torch.equal(rescaler.decode(enc, tau=0, output_type="pt", tau_b=1.0), rescaler.decode(enc, tau=0, output_type="pt"))
    twin = Rescaler.from_pretrained(tiny_checkpoint(tmp_path / "twin", boundary=False), device="cpu")
    enc = twin.encode(face_pil.resize((64, 64)))
    assert torch.equal(twin.decode(enc, tau=0.8, output_type="pt"), twin.decode(enc, tau=0.8, output_type="pt", tau_b=1.0))


@pytest.mark.parametrize("tau_train, expected", [(0.0, 0.0), (0.5, 0.5), (1.0, 0.8)])
def test_default_tau_is_the_training_tau_at_most_0_8(face_pil, tau_train, expected):
    """A checkpoint without a recorded default tau decodes at the tau it was trained at (the paper's tau_train = 1
    keeps the paper's 0.8)."""
    r = Rescaler(perturb_(BDFlow(BDFlowConfig(scale=8, hidden=8), LossConfig(tau_train=tau_train)), std=0.01), device="cpu")
    enc = r.encode(face_pil.resize((64, 64)))
    assert r.default_tau == expected
    assert np.array_equal(np.asarray(r.decode(enc, seed=3)), np.asarray(r.decode(enc, tau=expected, seed=3)))


def test_default_tau_is_the_checkpoints_own(tmp_path, face_pil):
    """Training records the tau it validated at (meta "default_tau"); decode, the app and the CLI start from it."""
    perturb_(BDFlow(BDFlowConfig(scale=8, hidden=8)), std=0.01).save_pretrained(tmp_path / "m", meta={"default_tau": 0.6})
    r = Rescaler.from_pretrained(tmp_path / "m")
    enc = r.encode(face_pil.resize((64, 64)))
    assert r.default_tau == 0.6
    assert np.array_equal(np.asarray(r.decode(enc, seed=3)), np.asarray(r.decode(enc, tau=0.6, seed=3)))


def test_lossless_at_identity_weights(face_pil):
    """A fresh flow is the Haar pyramid: with the true Z it is exact; the pipeline's tau=0 decode is the box-mean upsampling."""
    r = Rescaler(BDFlow(BDFlowConfig(scale=4, hidden=8)), device="cpu")
    x = torch.from_numpy(np.asarray(face_pil, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    y, b, z = r.model(x)
    assert (r.model.inverse(y, b, z) - x).abs().max() < 1e-5


@pytest.mark.parametrize(
    "array, dtype",
    [
        (np.full((40, 24, 3), 200, np.uint8), np.uint8),
        (np.full((40, 24), 40000, np.uint16), np.uint16),
        (np.full((40, 24, 1), 0.25, np.float32), np.float32),
        (np.zeros((40, 24, 4), np.uint8), np.uint8),
    ],
)
def test_ndarray_in_same_family_out(rescaler, array, dtype):
    out = rescaler.decode(rescaler.encode(array), tau=0)
    assert isinstance(out, np.ndarray) and out.dtype == dtype and out.shape == (40, 24, 3)


def _saved(img: Image.Image, tmp_path, name: str, **kw) -> str:
    path = tmp_path / name
    img.save(path, **kw)
    return str(path)


def test_modes_are_converted_with_notes(rescaler, face_pil, tmp_path):
    small = face_pil.resize((64, 48))
    cases = {
        "gray.png": small.convert("L"),
        "palette.png": small.convert("P"),
        "rgba.png": small.convert("RGBA"),
        "gray16.png": Image.fromarray((np.asarray(small.convert("L"), np.uint16) * 257)),
    }
    for name, img in cases.items():
        enc = rescaler.encode(_saved(img, tmp_path, name))
        assert enc.meta["notes"], name
        assert rescaler.decode(enc, tau=0).size == (64, 48)


def test_rgba_composited_on_white():
    identity = Rescaler(BDFlow(BDFlowConfig(scale=8, hidden=8)), device="cpu")  # Y is the 8x8 box mean
    rgba = np.zeros((16, 16, 4), np.uint8)  # fully transparent black
    enc = identity.encode(Image.fromarray(rgba, "RGBA"))
    assert enc.y.min() == 255  # white, not black


def test_exif_rotation_applied(rescaler, face_pil, tmp_path):
    img = face_pil.resize((64, 32))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    enc = rescaler.encode(_saved(img, tmp_path, "rot.jpg", exif=exif))
    assert enc.meta["size"] == [64, 32] and "EXIF" in " ".join(enc.meta["notes"])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b"not an image at all"), "not an image"),
        (lambda p: p.write_bytes(_jpeg_bytes()[:300]), "truncated or corrupt"),
        (lambda p: None, "no such image file"),
    ],
)
def test_bad_files(rescaler, tmp_path, make, message):
    path = tmp_path / "bad.jpg"
    make(path)
    with pytest.raises(ValueError, match=message):
        rescaler.encode(path)


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def test_bad_inputs_have_clear_messages(rescaler, face_pil):
    with pytest.raises(ValueError, match="smaller than one LR pixel"):
        rescaler.encode(np.zeros((7, 20, 3), np.uint8))
    with pytest.raises(ValueError, match="above the limit"):
        rescaler.encode(Image.new("RGB", (2048, 1024)))
    with pytest.raises(ValueError, match="bits must be an integer from 1 to 4"):
        rescaler.encode(face_pil, bits=5)
    with pytest.raises(ValueError, match="expected an image path"):
        rescaler.encode(12345)
    with pytest.raises(ValueError, match=r"float image must hold finite values in \[0, 1\]"):
        rescaler.encode(np.full((16, 16, 3), 2.0, np.float32))
    with pytest.raises(ValueError, match=r"\(H,W\)"):
        rescaler.encode(np.zeros((16, 16, 5), np.uint8))
    enc = rescaler.encode(face_pil)
    with pytest.raises(ValueError, match="tau must be"):
        rescaler.decode(enc, tau=-0.5)
    with pytest.raises(ValueError, match="tau must be"):
        rescaler.decode(enc, tau=float("nan"))


def test_decompression_bomb_refused(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (6000, 6000)).save(path)  # tiny file, 36 M pixels
    r = Rescaler(BDFlow(BDFlowConfig(scale=8, hidden=8)), max_pixels=10_000_000, device="cpu")
    with pytest.raises(ValueError, match="above the limit"):
        r.encode(path)


def test_encoded_validated_on_decode(rescaler, face_pil):
    enc = rescaler.encode(face_pil)
    with pytest.raises(ValueError, match="Encoded.y"):
        rescaler.decode(Encoded(y=enc.y.astype(np.float32), b=enc.b, bits=1, meta=enc.meta))
    with pytest.raises(ValueError, match="Encoded.b"):
        rescaler.decode(Encoded(y=enc.y, b=None, bits=1, meta=enc.meta))
    with pytest.raises(ValueError, match="exceed"):
        rescaler.decode(Encoded(y=enc.y, b=np.full_like(enc.b, 9), bits=2, meta=enc.meta))
    assert enc.nbytes == enc.y.size + enc.b.size // 8


@pytest.mark.slow
def test_a_loaded_tensor_encodes_as_its_file_and_decode_gives_each_output_type(rescaler, face_paths):
    """forward_image/encode take an already loaded tensor (no round trip through a file); decode's output_type."""
    path = face_paths[3]
    x, _ = load_image(path)
    from_file, from_tensor = rescaler.encode(path, bits=2), rescaler.encode(x, bits=2)
    assert np.array_equal(from_file.y, from_tensor.y) and np.array_equal(from_file.b, from_tensor.b)
    assert from_tensor.meta["kind"] == "pt" and from_file.meta["kind"] == "pil"
    pt = rescaler.decode(from_file, tau=0.8, seed=1, output_type="pt")
    assert isinstance(pt, torch.Tensor) and pt.shape == x.shape and pt.dtype == torch.float32
    assert torch.equal(rescaler.decode(from_tensor, tau=0.8, seed=1), pt)  # a tensor in, a tensor out
    pil = rescaler.decode(from_file, tau=0.8, seed=1)
    assert isinstance(pil, Image.Image) and np.array_equal(np.asarray(pil), to_output(pt, "ndarray", "uint8"))
    arr = rescaler.decode(from_file, tau=0.8, seed=1, output_type="np")
    assert arr.dtype == np.uint8 and np.array_equal(arr, np.asarray(pil))
    assert rescaler.decode(from_tensor, tau=0.8, seed=1, output_type="np").dtype == np.float32
    with pytest.raises(ValueError, match="output_type must be one of pil, np, pt"):
        rescaler.decode(from_file, output_type="tensor")
    for bad, message in ((x[:, :2], r"\(3,H,W\) or \(1,3,H,W\)"), (x * 2, r"in \[0, 1\]"), ((x * 255).byte(), "floating")):
        with pytest.raises(ValueError, match=message):
            rescaler.encode(bad)


def test_encoded_to_tensors_is_what_the_decoder_reads(rescaler, face_pil):
    enc = rescaler.encode(face_pil.resize((40, 24)), bits=3)
    y, b = enc.to_tensors()
    assert torch.equal(y, torch.from_numpy(enc.y).permute(2, 0, 1)[None].float() / 255)
    assert torch.equal(b, torch.from_numpy(enc.b)[None, None].float() / 7)
    y_r, b_r = rescaler.stored_tensors(enc)
    assert torch.equal(y_r, y) and torch.equal(b_r, b)
    assert Encoded(y=enc.y, b=None, bits=1).to_tensors()[1] is None


def test_model_declares_meta_name_and_a_cached_weights_digest(tmp_path):
    model = perturb_(BDFlow(BDFlowConfig(scale=8, hidden=8)), std=0.01)
    assert model.meta == {} and model.name is None
    digest = model.weights_digest()
    assert digest == weights_digest(model.state_dict()) and model.weights_digest() is digest
    model.save_pretrained(tmp_path / "tiny-x8", meta={"notes": "n"})
    loaded = BDFlow.from_pretrained(tmp_path / "tiny-x8")
    assert loaded.meta == {"notes": "n"} and loaded.name == "tiny-x8" and loaded.weights_digest() == digest

"""bf16 inference (bdflow.accel): close to the fp32 reference on a real face with a shipped checkpoint, still
invertible, and the reference model left untouched."""

import platform
import sys

import pytest
import torch
from torch import nn

from bdflow import BDFlow, Rescaler
from bdflow.accel import accelerate, keep_freed_memory
from bdflow.evaluate import to_8bit
from bdflow.metrics import psnr_y
from tests.helpers import REPO

CKPT = REPO / "checkpoints" / "face-x8"
needs_bf16 = pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="no oneDNN bf16 on this CPU")


@pytest.fixture(scope="module")
def model() -> BDFlow:
    return BDFlow.from_pretrained(CKPT)


def test_fp32_is_the_model_itself(model):
    assert accelerate(model, "fp32") is model
    with pytest.raises(ValueError, match="precision"):
        accelerate(model, "fp16")


@needs_bf16
@torch.inference_mode()
def test_bf16_round_trip_is_invertible_and_leaves_the_model_alone(model, face):
    x = face[..., :256, :256]
    net = accelerate(model, "bf16")
    y, b, z = net(x)
    assert y.dtype == b.dtype == z.dtype == torch.float32
    # the state stays float32, but an inverse subnet input that differs from the forward one by float32 rounding
    # can round to another bf16 value: invertible to ~60 dB, not to float32 rounding (the fp32 path: > 120 dB)
    assert psnr_y(net.inverse(y, b, z).clamp(0, 1), x, border=0) > 50
    assert all(m.weight.dtype == torch.float32 for m in model.modules() if isinstance(m, nn.Conv2d))
    assert not any(type(m).__name__.startswith("Mkldnn") for m in model.modules())


@pytest.mark.slow
@needs_bf16
def test_bf16_decode_agrees_with_fp32_on_a_real_face(face):
    hwc = face[0].permute(1, 2, 0).numpy()
    exact = Rescaler.from_pretrained(CKPT, device="cpu")
    fast = Rescaler.from_pretrained(CKPT, device="cpu", precision="bf16")
    enc = exact.encode(hwc)
    enc_fast = fast.encode(hwc)
    diff = abs(enc.y.astype(int) - enc_fast.y)
    assert diff.max() <= 2 and diff.mean() < 0.2  # Y: at most 2 of 255 levels apart, ~0.1 on average
    a = to_8bit(exact.decode(enc, tau=0.8, seed=0, output_type="pt"))
    b = to_8bit(fast.decode(enc, tau=0.8, seed=0, output_type="pt"))
    assert psnr_y(b, a, border=8) > 45  # measured ~56 dB on faces/val; the decode against the HR is ~27 dB
    assert abs(psnr_y(b, face, border=8) - psnr_y(a, face, border=8)) < 0.05


def test_keep_freed_memory_is_safe_to_call_and_leaves_results_alone(model, face):
    with torch.inference_mode():
        before = model.inverse(*model(face))
        applied = keep_freed_memory()
        after = model.inverse(*model(face))
    assert isinstance(applied, bool) and torch.equal(before, after)
    assert applied == (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc")

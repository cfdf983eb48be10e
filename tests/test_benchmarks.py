"""The benchmarks' own parts: IRN's re-created x8 architecture (size, invertibility) and the CUDA path of
benchmarks/speed.py (run where a GPU is present, a clear refusal without one). No timing is asserted here."""

import subprocess
import sys

import pytest
import torch

from bdflow import BDFlow
from bdflow.accel import accelerate
from tests.helpers import REPO, perturb_

sys.path.insert(0, str(REPO / "benchmarks"))
from irn_peer import IRN  # noqa: E402

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


@pytest.mark.slow
def test_irn_peer_is_the_published_x8_size_and_invertible(face):
    torch.manual_seed(0)  # the default init is random; in float32 its round trip error ranged up to ~1e-4 (a CI flake)
    peer = perturb_(IRN(scale=8), std=0.01).eval().double()
    assert round(sum(p.numel() for p in peer.parameters()) / 1e6, 2) == 11.12
    assert sum(len(blocks) for blocks in peer.levels) == 24
    x = face[..., :64, :64].double()
    with torch.inference_mode():
        u = peer(x)
        assert u.shape == (1, 192, 8, 8)
        assert (peer.inverse(u) - x).abs().max() < 1e-9


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_speed_refuses_cuda_clearly_without_one():
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "speed.py"), "--device", "cuda"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "no CUDA device" in done.stderr and "Traceback" not in done.stderr


@needs_cuda
@torch.inference_mode()
def test_cuda_bf16_round_trip(face):
    model = BDFlow.from_pretrained(REPO / "checkpoints" / "face-x8").cuda()
    x = face.cuda()
    net = accelerate(model, "bf16", "cuda")
    y, b, z = net(x)
    x_fast = net.inverse(y, b, z)
    assert 10 * torch.log10(1 / (x_fast - x).pow(2).mean()) > 50


@needs_cuda
def test_speed_runs_on_cuda():
    cmd = [sys.executable, str(REPO / "benchmarks" / "speed.py"), "--device", "cuda", "--scales", "64", "--sizes",
           "1024", "--repeats", "2", "--no-train"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "| x64 |" in done.stdout and "paper time" in done.stdout

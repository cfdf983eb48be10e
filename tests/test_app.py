"""The Gradio app through gradio_client (issue: app §2, §4-6): every named endpoint, the error path, Hub loading."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import app as app_module
from bdflow import BDFlow, BDFlowConfig
from bdflow.demo import Demo
from tests.conftest import REPO, perturb_

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_checkpoints(root: Path) -> list[str]:
    perturb_(BDFlow(BDFlowConfig(scale=8, hidden=8)), std=0.01).save_pretrained(root / "face-x8")
    perturb_(BDFlow(BDFlowConfig(scale=8, hidden=8, boundary=False)), std=0.01, seed=1).save_pretrained(root / "face-x8-noB")
    return [str(root / "face-x8"), str(root / "face-x8-noB")]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The real app (build + queue settings + launch settings) on tiny ×8 models, on a free localhost port."""
    root = tmp_path_factory.mktemp("app")
    demo = Demo.from_sources(tiny_checkpoints(root / "checkpoints"), max_side=128, device="cpu")
    examples = root / "examples"
    examples.mkdir()
    shutil.copy(REPO / "assets" / "church.jpg", examples / "church.jpg")
    blocks = app_module.configure(app_module.build(demo, examples_dir=examples))
    port = free_port()
    blocks.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                  **app_module.launch_kwargs())
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        blocks.close()


@pytest.fixture(scope="module")
def client(server):
    return Client(server, verbose=False)


@pytest.fixture(scope="module")
def face(face_paths, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("in") / "face.png"
    Image.open(face_paths[3]).convert("RGB").resize((96, 80)).save(path)
    return str(path)


def read(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_named_endpoints_listed(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/encode", "/decode", "/scores", "/diversity"} <= names


def test_encode(client, face):
    edges, zhist, notes = client.predict(handle_file(face), "×8", api_name="/encode")
    assert read(edges).shape == (80, 96, 3) and set(np.unique(read(edges))) <= {0, 255}
    assert read(zhist).ndim == 3
    assert "HR 96×80" in notes and "LR 12×10" in notes


def test_decode_moves_with_tau_bits_seed(client, face):
    def run(**kw):
        lr, lr_big, b, (rec, hr), bicubic, table = client.predict(image=handle_file(face), model="x8",
                                                                  api_name="/decode", **kw)
        assert read(lr).shape == (10, 12, 3) and read(lr_big).shape == read(hr).shape == (80, 96, 3)
        assert read(bicubic).shape == (80, 96, 3) and "3 bytes" not in table
        return read(rec), read(b), table

    rec, b1, table = run(tau=0.8, seed=0)
    assert "360 (Y) + 15 (B)" in table  # 12x10x3 bytes of Y, 120 one-bit codes
    rec_tau, _, _ = run(tau=0.2, seed=0)
    rec_seed, _, _ = run(tau=0.8, seed=7)
    _, b3, table3 = run(tau=0.8, seed=0, bits=3)
    assert not np.array_equal(rec, rec_tau) and not np.array_equal(rec, rec_seed)
    assert "(Y) + 45 (B)" in table3 and b1.shape == b3.shape == (80, 96, 3)
    rec_again, _, _ = run(tau=0.8, seed=0)
    assert np.array_equal(rec, rec_again)


def test_scores_and_toggles(client, face):
    _, plain = client.predict(image=handle_file(face), model="×8", tau=0.5, api_name="/scores")
    table, s = client.predict(image=handle_file(face), model="×8", tau=0.5, jpeg_on=True, jpeg_q=20, drop_b=True,
                              bicubic_lr=True, api_name="/scores")
    assert set(plain["reconstruction"]) == {"psnr", "ssim", "lpips"} and plain["bytes_b"] == 15
    assert s["bytes_b"] == 0 and s["bytes_y"] != plain["bytes_y"] and s["reconstruction"] != plain["reconstruction"]
    assert "B dropped" in table and "JPEG q20" in table and "bicubic LR" in table
    _, twin = client.predict(image=handle_file(face), model="×8 without B (IRN-style twin)", api_name="/scores")
    assert twin["bytes_b"] == 0


def test_diversity(client, face):
    img, caption = client.predict(image=handle_file(face), model="×8", tau=1.0, samples=3, api_name="/diversity")
    assert read(img).shape == (80, 96, 3) and "std over 3 samples" in caption


def test_large_image_downscaled_with_notice(client, face_paths, tmp_path):
    big = tmp_path / "big.png"
    Image.open(face_paths[0]).convert("RGB").resize((256, 200)).save(big)
    edges, _, notes = client.predict(handle_file(big), "×8", api_name="/encode")
    assert read(edges).shape == (100, 128, 3) and "downscaled the 256x200 input to 128x100" in notes


@pytest.mark.parametrize("kind, kwargs, message", [
    ("text", {}, "bad.png is not an image Pillow can read"),
    ("truncated", {}, "truncated or corrupt"),
    ("face", {"model": "×64"}, "unknown model '×64'"),
    ("face", {"tau": -1.0}, "tau must be between 0 and 10"),
    ("tiny", {}, "needs at least 8x8 pixels"),
])
def test_errors_reach_the_client_as_messages(client, face, tmp_path, kind, kwargs, message):
    path = tmp_path / "bad.png"
    if kind == "text":
        path.write_text("this is not an image")
    elif kind == "truncated":
        data = Path(face).read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif kind == "tiny":
        Image.new("RGB", (4, 4)).save(path)
    else:
        path = Path(face)
    endpoint = "/decode" if kwargs else "/encode"
    args = {"model": "×8", **kwargs}
    with pytest.raises(AppError, match=message) as err:
        client.predict(image=handle_file(path), api_name=endpoint, **args)
    assert "Traceback" not in str(err.value)


def test_loads_from_a_hub_repo_id_offline(tmp_path, monkeypatch):
    """BDFLOW_MODELS names a repo id; the app resolves it from a pre-populated Hugging Face cache, offline."""
    from huggingface_hub import constants

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    src = tiny_checkpoints(tmp_path / "src")[0]
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--bdflow-test--face-x8"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(src, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("BDFLOW_MODELS", "bdflow-test/face-x8")
    blocks = app_module.create()
    assert blocks is not None
    demo = Demo.from_sources(["bdflow-test/face-x8"], device="cpu")
    assert demo.labels == ["×8"] and demo.rescaler("×8").scale == 8
    monkeypatch.setenv("BDFLOW_MODELS", "bdflow-test/not-cached")
    with pytest.raises(FileNotFoundError, match="not in the Hugging Face cache"):
        app_module.create()

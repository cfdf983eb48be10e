"""The Gradio app through gradio_client: every named endpoint, the error path, Hub loading."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import app as app_module
from bdflow import viz
from bdflow.accel import default_precision
from bdflow.demo import Demo
from tests.helpers import REPO, free_port, tiny_checkpoints

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402


def serve(root: Path, precision: str = "fp32"):
    """The real app (build + queue settings + launch settings) on tiny ×8 models at ``precision``, on a free
    localhost port: (its URL, the Blocks to close)."""
    demo = Demo.from_sources(tiny_checkpoints(root / "checkpoints"), max_side=128, device="cpu", precision=precision)
    examples = root / "examples"
    examples.mkdir()
    shutil.copy(REPO / "assets" / "church.jpg", examples / "church.jpg")
    blocks = app_module.configure(app_module.build(demo, examples_dir=examples))
    port = free_port()
    blocks.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                  **app_module.launch_kwargs())
    return f"http://127.0.0.1:{port}/", blocks


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    url, blocks = serve(tmp_path_factory.mktemp("app"))
    try:
        yield url
    finally:
        blocks.close()


@pytest.fixture(scope="module")
def client(server):
    return Client(server, verbose=False)


@pytest.fixture(scope="module")
def bf16_client(tmp_path_factory):
    """The same app with the subnets in bf16 (the app's default where the CPU has AVX512-BF16)."""
    url, blocks = serve(tmp_path_factory.mktemp("app-bf16"), "bf16")
    try:
        yield Client(url, verbose=False)
    finally:
        blocks.close()


BF16 = pytest.mark.skipif(default_precision() != "bf16", reason="bf16 needs a CPU with AVX512-BF16")
PRECISION_CLIENTS = ["client", pytest.param("bf16_client", marks=BF16)]


@pytest.fixture(scope="module")
def face(face_paths, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("in") / "face.png"
    Image.open(face_paths[3]).convert("RGB").resize((96, 80)).save(path)
    return str(path)


def read(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def unframed(img: np.ndarray, px: int = 2) -> np.ndarray:
    """A map panel without its frame, after checking the frame is there."""
    border = np.concatenate([img[:px].reshape(-1, 3), img[-px:].reshape(-1, 3), img[:, :px].reshape(-1, 3),
                             img[:, -px:].reshape(-1, 3)])
    assert (border == viz.FRAME_RGB).all()
    return img[px:-px, px:-px]


def test_named_endpoints_listed(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/encode", "/decode", "/scores", "/diversity", "/levels", "/swap", "/figure"} <= names


def test_encode(client, face):
    edges, zhist, notes = client.predict(handle_file(face), "×8", api_name="/encode")
    edges = unframed(read(edges))
    assert edges.shape == (80, 96, 3) and set(np.unique(edges)) <= {0, 255}
    assert read(zhist).ndim == 3
    assert "HR 96×80" in notes and "LR 12×10" in notes
    assert re.search(r"their own means hold \d+ % of E\[z²\] \(each channel N\(0, 1\): 0\.8 %\)", notes)  # 1 / 120 values
    assert re.search(r"within a channel the excess kurtosis is -?\d+\.\d \(N\(0, 1\): 0\)", notes)


def test_decode_moves_with_tau_bits_seed(client, face):
    def run(**kw):
        lr, lr_big, b, (rec, hr), bicubic, table = client.predict(image=handle_file(face), model="x8",
                                                                  api_name="/decode", **kw)
        assert read(lr).shape == (10, 12, 3) and read(lr_big).shape == read(hr).shape == (80, 96, 3)
        assert read(bicubic).shape == (80, 96, 3) and "3 bytes" not in table
        return read(rec), unframed(read(b)), table

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
    # LPIPS is a number with nothing but requirements.txt installed: its weights ship in the package
    assert all(isinstance(m["lpips"], float) and m["lpips"] > 0 for m in (plain["reconstruction"], plain["bicubic"]))
    assert s["bytes_b"] == 0 and s["bytes_y"] != plain["bytes_y"] and s["reconstruction"] != plain["reconstruction"]
    assert "B dropped" in table and "JPEG q20" in table and "bicubic LR" in table
    _, twin = client.predict(image=handle_file(face), model="×8 without B (IRN-style twin)", api_name="/scores")
    assert twin["bytes_b"] == 0


def test_diversity(client, face):
    img, caption = client.predict(image=handle_file(face), model="×8", tau=1.0, samples=3, api_name="/diversity")
    assert read(img).shape == (80, 96, 3) and "std over 3 samples" in caption and "τ = 1.00" in caption
    assert "τ_b = 0.00 (share of τ in B's boundary cells)" in caption  # the default: Z at its mean where B marks a boundary
    _, paper = client.predict(image=handle_file(face), model="×8", tau=1.0, samples=3, tau_b=1, api_name="/diversity")
    assert "τ_b = 1.00 (share of τ in B's boundary cells)" in paper


def test_stored_b_panel_framed_even_when_all_white(client, tmp_path):
    """B's white cells at the image's edge must not merge into the page: the panel has a frame."""
    stripes = tmp_path / "stripes.png"
    Image.fromarray(np.tile(np.repeat([0, 255], 2).astype(np.uint8), (64, 16))[..., None].repeat(3, 2)).save(stripes)
    _, _, b, *_ = client.predict(image=handle_file(stripes), model="×8", api_name="/decode")
    unframed(read(b))


def test_twin_b_panel_explains_there_is_no_b(client, face):
    """The B-less twin's stored-B panel is not a flat grey square but says why it is empty."""
    _, _, b, *_ = client.predict(image=handle_file(face), model="×8 without B (IRN-style twin)", api_name="/decode")
    b = unframed(read(b))
    assert len(np.unique(b.reshape(-1, 3), axis=0)) > 10  # hatching and text, not one grey
    assert np.array_equal(b, unframed(viz.framed(viz.no_b_image((80, 96)))))


@pytest.mark.parametrize("which", PRECISION_CLIENTS)
def test_levels(request, which, face):
    client = request.getfixturevalue(which)
    img, table = client.predict(image=handle_file(face), model="×8", api_name="/levels")
    assert read(img).ndim == 3 and read(img).shape[0] > 300  # three rows of tiles
    # the tiny models read B as a condition: the table says so instead of naming a B slot
    assert table.count("\n|") == 4 and "| 3 (Y, Z) | 192 |" in table and "every coupling reads it" in table
    _, twin = client.predict(image=handle_file(face), model="×8 without B (IRN-style twin)", api_name="/levels")
    assert "| 3 (Y, Z) | 192 |" in twin and "stores no B" in twin


def test_swap_takes_b_from_the_other_image(client, face, tmp_path):
    # image B: red columns on and off, an edge at every column, so its BAM (the B a conditioned flow reads) is
    # dense everywhere while a face's is sparse: most of the two Bs' cells differ
    other = tmp_path / "other.png"
    stripes = np.zeros((80, 96, 3), np.uint8)
    stripes[:, ::2, 0] = 255
    Image.fromarray(stripes).save(other)
    own, own_table, own_s = client.predict(handle_file(face), handle_file(face), "×8", 2, 0.0, 0, api_name="/swap")
    lr, lr_big, b, (rec, hr), bicubic, table = client.predict(image=handle_file(face), model="×8", bits=2, tau=0.0,
                                                              api_name="/decode")
    assert np.array_equal(read(own), read(rec)) and "0 of 120 B cells differ" in own_table
    swapped, table, s = client.predict(handle_file(face), handle_file(other), "×8", 2, 0.0, 0, api_name="/swap")
    assert read(swapped).shape == (80, 96, 3) and not np.array_equal(read(swapped), read(own))
    differ = re.search(r"_(\d+) of 120 B cells differ from the flow's own B_", table)
    assert differ and int(differ.group(1)) > 60, table
    assert s["bytes_b"] == own_s["bytes_b"] == 30 and s["reconstruction"]["psnr"] != own_s["reconstruction"]["psnr"]
    with pytest.raises(AppError, match="stores no B"):
        client.predict(handle_file(face), handle_file(other), "×8 without B (IRN-style twin)", api_name="/swap")


@pytest.mark.parametrize("which", PRECISION_CLIENTS)
def test_figure_png_and_pdf_with_caption(request, which, face):
    client = request.getfixturevalue(which)
    png, pdf = client.predict(image=handle_file(face), model="×8", bits=2, tau=0.5, seed=3, api_name="/figure")
    assert png.endswith(".png") and pdf.endswith(".pdf") and Path(pdf).read_bytes()[:5] == b"%PDF-"
    assert read(png).shape[1] > 1000
    one, one_pdf = client.predict(image=handle_file(face), model="×8", panel="stored B", api_name="/figure")
    assert read(one).shape[1] < read(png).shape[1] and "stored-B" in Path(one).name
    with pytest.raises(AppError, match="unknown panel"):
        client.predict(image=handle_file(face), model="×8", panel="nope", api_name="/figure")


def test_ui_errors_go_next_to_their_panel():
    """In the UI a failure returns cleared outputs and the message once (no toast): under the input for a bad
    input, in the panel's own status line for anything else."""
    def bad_input(image, model):
        raise app_module.InputError("holiday.png is not an image Pillow can read")

    def bad_panel(image, model):
        raise ValueError("upload an image B to take its B")

    out = app_module.shown_errors(bad_input, 3)("holiday.png", "×8")
    assert out[:3] == [None, None, None] and out[3].count("holiday.png is not an image Pillow can read") == 1
    assert out[4] == ""
    out = app_module.shown_errors(bad_panel, 3)("face.png", "×8")
    assert out[:4] == [None, None, None, ""] and "upload an image B" in out[4]
    assert app_module.shown_errors(bad_input, 2)(None, "×8") == [None, None, "", ""]


@pytest.fixture(scope="module")
def wiring(tmp_path_factory):
    """The built app's elem_id -> block id, and its event dependencies (no server)."""
    root = tmp_path_factory.mktemp("wiring")
    shutil.copy(REPO / "assets" / "church.jpg", root / "church.jpg")
    blocks = app_module.build(Demo.from_sources(tiny_checkpoints(root), max_side=64, device="cpu"), examples_dir=root)
    ids = {b.elem_id: i for i, b in blocks.blocks.items() if getattr(b, "elem_id", None)}
    return ids, blocks.config["dependencies"]


def test_each_panel_reports_its_errors_beside_it(wiring):
    """Every UI event writes the input's status line and the status line of the panel its outputs belong to."""
    ids, deps = wiring
    panels = {"recon": "status-results", "zhist": "status-results", "diversity": "status-diversity",
              "levels": "status-levels", "lab-rec": "status-lab", "canvas": "status-lab", "fig-files": "status-figure"}
    for output, panel_status in panels.items():
        events = [d for d in deps if ids[output] in d["outputs"] and d["api_visibility"] == "private"
                  and ids["status"] in d["outputs"]]
        assert events, output
        assert all(ids[panel_status] in d["outputs"] for d in events), output


def test_settings_changes_clear_the_diversity_map_and_the_lab(wiring):
    """Every input a result depends on clears it (and the exported figure) when it changes: the lab's B source
    and T too."""
    ids, deps = wiring

    def cleared_by(elem_id):
        return {t[0] for dep in deps if ids[elem_id] in dep["outputs"] for t in dep["targets"] if t[1] == "change"}

    for name in ("hr-input", "model", "bits", "tau", "seed", "bicubic-lr", "jpeg-on", "jpeg-q", "drop-b"):
        assert ids[name] in cleared_by("diversity") and ids[name] in cleared_by("fig-preview"), name
    for name in ("hr-input", "image-b", "model", "bits", "tau", "seed", "b-source", "threshold"):
        assert ids[name] in cleared_by("lab-rec"), name


def test_first_open_shows_an_example(wiring):
    """The page opens with an example in the input, and its load event runs the forward pass (no empty panels)."""
    ids, deps = wiring
    assert any(t[1] == "load" and ids["zhist"] in d["outputs"] for d in deps for t in d["targets"])


def test_large_image_downscaled_with_notice(client, face_paths, tmp_path):
    big = tmp_path / "big.png"
    Image.open(face_paths[0]).convert("RGB").resize((256, 200)).save(big)
    edges, _, notes = client.predict(handle_file(big), "×8", api_name="/encode")
    assert unframed(read(edges)).shape == (100, 128, 3) and "downscaled the 256x200 input to 128x100" in notes


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


@pytest.mark.parametrize("endpoint", ["/encode", "/decode", "/scores", "/diversity"])
def test_missing_image_is_a_clear_error_on_every_endpoint(client, endpoint):
    """image=None is refused with a message, not answered with empty outputs."""
    with pytest.raises(AppError, match="upload an image first") as err:
        client.predict(image=None, model="×8", api_name=endpoint)
    assert "Traceback" not in str(err.value)


def raw_call(server: str, endpoint: str, data: list) -> str:
    """One call over raw HTTP (any client can send what gradio_client cannot: NaN, URLs, server paths); the SSE
    stream of its answer."""
    import json

    import httpx

    url = f"{server}gradio_api/call{endpoint}"
    event = httpx.post(url, content=json.dumps({"data": data}), headers={"content-type": "application/json"},
                       timeout=60).json()["event_id"]
    return httpx.get(f"{url}/{event}", timeout=120).text


# each endpoint's inputs in order (raw HTTP sends every one): tau_b closes every list
DEC_NAMES = ["image", "model", "bits", "tau", "seed", "bicubic_lr", "jpeg_on", "jpeg_q", "drop_b", "tau_b"]
DIV_NAMES = [*DEC_NAMES[:-1], "samples", "tau_b"]
DEC_DEFAULTS = {"model": "×8", "bits": 1, "tau": 0.8, "seed": 0, "bicubic_lr": False, "jpeg_on": False, "jpeg_q": 75,
                "drop_b": False, "samples": 4, "tau_b": 0.0}


@pytest.mark.parametrize("endpoint, kwargs, message", [
    ("/decode", {"bits": 2.5}, "bits must be an integer from 1 to 4, got 2.5"),
    ("/scores", {"bits": 2.5}, "bits must be an integer from 1 to 4, got 2.5"),
    ("/decode", {"bits": float("nan")}, "bits must be an integer from 1 to 4, got nan"),
    ("/decode", {"seed": float("nan")}, "the seed must be an integer from 0 to 2^63 - 1, got nan"),
    ("/decode", {"seed": 2**63}, "the seed must be an integer from 0 to 2^63 - 1"),
    ("/decode", {"jpeg_on": True, "jpeg_q": float("nan")}, "the JPEG quality must be an integer from 1 to 100, got nan"),
    ("/diversity", {"samples": float("nan")}, "samples must be an integer from 2 to 32, got nan"),
    ("/diversity", {"samples": 2.5}, "samples must be an integer from 2 to 32, got 2.5"),
    ("/decode", {"tau": float("nan")}, "tau must be between 0 and 10, got nan"),
    ("/decode", {"tau_b": float("nan")}, "tau_b must be a number between 0 and 1, got nan"),
    ("/diversity", {"tau_b": 1.5}, "tau_b must be a number between 0 and 1, got 1.5"),
])
def test_integer_inputs_are_refused_like_tau(server, face, endpoint, kwargs, message):
    """2.5 bits is refused (not rounded to 2), NaN for an integer input gets the rule's message. Over raw
    HTTP, as gradio_client cannot send NaN (Python's json writes it as the literal NaN, which the server reads)."""
    import httpx

    with open(face, "rb") as f:
        uploaded = httpx.post(f"{server}gradio_api/upload", files={"files": f}, timeout=60).json()[0]
    values = {**DEC_DEFAULTS, "image": {"path": uploaded, "meta": {"_type": "gradio.FileData"}}, **kwargs}
    stream = raw_call(server, endpoint, [values[n] for n in (DIV_NAMES if endpoint == "/diversity" else DEC_NAMES)])
    assert "event: error" in stream and message in stream, stream
    assert "cannot convert" not in stream and "Traceback" not in stream


def upload(server: str, path) -> dict:
    """``path`` uploaded as a browser would: its FileData payload."""
    import httpx

    with open(path, "rb") as f:
        uploaded = httpx.post(f"{server}gradio_api/upload", files={"files": f}, timeout=60).json()[0]
    return {"path": uploaded, "meta": {"_type": "gradio.FileData"}}


# every endpoint that reads a file: its arguments, with FILE where the file under test goes
FILE = object()
FILE_ENDPOINTS = {
    "/encode": [FILE, "×8"],
    "/decode": [FILE, *[DEC_DEFAULTS[n] for n in DEC_NAMES[1:]]],
    "/scores": [FILE, *[DEC_DEFAULTS[n] for n in DEC_NAMES[1:]]],
    "/diversity": [FILE, *[DEC_DEFAULTS[n] for n in DIV_NAMES[1:]]],
    "/levels": [FILE, "×8"],
    "/swap (image A)": [FILE, "UPLOAD", "×8", 1, 0.0, 0, 0.0],
    "/swap (image B)": ["UPLOAD", FILE, "×8", 1, 0.0, 0, 0.0],
    "/figure": [FILE, *[DEC_DEFAULTS[n] for n in DEC_NAMES[1:-1]], "stored B", 0.0],
}


@pytest.mark.parametrize("endpoint", FILE_ENDPOINTS)
def test_server_paths_are_refused_alike_on_every_endpoint(server, client, face, tmp_path, endpoint):
    """A client may name any path in a file payload (a FileData dict without Gradio's tag skips Gradio's own
    check, and so does a plain string): an image that exists on the server, a missing file, a folder, /etc/shadow,
    a '..' escape out of the upload folder and a URL all get the same message, which names none of them; nothing
    is read. The same paths with Gradio's tag get Gradio's refusal (its generic error), again the same for all."""
    from gradio.utils import get_upload_folder

    secret = tmp_path / "secret.png"
    shutil.copy(face, secret)
    paths = [secret, tmp_path / "missing.png", tmp_path, "/etc/shadow", f"{get_upload_folder()}/..{secret}",
             "http://127.0.0.1:9/face.png"]  # Gradio downloads a tagged URL (refusing local hosts); bdflow reads none
    api, args = endpoint.split(" ")[0], FILE_ENDPOINTS[endpoint]

    def call(payload):
        data = [payload if a is FILE else upload(server, face) if a == "UPLOAD" else a for a in args]
        return raw_call(server, api, data)

    for path in paths:
        for payload in ({"path": str(path)}, str(path)):
            stream = call(payload)
            assert "event: error" in stream and app_module.FILE_ONLY in stream, (path, stream)
            assert "secret" not in stream and "missing" not in stream and "shadow" not in stream
        tagged = call({"path": str(path), "meta": {"_type": "gradio.FileData"}})
        assert "event: error" in tagged and '"error": null' in tagged, (path, tagged)
    # through gradio_client, a plain string is refused with the same message
    if api != "/swap":
        with pytest.raises(AppError, match=re.escape(app_module.FILE_ONLY)):
            client.predict(str(secret), *[a for a in args[1:]], api_name=api)


def test_uploads_and_examples_are_read(client, face, tmp_path):
    """The check lets through what a user sends: an upload, and one of the app's examples by its path."""
    _, _, notes = client.predict(handle_file(face), "×8", api_name="/encode")
    assert "HR 96×80" in notes
    examples = app_module.Uploads([REPO / "assets" / "church.jpg"])
    assert examples(str(REPO / "assets" / "church.jpg")) == str((REPO / "assets" / "church.jpg").resolve())
    assert examples(None) is None and examples({"path": None}) is None
    with pytest.raises(Exception, match=re.escape(app_module.FILE_ONLY)):  # another file of the same folder
        examples({"path": str(REPO / "assets" / "cat-125.jpg")})
    from gradio.utils import get_upload_folder

    link = Path(tempfile.mkdtemp(dir=get_upload_folder())) / "link.png"  # a link in the upload folder to outside
    try:
        link.symlink_to(face)
        with pytest.raises(Exception, match=re.escape(app_module.FILE_ONLY)):
            examples({"path": str(link)})
    finally:
        shutil.rmtree(link.parent)

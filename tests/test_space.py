"""The Hugging Face Space bundle (tools/deploy_space.py): what it holds, and that it runs on its requirements.txt
alone: a fresh virtualenv (no system packages) gets only that file installed, the bundle's app.py starts from the
bundle's folder, and /decode, /scores, /levels and /figure answer through gradio_client."""

from __future__ import annotations

import fnmatch
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.helpers import REPO, free_port

sys.path.insert(0, str(REPO / "tools"))
import deploy_space  # noqa: E402

@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("space") / "bundle"
    run = subprocess.run([sys.executable, str(REPO / "tools" / "deploy_space.py"), "--dry-run", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and f"{out}: " in run.stdout and " MB " in run.stdout, run.stderr
    return out


@pytest.mark.slow
def test_bundle_holds_what_a_space_runs_and_nothing_else(bundle):
    files = [p.relative_to(bundle) for p in bundle.rglob("*") if p.is_file()]
    top = {f.parts[0] for f in files}
    assert top == {"README.md", ".gitattributes", "app.py", "requirements.txt", "bdflow", "assets", "checkpoints"}
    assert (bundle / "bdflow" / "weights").is_dir() and not any("__pycache__" in f.parts for f in files)
    readme = (bundle / "README.md").read_text()
    assert readme.startswith("---\ntitle: BDFlow\n") and "app_file: app.py" in readme and len(readme) < 2000
    assert sum((bundle / f).stat().st_size for f in files) < 60 * 1024**2
    rules = [line.split()[0] for line in (bundle / ".gitattributes").read_text().splitlines()
             if line.endswith(deploy_space.LFS_RULE)]
    big = [f for f in files if (bundle / f).stat().st_size > 10 * 1024**2]
    assert big, "the x64 checkpoints are over 10 MB"
    for f in big:
        assert any(fnmatch.fnmatch(f.as_posix(), r) or fnmatch.fnmatch(f.name, r) for r in rules), f


@pytest.mark.slow
def test_dry_run_refuses_a_folder_in_use_and_help_works(bundle):
    run = subprocess.run([sys.executable, str(REPO / "tools" / "deploy_space.py"), "--dry-run", str(bundle)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "is not an empty folder" in run.stderr and "Traceback" not in run.stderr
    help_ = subprocess.run([sys.executable, str(REPO / "tools" / "deploy_space.py"), "--help"], capture_output=True,
                           text=True, timeout=120)
    assert help_.returncode == 0 and "--dry-run OUT" in help_.stdout and "--models-org" in help_.stdout


@pytest.mark.slow
def test_bundle_runs_on_its_requirements_alone(bundle, tmp_path, face_paths):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(bundle / "requirements.txt")],
                         capture_output=True, text=True, timeout=1500)
    assert pip.returncode == 0, pip.stderr[-3000:]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BDFLOW_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), BDFLOW_MAX_SIDE="256")
    log = (tmp_path / "app.log").open("w")
    server = subprocess.Popen([str(python), "app.py"], cwd=bundle, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 600
        while True:
            assert server.poll() is None, (tmp_path / "app.log").read_text()[-3000:]
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the bundle's app did not start"
            time.sleep(2)
        from gradio_client import Client, handle_file

        face = tmp_path / "face.png"
        Image.open(face_paths[0]).convert("RGB").resize((128, 128)).save(face)
        client = Client(url, verbose=False)
        image = handle_file(str(face))
        *_, (rec, hr), _, table = client.predict(image=image, model="×8", api_name="/decode")
        assert Image.open(rec).size == (128, 128) and "(Y)" in table
        _, numbers = client.predict(image=image, model="×8", api_name="/scores")
        assert numbers["reconstruction"]["psnr"] > 20 and numbers["reconstruction"]["lpips"] > 0
        levels, levels_table = client.predict(image=image, model="×8", api_name="/levels")
        assert Image.open(levels).size[0] > 500 and "| 3 (Y, Z) |" in levels_table
        png, pdf = client.predict(image=image, model="×8", api_name="/figure")
        assert Image.open(png).size[0] > 1000 and Path(pdf).read_bytes()[:5] == b"%PDF-"
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


class FakeHub:
    """HfApi's calls as the tool makes them, recorded (with the files of each uploaded folder), nothing sent."""

    calls: list = []

    def __getattr__(self, name):
        def call(*args, **kwargs):
            if "folder_path" in kwargs:
                folder = Path(kwargs["folder_path"])
                kwargs["files"] = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
            FakeHub.calls.append((name, args, kwargs))

        return call


def test_upload_sends_the_bundle_as_one_commit_and_the_checkpoints_as_model_repos(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    FakeHub.calls = []
    assert deploy_space.main(["--space", "org/bdflow"]) == 0
    (create, (space,), kw), (upload, _, up) = FakeHub.calls
    assert create == "create_repo" and space == "org/bdflow"
    assert kw["repo_type"] == "space" and kw["space_sdk"] == "gradio"
    assert upload == "upload_folder" and up["repo_id"] == "org/bdflow" and up["repo_type"] == "space"
    assert {"README.md", ".gitattributes", "app.py", "requirements.txt", "checkpoints/face-x64/model.safetensors",
            "bdflow/weights/README.md"} <= set(up["files"])
    assert not any(f.startswith(("tests/", "training/", "docs/")) for f in up["files"])

    FakeHub.calls = []
    assert deploy_space.main(["--space", "org/bdflow", "--models-org", "org"]) == 0
    models = [kw["repo_id"] for name, _, kw in FakeHub.calls if name == "upload_folder" and kw["repo_type"] == "model"]
    assert "org/bdflow-face-x16" in models and len(models) == len(list((REPO / "checkpoints").glob("*/config.json")))
    (variable,) = [args for name, args, _ in FakeHub.calls if name == "add_space_variable"]
    assert variable == ("org/bdflow", "BDFLOW_MODELS", ",".join(models))
    space_files = FakeHub.calls[-1][2]["files"]
    assert FakeHub.calls[-1][2]["repo_type"] == "space" and not any(f.startswith("checkpoints/") for f in space_files)

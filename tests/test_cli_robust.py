"""The CLI under the bad input a new user gives it: one rule per input for CLI, app and API,
folder-mode outputs that never replace each other, usual file permissions, output formats from the suffix, and
``info`` / argument errors without torch."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bdflow import Rescaler
from bdflow.__main__ import main
from bdflow.codec import read_file
from bdflow.demo import Demo, Toggles
from bdflow.limits import MAX_SEED, check_bits, check_seed, check_tau, check_tau_b
from tests.helpers import REPO


@pytest.fixture(scope="module")
def bdf(tiny_x8, odd_face, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("robust-bdf") / "face.bdf"
    assert main(["encode", str(odd_face), str(path), "--model", str(tiny_x8), "-q"]) == 0
    return path


def usage_error(argv, capsys) -> str:
    """Run the CLI, expect exit code 2 (usage error); the message it printed."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------
# Tau and the seed, one rule for CLI, Rescaler and app
# ----------------------------------------------------------------------------------------------------


RULES = {"tau": (check_tau, "tau must be between 0 and 10"), "seed": (check_seed, "seed must be an integer"),
         "tau_b": (check_tau_b, "tau_b must be a number between 0 and 1")}


@pytest.mark.parametrize("name, text, value", [
    ("tau", "1e9", 1e9), ("tau", "nan", math.nan), ("tau", "-0.5", -0.5), ("tau", "inf", math.inf),
    ("seed", "-5", -5), ("seed", str(2**63), 2**63), ("seed", "1.5", 1.5),
    ("tau_b", "1.5", 1.5), ("tau_b", "-0.1", -0.1), ("tau_b", "nan", math.nan), ("tau_b", "one", "one"),
])
def test_out_of_range_tau_and_seed_are_refused_everywhere(bdf, tiny_x8, tmp_path, capsys, name, text, value):
    out, flag = tmp_path / "o.png", "--" + name.replace("_", "-")
    rule, message = RULES[name]
    with pytest.raises(ValueError, match=message):
        rule(value)
    err = usage_error(["decode", str(bdf), str(out), flag, text], capsys)
    assert f"argument {flag}: " in err and message in err and "Traceback" not in err and not out.exists()
    r = Rescaler.from_pretrained(tiny_x8, device="cpu")
    with pytest.raises(ValueError, match=message):
        r.decode(read_file(bdf).encoded, **{name: value})  # the API refuses what the CLI refuses
    demo = Demo({"x8": r}, max_side=64)
    an = demo.analyse(np.zeros((16, 16, 3), np.uint8), "x8")
    with pytest.raises(ValueError, match=message):  # and so does the app (tau_b is one of its toggles)
        demo.decode(an, toggles=Toggles(tau_b=value)) if name == "tau_b" else demo.decode(an, **{name: value})


def test_the_extreme_accepted_values_work(bdf, tmp_path):
    assert main(["decode", str(bdf), str(tmp_path / "a.png"), "--tau", "10", "--seed", str(MAX_SEED), "-q"]) == 0
    assert main(["decode", str(bdf), str(tmp_path / "b.png"), "--tau", "0", "--seed", "0", "-q"]) == 0
    assert main(["decode", str(bdf), str(tmp_path / "c.png"), "--tau-b", "1", "-q"]) == 0
    assert main(["decode", str(bdf), str(tmp_path / "d.png"), "--tau-b", "0", "-q"]) == 0
    assert check_seed(MAX_SEED) == MAX_SEED and check_tau(10) == 10.0 and check_bits(4.0) == 4
    assert check_tau_b(0) == 0.0 and check_tau_b(1) == 1.0


def test_bits_are_integers_only(odd_face, tiny_x8, tmp_path, capsys):
    for value in ("2.5", "0", "5", "nan"):
        assert "bits must be an integer from 1 to 4" in usage_error(
            ["encode", str(odd_face), str(tmp_path / "f.bdf"), "--model", str(tiny_x8), "--bits", value], capsys)
    for value in (2.5, True, float("nan"), 0):
        with pytest.raises(ValueError, match="bits must be an integer from 1 to 4"):
            Rescaler.from_pretrained(tiny_x8, device="cpu").encode(odd_face, bits=value)


# ----------------------------------------------------------------------------------------------------
# Folder mode
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("names", [("a.png", "a.jpg"), ("a.png", "A.png")])
@pytest.mark.parametrize("force", [False, True])
def test_folder_inputs_sharing_an_output_name_are_refused_up_front(odd_face, tiny_x8, tmp_path, capsys, names, force):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for name in names:
        Image.open(odd_face).save(src / name)
    Image.open(odd_face).save(src / "b.png")
    argv = ["encode", str(src), str(dst), "--model", str(tiny_x8), *(["--force"] if force else [])]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "would share an output name" in err and " and ".join(sorted(names)) in err and "nothing was written" in err
    assert not dst.exists()  # refused before any work: not even b.bdf


def test_folder_mode_takes_the_same_images_as_single_file_mode(odd_face, tiny_x8, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.open(odd_face).convert("P").save(src / "anim.gif")
    Image.open(odd_face).save(src / "still.PNG")
    (src / "notes.txt").write_text("not an image")
    assert main(["encode", str(src / "anim.gif"), str(tmp_path / "single.bdf"), "--model", str(tiny_x8), "-q"]) == 0
    assert main(["encode", str(src), str(tmp_path / "enc"), "--model", str(tiny_x8), "-q"]) == 0
    assert sorted(p.name for p in (tmp_path / "enc").iterdir()) == ["anim.bdf", "still.bdf"]
    assert (tmp_path / "enc" / "anim.bdf").read_bytes() == (tmp_path / "single.bdf").read_bytes()


# ----------------------------------------------------------------------------------------------------
# Permissions
# ----------------------------------------------------------------------------------------------------


def test_outputs_get_the_usual_permissions(odd_face, tiny_x8, bdf, tmp_path):
    old = os.umask(0o022)
    try:
        assert main(["encode", str(odd_face), str(tmp_path / "f.bdf"), "--model", str(tiny_x8), "-q"]) == 0
        assert main(["decode", str(bdf), str(tmp_path / "f.png"), "-q"]) == 0
        assert (tmp_path / "f.bdf").stat().st_mode & 0o777 == 0o644
        assert (tmp_path / "f.png").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        assert main(["decode", str(bdf), str(tmp_path / "g.png"), "-q"]) == 0
        assert (tmp_path / "g.png").stat().st_mode & 0o777 == 0o600
        (tmp_path / "f.png").chmod(0o640)  # an overwritten file keeps its own mode
        assert main(["decode", str(bdf), str(tmp_path / "f.png"), "--force", "-q"]) == 0
        assert (tmp_path / "f.png").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
    assert not list(tmp_path.glob(".*.tmp"))


# ----------------------------------------------------------------------------------------------------
# The output format is the one the suffix names
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["out.xyz", "out", "out.bdf"])
def test_decode_refuses_an_output_without_an_image_suffix(bdf, tmp_path, capsys, name):
    assert main(["decode", str(bdf), str(tmp_path / name)]) == 1
    err = capsys.readouterr().err
    assert "cannot tell the image format" in err and ".png" in err and "Traceback" not in err
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize("suffix, fmt", [(".jpg", "JPEG"), (".webp", "WEBP"), (".bmp", "BMP"), (".tif", "TIFF"),
                                         (".PNG", "PNG"), (".gif", "GIF")])
def test_decode_writes_the_format_its_suffix_names(bdf, tmp_path, suffix, fmt):
    out = tmp_path / f"out{suffix}"
    assert main(["decode", str(bdf), str(out), "-q"]) == 0
    with Image.open(out) as img:
        assert img.format == fmt and img.size == (53, 70)


def test_encode_output_must_be_a_bdf(odd_face, tiny_x8, tmp_path, capsys):
    assert main(["encode", str(odd_face), str(tmp_path / "face.png"), "--model", str(tiny_x8)]) == 1
    assert "must end in .bdf" in capsys.readouterr().err and not (tmp_path / "face.png").exists()


@pytest.mark.parametrize("case", ["folder to a .bdf name", "unwritable", "under a file", "corrupt", "folder to .png"])
def test_output_and_corrupt_file_errors_are_clear(odd_face, tiny_x8, bdf, tmp_path, capsys, case):
    """A folder is never encoded into a new folder named like a file; an output that cannot be written is named
    (never the temporary file); a path under a file says so; a corrupt file is named once."""
    model = ["--model", str(tiny_x8)]
    src = tmp_path / "in"
    if case == "folder to a .bdf name":
        src.mkdir()
        shutil.copy(odd_face, src / "face.png")
        argv, expected = ["encode", str(src), str(tmp_path / "x.bdf"), *model], "is a folder, so the output"
    elif case == "folder to .png":
        src.mkdir()
        shutil.copy(bdf, src / "f.bdf")
        argv, expected = ["decode", str(src), str(tmp_path / "out.png")], "is a folder, so the output"
    elif case == "unwritable":
        argv, expected = ["encode", str(odd_face), "/proc/x.bdf", *model], "cannot write /proc/x.bdf: "
    elif case == "under a file":
        shutil.copy(odd_face, tmp_path / "face.jpg")
        argv = ["encode", str(odd_face), str(tmp_path / "face.jpg" / "x.bdf"), *model]
        expected = f"cannot write {tmp_path / 'face.jpg' / 'x.bdf'}: {tmp_path / 'face.jpg'} is a file, not a folder"
    else:
        (tmp_path / "trunc.bdf").write_bytes(bdf.read_bytes()[:60])
        argv = ["decode", str(tmp_path / "trunc.bdf"), str(tmp_path / "o.png")]
        expected = "trunc.bdf: checksum mismatch"
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert expected in err and ".tmp" not in err and "Errno" not in err, err
    assert err.count("trunc.bdf") <= 1 and not (tmp_path / "x.bdf").exists() and not (tmp_path / "out.png").exists()
    if case == "corrupt":
        assert main(["info", str(tmp_path / "trunc.bdf")]) == 1
        assert capsys.readouterr().err.count("trunc.bdf") == 1


# ----------------------------------------------------------------------------------------------------
# Info and argument errors import neither torch nor gradio
# ----------------------------------------------------------------------------------------------------

NO_HEAVY_IMPORTS = """
import json, sys
from bdflow.__main__ import main
try:
    status = main(sys.argv[1:])
except SystemExit as exit_:
    status = exit_.code
print(json.dumps({"status": status, "heavy": sorted({"torch", "gradio"} & set(sys.modules))}))
"""


@pytest.mark.parametrize("argv, status", [
    (["info", "BDF"], 0), (["info", "BDF", "--json"], 0), (["info", "missing.bdf"], 1),
    (["decode", "BDF", "o.png", "--tau", "1e9"], 2), (["decode", "BDF", "o.png", "--seed", "-5"], 2),
    (["encode", "a.png", "b.bdf"], 2), (["encode", "a.png", "b.bdf", "--model", "m", "--bits", "2.5"], 2),
])
def test_info_and_argument_errors_import_neither_torch_nor_gradio(bdf, argv, status):
    argv = [str(bdf) if a == "BDF" else a for a in argv]
    out = subprocess.run([sys.executable, "-c", NO_HEAVY_IMPORTS, *argv], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"status": status, "heavy": []}, out.stderr


# ----------------------------------------------------------------------------------------------------
# The `bdflow` console script, usable from any folder
# ----------------------------------------------------------------------------------------------------


def test_console_script_is_declared():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, func = scripts["bdflow"].split(":")
    assert module == "bdflow.__main__" and func == "main"
    assert "pip install --no-deps -e ." in (REPO / "README.md").read_text()


@pytest.mark.skipif(shutil.which("pip") is None, reason="pip not found")
def test_console_script_works_from_any_folder(bdf, tmp_path):
    """The README's install (pip install -e . into an environment that has the requirements) gives a `bdflow`
    command that works outside the repository: a venv over the installed requirements, offline.

    The venv sees this environment's packages (the requirements, pip and the setuptools they brought), not the
    base interpreter's, which is what --system-site-packages would give inside a virtualenv: a Debian python3's
    setuptools 66 without `wheel` cannot build the editable install."""
    import site

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True, timeout=120).stdout.strip()
    (Path(purelib) / "requirements.pth").write_text("".join(f"{p}\n" for p in site.getsitepackages()))
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                          "--no-index", "-q", "-e", str(REPO)], capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(bdf, elsewhere / "face.bdf")
    t0 = time.perf_counter()
    out = subprocess.run([str(venv / "bin" / "bdflow"), "info", "face.bdf"], capture_output=True, text=True,
                         cwd=elsewhere, timeout=120)
    assert out.returncode == 0 and "bdflow file version 1" in out.stdout and "lr_size" in out.stdout, out.stderr
    assert time.perf_counter() - t0 < 60
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import bdflow; print(bdflow.__file__)"],
                           capture_output=True, text=True, cwd=elsewhere, timeout=120)
    assert Path(where.stdout.strip()).resolve() == (REPO / "bdflow" / "__init__.py").resolve()
    help_ = subprocess.run([str(venv / "bin" / "bdflow"), "--help"], capture_output=True, text=True, cwd=elsewhere,
                           timeout=120)
    assert help_.returncode == 0 and help_.stdout.startswith("usage: bdflow ")

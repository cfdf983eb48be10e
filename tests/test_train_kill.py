"""kill -9 during training: the state on disk is never corrupt, --resume loses at most one checkpoint
interval, and the resumed run ends with the weights of an uninterrupted one.

1. Every crash window of ``save_state`` rebuilt on disk from real checkpoints, then resumed (deterministic).
2. A real training subprocess killed with SIGKILL at >= 10 random moments, several inside a checkpoint write,
   resumed each time (checkpoint every step, so one interval is one step).
"""

from __future__ import annotations

import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from bdflow import BDFlow
from bdflow.train import parse_args, state_step, train
from tests.helpers import REPO

pytestmark = pytest.mark.slow  # real training runs killed and resumed

TINY = ["--scale", "4", "--hidden", "8", "--crop", "32", "--batch-size", "2", "--workers", "0", "--val-images", "0",
        "--lambda-lpips", "0", "--seed", "3"]


@pytest.fixture(scope="module")
def faces(data_dir, tmp_path_factory) -> Path:
    """Six real training faces, 64x64 (so that a step is quick)."""
    folder = tmp_path_factory.mktemp("kill-faces")
    for path in sorted((data_dir / "faces" / "train").glob("*.jpg"))[:6]:
        Image.open(path).convert("RGB").resize((64, 64), Image.LANCZOS).save(folder / f"{path.stem}.png")
    return folder


def args(faces: Path, out: Path, *extra) -> list[str]:
    return [*TINY, "--data", str(faces), "--out", str(out), *extra]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def losses(out: Path) -> list[tuple[int, str]]:
    with open(out / "log.csv") as f:
        return [(int(r["step"]), r["total"]) for r in csv.DictReader(f)]


def newest_state(last: Path) -> tuple[Path | None, int | None]:
    """What --resume would continue: the newest complete state among OUT/last, OUT/last.tmp, OUT/last.old."""
    found = [(state_step(p), p) for p in (last, last.with_name("last.tmp"), last.with_name("last.old"))]
    found = [(s, p) for s, p in found if s is not None]
    return (max(found, key=lambda sp: sp[0])[1], max(s for s, _ in found)) if found else (None, None)


# ----------------------------------------------------------------------------------------------------
# 1. Each crash window of save_state, rebuilt from real checkpoints
# ----------------------------------------------------------------------------------------------------


def _torn(folder: Path) -> Path:
    """A state folder caught mid-write: its weights cut in half."""
    weights_file = folder / "model.safetensors"
    weights_file.write_bytes(weights_file.read_bytes()[: weights_file.stat().st_size // 2])
    return folder


WINDOWS = {  # crash window -> (folders left on disk, made from the checkpoints of steps 3 and 4; step resumed from)
    "writing last.tmp": ({"last": 3, "last.tmp": "torn 4"}, 3),
    "last.tmp written, before the swap": ({"last": 3, "last.tmp": 4}, 4),
    "between the two renames": ({"last.old": 3, "last.tmp": 4}, 4),
    "removing last.old": ({"last": 4, "last.old": "torn 3"}, 4),
    "last.tmp of an earlier crash left over": ({"last": 4, "last.tmp": "torn 3"}, 4),
}


@pytest.fixture(scope="module")
def checkpoints(faces, tmp_path_factory) -> dict:
    """Real states at steps 3 and 4 (with their logs), and the final weights of an uninterrupted 6-step run."""
    root = tmp_path_factory.mktemp("kill-windows")
    train(*parse_args(args(faces, root / "straight", "--iters", "6")))
    run = root / "run"
    saved = {}
    for stop in (3, 4):
        train(*parse_args(args(faces, run, "--iters", "6", "--stop-at", str(stop), "--resume")))
        shutil.copytree(run / "last", root / f"state{stop}")
        shutil.copy(run / "log.csv", root / f"log{stop}.csv")
        saved[stop] = root / f"state{stop}"
    return {"states": saved, "log": root / "log4.csv", "final": weights(root / "straight" / "final"),
            "losses": losses(root / "straight")}


@pytest.mark.parametrize("window", list(WINDOWS))
def test_resume_after_a_crash_in_each_window_of_a_checkpoint_write(faces, checkpoints, tmp_path, window):
    layout, expected = WINDOWS[window]
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(checkpoints["log"], out / "log.csv")
    for name, what in layout.items():
        step = int(str(what).split()[-1])
        shutil.copytree(checkpoints["states"][step], out / name)
        if str(what).startswith("torn"):
            _torn(out / name)
    assert newest_state(out / "last")[1] == expected
    train(*parse_args(args(faces, out, "--iters", "6", "--resume")))
    sessions = BDFlow.from_pretrained(out / "final").meta["sessions"]
    assert sessions[-1]["from_iteration"] == expected, f"{window}: resumed from {sessions[-1]['from_iteration']}"
    final = weights(out / "final")
    assert all(torch.equal(final[k], v) for k, v in checkpoints["final"].items())
    assert losses(out) == checkpoints["losses"]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("last")) == ["last"]  # leftovers cleaned up


# ----------------------------------------------------------------------------------------------------
# 2. A real run killed with SIGKILL at random moments
# ----------------------------------------------------------------------------------------------------

ITERS, KILLS = 16, 10


def _logged(out: Path) -> int:
    """The last step the log holds (a row torn by the kill is ignored, as --resume ignores it)."""
    try:
        return max((step for step, _ in losses(out)), default=0)
    except (OSError, ValueError, TypeError, KeyError):
        return 0


def test_sigkill_at_random_moments_then_resume(faces, tmp_path):
    rng = random.Random(16)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}  # one thread: bit-exact across processes
    reference, out = tmp_path / "reference", tmp_path / "killed"
    command = [sys.executable, "-m", "bdflow.train", *args(faces, out, "--iters", str(ITERS), "--checkpoint-minutes",
                                                           "0", "--resume")]
    straight = subprocess.run([*command[:-1], "--out", str(reference)], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr[-3000:]
    last, previous, inside, kills = out / "last", 0, 0, 0
    t0 = time.time()
    while kills < KILLS:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        start = _logged(out)
        while _logged(out) <= start and proc.poll() is None:  # wait for this life to train a step
            time.sleep(0.005)
        assert proc.poll() is None, f"the run ended early: {proc.stderr.read().decode()[-3000:]}"
        if kills % 2 == 0:  # inside a checkpoint write: as soon as OUT/last.tmp appears, plus 0-3 ms
            while not last.with_name("last.tmp").exists() and proc.poll() is None:
                time.sleep(0.0005)
            time.sleep(rng.uniform(0, 0.003))
        else:  # anywhere: training, logging, plotting, writing
            time.sleep(rng.uniform(0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        kills += 1
        inside += last.with_name("last.tmp").exists() or last.with_name("last.old").exists()
        path, step = newest_state(last)
        if path is None:  # killed inside the first checkpoint write: nothing to resume yet, one step lost
            step = 0
        else:
            BDFlow.from_pretrained(path)  # it loads
        assert step >= previous, "the state went back in time"
        assert _logged(out) - step <= 1, f"lost {_logged(out) - step} steps, more than one checkpoint interval (1)"
        previous = step
    finish = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert finish.returncode == 0, finish.stderr[-3000:]
    assert inside >= 3, f"only {inside} of {kills} kills landed inside a checkpoint write"
    final, expected = weights(out / "final"), weights(reference / "final")
    assert all(torch.equal(final[k], v) for k, v in expected.items())
    assert losses(out) == losses(reference)
    print(f"{kills} kills ({inside} inside a checkpoint write) and resumes in {time.time() - t0:.0f} s")

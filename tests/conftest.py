"""Shared fixtures: real photos from ../shared/data and offline settings for every test."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

for _name, _value in {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}.items():
    os.environ.setdefault(_name, _value)

from tests.helpers import REPO, small_face, tiny_checkpoint  # noqa: E402  (after the settings above)

DATA = Path(os.environ.get("BDFLOW_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.fail(f"the shared data folder is missing: {DATA} (set BDFLOW_DATA)")
    return DATA


@pytest.fixture(scope="session")
def face_paths(data_dir) -> list[Path]:
    return sorted((data_dir / "faces" / "val").glob("*.jpg"))


@pytest.fixture(scope="session")
def face(face_paths) -> torch.Tensor:
    """One real 512x512 face, (1,3,512,512) float32 in [0, 1]."""
    rgb = np.asarray(Image.open(face_paths[0]).convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].contiguous()


@pytest.fixture(scope="session")
def tiny_x8(tmp_path_factory) -> Path:
    """A tiny x8 BDFlow checkpoint folder (``helpers.tiny_checkpoint``, weights perturbed by 0.02), for the CLI and
    codec tests."""
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny-ckpt") / "tiny-x8", std=0.02)


@pytest.fixture(scope="session")
def odd_face(tmp_path_factory, face_paths) -> Path:
    """A real face, small and of an odd size so padding is exercised (W 53 x H 70 px, padded to 56 x 72: LR 9 x 7 (H x W) at x8), as a PNG file."""
    return small_face(face_paths[2], (53, 70), tmp_path_factory.mktemp("odd-face") / "face.png")

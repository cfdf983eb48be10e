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

from tests.helpers import REPO  # noqa: E402  (after the settings above)

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

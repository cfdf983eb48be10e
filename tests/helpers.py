"""Helpers several test files share (fixtures stay in conftest.py): the repository root, non-trivial weights for
untrained models, tiny checkpoints and a free port for the app's tests."""

from __future__ import annotations

import socket
from pathlib import Path

import torch
from PIL import Image

from bdflow import BDFlow, BDFlowConfig

REPO = Path(__file__).resolve().parents[1]


def perturb_(model: torch.nn.Module, std: float = 0.02, seed: int = 0) -> torch.nn.Module:
    """Give every parameter (zero-initialised output convolutions included) non-trivial values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)
    return model


def tiny_checkpoint(folder: Path, boundary: bool = True, seed: int = 0, std: float = 0.01) -> Path:
    """A tiny x8 BDFlow (hidden 8; the B-less twin with ``boundary=False``), weights perturbed, saved in ``folder``."""
    perturb_(BDFlow(BDFlowConfig(scale=8, hidden=8, boundary=boundary)), std=std, seed=seed).save_pretrained(folder)
    return folder


def tiny_checkpoints(root: Path, twin_name: str = "face-x8-noB") -> list[str]:
    """A tiny x8 model with B and its B-less twin saved under ``root`` (face-x8, ``twin_name``); their folders."""
    return [str(tiny_checkpoint(root / "face-x8")), str(tiny_checkpoint(root / twin_name, boundary=False, seed=1))]


def small_face(src: Path, size: tuple[int, int], path: Path) -> Path:
    """The real photo ``src`` resized to ``size`` (W, H), saved as ``path``: a small input of a chosen size."""
    Image.open(src).convert("RGB").resize(size).save(path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def results_tool():
    """``tools/results.py`` (not a package) as a module: the list of result runs and the table renderer."""
    import importlib.util
    import sys

    name = "bdflow_results_tool"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "tools" / "results.py")
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]

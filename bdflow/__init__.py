"""bdflow: Boundary-aware Decoupled Flow Networks for extreme image rescaling (Li et al., IJCAI 2024).

    model = bdflow.BDFlow(bdflow.BDFlowConfig(scale=16))
    y, b, z = model(x)                 # x (N,3,H,W) in [0,1] -> Y (N,3,h,w), B (N,1,h,w), Z (N,3s^2-4,h,w)
    x_back = model.inverse(y, b, z)

    r = bdflow.Rescaler.from_pretrained("checkpoints/face-x16")
    out = r.decode(r.encode("face.png", bits=1), tau=0.8, seed=0)
"""

from .bam import bam, boundary_strength, boundary_target
from .config import BDFlowConfig
from .flow import BDFlow, sample_z
from .pipeline import Encoded, Rescaler

__all__ = [
    "BDFlow",
    "BDFlowConfig",
    "Encoded",
    "Rescaler",
    "bam",
    "boundary_strength",
    "boundary_target",
    "sample_z",
]
__version__ = "0.1.0"

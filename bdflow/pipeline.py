"""The user-facing API: ``Rescaler`` turns an image into what is stored (Y, B) and back (design §2, §5).

    r = Rescaler.from_pretrained("checkpoints/face-x16")
    enc = r.encode("face.png", bits=1)        # Encoded: y uint8 (h,w,3), b k-bit codes (h,w), meta
    out = r.decode(enc, tau=0.8, seed=0)     # PIL image of the original size (output_type="np" | "pt" for others)

Inputs of any size are reflect-padded to a multiple of the scale and cropped back; grayscale, palette,
RGBA (composited on white), 16-bit and EXIF-rotated images are converted, with a note in ``meta["notes"]``
(``bdflow.image_io``). The decoder sees only the stored Y and B and a Z sampled at temperature tau, never the HR
image.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from .accel import accelerate
from .encoded import Encoded
from .flow import BDFlow, sample_z
from .image_io import load_image, pad_to_multiple, to_output
from .limits import DEFAULT_MAX_PIXELS, DEFAULT_TAU, DEFAULT_TAU_B, MAX_SEED, check_bits, check_precision, check_seed, check_tau
from .quantize import b_to_codes, y_to_uint8
from .tiles import tiled_forward, tiled_inverse

TILE_ABOVE = 1024  # HR sides above this run in tiles (bdflow.tiles) so memory stays bounded; up to it, whole
TILE_SIDE = 1024  # HR pixels per side of a tile's core
TILE_MARGIN = 256  # HR pixels of context per core: tiled = whole to 80-inf dB (benchmarks/tiles.py, design.md)


# ----------------------------------------------------------------------------------------------------
# The rescaler
# ----------------------------------------------------------------------------------------------------


class Rescaler:
    """A trained BDFlow with image I/O: ``encode`` to (Y, B), ``decode`` back to an HR image."""

    def __init__(self, model: BDFlow, max_pixels: int = DEFAULT_MAX_PIXELS, device: str | torch.device | None = None,
                 precision: str = "fp32"):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.eval().to(self.device)
        self.max_pixels = max_pixels
        self.precision = check_precision(precision)
        self.net = accelerate(self.model, precision, self.device)  # what runs: the model itself at fp32

    @classmethod
    def from_pretrained(cls, name_or_path, max_pixels: int = DEFAULT_MAX_PIXELS, device=None, precision: str = "fp32",
                        **hub_kwargs) -> "Rescaler":
        """A checkpoint folder (e.g. ``checkpoints/face-x16``) or a Hugging Face Hub repo id; ``precision`` "bf16"
        runs the subnets in bfloat16 (``bdflow.accel``: ~2x faster on a CPU with AVX512-BF16, not bit-exact)."""
        model = BDFlow.from_pretrained(name_or_path, **hub_kwargs)
        return cls(model, max_pixels=max_pixels, device=device, precision=precision)

    def save_pretrained(self, directory, meta: dict | None = None):
        return self.model.save_pretrained(directory, meta=meta if meta is not None else self.model.meta)

    @property
    def scale(self) -> int:
        return self.model.scale

    @property
    def tiling(self) -> tuple[int, int]:
        """(tile, margin) in LR pixels for images with a side above ``TILE_ABOVE``."""
        return max(1, TILE_SIDE // self.scale), -(-TILE_MARGIN // self.scale)

    @property
    def has_boundary(self) -> bool:
        return self.model.config.boundary

    @torch.inference_mode()
    def encode(self, image, bits: int = 1) -> Encoded:
        """Image (path, PIL, ndarray or tensor, see ``image_io.load_image``) -> Encoded(y uint8 (h,w,3), b uint8
        codes (h,w) or None, bits, meta)."""
        bits = check_bits(bits)
        f = self.forward_image(image)
        return self.quantize(f.y, f.b, bits, f.meta)

    @torch.inference_mode()
    def forward_image(self, image) -> Forward:
        """Image (path, PIL, ndarray or an already loaded tensor (1,3,H,W) in [0, 1]) -> the flow's raw forward
        output (:class:`Forward`), before any quantisation, and the meta ``encode`` stores.
        ``quantize(f.y, f.b, bits, f.meta)`` then equals ``encode(image, bits)`` for every k, so one forward pass
        serves all bits (the app's cache); z is what ``decode`` replaces by a sample (to inspect how Gaussian it is)."""
        x, info = load_image(image, self.max_pixels)
        h, w = x.shape[-2:]
        xp = pad_to_multiple(x, self.scale).to(self.device)
        y, b, z = tiled_forward(self.net, xp, *self.tiling) if max(xp.shape[-2:]) > TILE_ABOVE else self.net(xp)
        meta = {
            **info,
            "scale": self.scale,
            "size": [int(h), int(w)],
            "padded": [int(xp.shape[-2]), int(xp.shape[-1])],
            "model": self.model.name or "bdflow",
        }
        return Forward(y, b, z, meta)

    @staticmethod
    def quantize(y: torch.Tensor, b: torch.Tensor | None, bits: int, meta: dict) -> Encoded:
        """Raw forward y (1,3,h,w), b (1,1,h,w) or None -> Encoded: Y to 8 bits, B to k-bit codes."""
        bits = check_bits(bits)
        y8 = y_to_uint8(y)[0].permute(1, 2, 0).cpu().numpy()
        codes = None if b is None else b_to_codes(b, bits)[0, 0].cpu().numpy()
        return Encoded(y=y8, b=codes, bits=bits, meta=dict(meta))

    @property
    def default_tau(self) -> float:
        """The tau a decode uses unless told: the checkpoint's own (meta "default_tau", written by training: the
        temperature it validated at). Checkpoints without it: the training temperature, at most DEFAULT_TAU."""
        tau = self.model.meta.get("default_tau")
        return check_tau(tau) if tau is not None else min(self.model.loss_config.tau_train, DEFAULT_TAU)

    @torch.inference_mode()
    def decode(self, enc: Encoded, tau: float | None = None, seed: int | None = 0, output_type: str | None = None,
               tau_b: float = DEFAULT_TAU_B):
        """Encoded -> the HR image of the original size, as ``output_type``:

        - ``"pil"``: a PIL image (8-bit);
        - ``"np"``: an (H,W,3) ndarray of the input's dtype family (uint8 for file and PIL inputs);
        - ``"pt"``: a tensor (1,3,H,W) in [0, 1] on this rescaler's device, not rounded to 8 bits;
        - ``None`` (default): the type the image was given in (``meta["kind"]``; PIL for a .bdf file).

        ``tau=None``: :attr:`default_tau`. ``tau_b``: the share of tau Z keeps in B's boundary cells
        (:func:`bdflow.flow.sample_z`; default 0: Z at its mean there; 1: the paper's one tau everywhere).
        """
        kind = enc.meta.get("kind", "pil") if output_type is None else OUTPUT_TYPES.get(output_type)
        if kind is None:
            raise ValueError(f"output_type must be one of {', '.join(OUTPUT_TYPES)} or None, got {output_type!r}")
        y, b = self.stored_tensors(enc)
        x = self.reconstruct(y, b, tau=self.default_tau if tau is None else tau, seed=seed, tau_b=tau_b)
        h, w = enc.meta.get("size", x.shape[-2:])
        return to_output(x[..., :h, :w], kind, enc.meta.get("dtype", "uint8"))

    def reconstruct(self, y: torch.Tensor, b: torch.Tensor | None, tau: float, seed: int | None,
                    tau_b: float = DEFAULT_TAU_B) -> torch.Tensor:
        """Inverse pass from (quantised) y (N,3,h,w), b (N,1,h,w) and Z drawn by :func:`bdflow.flow.sample_z` at
        tau (the share ``tau_b`` of it in B's boundary cells) with a seeded generator."""
        tau = check_tau(tau)
        generator = torch.Generator(device=self.device)
        generator.manual_seed(check_seed(seed) if seed is not None else torch.seed())
        z = sample_z(y, self.model.config.z_channels, tau, generator, b, tau_b)
        if max(y.shape[-2:]) * self.scale > TILE_ABOVE:
            return tiled_inverse(self.net, y, b, z, *self.tiling).clamp(0, 1)
        return self.net.inverse(y, b, z).clamp(0, 1)

    def spread(self, y: torch.Tensor, b: torch.Tensor | None, tau: float, seed: int = 0, samples: int = 4,
               tau_b: float = DEFAULT_TAU_B) -> torch.Tensor:
        """The diversity map: per-pixel standard deviation (mean over RGB, 0-255 scale) of ``samples`` decodes of
        (y, b) with seeds seed, seed + 1, ... (modulo 2^63), where the sampled Z changes the picture. (H, W) on the
        CPU at the padded size."""
        outs = [self.reconstruct(y, b, tau=tau, seed=(seed + i) % (MAX_SEED + 1), tau_b=tau_b) for i in range(samples)]
        return (torch.cat(outs).cpu() * 255).std(dim=0).mean(dim=0)

    def stored_tensors(self, enc: Encoded) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What the decoder reads from ``enc``, checked against this model: y (1,3,h,w) in [0, 1] and b (1,1,h,w)
        (None for a B-less model, whatever ``enc.b`` holds), on this rescaler's device."""
        if enc.meta.get("scale", self.scale) != self.scale:
            raise ValueError(f"this was encoded at x{enc.meta['scale']}, but the model is x{self.scale}")
        y, b = (enc if self.has_boundary else dataclasses.replace(enc, b=None)).to_tensors(self.device)
        if self.has_boundary and b is None:
            raise ValueError(f"Encoded.b must be uint8 codes shaped {tuple(y.shape[-2:])} for this model")
        return y, b


@dataclass
class Forward:
    """The flow's raw forward output for one image (``Rescaler.forward_image``), before any quantisation."""

    y: torch.Tensor  # (1,3,h,w)
    b: torch.Tensor | None  # (1,1,h,w); None for a B-less model
    z: torch.Tensor  # (1,z_channels,h,w)
    meta: dict  # what Encoded.meta holds: kind, dtype, notes, scale, size, padded, model


OUTPUT_TYPES = {"pil": "pil", "np": "ndarray", "pt": "pt"}  # Rescaler.decode's output_type -> image_io's kind

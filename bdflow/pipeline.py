"""The user-facing API: ``Rescaler`` turns an image into what is stored (Y, B) and back (design §2, §5).

    r = Rescaler.from_pretrained("checkpoints/face-x16")
    enc = r.encode("face.png", bits=1)        # Encoded: y uint8 (h,w,3), b k-bit codes (h,w), meta
    out = r.decode(enc, tau=0.8, seed=0)     # PIL image of the original size

Inputs of any size are reflect-padded to a multiple of the scale and cropped back; grayscale, palette,
RGBA (composited on white), 16-bit and EXIF-rotated images are converted, with a note in ``meta["notes"]``.
The decoder sees only the stored Y and B and a Z sampled at temperature tau, never the HR image.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.nn import functional as F

from .flow import BDFlow, sample_z
from .quantize import b_to_codes, check_bits, codes_to_b, y_to_uint8

DEFAULT_MAX_PIXELS = 4096 * 4096  # refuse larger inputs (decompression bombs, memory)
DEFAULT_TAU = 0.8
EXIF_ORIENTATION = 0x0112


@dataclass
class Encoded:
    """What bdflow stores for one image: the 8-bit LR image and the k-bit boundary codes."""

    y: np.ndarray  # uint8 (h, w, 3)
    b: np.ndarray | None  # uint8 codes 0 .. 2^bits - 1, (h, w); None for a B-less model
    bits: int
    meta: dict = field(default_factory=dict)  # scale, size, padded, kind, dtype, notes, model

    @property
    def nbytes(self) -> int:
        """Raw storage: 8 bits per Y value plus k bits per B code (before any entropy coding)."""
        b_bits = 0 if self.b is None else self.b.size * self.bits
        return self.y.size + math.ceil(b_bits / 8)


# ----------------------------------------------------------------------------------------------------
# Image input and output
# ----------------------------------------------------------------------------------------------------


def _open(path: Path, max_pixels: int) -> Image.Image:
    if not path.is_file():
        raise ValueError(f"no such image file: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            _check_size(img.size, max_pixels)
            img.load()
    except UnidentifiedImageError as err:
        raise ValueError(f"{path.name} is not an image Pillow can read") from err
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ValueError(f"{path.name} is too large to decode safely: {err}") from err
    except (OSError, SyntaxError) as err:  # Pillow reports truncated and corrupt data this way
        raise ValueError(f"{path.name} is truncated or corrupt: {err}") from err
    return img


def _check_size(size: tuple[int, int], max_pixels: int) -> None:
    w, h = size
    if w * h > max_pixels:
        raise ValueError(f"image is {w}x{h} = {w * h:,} pixels, above the limit of {max_pixels:,} pixels")


def _pil_to_array(img: Image.Image, notes: list[str]) -> np.ndarray:
    """Any Pillow mode -> float32 RGB (H, W, 3) in [0, 1]."""
    if img.getexif().get(EXIF_ORIENTATION, 1) != 1:
        notes.append("applied the EXIF orientation")
        img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16L", "I;16B", "I", "F"):
        scale = 1.0 if img.mode == "F" else 65535.0
        notes.append(f"converted {img.mode} (high bit depth grayscale) to RGB")
        return _array_to_rgb(np.asarray(img, dtype=np.float32) / scale, notes)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        notes.append(f"composited {img.mode} alpha on white")
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255
        return rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
    if img.mode != "RGB":
        notes.append(f"converted {img.mode} to RGB")
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.float32) / 255


def _array_to_rgb(a: np.ndarray, notes: list[str]) -> np.ndarray:
    """(H,W), (H,W,1), (H,W,3) or (H,W,4) uint8/uint16/bool/float -> float32 RGB (H, W, 3) in [0, 1]."""
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255
    elif a.dtype == np.uint16:
        notes.append("reduced 16-bit input to float")
        a = a.astype(np.float32) / 65535
    elif a.dtype == np.bool_:
        a = a.astype(np.float32)
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            raise ValueError("a float image must hold finite values in [0, 1]")
        a = a.astype(np.float32)
    else:
        raise ValueError(f"unsupported array dtype {a.dtype}: use uint8, uint16, bool or float in [0, 1]")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        notes.append("converted grayscale to RGB")
        return np.repeat(a[..., None], 3, axis=2)
    if a.ndim == 3 and a.shape[2] == 4:
        notes.append("composited RGBA alpha on white")
        return a[..., :3] * a[..., 3:] + (1 - a[..., 3:])
    if a.ndim == 3 and a.shape[2] == 3:
        return a
    raise ValueError(f"an image array must be (H,W), (H,W,1), (H,W,3) or (H,W,4), got {a.shape}")


def load_image(image, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[torch.Tensor, dict]:
    """Path / PIL / ndarray -> x (1,3,H,W) float32 in [0, 1] and how to give the result back (kind, dtype, notes)."""
    notes: list[str] = []
    if isinstance(image, (str, Path)):
        rgb, kind, dtype = _pil_to_array(_open(Path(image), max_pixels), notes), "pil", "uint8"
    elif isinstance(image, Image.Image):
        _check_size(image.size, max_pixels)
        rgb, kind, dtype = _pil_to_array(image, notes), "pil", "uint8"
    elif isinstance(image, np.ndarray):
        if image.ndim >= 2:
            _check_size((image.shape[1], image.shape[0]), max_pixels)
        rgb, kind, dtype = _array_to_rgb(image, notes), "ndarray", str(image.dtype)
    else:
        raise ValueError(f"expected an image path, a PIL image or a numpy array, got {type(image).__name__}")
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
    return x, {"kind": kind, "dtype": dtype, "notes": notes}


def to_output(x: torch.Tensor, kind: str, dtype: str):
    """x (1,3,H,W) in [0, 1] -> a PIL image, or an (H,W,3) array of the input's dtype family."""
    rgb = x[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    if kind == "pil" or dtype == "uint8":
        u8 = np.floor(rgb * 255 + 0.5).astype(np.uint8)
        return Image.fromarray(u8) if kind == "pil" else u8
    if dtype == "uint16":
        return np.floor(rgb * 65535 + 0.5).astype(np.uint16)
    return rgb.astype(np.float32)


def pad_to_multiple(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Reflect-pad bottom and right so H and W are multiples of ``scale`` (design §5)."""
    h, w = x.shape[-2:]
    if h < scale or w < scale:
        raise ValueError(f"image is {w}x{h}, smaller than one LR pixel ({scale}x{scale}) at x{scale}")
    return F.pad(x, (0, -w % scale, 0, -h % scale), mode="reflect")


# ----------------------------------------------------------------------------------------------------
# The rescaler
# ----------------------------------------------------------------------------------------------------


class Rescaler:
    """A trained BDFlow with image I/O: ``encode`` to (Y, B), ``decode`` back to an HR image."""

    def __init__(self, model: BDFlow, max_pixels: int = DEFAULT_MAX_PIXELS, device: str | torch.device | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.eval().to(self.device)
        self.max_pixels = max_pixels

    @classmethod
    def from_pretrained(cls, name_or_path, max_pixels: int = DEFAULT_MAX_PIXELS, device=None, **hub_kwargs) -> "Rescaler":
        """A checkpoint folder (e.g. ``checkpoints/face-x16``) or a Hugging Face Hub repo id."""
        return cls(BDFlow.from_pretrained(name_or_path, **hub_kwargs), max_pixels=max_pixels, device=device)

    def save_pretrained(self, directory, meta: dict | None = None):
        return self.model.save_pretrained(directory, meta=meta if meta is not None else getattr(self.model, "meta", None))

    @property
    def scale(self) -> int:
        return self.model.scale

    @property
    def has_boundary(self) -> bool:
        return self.model.config.boundary

    @torch.inference_mode()
    def encode(self, image, bits: int = 1) -> Encoded:
        """Image -> Encoded(y uint8 (h,w,3), b uint8 codes (h,w) or None, bits, meta)."""
        bits = check_bits(bits)
        y, b, _, meta = self.forward_image(image)
        return self.quantize(y, b, bits, meta)

    @torch.inference_mode()
    def forward_image(self, image) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, dict]:
        """Image -> the flow's raw forward output y (1,3,h,w), b (1,1,h,w) or None, z (1,z_channels,h,w), before
        any quantisation, and the meta ``encode`` stores. ``quantize(y, b, bits, meta)`` then equals
        ``encode(image, bits)`` for every k, so one forward pass serves all bits (the app's cache); z is what
        ``decode`` replaces by a sample (to inspect how Gaussian it is)."""
        x, info = load_image(image, self.max_pixels)
        h, w = x.shape[-2:]
        xp = pad_to_multiple(x, self.scale).to(self.device)
        y, b, z = self.model(xp)
        meta = {
            **info,
            "scale": self.scale,
            "size": [int(h), int(w)],
            "padded": [int(xp.shape[-2]), int(xp.shape[-1])],
            "model": getattr(self.model, "name", "bdflow"),
        }
        return y, b, z, meta

    @staticmethod
    def quantize(y: torch.Tensor, b: torch.Tensor | None, bits: int, meta: dict) -> Encoded:
        """Raw forward y (1,3,h,w), b (1,1,h,w) or None -> Encoded: Y to 8 bits, B to k-bit codes."""
        bits = check_bits(bits)
        y8 = y_to_uint8(y)[0].permute(1, 2, 0).cpu().numpy()
        codes = None if b is None else b_to_codes(b, bits)[0, 0].cpu().numpy()
        return Encoded(y=y8, b=codes, bits=bits, meta=dict(meta))

    @torch.inference_mode()
    def decode(self, enc: Encoded, tau: float = DEFAULT_TAU, seed: int | None = 0):
        """Encoded -> HR image in the input's type family (PIL, or an ndarray of its dtype), original size."""
        x = self.decode_tensor(enc, tau=tau, seed=seed)
        return to_output(x, enc.meta.get("kind", "pil"), enc.meta.get("dtype", "uint8"))

    @torch.inference_mode()
    def decode_tensor(self, enc: Encoded, tau: float = DEFAULT_TAU, seed: int | None = 0) -> torch.Tensor:
        """Encoded -> x (1,3,H,W) in [0, 1], cropped to the original size."""
        y, b = self._stored_tensors(enc)
        x = self.reconstruct(y, b, tau=tau, seed=seed)
        h, w = enc.meta.get("size", x.shape[-2:])
        return x[..., :h, :w]

    def reconstruct(self, y: torch.Tensor, b: torch.Tensor | None, tau: float, seed: int | None) -> torch.Tensor:
        """Inverse pass from (quantised) y (N,3,h,w), b (N,1,h,w) and Z ~ N(0, tau^2) with a seeded generator."""
        tau = float(tau)
        if not math.isfinite(tau) or tau < 0:
            raise ValueError(f"tau must be a finite number >= 0, got {tau}")
        generator = torch.Generator(device=self.device)
        generator.manual_seed(int(seed) if seed is not None else torch.seed())
        z = sample_z(y, self.model.config.z_channels, tau, generator)
        return self.model.inverse(y, b, z).clamp(0, 1)

    def _stored_tensors(self, enc: Encoded) -> tuple[torch.Tensor, torch.Tensor | None]:
        bits = check_bits(enc.bits)
        y8 = np.asarray(enc.y)
        if y8.dtype != np.uint8 or y8.ndim != 3 or y8.shape[2] != 3:
            raise ValueError(f"Encoded.y must be uint8 (h,w,3), got {y8.dtype} {y8.shape}")
        if enc.meta.get("scale", self.scale) != self.scale:
            raise ValueError(f"this was encoded at x{enc.meta['scale']}, but the model is x{self.scale}")
        y = torch.from_numpy(y8.copy()).permute(2, 0, 1)[None].float().div(255).to(self.device)
        if not self.has_boundary:
            return y, None
        if enc.b is None or np.asarray(enc.b).shape != y8.shape[:2]:
            raise ValueError(f"Encoded.b must be uint8 codes shaped {y8.shape[:2]} for this model")
        b = codes_to_b(torch.from_numpy(np.asarray(enc.b, dtype=np.uint8).copy()), bits)
        return y, b[None, None].to(self.device)
